"""The per-frame fit as a module of flat tensors: what compiled backends trace and export.

:class:`FlatFit` wraps a :class:`~tracker.fitter.fitter.NeuralFitter` so that a whole fit is
one call ``f(*tensors) -> tensors`` with fixed dtypes and shapes (batch ``B`` only varies):

========== ===================== =====================================================
input      shape, dtype          meaning (stage frame)
========== ===================== =====================================================
head       (B, 4, 4) f32         headset pose
wrists     (B, 2, 4, 4) f32      OpenXR wrist poses
tips       (B, 2, 5, 3) f32      fingertips
tracked    (B, 2) bool           device tracked flags
tips_valid (B, 2) bool           fingertips reported
visible    (B, 2) bool           hand enters the data term
betas      (B, K) f32            shapes, ``K = body.num_betas`` (padded / cut here)
T_hmd      (B, 4, 4) f32         headset in the head-joint frame
theta_prev (B, 315) f32          previous Θ
hidden     (B, L, H) f32         previous GRU state
motion     (B, S) f32            previous motion state (``tracker.fitter.motion``)
reset      (B,) bool             start afresh
dt         (B,) f32              seconds since the previous frame
floor      (B,) f32              profile floor offset, metres (``tracker.fitter.outputs``)
========== ===================== =====================================================

Outputs: ``theta (B, 315)``, ``hidden (B, L, H)``, ``motion (B, S)`` (the state to carry),
``residual (B,)``, ``ok (B,)`` bool (the fit's quality), then what the pose message needs,
float32 in the device's stage frame: ``pose (B, 156)`` axis-angle, ``transl (B, 3)``,
``joints (B, 156)`` (``tracker.fitter.outputs.wire_outputs``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tracker.fitter.fitter import NeuralFitter
from tracker.fitter.outputs import wire_outputs
from tracker.signals.headset import HeadsetSignals

INPUT_NAMES = ("head", "wrists", "tips", "tracked", "tips_valid", "visible", "betas", "T_hmd",
               "theta_prev", "hidden_prev", "motion_prev", "reset", "dt", "floor")
OUTPUT_NAMES = ("theta", "hidden", "motion", "residual", "ok", "pose", "transl", "joints")


class FlatFit(nn.Module):
    """``NeuralFitter.forward`` on flat tensors (see the module docstring for the layout)."""

    def __init__(self, fitter: NeuralFitter):
        super().__init__()
        self.fitter = fitter

    def forward(self, head: Tensor, wrists: Tensor, tips: Tensor, tracked: Tensor,
                tips_valid: Tensor, visible: Tensor, betas: Tensor, T_hmd: Tensor,
                theta_prev: Tensor, hidden_prev: Tensor, motion_prev: Tensor, reset: Tensor,
                dt: Tensor, floor: Tensor) -> tuple[Tensor, ...]:
        sig = HeadsetSignals(head, wrists, tips, tracked, tips_valid, visible)
        out = self.fitter(sig, betas, T_hmd, theta_prev, hidden_prev, reset,
                          motion_prev=motion_prev, dt=dt)
        wire = wire_outputs(self.fitter.body, out.theta, betas, floor)
        return (out.theta, out.hidden, out.motion, out.residual, out.ok, *wire)


def flat_inputs(batch, num_betas: int, dtype: torch.dtype = torch.float32) -> tuple[Tensor, ...]:
    """A :class:`~engines.base.FitBatch` as the :data:`INPUT_NAMES` tuple (contiguous).

    Betas are padded with zeros or cut to ``num_betas`` (zero betas add nothing to the body
    or to the network input, so the fit is unchanged); ``T_hmd`` is expanded to ``(B, 4, 4)``.
    """
    s = batch.signals
    B = s.head.shape[0]
    betas = batch.betas.to(dtype)
    k = betas.shape[-1]
    if k < num_betas:
        betas = torch.cat([betas, betas.new_zeros(B, num_betas - k)], -1)
    elif k > num_betas:
        betas = betas[:, :num_betas]
    T_hmd = batch.T_hmd.to(dtype)
    T_hmd = T_hmd.expand(B, 4, 4) if T_hmd.dim() == 2 or T_hmd.shape[0] != B else T_hmd
    st = batch.state
    vals = (s.head.to(dtype), s.wrists.to(dtype), s.tips.to(dtype), s.tracked.bool(),
            s.tips_valid.bool(), s.visible.bool(), betas, T_hmd, st.theta.to(dtype),
            st.hidden.to(dtype), st.motion.to(dtype), batch.reset.bool().reshape(B),
            batch.dt.to(dtype).reshape(B), batch.floor_or_zero().to(dtype).reshape(B))
    return tuple(v.contiguous() for v in vals)


def example_inputs(fitter: NeuralFitter, B: int, seed: int = 0,
                   device: str | torch.device = "cpu") -> tuple[Tensor, ...]:
    """Plausible flat inputs for tracing and export: a randomly posed body seen by a headset."""
    from tracker.signals.headset import head_to_hmd, signals_from_state

    g = torch.Generator().manual_seed(seed)
    body = fitter.body
    K = body.num_betas
    dt = body.dtype
    poses = 0.2 * torch.randn(B, 156, generator=g, dtype=dt)
    transl = torch.tensor([0.0, 0.9, 0.0], dtype=dt) + 0.1 * torch.randn(B, 3, generator=g,
                                                                           dtype=dt)
    betas = 0.5 * torch.randn(B, K, generator=g, dtype=dt)
    with torch.no_grad():
        sig = signals_from_state(body.forward_axis_angle(poses.to(body.j_template.device),
                                                         betas.to(body.j_template.device),
                                                         transl.to(body.j_template.device)),
                                 mode="half-space")
    L, H = fitter.state_shape
    vals = (sig.head, sig.wrists, sig.tips, sig.tracked, sig.tips_valid, sig.visible, betas,
            head_to_hmd(dtype=dt).expand(B, 4, 4), torch.zeros(B, 315, dtype=dt),
            torch.zeros(B, L, H, dtype=dt), torch.zeros(B, fitter.motion_dim, dtype=dt),
            torch.ones(B, dtype=torch.bool), torch.full((B,), 1.0 / 90.0, dtype=dt),
            torch.zeros(B, dtype=dt))
    return tuple(v.to(device).contiguous() for v in vals)
