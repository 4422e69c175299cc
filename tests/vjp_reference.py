"""The reference reverse pass of the kinematics (the tests' oracle beside autograd).

Level by level on full 3x3 matrix gradients, the straightforward way; the fitter uses the
tangent-space form in ``tracker.body.kinematics_vjp``, checked against this and autograd.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tracker.body.kinematics import BodyModel


def kinematics_vjp(
    body: BodyModel,
    rotmats: Tensor,
    betas: Tensor,
    R_glob: Tensor,
    g_R: Tensor,
    g_t: Tensor,
    g_tips: Tensor,
) -> tuple[Tensor, Tensor]:
    """Pull gradients on the posed skeleton back to local rotations and translation.

    Args:
        body: the kinematics model that produced the forward pass.
        rotmats: ``(B, 52, 3, 3)`` local joint rotations of the forward pass.
        betas: ``(B, K)`` shape coefficients of the forward pass.
        R_glob: ``(B, 52, 3, 3)`` global rotations from the forward pass.
        g_R: ``(B, 52, 3, 3)`` dL/dR_glob. g_t: ``(B, 52, 3)`` dL/d joint positions.
        g_tips: ``(B, 2, 5, 3)`` dL/d fingertip positions.

    Returns:
        ``(g_rotmats (B, 52, 3, 3), g_transl (B, 3))``.
    """
    B = rotmats.shape[0]
    J = body.rest_joints(betas)  # (B, 52, 3)
    k = betas.shape[-1]
    g_tips = g_tips.reshape(B, 10, 3)
    # joints and tips both add transl once (skinning weights sum to one)
    g_transl = g_tips.sum(1) + g_t.sum(1)

    # Fingertips: tip = sum_j w_ij (R_j (q_i - J_j) + t_j) + transl
    q = body.tip_template + torch.einsum("ick,bk->bic", body.tip_dirs[..., :k], betas)
    g_rot_direct = torch.zeros_like(rotmats)
    if body.has_posedirs:
        eye = torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
        pose_feature = (rotmats[:, 1:] - eye).reshape(B, -1)
        q = q + torch.einsum("icp,bp->bic", body.tip_posedirs, pose_feature)
    w = body.tip_weights  # (10, 52)
    rel = q[:, :, None, :] - J[:, None, :, :]  # (B, 10, 52, 3)
    # dL/dR_j += sum_i w_ij g_i (q_i - J_j)^T ; dL/dt_j += sum_i w_ij g_i
    g_R = g_R + torch.einsum("ij,bir,bijc->bjrc", w, g_tips, rel)
    g_t = g_t + torch.einsum("ij,bic->bjc", w, g_tips)
    if body.has_posedirs:
        # dL/dq_i = sum_j w_ij R_j^T g_i, then through the pose feature to local rotations
        R_blend = torch.einsum("ij,bjrc->birc", w, R_glob)
        g_q = (R_blend.transpose(-1, -2) @ g_tips[..., None])[..., 0]  # (B, 10, 3)
        g_pf = torch.einsum("icp,bic->bp", body.tip_posedirs, g_q)  # (B, 459)
        g_rot_direct = torch.cat(
            [torch.zeros_like(rotmats[:, :1]), g_pf.reshape(B, -1, 3, 3)], dim=1
        )

    # Reverse through the level-by-level chain, deepest level first. Gradients live in
    # per-level tensors in the level order of the forward pass.
    levels, parents_pos = body._levels, body._parent_pos
    gR_lv = [g_R[:, lv] for lv in levels]
    gt_lv = [g_t[:, lv] for lv in levels]
    g_loc_lv: list[Tensor] = [None] * len(levels)  # type: ignore[list-item]
    R_lv = [R_glob[:, lv] for lv in levels]
    for d in range(len(levels) - 1, 0, -1):
        lv, par = levels[d], body._level_parents[d]
        R_par = R_lv[d - 1][:, parents_pos[d]]  # (B, n, 3, 3)
        R_loc = rotmats[:, lv]
        offset = J[:, lv] - J[:, par]
        gR, gt = gR_lv[d], gt_lv[d]
        g_loc_lv[d] = R_par.transpose(-1, -2) @ gR
        g_Rpar = gR @ R_loc.transpose(-1, -2) + gt[..., :, None] * offset[..., None, :]
        idx = torch.tensor(parents_pos[d], device=rotmats.device)
        gR_lv[d - 1] = gR_lv[d - 1].index_add(1, idx, g_Rpar)
        gt_lv[d - 1] = gt_lv[d - 1].index_add(1, idx, gt)
    g_loc_lv[0] = gR_lv[0]
    g_rot = torch.cat(g_loc_lv, 1)[:, body._unpermute] + g_rot_direct
    return g_rot, g_transl


def rotation_6d_vjp(d6: Tensor, R: Tensor, g_R: Tensor) -> Tensor:
    """Pull ``dL/dR (..., 3, 3)`` back through Gram-Schmidt to ``dL/d6D (..., 6)``.

    ``R = [b1 b2 b3]`` from ``d6 = [a1, a2]``: ``b1 = a1/|a1|``, ``u = a2 - (b1·a2) b1``,
    ``b2 = u/|u|``, ``b3 = b1 × b2`` (see ``tracker.geometry.rotation_6d_to_matrix``).
    """
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1, b2 = R[..., :, 0], R[..., :, 1]
    gb1, gb2, gb3 = g_R[..., :, 0], g_R[..., :, 1], g_R[..., :, 2]
    # b3 = b1 x b2
    gb1 = gb1 + torch.linalg.cross(b2, gb3, dim=-1)
    gb2 = gb2 + torch.linalg.cross(gb3, b1, dim=-1)
    # b2 = u / |u|
    dot = (b1 * a2).sum(-1, keepdim=True)
    u = a2 - dot * b1
    n_u = u.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    gu = (gb2 - b2 * (b2 * gb2).sum(-1, keepdim=True)) / n_u
    # u = a2 - (b1·a2) b1
    ga2 = gu - b1 * (b1 * gu).sum(-1, keepdim=True)
    gb1 = gb1 - dot * gu - (b1 * gu).sum(-1, keepdim=True) * a2
    # b1 = a1 / |a1|
    n_a1 = a1.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    ga1 = (gb1 - b1 * (b1 * gb1).sum(-1, keepdim=True)) / n_a1
    return torch.cat([ga1, ga2], -1)
