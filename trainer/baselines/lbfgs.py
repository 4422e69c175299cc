"""The classic optimisation baseline of Choutas et al. 2022 (Tab. 2, "L-BFGS, GMM"; Eq. 6-7).

Per frame it minimises, over the body parameters,

    L_O(Θ) = L_D(Θ; D) + w_θ · L_GMM(θ_body) + w_g · L_G(Θ)

* ``L_D``: the tracker's own data term (``tracker.fitter.data_term``, Eq. 4), same weights and
  robust norm as the learned fitter sees;
* ``L_GMM``: Eq. 7, the max-mixture negative log-likelihood of the 63 body-pose axis-angle values
  (``trainer.baselines.gmm``);
* ``L_G``: Eq. 6, ``1 - cos`` of the angle between the pelvis's up axis and world up
  ``u = (0, 1, 0)`` on the stage, i.e. ``1 - R_pelvis[1, 1]``.

with ``torch.optim.LBFGS`` (strong-Wolfe line search) for a fixed number of iterations (the
paper: 120), started from the rest pose standing under the headset (turned to its heading, the
headset on the head). The variables are the AMASS-layout axis-angle pose ``(156)`` and the
translation ``(3)`` (SMPLify's parametrisation; the prior lives in axis-angle), mapped to the
fitter's Θ ``(315)`` for ``L_D``. Shape is given (ground-truth β).

To bound CPU time, all frames of a chunk are optimised as *one* stacked problem, the sum of the
independent per-frame losses. Its minimisers are the per-frame minimisers; it differs from
running L-BFGS per frame only in that the line-search step and the curvature pairs (inner
products over the stacked vector) are shared by the frames of a chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from tracker.body.joints import HEAD
from tracker.body.kinematics import BodyModel
from tracker.fitter.canonical import heading_frame
from tracker.fitter.data_term import DataTermConfig, data_term
from tracker.fitter.theta import axis_angle_to_theta
from tracker.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from tracker.signals.headset import HeadsetSignals
from trainer.baselines.gmm import POSE_SLICE, MaxMixturePrior


@dataclass(frozen=True)
class LBFGSConfig:
    """Settings of the classic baseline."""

    iterations: int = 120
    """L-BFGS iterations per problem (the paper: 120)."""
    prior_weight: float = 1e-5
    """w_θ, weight of the GMM pose prior (L_D is in robust metres²: 1e-4 for 1 cm). Chosen by
    a grid over 0, 1e-6 ... 1e-3 on procedural motions; re-tune on AMASS
    (``--lbfgs-prior-weight``)."""
    gravity_weight: float = 1e-2
    """w_g, weight of the gravity term L_G (10° of pelvis tilt costs as much as ~1 cm)."""
    history: int = 20
    """L-BFGS memory (curvature pairs)."""
    chunk: int = 256
    """Frames optimised jointly as one stacked problem."""


def rest_under_headset(body: BodyModel, head: Tensor, betas: Tensor, T_hmd: Tensor) -> Tensor:
    """The initial guess: ``(B, 159)`` axis-angle pose + translation of the rest pose turned to the
    headset's heading with the headset point of the head on the observed headset position.

    Args:
        head: ``(B, 4, 4)`` headset poses (stage). betas: ``(B, K)``. T_hmd: ``(4, 4)`` or
            ``(B, 4, 4)`` headset in the head-joint frame.
    """
    B, dt = head.shape[0], head.dtype
    Rc = heading_frame(head)[:, :3, :3]  # level, +Z along the view direction (the body faces +Z)
    poses = torch.zeros(B, 156, dtype=dt, device=head.device)
    poses[:, :3] = matrix_to_axis_angle(Rc)
    st = body.forward_axis_angle(poses, betas, torch.zeros(B, 3, dtype=dt, device=head.device))
    T_hmd = T_hmd.to(dt).expand(B, 4, 4)
    p_h = (st.rotations[:, HEAD] @ T_hmd[:, :3, 3:4])[..., 0] + st.joints[:, HEAD]
    return torch.cat([poses, head[:, :3, 3] - p_h], -1)


def gravity_term(global_orient: Tensor) -> Tensor:
    """Eq. 6: ``1 - cos`` between the pelvis's up axis and world up; ``(B, 3)`` -> ``(B,)``."""
    return 1.0 - axis_angle_to_matrix(global_orient)[:, 1, 1]


def objective(body: BodyModel, x: Tensor, betas: Tensor, sig: HeadsetSignals, T_hmd: Tensor,
              prior: MaxMixturePrior | None, cfg: LBFGSConfig,
              data_cfg: DataTermConfig) -> Tensor:
    """Per-frame loss ``(B,)`` at ``x (B, 159)`` (axis-angle pose + translation)."""
    theta = axis_angle_to_theta(x[:, :156], x[:, 156:])
    loss = data_term(body, theta, betas, sig, T_hmd, data_cfg, with_grad=False).loss
    if prior is not None and cfg.prior_weight:
        loss = loss + cfg.prior_weight * prior(x[:, POSE_SLICE])
    if cfg.gravity_weight:
        loss = loss + cfg.gravity_weight * gravity_term(x[:, :3])
    return loss


def fit_lbfgs(body: BodyModel, sig: HeadsetSignals, betas: Tensor, T_hmd: Tensor,
              prior: MaxMixturePrior | None, cfg: LBFGSConfig = LBFGSConfig(),
              data_cfg: DataTermConfig | None = None) -> Tensor:
    """Fit frames independently (stacked in chunks of ``cfg.chunk``).

    Args:
        sig: observations with batch ``(B,)`` (stage frame). betas: ``(B, K)``.
        T_hmd: ``(4, 4)`` or ``(B, 4, 4)``. prior: the GMM term, or ``None`` to leave it out.
        data_cfg: weights of L_D (default: ``DataTermConfig()``; eval passes the fitter's).

    Returns:
        Θ ``(B, 315)``, stage frame (detached).
    """
    data_cfg = data_cfg or DataTermConfig()
    T_hmd = T_hmd.expand(sig.head.shape[0], 4, 4)
    out = []
    for s in range(0, sig.head.shape[0], cfg.chunk):
        sl = slice(s, s + cfg.chunk)
        out.append(_fit_chunk(body, sig.map(lambda t, sl=sl: t[sl]), betas[sl], T_hmd[sl], prior,
                              cfg, data_cfg))
    return torch.cat(out)


def _fit_chunk(body, sig, betas, T_hmd, prior, cfg, data_cfg) -> Tensor:
    """One stacked L-BFGS problem over the frames of ``sig`` -> Θ ``(B, 315)``."""
    x0 = rest_under_headset(body, sig.head, betas, T_hmd).detach()
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1.0, max_iter=cfg.iterations, history_size=cfg.history,
                            tolerance_grad=1e-12, tolerance_change=1e-15,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = objective(body, x, betas, sig, T_hmd, prior, cfg, data_cfg).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    x = x.detach()
    x = torch.where(torch.isfinite(x).all(-1, keepdim=True), x, x0)  # a failed line search
    return axis_angle_to_theta(x[:, :156], x[:, 156:])
