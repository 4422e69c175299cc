"""TensorRT backend (GPU): the fit compiled by torch-tensorrt's dynamo path, run in CUDA graphs.

Build, per batch bucket (static shapes: TensorRT picks kernels per shape, and CUDA graphs
replay fixed shapes): ``torch.export`` of :class:`~engines.flat.FlatFit` on the GPU, then
``torch_tensorrt.dynamo.compile`` and ``torch_tensorrt.save`` (an ExportedProgram holding the
serialised TensorRT engine) into the engine cache. Load: ``torch.export.load(...).module()``
inside ``torch_tensorrt.runtime.enable_cudagraphs`` (the first call records, later calls
replay one graph launch).

Precisions:

* ``fp32``: TF32 off, so the fit matches eager to float32 rounding;
* ``fp16``: the networks (Φ, Φh, GRU, heads, f_λγ) run in FP16 (explicit typing: their
  weights are halved and activations cast at their boundaries), while the kinematics, the
  data term, its gradient and the carried state stay FP32; FP16 cannot hold the
  data term's small residual differences or Θ's update accumulation.

Results (Θ, hidden, residual, ok) stay on the GPU; copy them to the host for the wire.
"""

from __future__ import annotations

import copy
import inspect
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from engines.base import CompiledEngine, EngineError, Runner
from engines.flat import FlatFit, example_inputs
from tracker.body.kinematics import small_matmul_mode
from tracker.fitter.fitter import NeuralFitter

NETWORK_MODULES = ("phi", "phi_h", "gru", "delta_head", "f_lg", "lam_head", "gam_head")


def tensorrt_missing() -> str | None:
    """``None`` if the TensorRT engine can run here, else what is missing (both if both)."""
    missing = []
    if not torch.cuda.is_available():
        build = (f"CUDA {torch.version.cuda}" if torch.version.cuda
                 else "a CPU-only build (no CUDA)")
        missing.append(f"a CUDA GPU (torch {torch.__version__} is {build}; "
                       "torch.cuda.is_available() is False)")
    try:
        import torch_tensorrt  # noqa: F401
    except ImportError:
        missing.append("torch-tensorrt (pip install 'fitstream[tensorrt]', matching your "
                       "torch and CUDA versions)")
    except Exception as exc:  # installed but broken (e.g. built for another torch)
        missing.append(f"a working torch-tensorrt (import fails: {exc})")
    return ("needs " + " and ".join(missing)) if missing else None


class _Half(nn.Module):
    """Runs ``module`` in FP16: tensor arguments cast to half, tensor results back to float."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module.half()

    def forward(self, *args):
        out = self.module(*(a.half() if isinstance(a, Tensor) else a for a in args))
        if isinstance(out, tuple):
            return tuple(o.float() if isinstance(o, Tensor) else o for o in out)
        return out.float()


def half_network(fitter: NeuralFitter) -> NeuralFitter:
    """A copy of ``fitter`` whose networks compute in FP16 (kinematics and state stay FP32)."""
    f = copy.deepcopy(fitter)
    for name in NETWORK_MODULES:
        setattr(f, name, _Half(getattr(f, name)))
    return f.eval()


class TensorRTEngine(CompiledEngine):
    """torch-tensorrt (dynamo) engines per batch bucket, with CUDA graphs."""

    backend = "tensorrt"
    artifact = "fit.ep"
    dynamic_batch = False
    libraries = ("torch_tensorrt", "tensorrt")

    def __init__(self, fitter: NeuralFitter, precision: str = "fp32", cache=None,
                 device: str | torch.device = "cuda", cuda_graphs: bool = True,
                 small_matmul: str = "broadcast", verbose: bool = True):
        missing = tensorrt_missing()
        if missing:
            raise EngineError(f"engine 'tensorrt' cannot run here: {missing}")
        if precision not in ("fp32", "fp16"):
            raise EngineError(f"tensorrt precision must be fp32 or fp16, not {precision!r}")
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if fitter.theta_rest.device != device:
            fitter = copy.deepcopy(fitter).to(device)
        self.precision = precision
        self.name = "tensorrt" if precision == "fp32" else "tensorrt-fp16"
        super().__init__(fitter, cache, verbose)
        self.cuda_graphs = cuda_graphs
        self.small_matmul = small_matmul  # see tracker.body.kinematics.small_matmul_mode
        self._contexts: list = []  # entered enable_cudagraphs contexts, kept alive

    def options(self) -> dict:
        return {"cuda_graphs": self.cuda_graphs, "tf32": False, "small_matmul": self.small_matmul}

    def _compile_kwargs(self, x: tuple[Tensor, ...]) -> dict:
        import torch_tensorrt

        params = inspect.signature(torch_tensorrt.dynamo.compile).parameters
        kw: dict = {"min_block_size": 1, "truncate_double": True, "disable_tf32": True,
                    "device": self.device}
        kw["arg_inputs" if "arg_inputs" in params else "inputs"] = list(x)
        if "use_explicit_typing" in params:  # the FP16 parts are typed in the graph itself
            kw["use_explicit_typing"] = True
        else:
            kw["enabled_precisions"] = ({torch.float32, torch.float16}
                                        if self.precision == "fp16" else {torch.float32})
        return {k: v for k, v in kw.items() if k in params}

    def _build(self, path: Path, bucket) -> None:
        import torch_tensorrt

        fitter = half_network(self.fitter) if self.precision == "fp16" else self.fitter
        flat = FlatFit(fitter).eval()
        x = example_inputs(self.fitter, int(bucket), device=self.device)
        with torch.no_grad(), warnings.catch_warnings(), small_matmul_mode(self.small_matmul):
            warnings.simplefilter("ignore")
            ep = torch.export.export(flat, x, strict=False)
            trt_gm = torch_tensorrt.dynamo.compile(ep, **self._compile_kwargs(x))
            save_kw = {"output_format": "exported_program"}
            save_params = inspect.signature(torch_tensorrt.save).parameters
            save_kw["arg_inputs" if "arg_inputs" in save_params else "inputs"] = list(x)
            torch_tensorrt.save(trt_gm, str(path), **save_kw)

    def _load(self, path: Path, bucket) -> Runner:
        import torch_tensorrt  # registers the TensorRT runtime ops the program calls

        module = torch.export.load(str(path)).module()
        if self.cuda_graphs:
            ctx = torch_tensorrt.runtime.enable_cudagraphs(module)
            module = ctx.__enter__()
            self._contexts.append(ctx)

        def run(*xs):
            # CUDA-graph outputs live in static buffers that the next replay overwrites
            return tuple(o.clone() for o in module(*xs))

        return run

    def close(self) -> None:
        """Leave the CUDA-graph contexts (frees the recorded graphs)."""
        while self._contexts:
            self._contexts.pop().__exit__(None, None, None)
        self._runners.clear()
