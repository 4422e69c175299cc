"""Serve at once, switch to the compiled engine when it is ready.

A compiled engine that is not in the cache yet takes minutes to build (inductor: about
170 s on this project's 2-core CPU). Rather than answer nothing for that long, a server
starts on the eager engine (no build) and runs :class:`BackgroundBuild`, one stage per
artifact set (the full fit, then each light fit at fewer iterations when the server has them:
``Engine.rungs``, ``tracker.server.pacing``):

1. a child process (``python -m engines.prebuild``, lowest CPU priority) builds every slot
   the stage needs into the engine cache, printing one line per step;
2. a thread of this process then loads the artifacts (no build: same checkpoint, body model
   and code, so the same cache keys) and runs each slot once, so the first real call pays
   no first-use cost;
3. the serving loop calls :meth:`BackgroundBuild.poll` between ticks and switches engines
   when it returns one: after the full stage the compiled engine (no light fit yet: the
   eager ones are slower than the compiled full fit), after each light stage the same engine
   with its compiled light fits so far. Every engine carries the same :class:`~engines.base.
   FitState` (CPU tensors for CPU engines), so sessions continue across a switch without a
   reset.

For a static engine every batch bucket is built before the switch, so no tick waits on a
build afterwards. A server whose full engine is cached but whose light ones are not serves
the full engine at once and runs only the light stages (a rung already cached costs a child
process that finds nothing to build).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from engines.base import CompiledEngine, Engine
from engines.buckets import BUCKETS
from engines.flat import example_inputs

_REPO = Path(__file__).resolve().parent.parent


@dataclass
class Stage:
    """One build: ``make()`` returns the engine once its artifacts are in the cache;
    ``iterations`` (``None``: the checkpoint's) goes to ``engines.prebuild``. ``label``:
    ``full``, or ``light N`` (a light fit of N iterations)."""

    label: str
    make: Callable[[], Engine]
    iterations: int | None = None


class BackgroundBuild:
    """Build engine ``name`` for a checkpoint off the serving path; see the module docstring.

    Args:
        make: the full compiled engine (``None``: it is cached and already serving, as
            ``base``; only the light stages run).
        light: ``(iterations, make)`` of each light fit to build after it, heaviest first
            (``make`` returns the rung alone; it is added below the ones before).
        base: the engine serving now, used when ``make`` is ``None``.

    Attributes:
        state: ``building``, ``loading``, ``ready`` (every stage handed over by
            :meth:`poll`), ``failed``. stage: the label of the stage running.
        error: why it failed (one line), else ``None``.
    """

    def __init__(self, name: str, make: Callable[[], Engine] | None,
                 checkpoint: str | None = None, body_model: str | None = None,
                 buckets: Sequence[int] = BUCKETS, log: Callable[[str], None] = print,
                 nice: int = 10, light: Sequence[tuple[int, Callable[[], Engine]]] = (),
                 base: Engine | None = None):
        self.name, self.buckets, self.log = name, tuple(buckets), log
        self.stages = ([Stage("full", make)] if make is not None else []) + [
            Stage(f"light {n}", mk, n) for n, mk in light]
        if not self.stages:
            raise ValueError("nothing to build")
        self._argv = [sys.executable, "-m", "engines.prebuild", "--engine", name,
                      "--buckets", *map(str, self.buckets)]
        if checkpoint:
            self._argv += ["--checkpoint", str(checkpoint)]
        if body_model:
            self._argv += ["--body-model", str(body_model)]
        self._nice = nice
        self.state = "building"
        self.stage = self.stages[0].label
        self.error: str | None = None
        self._reported = False
        self.started = time.monotonic()
        self._current = base
        self._ready: deque[tuple[str, Engine]] = deque()
        self._proc: subprocess.Popen | None = None
        self._stopping = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="engine-build", daemon=True)

    def start(self) -> BackgroundBuild:
        what = ", then ".join("its full fit" if s.iterations is None else
                              f"its light fit of {s.iterations}" for s in self.stages)
        self.log(f"engines: building {self.name} in the background ({what}; minutes, once; "
                 "cached)")
        self._thread.start()
        return self

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    def _run(self) -> None:
        try:
            for stage in self.stages:
                self.stage, self.state = stage.label, "building"
                self._build(stage)
                self.state = "loading"
                engine = self._load(stage)
                if stage.iterations is not None:
                    if self._current is None:
                        raise RuntimeError("no engine to add the light fit to")
                    engine = self._current.with_rung(engine)
                self._current = engine
                self._ready.append((stage.label, engine))
        except Exception as exc:  # reported by poll(); the server goes on as it is
            self.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.state = "failed"

    def _build(self, stage: Stage) -> None:
        """Run ``engines.prebuild`` for ``stage`` in a low-priority child process."""
        argv = self._argv + ([] if stage.iterations is None
                             else ["--iterations", str(stage.iterations)])
        nice = self._nice
        with self._lock:  # stop() either sees this process or stops it from starting
            if self._stopping:
                raise RuntimeError("stopped")
            self._proc = subprocess.Popen(
                argv, cwd=_REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                preexec_fn=(lambda: os.nice(nice)) if hasattr(os, "nice") else None)
        tail = []
        for line in self._proc.stdout:
            line = line.rstrip()
            if line.startswith(("prebuild:", "engines:")):
                self.log(f"engines: [{self.seconds:.0f} s] {line.split(':', 1)[1].strip()}")
            elif line:
                tail = (tail + [line])[-3:]
        if self._proc.wait() != 0:
            raise RuntimeError(f"the build exited with status {self._proc.returncode}"
                               + (f": {tail[-1]}" if tail else ""))

    def _load(self, stage: Stage) -> Engine:
        """The stage's engine from the cache, each slot run once (first calls allocate:
        not in a tick)."""
        engine = stage.make()
        if isinstance(engine, CompiledEngine):
            if engine.missing(self.buckets):
                raise RuntimeError("the built artifacts are not in the cache")
            engine.warmup(self.buckets)
            for slot in engine.slots(self.buckets):
                B = slot if isinstance(slot, int) else 1
                engine.runner(slot)(*example_inputs(engine.fitter, B, device=engine.device))
        return engine

    def poll(self) -> Engine | None:
        """The next engine to switch to, once each (``state`` is ``ready`` after the last);
        ``None`` until then or if the build failed (``state`` ``failed``, logged once)."""
        if self._ready:
            label, engine = self._ready.popleft()
            if label == self.stages[-1].label:
                self.state = "ready"
            self.log(f"engines: switched to {engine.label} after {self.seconds:.0f} s")
            return engine
        if self.state == "failed" and not self._reported:
            self._reported = True
            if self.stage == "full":
                self.log(f"engines: {self.name} could not be built ({self.error}); staying "
                         "on eager")
            else:
                self.log(f"engines: the light fit of {self.stage.split()[1]} iterations of "
                         f"{self.name} could not be built ({self.error}); it stays out (the "
                         "lighter ones too)")
        return None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop a build still running (the server is closing) and wait for it to end, so no
        build outlives the server (killed after ``timeout`` seconds)."""
        with self._lock:
            self._stopping = True  # no further stage starts
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
