"""Serve at once, switch to the compiled engine when it is ready.

A compiled engine that is not in the cache yet takes minutes to build (inductor: about
170 s on this project's 2-core CPU). Rather than answer nothing for that long, a server
starts on the eager engine (no build) and runs :class:`BackgroundBuild`:

1. a child process (``python -m engines.prebuild``, lowest CPU priority) builds every slot
   the compiled engine needs into the engine cache, printing one line per step;
2. a thread of this process then loads the artifacts (no build: same checkpoint, body model
   and code, so the same cache keys) and runs each slot once, so the first real call pays
   no first-use cost;
3. the serving loop calls :meth:`BackgroundBuild.poll` between ticks and switches engines
   when it returns the new one. Every engine carries the same :class:`~engines.base.FitState`
   (CPU tensors for CPU engines), so sessions continue across the switch without a reset.

For a static engine every batch bucket is built before the switch, so no tick waits on a
build afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from engines.base import CompiledEngine, Engine
from engines.buckets import BUCKETS
from engines.flat import example_inputs

_REPO = Path(__file__).resolve().parent.parent


class BackgroundBuild:
    """Build engine ``name`` for a checkpoint off the serving path; see the module docstring.

    Attributes:
        state: ``building``, ``loading``, ``ready`` (handed over by :meth:`poll`), ``failed``.
        error: why it failed (one line), else ``None``.
    """

    def __init__(self, name: str, make: Callable[[], Engine], checkpoint: str | None = None,
                 body_model: str | None = None, buckets: Sequence[int] = BUCKETS,
                 log: Callable[[str], None] = print, nice: int = 10):
        self.name, self._make, self.buckets, self.log = name, make, tuple(buckets), log
        self._argv = [sys.executable, "-m", "engines.prebuild", "--engine", name,
                      "--buckets", *map(str, self.buckets)]
        if checkpoint:
            self._argv += ["--checkpoint", str(checkpoint)]
        if body_model:
            self._argv += ["--body-model", str(body_model)]
        self._nice = nice
        self.state = "building"
        self.error: str | None = None
        self._reported = False
        self.started = time.monotonic()
        self._engine: Engine | None = None
        self._proc: subprocess.Popen | None = None
        self._thread = threading.Thread(target=self._run, name="engine-build", daemon=True)

    def start(self) -> BackgroundBuild:
        self.log(f"engines: serving on eager while {self.name} builds in the background "
                 "(minutes, once; cached)")
        self._thread.start()
        return self

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    def _run(self) -> None:
        try:
            nice = self._nice
            self._proc = subprocess.Popen(
                self._argv, cwd=_REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
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
            self.state = "loading"
            engine = self._make()
            if isinstance(engine, CompiledEngine):
                if engine.missing(self.buckets):
                    raise RuntimeError("the built artifacts are not in the cache")
                engine.warmup(self.buckets)
                for slot in engine.slots(self.buckets):  # first calls allocate: not in a tick
                    B = slot if isinstance(slot, int) else 1
                    engine.runner(slot)(*example_inputs(engine.fitter, B, device=engine.device))
            self._engine = engine
        except Exception as exc:  # reported by poll(); the server goes on with eager
            self.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.state = "failed"

    def poll(self) -> Engine | None:
        """The built engine, once (then ``state`` is ``ready``); ``None`` until then or if
        the build failed (``state`` ``failed``, logged once)."""
        if self._engine is not None and self.state == "loading":
            self.state = "ready"
            self.log(f"engines: switched to {self.name} after {self.seconds:.0f} s")
            engine, self._engine = self._engine, None
            return engine
        if self.state == "failed" and not self._reported:
            self._reported = True
            self.log(f"engines: {self.name} could not be built ({self.error}); staying on eager")
        return None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop a build still running (the server is closing) and wait for it to end, so no
        build outlives the server (killed after ``timeout`` seconds)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
