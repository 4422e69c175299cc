"""TorchInductor ahead-of-time backend (CPU): the fit compiled to a C++ library (``.pt2``).

``torch.export`` of :class:`~engines.flat.FlatFit`, then
``torch._inductor.aoti_compile_and_package``: Inductor fuses the thousands of small
kinematics and data-term ops into a few hundred C++ loops and calls MKL/oneDNN for the GRU's
matmuls. Needs a C++ compiler at build time only. The batch axis is dynamic (1 to 256): one
build serves every batch size, unpadded — measured as fast as per-bucket static builds at
batch 1, 16 and 256 — and a build takes minutes, so it is done once and cached.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import torch

from engines.base import CompiledEngine, EngineError, Runner
from engines.flat import INPUT_NAMES, FlatFit, example_inputs


def inductor_missing() -> str | None:
    try:
        from torch._inductor import config
    except Exception as exc:  # pragma: no cover - a torch without inductor
        return f"needs torch._inductor ({exc})"
    cxx = config.cpp.cxx
    names = [c for c in (cxx if isinstance(cxx, tuple) else (cxx,)) if c] or ["g++"]
    if not any(shutil.which(c) for c in names + ["g++", "c++", "clang++"]):
        return "needs a C++ compiler (g++ or clang++) to build"
    return None


class InductorEngine(CompiledEngine):
    """The fit as an AOTInductor-compiled library, dynamic batch (FP32, CPU)."""

    name = "inductor"
    backend = "inductor"
    artifact = "fit.pt2"
    dynamic_batch = True

    def __init__(self, fitter, cache=None, verbose: bool = True):
        missing = inductor_missing()
        if missing:
            raise EngineError(f"engine 'inductor' cannot run here: {missing}")
        super().__init__(fitter, cache, verbose)
        if self.device.type != "cpu":
            raise EngineError("engine 'inductor' is the CPU build here; use tensorrt on a GPU")

    def _build(self, path: Path, bucket) -> None:
        flat = FlatFit(self.fitter).eval()
        x = example_inputs(self.fitter, 2)
        batch = torch.export.Dim("batch", min=1, max=self.buckets[-1])
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ep = torch.export.export(flat, x, dynamic_shapes={n: {0: batch} for n in INPUT_NAMES},
                                     strict=False)
            torch._inductor.aoti_compile_and_package(ep, package_path=str(path))

    def _load(self, path: Path, bucket) -> Runner:
        runner = torch._inductor.aoti_load_package(str(path))
        return lambda *xs: runner(*xs)
