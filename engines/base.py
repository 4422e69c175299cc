"""The one interface the runtime calls: fit one frame for a batch of sessions.

Live serving, replay, evaluation and benchmarks all go through :meth:`Engine.fit`. Every
backend runs the *complete* per-frame fit (N iterations with the data-term gradient and the
update rule) on flat tensors (``engines.flat``), so compiled backends trace it into one graph.

Backends (``engines.registry.make_engine(name, fitter)``):

* ``eager``: PyTorch, the reference;
* ``onnxruntime`` (alias ``ort``): the fit exported to ONNX, run by ONNX Runtime on the CPU;
* ``inductor`` (alias ``aoti``): the fit compiled ahead of time by TorchInductor to a C++
  library (``.pt2``), CPU;
* ``tensorrt`` / ``tensorrt-fp16``: torch-tensorrt (dynamo path), CUDA graphs, GPU;
* ``cpu``: the fastest CPU backend, ``inductor`` (chosen by measurement, see the README);
* ``auto``: the first that can run here of ``tensorrt`` (CUDA and torch-tensorrt),
  ``inductor`` (a C++ compiler), ``onnxruntime`` (onnxruntime + onnxscript), ``eager``.

Compiled engines are built once per key and cached on disk (``engines.cache``), and run at
batch buckets ``1, 2, 4, ..., 256`` (``engines.buckets``).
"""

from __future__ import annotations

import copy
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from engines.buckets import BUCKETS, bucket_for, chunks, pad_rows
from engines.cache import EngineCache, device_tag, fitter_fingerprint, source_fingerprint
from engines.flat import flat_inputs
from tracker.fitter.fitter import NeuralFitter
from tracker.fitter.outputs import wire_outputs
from tracker.signals.headset import HeadsetSignals


class EngineError(RuntimeError):
    """An engine that cannot be built here (missing CUDA, missing package, ...)."""


@dataclass
class FitState:
    """What a session carries from one frame to the next, batch ``B``, stage frame.

    Attributes:
        theta: ``(B, 315)`` last Θ. hidden: ``(B, L, H)`` GRU state.
        motion: ``(B, S)`` motion state (``tracker.fitter.motion``).
    """

    theta: Tensor
    hidden: Tensor
    motion: Tensor

    def map(self, fn: Callable[[Tensor], Tensor]) -> FitState:
        """``fn`` applied to every tensor (slicing rows, moving devices, cloning)."""
        return FitState(fn(self.theta), fn(self.hidden), fn(self.motion))

    def set_rows(self, rows, other: FitState) -> None:
        """Write ``other`` into rows ``rows`` (in place)."""
        self.theta[rows], self.hidden[rows], self.motion[rows] = (other.theta, other.hidden,
                                                                  other.motion)

    def row(self, i: int) -> FitState:
        """Session ``i`` as its own batch of one (copied, so the batch can be freed)."""
        return self.map(lambda t: t[i:i + 1].clone())

    @staticmethod
    def cat(states: Sequence[FitState]) -> FitState:
        """One batch from several (e.g. single-session rows)."""
        return FitState(*(torch.cat([getattr(s, k) for s in states])
                          for k in ("theta", "hidden", "motion")))


@dataclass
class FitBatch:
    """Inputs of one tick, batch ``B``, stage frame, float32 unless noted.

    Attributes:
        signals: observations with batch ``(B,)``.
        betas: ``(B, K)`` shapes. T_hmd: ``(B, 4, 4)`` headset in the head-joint frame.
        state: what each session carried out of its previous frame (:class:`FitState`).
        reset: ``(B,)`` bool, start the session afresh (first frame, gap, divergence).
        dt: ``(B,)`` seconds since the session's previous frame (ignored where ``reset``).
        floor: ``(B,)`` metres, the session profile's floor offset (``None``: 0), taken off
            the y of the wire outputs (``tracker.fitter.outputs``).
    """

    signals: HeadsetSignals
    betas: Tensor
    T_hmd: Tensor
    state: FitState
    reset: Tensor
    dt: Tensor
    floor: Tensor | None = None

    def floor_or_zero(self) -> Tensor:
        """``(B,)`` the floor offsets, zeros when none were given."""
        if self.floor is not None:
            return self.floor
        return self.dt.new_zeros(self.batch_size)

    def to(self, device) -> FitBatch:
        return FitBatch(self.signals.map(lambda t: t.to(device)), self.betas.to(device),
                        self.T_hmd.to(device), self.state.map(lambda t: t.to(device)),
                        self.reset.to(device), self.dt.to(device),
                        None if self.floor is None else self.floor.to(device))

    @property
    def batch_size(self) -> int:
        return int(self.signals.head.shape[0])


