"""The HMD data term L_D (Choutas et al. 2022, Eq. 4), its residuals and its closed-form gradient.

``L_D = ρ(T̂_H, T_H(Θ)) + Σ_{w∈L,R} v_w [ρ(T̂_w, T_w(Θ)) + Σ_i ρ(P̂_i^w - P_i^w(Θ))]``

* SE(3) discrepancies: the position difference (metres) and the Frobenius difference of the
  rotation matrices (scaled by ``rot_scale`` metres, so both read as lengths);
* ρ is a robust norm (pseudo-Huber / Charbonnier with scale ``c``, one of Barron's family):
  ``ρ(r) = 2c²(sqrt(1 + |r|²/c²) - 1)``, quadratic near zero and linear beyond ``c``;
* fingertips enter only where the hand is visible *and* the tips were reported;
* a floor term (ours, not in the paper): a user stands on the floor, so the lowest foot joint
  should be where it is when standing (``BodyModel.foot_heights`` above the floor, y = 0 in
  the canonical frame): ``ρ(w_F · softmin_k(y_k - h_k))`` over the ankles and feet, softmin
  with a 5 mm temperature. It is the one term that tells the fit where the legs end; a jump
  costs it a little for a few frames.

Θ is ``(B, 315)``: 52 joint rotations in 6D (``(B, 52, 6)`` flattened) then the root
translation. Everything is in one frame (the fitter's canonical frame at run time).
The gradient is computed without autograd (see ``tracker.body.kinematics_vjp``) so that a fit
compiles to one graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from tracker.body.joints import HEAD, WRISTS
from tracker.body.kinematics import BodyModel, BodyState, small_matmul
from tracker.body.kinematics_vjp import kinematics_vjp_tangent, rotation_6d_vjp_tangent
from tracker.fitter.theta import THETA_DIM, split_theta
from tracker.geometry.rotations import rotation_6d_to_matrix
from tracker.signals.headset import WRIST_TO_OPENXR, HeadsetSignals

__all__ = ["RESIDUAL_DIM", "THETA_DIM", "DataTermConfig", "DataTermOutput", "data_term",
           "split_theta"]

RESIDUAL_DIM = 12 + 2 * 12 + 2 * 15  # head, two wrists (pos 3 + rot 9), 2 x 5 tips
FLOOR_SOFTMIN_M = 0.005  # temperature of the soft minimum over the foot joints' heights


@dataclass(frozen=True)
class DataTermConfig:
    """Weights of the data term.

    Attributes:
        rot_scale: metres per unit of rotation-matrix Frobenius difference.
        robust_scale: ``c`` of the robust norm, metres.
        head, wrist, tips, floor: per-term weights (``floor``: 0 in checkpoints from before
            the floor term).
    """

    rot_scale: float = 0.1
    robust_scale: float = 0.05
    head: float = 1.0
    wrist: float = 1.0
    tips: float = 0.5
    floor: float = 0.5


@dataclass
class DataTermOutput:
    """Per-sample data term, batch ``B``.

    Attributes:
        loss: ``(B,)`` robust data term.
        residuals: ``(B, 66)`` weighted residuals (zero where not visible): head position and
            rotation (3 + 9), left then right wrist (3 + 9 each), left then right tips (15 each).
        grad: ``(B, 315)`` ``∇_Θ L_D`` (``None`` unless asked for).
        state: the posed body.
    """

    loss: Tensor
    residuals: Tensor
    grad: Tensor | None
    state: BodyState

    @property
    def residual_m(self) -> Tensor:
        """``(B,)`` RMS of the visible residual entries, metres (what ``pose.residual`` reports)."""
        r = self.residuals
        n = (r != 0).sum(-1).clamp_min(1)
        return torch.sqrt((r * r).sum(-1) / n)


def _robust(r: Tensor, c: float) -> tuple[Tensor, Tensor]:
    """ρ over the last dim of ``r (..., n)``: values ``(...)`` and dρ/dr ``(..., n)``."""
    s = 1.0 + (r * r).sum(-1, keepdim=True) / (c * c)
    root = torch.sqrt(s)
    return (2 * c * c * (root - 1.0))[..., 0], 2.0 * r / root


def data_term(
    body: BodyModel,
    theta: Tensor,
    betas: Tensor,
    sig: HeadsetSignals,
    T_hmd: Tensor,
    cfg: DataTermConfig = DataTermConfig(),
    with_grad: bool = True,
) -> DataTermOutput:
    """Evaluate L_D, its residuals and (optionally) its gradient at Θ.

    Args:
        body: kinematics model. theta: ``(B, 315)``. betas: ``(B, K)``.
        sig: observations with batch ``(B,)``, same frame as Θ.
        T_hmd: ``(4, 4)`` or ``(B, 4, 4)`` headset in the head-joint frame.
    """
    d6, transl = split_theta(theta)
    rotmats = rotation_6d_to_matrix(d6)
    state = body(rotmats, betas, transl)
    B, dt = theta.shape[0], theta.dtype
    T_hmd = T_hmd.to(dt).expand(B, 4, 4)
    R_hmd, p_hmd = T_hmd[:, :3, :3], T_hmd[:, :3, 3]
    conv = WRIST_TO_OPENXR.to(dtype=dt, device=theta.device)  # (2, 3, 3)
    vis = sig.visible.to(dt)  # (B, 2)
    tips_on = (sig.visible & sig.tips_valid).to(dt)  # (B, 2)
    c, s_rot = cfg.robust_scale, cfg.rot_scale

    R_head, t_head = state.rotations[:, HEAD], state.joints[:, HEAD]
    R_H = small_matmul(R_head, R_hmd)
    p_H = small_matmul(R_head, p_hmd[..., None])[..., 0] + t_head
    wl = list(WRISTS)
    R_W = small_matmul(state.rotations[:, wl], conv)  # (B, 2, 3, 3)
    p_W = state.joints[:, wl]

    r_hp = cfg.head * (p_H - sig.head[:, :3, 3])
    r_hr = cfg.head * s_rot * (R_H - sig.head[:, :3, :3]).reshape(B, 9)
    r_wp = cfg.wrist * vis[..., None] * (p_W - sig.wrists[..., :3, 3])
    r_wr = cfg.wrist * s_rot * vis[..., None] * (R_W - sig.wrists[..., :3, :3]).reshape(B, 2, 9)
    r_tp = cfg.tips * tips_on[..., None, None] * (state.tips - sig.tips)  # (B, 2, 5, 3)

    l_hp, d_hp = _robust(r_hp, c)
    l_hr, d_hr = _robust(r_hr, c)
    l_wp, d_wp = _robust(r_wp, c)
    l_wr, d_wr = _robust(r_wr, c)
    l_tp, d_tp = _robust(r_tp, c)
    # floor: soft minimum over the foot joints of their height above where they stand
    h = state.joints[..., 1] @ body.foot_select.to(dt) - body.foot_heights.to(dt)  # (B, 4)
    soft = torch.softmax(-h / FLOOR_SOFTMIN_M, -1)
    # -τ log Σ exp(-h/τ) is τ·ln(n) below the minimum when n joints are down; +τ·ln 2 centres
    # it for one or both feet on the floor (2 to 4 joints): within ±3.5 mm
    softmin = -FLOOR_SOFTMIN_M * (torch.logsumexp(-h / FLOOR_SOFTMIN_M, -1) - math.log(2.0))
    r_fl = cfg.floor * softmin[:, None]
    l_fl, d_fl = _robust(r_fl, c)
    loss = l_hp + l_hr + l_wp.sum(-1) + l_wr.sum(-1) + l_tp.sum((-1, -2)) + l_fl
    residuals = torch.cat(
        [r_hp, r_hr, r_wp[:, 0], r_wr[:, 0], r_wp[:, 1], r_wr[:, 1], r_tp.reshape(B, 30)], -1
    )
    if not with_grad:
        return DataTermOutput(loss, residuals, None, state)

    # dL/d(global rotations, joint positions, tips) of the posed skeleton
    g_pH = cfg.head * d_hp  # (B, 3)
    g_RH = cfg.head * s_rot * d_hr.reshape(B, 3, 3)
    g_R_head = (small_matmul(g_RH, R_hmd.transpose(-1, -2))
                + g_pH[..., :, None] * p_hmd[..., None, :])
    g_RW = small_matmul((cfg.wrist * s_rot * vis[..., None] * d_wr).reshape(B, 2, 3, 3),
                        conv.transpose(-1, -2))
    g_pW = cfg.wrist * vis[..., None] * d_wp
    # scatter the three observed joints' gradients into all 52 with a constant one-hot matmul
    sel = body.observed_select  # (52, 3): head, left wrist, right wrist
    g_R = torch.einsum("jn,bnrc->bjrc", sel, torch.cat([g_R_head[:, None], g_RW], 1))
    g_t = torch.einsum("jn,bnc->bjc", sel, torch.cat([g_pH[:, None], g_pW], 1))
    g_floor = (cfg.floor * d_fl) * soft  # (B, 4): d loss / d y of each foot joint
    g_t = g_t + torch.einsum("jn,bn->bj", body.foot_select.to(dt), g_floor)[..., None] \
        * g_t.new_tensor([0.0, 1.0, 0.0])
    g_tips = cfg.tips * tips_on[..., None, None] * d_tp

    g_w, g_transl = kinematics_vjp_tangent(body, rotmats, betas, state.rotations, state.joints,
                                           g_R, g_t, g_tips)
    g_d6 = rotation_6d_vjp_tangent(d6, rotmats, g_w)
    grad = torch.cat([g_d6.reshape(B, -1), g_transl], -1)
    return DataTermOutput(loss, residuals, grad, state)
