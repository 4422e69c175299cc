"""The one interface the runtime calls: fit one frame for a batch of sessions.

Live serving, replay, evaluation and benchmarks all go through :meth:`Engine.fit`. Every
backend runs the *complete* per-frame fit (N iterations with the data-term gradient and the
update rule) on flat tensors, so compiled backends can trace it into one graph.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from tracker.fitter.fitter import NeuralFitter
from tracker.signals.headset import HeadsetSignals


class EngineError(RuntimeError):
    """An engine that cannot be built here (missing CUDA, missing package, ...)."""


@dataclass
class FitBatch:
    """Inputs of one tick, batch ``B``, stage frame, float32 unless noted.

    Attributes:
        signals: observations with batch ``(B,)``.
        betas: ``(B, K)`` shapes. T_hmd: ``(B, 4, 4)`` headset in the head-joint frame.
        theta_prev: ``(B, 315)`` last Θ per session. hidden_prev: ``(B, L, H)``.
        reset: ``(B,)`` bool, start the session afresh (first frame, gap, divergence).
    """

    signals: HeadsetSignals
    betas: Tensor
    T_hmd: Tensor
    theta_prev: Tensor
    hidden_prev: Tensor
    reset: Tensor

    def to(self, device) -> FitBatch:
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        moved = {k: (v.map(lambda t: t.to(device)) if isinstance(v, HeadsetSignals)
                     else v.to(device)) for k, v in moved.items()}
        return FitBatch(**moved)


@dataclass
class FitResult:
    """``theta (B, 315)``, ``hidden (B, L, H)``, ``residual (B,)`` metres, ``ok (B,)`` bool."""

    theta: Tensor
    hidden: Tensor
    residual: Tensor
    ok: Tensor


class Engine(ABC):
    """A backend. ``name`` identifies it in benchmarks and the server's status."""

    name: str = "?"

    def __init__(self, fitter: NeuralFitter):
        self.fitter = fitter.eval()

    @property
    def device(self) -> torch.device:
        return self.fitter.theta_rest.device

    @property
    def state_shape(self) -> tuple[int, int]:
        return self.fitter.state_shape

    def initial_state(self, B: int) -> tuple[Tensor, Tensor]:
        """Zero Θ ``(B, 315)`` and hidden ``(B, L, H)`` for new sessions (reset them)."""
        return (torch.zeros(B, 315, device=self.device),
                torch.zeros(B, *self.state_shape, device=self.device))

    @abstractmethod
    def fit(self, batch: FitBatch) -> FitResult:
        """Fit one frame for every session in ``batch``."""


class EagerEngine(Engine):
    """PyTorch eager mode: the reference every other backend is checked against."""

    name = "eager"

    @torch.inference_mode()
    def fit(self, batch: FitBatch) -> FitResult:
        out = self.fitter(batch.signals, batch.betas, batch.T_hmd, batch.theta_prev,
                          batch.hidden_prev, batch.reset)
        return FitResult(out.theta, out.hidden, out.residual, out.ok)


def make_engine(name: str, fitter: NeuralFitter) -> Engine:
    """``eager`` today; compiled CPU and TensorRT backends register here (engines issue)."""
    if name in ("eager", "auto"):
        return EagerEngine(fitter)
    raise EngineError(f"unknown engine {name!r}; available: auto, eager")