@dataclass
class FitResult:
    """One tick's fits, batch ``B``, on the engine's device.

    Attributes:
        state: :class:`FitState` to carry. residual: ``(B,)`` metres. ok: ``(B,)`` bool.
        pose: ``(B, 156)`` axis-angle; transl: ``(B, 3)``; joints: ``(B, 156)``: the pose
            message's numbers, float32, device stage frame (``tracker.fitter.outputs``).
    """

    state: FitState
    residual: Tensor
    ok: Tensor
    pose: Tensor
    transl: Tensor
    joints: Tensor

    @property
    def theta(self) -> Tensor:
        """``(B, 315)`` the fitted Θ, stage frame."""
        return self.state.theta

    @property
    def hidden(self) -> Tensor:
        return self.state.hidden


class Engine(ABC):
    """A backend. ``name`` identifies it in benchmarks and the server's status."""

    name: str = "?"
    precision: str = "fp32"
    light: Engine | None = None
    """The engine's next light fit: the same backend on the fitter with fewer iterations
    (``NeuralFitter.with_iterations``), which a server runs for a tick that this fit would
    make late (``tracker.server.pacing``). Its own ``light`` is the next rung down, fewer
    iterations still (:attr:`rungs`). ``None``: there is none."""

    def __init__(self, fitter: NeuralFitter):
        self.fitter = fitter.eval()
        self.device: torch.device = fitter.theta_rest.device
        """Where the fit runs: the fitter's device when the engine was made (read once: a
        module attribute lookup on every tick costs more than the lookup is worth)."""

    def with_light(self, light: Engine | None) -> Engine:
        """This engine (sharing its loaded artifacts) with ``light`` (and the rungs below
        it) as its light fits."""
        pair = copy.copy(self)
        pair.light = light
        return pair

    @property
    def rungs(self) -> tuple[Engine, ...]:
        """The ladder, full fit first: ``rungs[k]`` is the fit a tick of level ``k`` runs."""
        out, e = [self], self.light
        while e is not None:
            out.append(e)
            e = e.light
        return tuple(out)

    def with_rung(self, rung: Engine) -> Engine:
        """This engine with ``rung`` (alone, without its own light fits) as its lightest fit,
        below the ones it has; neither engine is changed."""
        rung = rung.with_light(None)
        return self.with_light(rung if self.light is None else self.light.with_rung(rung))

    @property
    def label(self) -> str:
        """``inductor``, or ``inductor (light fits: 4, 2 iterations)``: for logs."""
        light = self.iterations[1:]
        if not light:
            return self.name
        return (f"{self.name} (light fit{'s' * (len(light) > 1)}: "
                f"{', '.join(map(str, light))} iteration{'s' * (light != (1,))})")

    @property
    def iterations(self) -> tuple[int, ...]:
        """Iterations per frame of each rung: ``(N, N_light, ...)``, ``(N,)`` without light
        fits."""
        return tuple(e.fitter.cfg.iterations for e in self.rungs)

    @property
    def state_shape(self) -> tuple[int, int]:
        return self.fitter.state_shape

    def initial_state(self, B: int) -> FitState:
        """Zero state for ``B`` new sessions (fit their first frame with ``reset``)."""
        return FitState(torch.zeros(B, 315, device=self.device),
                        torch.zeros(B, *self.state_shape, device=self.device),
                        torch.zeros(B, self.fitter.motion_dim, device=self.device))

    def warmup(self, buckets: Sequence[int] = BUCKETS) -> None:  # noqa: B027 (optional hook)
        """Build (or load) what the given batch buckets need, so no tick waits for a build."""

    def describe(self) -> dict[str, Any]:
        """What runs: for logs, the server's status and benchmark reports."""
        N, *light = self.iterations
        return {"engine": self.name, "precision": self.precision, "device": str(self.device),
                "iterations": N, "light_iterations": light}

    @abstractmethod
    def fit(self, batch: FitBatch) -> FitResult:
        """Fit one frame for every session in ``batch``."""


class EagerEngine(Engine):
    """PyTorch eager mode: the reference every other backend is checked against."""

    name = "eager"

    @torch.inference_mode()
    def fit(self, batch: FitBatch) -> FitResult:
        st = batch.state
        out = self.fitter(batch.signals, batch.betas, batch.T_hmd, st.theta, st.hidden,
                          batch.reset, motion_prev=st.motion, dt=batch.dt)
        wire = wire_outputs(self.fitter.body, out.theta, batch.betas, batch.floor_or_zero())
        return FitResult(FitState(out.theta, out.hidden, out.motion), out.residual, out.ok,
                         *wire)


Runner = Callable[..., Sequence[Tensor]]


