"""Building the engine and the core from command-line options (shared by serve, replay and demo;
the options themselves: ``tracker.options``)."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from tracker.server.sessions import SessionRules


def default_threads() -> int:
    """Torch threads for the fit: all cores but one (left to reading the socket and publishing)."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def set_threads(n: int | None) -> int:
    import torch

    n = n or default_threads()
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set (a second core in one process)
        pass
    return n


def build_engine(checkpoint=None, body_model=None, engine: str = "auto",
                 background: bool = False, log=print,
                 light_iterations: int | str | tuple[int, ...] | None = None):
    """``(engine, model_info)``; errors become :class:`tracker.errors.UserError`.

    ``background``: when the compiled engine asked for (or one of its light fits) is not in
    the engine cache yet, return what can serve at once (the eager engine, or the cached
    compiled engine without its light fits) and put a started :class:`engines.background.
    BackgroundBuild` in ``model_info["build"]`` (the caller polls it and switches).
    ``light_iterations``: the engine's ladder of light fits (``Engine.rungs``, ``tracker.
    server.pacing``): ``"auto"`` (:func:`~tracker.server.pacing.default_light_iterations`),
    counts below the checkpoint's (one, or a tuple / ``"4,2"``), or ``0`` / ``None`` for none.
    """
    from engines.base import EngineError
    from engines.cache import sha256_file
    from engines.registry import make_engine, resolve_engine_name
    from tracker.body import BodyModelError, load_body_model
    from tracker.errors import UserError
    from tracker.fitter.checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_fitter

    build = None
    try:
        body = load_body_model(body_model)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fitter = load_fitter(checkpoint, body)
        untrained = any("UNTRAINED" in str(w.message) for w in caught)
        light = _light_iterations(light_iterations, fitter.cfg.iterations)
        eng = None
        if background:
            eng, build = _serve_while_building(resolve_engine_name(engine), fitter, light,
                                               checkpoint, body_model, log)
        if eng is None:
            eng = make_engine(engine, fitter, light_iterations=light)
    except (BodyModelError, CheckpointError, EngineError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from exc
    path = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
    info = {
        "checkpoint": "untrained (no bundled checkpoint)" if untrained else str(path),
        "checkpoint_sha256": "" if untrained else sha256_file(path)[:16],
        "body": body.data.name, "body_fingerprint": body.fingerprint,
        "hidden": fitter.cfg.hidden, "layers": fitter.cfg.layers,
        "iterations": fitter.cfg.iterations, "light_iterations": list(light),
    }
    if build is not None:
        info["build"] = build
    return eng, info


def _light_iterations(asked: int | str | tuple[int, ...] | None,
                      iterations: int) -> tuple[int, ...]:
    """The light fits' iterations for ``--light-iterations`` (see :func:`build_engine`),
    heaviest first."""
    from tracker.errors import UserError
    from tracker.server.pacing import default_light_iterations, parse_light_iterations

    if asked == "auto":
        return default_light_iterations(iterations)
    if not asked:
        return ()
    try:
        rungs = parse_light_iterations(asked) if isinstance(asked, str) else (
            (asked,) if isinstance(asked, int) else tuple(asked))
    except ValueError:
        raise UserError(f"--light-iterations: expected 'auto', 0, or whole numbers separated "
                        f"by commas (e.g. 4,2), got {asked!r}") from None
    if not rungs:
        return ()
    if iterations < 2:
        raise UserError(f"--light-iterations: the checkpoint runs {iterations} iteration, "
                        "so it has no lighter fit; use 0")
    bad = [n for n in rungs if not 1 <= n < iterations]
    if bad:
        raise UserError(f"--light-iterations must be from 1 to {iterations - 1} (the "
                        f"checkpoint runs {iterations}), or 0 for none; got {bad[0]}")
    return tuple(sorted(set(rungs), reverse=True))


def _serve_while_building(name: str, fitter, light: tuple[int, ...], checkpoint, body_model,
                          log):
    """``(engine to serve now, started BackgroundBuild)`` when the compiled engine ``name``
    or one of its light fits must be built first, else ``(None, None)``."""
    from engines.background import BackgroundBuild
    from engines.base import CompiledEngine
    from engines.registry import make_engine

    later = make_engine(name, fitter, prepare=False, light_iterations=light)
    if not isinstance(later, CompiledEngine):
        return None, None
    full_missing = bool(later.missing())
    rungs = later.rungs[1:]
    if not (full_missing or any(r.missing() for r in rungs)):
        return None, None
    if full_missing:  # eager (and its eager light fits) now, the compiled full fit first
        eng = make_engine("eager", fitter, light_iterations=light)
        make = lambda: later.with_light(None)  # noqa: E731
    else:  # the full engine is cached: serve it now, build the light fits only
        eng = later.with_light(None)
        eng.warmup([1])
        make = None
    stages = [(r.fitter.cfg.iterations, lambda r=r: r.with_light(None)) for r in rungs]
    build = BackgroundBuild(name, make, checkpoint, body_model, log=log, light=stages,
                            base=eng).start()
    return eng, build


def build_core(args, profiles=None):
    """A :class:`TrackerCore` from ``args`` (checkpoint, body_model, engine, visibility,
    max_sessions, profiles, build); returns ``(core, model_info)``, with ``model_info["build"]``
    the background build of the compiled engine when one was started (see
    :func:`build_engine`)."""
    from tracker.server.core import TrackerCore
    from tracker.server.profiles import StoreProfiles

    eng, info = build_engine(args.checkpoint, args.body_model, args.engine,
                             background=getattr(args, "build", "wait") == "background",
                             log=lambda m: print(m, file=sys.stderr, flush=True),
                             light_iterations=getattr(args, "light_iterations", None))
    if profiles is None and getattr(args, "profiles", None):
        profiles = StoreProfiles(args.profiles, eng.fitter.body)
    rules = SessionRules(max_sessions=getattr(args, "max_sessions", 256),
                         max_sessions_per_client=getattr(args, "max_sessions_per_client", 16))
    build = info.pop("build", None)  # not part of the status's model description
    core = TrackerCore(eng, args.visibility, profiles, rules, info)
    return core, (info if build is None else dict(info, build=build))

