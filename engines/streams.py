"""Realistic multi-session input streams for engine benchmarks and parity tests.

A few procedural motions (``tracker.motion.procedural``) seen through the device noise model
(``tracker.signals.device``), shared out to ``S`` sessions at different time offsets, so that
every session of a batch is at another moment of a motion, with dropouts and lost fingertips.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from engines.base import FitBatch, FitState
from tracker.body.kinematics import BodyModel
from tracker.signals.headset import HeadsetSignals, head_to_hmd


@dataclass
class Streams:
    """``signals`` with batch ``(S, T)``, ``betas (S, K)``, ``T_hmd (4, 4)``, frame ``rate``."""

    signals: HeadsetSignals
    betas: Tensor
    T_hmd: Tensor
    rate: float = 90.0

    @property
    def sessions(self) -> int:
        return int(self.betas.shape[0])

    @property
    def frames(self) -> int:
        return int(self.signals.head.shape[1])

    def frame(self, t: int, rows: slice | None = None) -> tuple[HeadsetSignals, Tensor, Tensor]:
        """Frame ``t`` of sessions ``rows`` (``B`` of them): ``(signals (B,), betas (B, K),
        T_hmd (B, 4, 4))``, the inputs of ``tracker.stream.fit_tick``."""
        rows = rows if rows is not None else slice(None)
        sig = self.signals.map(lambda x: x[rows, t])
        B = sig.head.shape[0]
        return sig, self.betas[rows], self.T_hmd.expand(B, 4, 4)

    def batch(self, t: int, state: FitState, reset: Tensor | None = None,
              rows: slice | None = None) -> FitBatch:
        """The :class:`FitBatch` of frame ``t`` (sessions ``rows``), with the carried state
        (engine tests; a stream of frames goes through ``tracker.stream.fit_tick``)."""
        sig, betas, T_hmd = self.frame(t, rows)
        B = sig.head.shape[0]
        if reset is None:
            reset = torch.full((B,), t == 0, dtype=torch.bool)
        return FitBatch(sig, betas, T_hmd, state, reset, torch.full((B,), 1.0 / self.rate))


def make_streams(body: BodyModel, sessions: int, frames: int, seed: int = 0,
                 rate: float = 90.0, motions: int = 4, visibility: str = "half-space",
                 device_model: str = "consumer") -> Streams:
    """``sessions`` streams of ``frames`` frames each at ``rate`` Hz (see the module docstring)."""
    from tracker.motion.procedural import generate_motion
    from tracker.signals.device import DeviceModel
    from tracker.signals.motion import motion_signals

    motions = max(1, min(motions, sessions))
    span = frames + sessions  # room for a different offset per session
    sigs, betas = [], []
    for m in range(motions):
        mo = generate_motion(None, span / rate, rate, seed + m, body=body, shape_std=0.8)
        clean, _, _ = motion_signals(body, mo["poses"], mo["trans"], mo["betas"],
                                     mode=visibility)
        noisy = DeviceModel.presets()[device_model].apply(clean, seed + 1000 + m, visibility)
        sigs.append(noisy)
        betas.append(torch.as_tensor(mo["betas"][: body.num_betas], dtype=torch.float32))
    per = []
    for s in range(sessions):
        m = s % motions
        off = (s // motions * 7) % max(1, span - frames + 1)
        per.append(sigs[m].map(lambda x, off=off: x[off: off + frames]))
    signals = HeadsetSignals(*(torch.stack([getattr(p, f) for p in per])
                               for f in ("head", "wrists", "tips", "tracked", "tips_valid",
                                         "visible")))
    B = torch.stack([betas[s % motions] for s in range(sessions)])
    return Streams(signals, B, head_to_hmd(), rate)

