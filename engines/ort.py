"""ONNX Runtime backend (CPU): the fit exported once to ONNX with a dynamic batch axis.

Export: ``torch.onnx.export(..., dynamo=True)`` of :class:`~engines.flat.FlatFit` (the
torch.export-based exporter; it needs ``onnxscript``), with the onnxscript optimiser. The
artifact is the ORT-optimised graph (``ORT_ENABLE_ALL``, saved at build time), so loading it
is fast. One artifact serves every batch size, so batches run unpadded.

Threads: ``threads`` intra-op threads (default ``torch.get_num_threads()``); a batch up to
``small_batch`` rows runs on a second, single-threaded session (tiny ops do not pay for a
thread pool's synchronisation, and the other core stays free for the rest of the server).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch

from engines.base import CompiledEngine, EngineError, Runner
from engines.buckets import MAX_BUCKET
from engines.flat import INPUT_NAMES, OUTPUT_NAMES, FlatFit, example_inputs
from tracker.body.kinematics import small_matmul_mode


def onnxruntime_missing() -> str | None:
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        return f"needs onnxruntime and onnxscript (pip install onnxruntime onnxscript; " \
               f"{exc.name} is not installed)"
    return None


def export_onnx(fitter, path: Path, optimize: bool = True) -> None:
    """Export the fit to ONNX at ``path`` with a dynamic batch axis (1 to 256)."""
    flat = FlatFit(fitter).eval()
    x = example_inputs(fitter, 2, device=fitter.theta_rest.device)
    batch = torch.export.Dim("batch", min=1, max=MAX_BUCKET)
    dyn = {name: {0: batch} for name in INPUT_NAMES}
    with (torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()),
          small_matmul_mode("matmul")):  # ORT's MatMul beats broadcast Mul + ReduceSum
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(flat, x, input_names=list(INPUT_NAMES),
                                 output_names=list(OUTPUT_NAMES), dynamic_shapes=dyn,
                                 dynamo=True, optimize=optimize, verbose=False)
    prog.save(str(path))


class OnnxRuntimeEngine(CompiledEngine):
    """The fit in ONNX Runtime's CPU execution provider (FP32)."""

    name = "onnxruntime"
    backend = "onnxruntime"
    artifact = "fit.onnx"
    dynamic_batch = True
    libraries = ("onnxruntime", "onnx", "onnxscript")

    def __init__(self, fitter, cache=None, threads: int | None = None, small_batch: int = 8,
                 verbose: bool = True):
        missing = onnxruntime_missing()
        if missing:
            raise EngineError(f"engine 'onnxruntime' cannot run here: {missing}")
        super().__init__(fitter, cache, verbose)
        if self.device.type != "cpu":
            raise EngineError("engine 'onnxruntime' runs on the CPU; load the fitter there")
        self.threads = max(1, threads or torch.get_num_threads())
        self.small_batch = small_batch

    def _session(self, path: Path, threads: int, optimized_out: Path | None = None):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        if optimized_out is not None:
            so.optimized_model_filepath = str(optimized_out)
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def _build(self, path: Path, bucket) -> None:
        raw = path.with_suffix(".raw.onnx")
        export_onnx(self.fitter, raw)
        self._session(raw, 1, optimized_out=path)  # writes the ORT-optimised graph
        raw.unlink()

    def _load(self, path: Path, bucket) -> Runner:
        small = self._session(path, 1)
        large = self._session(path, self.threads) if self.threads > 1 else small
        names = [i.name for i in small.get_inputs()]
        pos = [INPUT_NAMES.index(n) for n in names]

        def run(*xs):
            sess = small if xs[0].shape[0] <= self.small_batch else large
            feed = {n: xs[i].numpy() for n, i in zip(names, pos, strict=True)}
            return tuple(torch.from_numpy(o) for o in sess.run(None, feed))

        return run

    def options(self) -> dict:
        return {"exporter": "dynamo", "optimize": True, "small_matmul": "matmul"}