class CompiledEngine(Engine):
    """A backend that runs a compiled artifact on the flat tensors of ``engines.flat``.

    Subclasses say how to build an artifact for a batch bucket into a file and how to load
    it into a callable ``runner(*inputs) -> outputs`` (``engines.flat.OUTPUT_NAMES``). Artifacts are
    cached (:class:`~engines.cache.EngineCache`) under :meth:`cache_key`. A *dynamic* engine
    (``dynamic_batch = True``) has one artifact for every batch size and runs unpadded; a
    static one has one artifact per bucket and pads the batch up to it.
    """

    backend: str = "?"
    artifact: str = "engine.bin"
    dynamic_batch: bool = False
    libraries: tuple[str, ...] = ()
    buckets: tuple[int, ...] = BUCKETS

    def __init__(self, fitter: NeuralFitter, cache: EngineCache | str | Path | None = None,
                 verbose: bool = True):
        super().__init__(fitter)
        self.cache = cache if isinstance(cache, EngineCache) else EngineCache(cache)
        self.verbose = verbose
        self.num_betas = fitter.body.num_betas
        self._fingerprint = fitter_fingerprint(fitter)
        self._runners: dict[int, Runner] = {}
        self.build_log: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ keys and artifacts
    def options(self) -> dict[str, Any]:
        """Build options that change the artifact (part of the key)."""
        return {}

    def cache_key(self, bucket: int | str) -> dict[str, Any]:
        from engines.cache import library_versions

        return {
            "backend": self.backend,
            "format": 1,
            "checkpoint": self._fingerprint,
            "source": source_fingerprint((f"engines/{type(self).__module__.split('.')[-1]}.py",)),
            "precision": self.precision,
            "bucket": bucket,
            "device": device_tag(self.device),
            "versions": library_versions(*self.libraries),
            "options": self.options(),
        }

    def _slot(self, B: int) -> int | str:
        """The artifact a batch of ``B <= buckets[-1]`` runs on."""
        return f"1-{self.buckets[-1]}" if self.dynamic_batch else bucket_for(B, self.buckets)

    @abstractmethod
    def _build(self, path: Path, bucket: int | str) -> None:
        """Write the artifact for ``bucket`` to ``path``."""

    @abstractmethod
    def _load(self, path: Path, bucket: int | str) -> Runner:
        """Load the artifact at ``path`` as a runner."""

    def runner(self, slot: int | str) -> Runner:
        """The runner for a batch slot, loaded from the cache or built (once) into it."""
        if slot not in self._runners:
            key = self.cache_key(slot)
            t0 = time.perf_counter()
            if self.verbose and self.cache.lookup(key, self.artifact) is None:
                print(f"engines: building {self.name} for batch {slot} (once; cached in "
                      f"{self.cache.root})", flush=True)
            run, built = self.cache.get_or_build(
                key, self.artifact, lambda p: self._build(p, slot),
                lambda p: self._load(p, slot))
            self._runners[slot] = run
            self.build_log.append({"bucket": slot, "built": built,
                                   "seconds": round(time.perf_counter() - t0, 2),
                                   "path": str(self.cache.path_for(key))})
        return self._runners[slot]

    def slots(self, buckets: Sequence[int] = BUCKETS) -> list[int | str]:
        """The artifacts batches of the given sizes run on (each once)."""
        return list(dict.fromkeys(self._slot(min(b, self.buckets[-1])) for b in buckets))

    def missing(self, buckets: Sequence[int] = BUCKETS) -> list[int | str]:
        """The slots of :meth:`slots` that are neither loaded nor built in the cache."""
        return [s for s in self.slots(buckets) if s not in self._runners
                and self.cache.lookup(self.cache_key(s), self.artifact) is None]

    def warmup(self, buckets: Sequence[int] = BUCKETS) -> None:
        for slot in self.slots(buckets):
            self.runner(slot)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "backend": self.backend,
                "dynamic_batch": self.dynamic_batch, "checkpoint": self._fingerprint}

    # ------------------------------------------------------------------ running
    def _inputs(self, batch: FitBatch) -> tuple[Tensor, ...]:
        x = flat_inputs(batch, self.num_betas)
        return x if self.device.type == "cpu" else tuple(t.to(self.device) for t in x)

    @torch.inference_mode()
    def fit(self, batch: FitBatch) -> FitResult:
        x = self._inputs(batch)
        B = x[0].shape[0]
        if B <= self.buckets[-1]:  # a live tick: one artifact call, no row views to make
            out = self._run(x, B)
        else:
            parts = [self._run(tuple(t[rows] for t in x), rows.stop - rows.start)
                     for rows in chunks(B, self.buckets[-1])]
            out = [torch.cat(ts, 0) for ts in zip(*parts, strict=True)]
        theta, hidden, motion, residual, ok, pose, transl, joints = out
        return FitResult(FitState(theta, hidden, motion), residual, ok.bool(), pose, transl,
                         joints)

    def _run(self, xs: tuple[Tensor, ...], n: int) -> Sequence[Tensor]:
        """The outputs for ``n <= buckets[-1]`` rows of flat inputs (padded up to a static
        engine's bucket, the padding cut off again)."""
        slot = self._slot(n)
        if self.dynamic_batch:
            return self.runner(slot)(*xs)
        out = self.runner(slot)(*pad_rows(xs, slot))
        return out if n == slot else [t[:n] for t in out]
