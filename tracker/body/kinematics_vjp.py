"""Hand-written reverse mode (vector-Jacobian products) of the kinematics path.

The fitter needs ``g = ∇_Θ L_D`` on every iteration at run time, inside one compiled graph
(TensorRT and ONNX have no autograd), so the backward pass of :class:`BodyModel` is written
out here in plain tensor ops. ``tests/test_data_term.py`` checks it against autograd.

Forward recap (per joint ``j`` with parent ``p``, rest joints ``J``)::

    R_j = R_p @ Rl_j,   t_j = R_p @ (J_j - J_p) + t_p      (root: R_0 = Rl_0, t_0 = J_0)
    tip_i = sum_j w_ij (R_j @ (q_i - J_j) + t_j) + transl,  q_i = rest tip incl. pose correctives

:func:`kinematics_vjp_tangent` + :func:`rotation_6d_vjp_tangent` work with torques in each
joint's tangent space, where the whole reverse pass is one matmul with the constant
descendant matrix (subtree sums): about 25 ops, no scatter-adds. The straightforward
reverse pass, level by level on full 3x3 matrix gradients (~130 ops), is the tests' oracle
(``tests/vjp_reference.py``) beside autograd.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tracker.body.kinematics import BodyModel, small_matmul


def _axial(M: Tensor) -> Tensor:
    """``a (..., 3)`` with ``<M, [w]x> = a . w`` for ``M (..., 3, 3)`` (twice the skew part)."""
    return torch.stack([M[..., 2, 1] - M[..., 1, 2], M[..., 0, 2] - M[..., 2, 0],
                        M[..., 1, 0] - M[..., 0, 1]], -1)


def kinematics_vjp_tangent(
    body: BodyModel,
    rotmats: Tensor,
    betas: Tensor,
    R_glob: Tensor,
    joints: Tensor,
    g_R: Tensor,
    g_t: Tensor,
    g_tips: Tensor,
) -> tuple[Tensor, Tensor]:
    """Pull gradients on the posed skeleton back to local rotations (as torques in each
    joint's local frame) and the translation.

    Perturbing joint ``j`` as ``Rl_j -> Rl_j exp([w]x)`` turns everything below it about the
    world axis ``R_j w`` through the joint, so ``dL/dw_j = R_j^T T_j`` with the torque
    ``T_j = sum_{k below j} (tau_k + p_k x f_k) - p_j x sum_{k below j} f_k``, where ``f_k``
    is the force (position gradient) and ``tau_k`` the torque of the rotation gradient on
    joint ``k`` (fingertips act as points carried by their skinning joints). The subtree sums
    are one matmul with the constant descendant matrix, instead of a level-by-level loop.

    Args:
        body: the kinematics model that produced the forward pass.
        rotmats: ``(B, 52, 3, 3)`` local joint rotations of the forward pass.
        betas: ``(B, K)``. R_glob: ``(B, 52, 3, 3)`` global joint rotations.
        g_R, g_t: ``(B, 52, 3, 3)``, ``(B, 52, 3)``: dL/d global rotations and positions.
        g_tips: ``(B, 2, 5, 3)``: dL/d fingertip positions.
        joints: ``(B, 52, 3)`` posed joint positions of the forward pass.

    Returns:
        ``(g_w (B, 52, 3), g_transl (B, 3))``: ``dL/dw`` of every joint's local rotation (use
        :func:`rotation_6d_vjp_tangent`), and ``dL/d transl``.
    """
    B = rotmats.shape[0]
    J = body.rest_joints(betas)  # (B, 52, 3)
    k = betas.shape[-1]
    g_tips = g_tips.reshape(B, 10, 3)
    g_transl = g_tips.sum(1) + g_t.sum(1)
    q = body.tip_template + torch.einsum("ick,bk->bic", body.tip_dirs[..., :k], betas)
    if body.has_posedirs:
        eye = torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
        pose_feature = (rotmats[:, 1:] - eye).reshape(B, -1)
        q = q + torch.einsum("icp,bp->bic", body.tip_posedirs, pose_feature)
    w = body.tip_weights  # (10, 52)
    # every joint's rotation gradient and force, fingertips included:
    # dL/dR_j += sum_i w_ij g_i (q_i - J_j)^T = [sum_i w_ij g_i q_i^T] - f_tips_j J_j^T
    f_tips = torch.einsum("ij,bic->bjc", w, g_tips)  # (B, 52, 3)
    gq = torch.einsum("ij,birc->bjrc", w, g_tips[..., :, None] * q[..., None, :])
    G = g_R + gq - f_tips[..., :, None] * J[..., None, :]
    f = g_t + f_tips
    tau = _axial(small_matmul(G, R_glob.transpose(-1, -2)))  # world torques
    m = tau + torch.linalg.cross(joints, f, dim=-1)  # moments about the origin
    S = torch.einsum("jk,bkc->bjc", body.descendants, torch.cat([m, f], -1))  # subtree sums
    T = S[..., :3] - torch.linalg.cross(joints, S[..., 3:], dim=-1)  # about each joint
    g_w = small_matmul(R_glob.transpose(-1, -2), T[..., None])[..., 0]
    if body.has_posedirs:
        # pose correctives read the local rotation matrices directly
        R_blend = torch.einsum("ij,bjrc->birc", w, R_glob)
        g_q = small_matmul(R_blend.transpose(-1, -2), g_tips[..., None])[..., 0]  # (B, 10, 3)
        g_pf = torch.einsum("icp,bic->bp", body.tip_posedirs, g_q).reshape(B, -1, 3, 3)
        g_w_pf = _axial(small_matmul(rotmats[:, 1:].transpose(-1, -2), g_pf))  # (B, 51, 3)
        g_w = g_w + torch.cat([torch.zeros_like(g_w[:, :1]), g_w_pf], 1)
    return g_w, g_transl


def rotation_6d_vjp_tangent(d6: Tensor, R: Tensor, g_w: Tensor) -> Tensor:
    """``dL/d6D (..., 6)`` from ``dL/dw (..., 3)``, ``w`` the local rotation ``R -> R exp([w]x)``.

    Gram-Schmidt moves ``R`` only by rotations: ``a2`` along ``b3`` turns it about ``b1``;
    ``a1`` along ``b2`` / ``b3`` turns it about ``b3`` / ``-b2``, with a turn about ``b1`` of
    ``(b1.a2)/|u|`` times the latter (``u`` = ``a2`` without its ``b1`` part).
    """
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1, b2, b3 = R[..., :, 0], R[..., :, 1], R[..., :, 2]
    dot = (b1 * a2).sum(-1, keepdim=True)
    n_u = (a2 - dot * b1).norm(dim=-1, keepdim=True).clamp_min(1e-12)
    n_a1 = a1.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w1, w2, w3 = g_w[..., 0:1], g_w[..., 1:2], g_w[..., 2:3]
    ga2 = (w1 / n_u) * b3
    ga1 = (w3 * b2 - (w2 + w1 * dot / n_u) * b3) / n_a1
    return torch.cat([ga1, ga2], -1)
