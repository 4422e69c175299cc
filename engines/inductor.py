"""TorchInductor ahead-of-time backend (CPU): the fit compiled to a C++ library (``.pt2``).

``torch.export`` of :class:`~engines.flat.FlatFit`, then
``torch._inductor.aoti_compile_and_package``: Inductor fuses the thousands of small
kinematics and data-term ops into a few hundred C++ loops and calls MKL/oneDNN for the GRU's
matmuls. Needs a C++ compiler at build time only. The batch axis is dynamic (1 to 256): one
build serves every batch size, unpadded — measured as fast as per-bucket static builds at
batch 1, 16 and 256 — and a build takes minutes, so it is done once and cached.

Calling the loaded package: ``AOTICompiledModel.__call__`` (torch 2.13,
``torch/export/pt2_archive/_package.py``) reads the call spec, flattens the arguments with
``torch.utils._pytree`` and unflattens the outputs on every call. Our inputs are a flat tuple
of tensors and our outputs a flat tuple, so both steps are identities; and ``tree_flatten``
builds a self-referencing closure per call, garbage that only the cyclic collector frees
(7 objects a call: a gen-0 collection of 0.1-0.25 ms in about one tick in a hundred, in the
middle of a frame's way to its pose). :func:`direct_runner` checks at load that the specs
are flat and then calls the loader's ``boxed_run`` itself, which is what ``__call__`` does
between those steps; otherwise (another torch) it keeps ``__call__``.
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
        return direct_runner(torch._inductor.aoti_load_package(str(path)), len(INPUT_NAMES))


def direct_runner(model, n_inputs: int) -> Runner:
    """``runner(*xs) -> outputs`` for a loaded AOTInductor package ``model`` taking
    ``n_inputs`` tensors and returning a flat tuple: its loader's ``boxed_run`` when the
    package's call spec says exactly that (see the module docstring), else ``model`` itself."""
    from torch.utils import _pytree as pytree

    loader = getattr(model, "loader", None)
    try:
        in_spec, out_spec = (pytree.treespec_loads(s) for s in loader.get_call_spec())
        flat_in = pytree.tree_structure((tuple(range(n_inputs)), {}))
        flat_out = pytree.tree_structure(tuple(range(out_spec.num_leaves)))
        direct = callable(loader.boxed_run) and in_spec == flat_in and out_spec == flat_out
    except Exception:  # another torch's package API: the documented call
        direct = False
    if not direct:
        return lambda *xs: model(*xs)
    run = loader.boxed_run
    return lambda *xs: run(list(xs))
