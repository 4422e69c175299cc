"""Finding an engine by name: ``make_engine(name, fitter)`` (see ``engines.base`` for the names).

The backends are imported only when asked for (``tensorrt`` needs CUDA packages, ``inductor``
a compiler), so importing this module imports none of them; they import ``engines.base``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from engines.base import CompiledEngine, EagerEngine, Engine, EngineError
from engines.cache import EngineCache
from tracker.fitter.fitter import NeuralFitter


def _tensorrt(fitter: NeuralFitter, precision: str, **kw) -> Engine:
    from engines.trt import TensorRTEngine

    return TensorRTEngine(fitter, precision=precision, **kw)


def _onnxruntime(fitter: NeuralFitter, **kw) -> Engine:
    from engines.ort import OnnxRuntimeEngine

    return OnnxRuntimeEngine(fitter, **kw)


def _inductor(fitter: NeuralFitter, **kw) -> Engine:
    from engines.inductor import InductorEngine

    return InductorEngine(fitter, **kw)


# The CPU backend ``cpu`` and ``auto`` pick (see the README's engines section for numbers).
BEST_CPU = "inductor"
AUTO_ORDER = ("tensorrt", "inductor", "onnxruntime")
ENGINES: dict[str, Callable[..., Engine]] = {
    "eager": lambda fitter, **kw: EagerEngine(fitter),
    "onnxruntime": _onnxruntime,
    "inductor": _inductor,
    "tensorrt": lambda fitter, **kw: _tensorrt(fitter, "fp32", **kw),
    "tensorrt-fp16": lambda fitter, **kw: _tensorrt(fitter, "fp16", **kw),
}
ALIASES = {"ort": "onnxruntime", "onnx": "onnxruntime", "aoti": "inductor",
           "trt": "tensorrt", "trt-fp16": "tensorrt-fp16", "cpu": BEST_CPU}


def available_engines() -> dict[str, str | None]:
    """``{name: None if it can run here else the reason it cannot}``."""
    from engines.inductor import inductor_missing
    from engines.ort import onnxruntime_missing
    from engines.trt import tensorrt_missing

    out: dict[str, str | None] = {"eager": None}
    out["onnxruntime"] = onnxruntime_missing()
    out["inductor"] = inductor_missing()
    out["tensorrt"] = out["tensorrt-fp16"] = tensorrt_missing()
    return out


def resolve_engine_name(name: str) -> str:
    """The backend ``name`` stands for here (``auto`` resolved, aliases expanded)."""
    name = ALIASES.get(name, name)
    if name != "auto":
        return name
    avail = available_engines()
    for candidate in AUTO_ORDER:
        if avail.get(candidate) is None:
            return candidate
    return "eager"


def make_engine(name: str, fitter: NeuralFitter, cache: EngineCache | str | Path | None = None,
                prepare: bool = True, light_iterations: int | Sequence[int] | None = None,
                **options) -> Engine:
    """The engine ``name`` for ``fitter`` (see the module docstring for the names).

    Args:
        light_iterations: also make the same backend for ``fitter.with_iterations(n)`` for
            each ``n`` (heaviest first) as the engine's ladder of light fits (``Engine.light``,
            ``Engine.rungs``; ``None`` or empty: none); a rung that fails to build is left
            out with a warning, and the lighter ones with it.
        cache: engine cache directory (default ``$FITSTREAM_CACHE`` or
            ``~/.cache/fitstream/engines``) or an :class:`EngineCache`.
        prepare: build or load the compiled artifact for batch 1 now (minutes the first
            time), so that a failure surfaces here and not at the first tick.
        options: backend options (e.g. ``threads`` for onnxruntime, ``cuda_graphs``).

    Raises :class:`EngineError` when ``name`` is unknown, cannot run here (the message says
    what is missing) or fails to build. ``auto`` never raises: it tries its candidates in
    order (``AUTO_ORDER``), warning about each one that fails, and ends with ``eager``.
    """
    requested = ALIASES.get(name, name)
    if requested == "auto":
        avail = available_engines()
        candidates = [c for c in AUTO_ORDER if avail[c] is None] + ["eager"]
    else:
        if requested not in ENGINES:
            raise EngineError(f"unknown engine {name!r}; available: "
                              f"{', '.join(['auto', *ENGINES, *ALIASES])}")
        missing = available_engines().get(requested)
        if missing is not None:
            raise EngineError(f"engine {requested!r} cannot run here: {missing}")
        candidates = [requested]
    for candidate in candidates:
        try:
            engine = _make_one(candidate, fitter, cache, prepare, options)
        except Exception as exc:
            if requested != "auto":
                if isinstance(exc, EngineError):
                    raise
                raise EngineError(f"engine {candidate!r} failed to build: {exc}") from exc
            warnings.warn(f"engine {candidate!r} failed to build ({exc}); trying the next",
                          stacklevel=2)
            continue
        for n in light_rungs(light_iterations):
            rung = _make_light(candidate, fitter, n, cache, prepare, options)
            if rung is None:  # the ladder stays a prefix: a recorded level keeps its fit
                break
            engine = engine.with_rung(rung)
        return engine
    return EagerEngine(fitter)  # pragma: no cover - eager is always the last candidate


def light_rungs(light_iterations: int | Sequence[int] | None) -> tuple[int, ...]:
    """``light_iterations`` of :func:`make_engine` as a tuple, heaviest first, each count once
    (``None``, ``0``: empty)."""
    if not light_iterations:
        return ()
    counts = (light_iterations,) if isinstance(light_iterations, int) else light_iterations
    return tuple(sorted(set(counts), reverse=True))


def _make_light(name: str, fitter: NeuralFitter, n: int, cache, prepare: bool,
                options: dict) -> Engine | None:
    """A light fit (a rung of ``Engine.rungs``) on backend ``name``; ``None`` with a warning
    when it cannot be built (the ladder then ends above it)."""
    try:
        return _make_one(name, fitter.with_iterations(n), cache, prepare, options)
    except Exception as exc:
        warnings.warn(f"the light fit ({n} iterations) of engine {name!r} failed to build "
                      f"({exc}); it and any lighter one are left out", stacklevel=3)
        return None


def _make_one(name: str, fitter: NeuralFitter, cache, prepare: bool, options: dict) -> Engine:
    if name == "eager":
        return EagerEngine(fitter)
    engine = ENGINES[name](fitter, cache=cache, **options)
    if prepare and isinstance(engine, CompiledEngine):
        engine.warmup([1])  # fail here, not at the first tick
    return engine
