"""Building the engine and the core from command-line options (shared by serve, replay and demo;
the options themselves: ``tracker.options``)."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from tracker.server.sessions import SessionRules


def default_threads() -> int:
    """Torch threads for the fit: all cores but one (left to the receiver and publishing)."""
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
                 background: bool = False, log=print):
    """``(engine, model_info)``; errors become :class:`tracker.errors.UserError`.

    ``background``: when the compiled engine asked for is not in the engine cache yet,
    return the eager engine at once and put a started :class:`engines.background.
    BackgroundBuild` in ``model_info["build"]`` (the caller polls it and switches).
    """
    from engines.base import CompiledEngine, EagerEngine, EngineError
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
        eng = None
        if background:
            from engines.background import BackgroundBuild

            name = resolve_engine_name(engine)
            later = make_engine(name, fitter, prepare=False)
            if isinstance(later, CompiledEngine) and later.missing():
                eng = EagerEngine(fitter)
                build = BackgroundBuild(name, lambda: make_engine(name, fitter, prepare=False),
                                        checkpoint, body_model, log=log).start()
        if eng is None:
            eng = make_engine(engine, fitter)
    except (BodyModelError, CheckpointError, EngineError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from exc
    path = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
    info = {
        "checkpoint": "untrained (no bundled checkpoint)" if untrained else str(path),
        "checkpoint_sha256": "" if untrained else sha256_file(path)[:16],
        "body": body.data.name, "body_fingerprint": body.fingerprint,
        "hidden": fitter.cfg.hidden, "layers": fitter.cfg.layers,
        "iterations": fitter.cfg.iterations,
    }
    if build is not None:
        info["build"] = build
    return eng, info


def build_core(args, profiles=None):
    """A :class:`TrackerCore` from ``args`` (checkpoint, body_model, engine, visibility,
    max_sessions, profiles, build); returns ``(core, model_info)``, with ``model_info["build"]``
    the background build of the compiled engine when one was started (see
    :func:`build_engine`)."""
    from tracker.server.core import TrackerCore
    from tracker.server.profiles import StoreProfiles

    eng, info = build_engine(args.checkpoint, args.body_model, args.engine,
                             background=getattr(args, "build", "wait") == "background",
                             log=lambda m: print(m, file=sys.stderr, flush=True))
    if profiles is None and getattr(args, "profiles", None):
        profiles = StoreProfiles(args.profiles, eng.fitter.body)
    rules = SessionRules(max_sessions=getattr(args, "max_sessions", 256),
                         max_sessions_per_client=getattr(args, "max_sessions_per_client", 16))
    build = info.pop("build", None)  # not part of the status's model description
    core = TrackerCore(eng, args.visibility, profiles, rules, info)
    return core, (info if build is None else dict(info, build=build))

