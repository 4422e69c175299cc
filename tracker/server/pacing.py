"""Per tick, the full fit or a light one: publish in time on a busy machine.

A tick has to be published before its sessions' next frames arrive, or frames wait and the
newest supersedes the ones before it (``dropped`` in the status). Beside a game on the
headset PC, or with many sessions on a small CPU, the full fit (N iterations) can take
longer than the frame period. The engine's light fits (``Engine.rungs``: the same networks
and checkpoint at fewer iterations, ``NeuralFitter.with_iterations``; by default N - 2 and
N - 4) cost less: the bundled model on inductor, one thread, this project's 2-core CPU, calls
interleaved, batch 1 p50 4.97 ms at 6 iterations against 4.01 at 4, batch 8 11.6 against
8.8 ms (session 12; the 2-iteration figures are in ``docs/serving.md``).

The rungs form a ladder: level 0 is the full fit, level k the k-th light fit. :class:`Pacer`
keeps, per level and batch bucket, the median of the last ``window`` (9) fit durations and
of the rest of a tick's time (from its frames' receipt to its last pose sent, less the fit:
waiting for the tick, inputs, messages, sending; a late tick makes the next one wait, so
this is kept per level too), and takes the frame period of a tick from its sessions (the
shortest of their averaged device-time steps between frames, ``Session.period_ns``). A tick
at level k is expected to take its fit's median plus its rest's. The level goes one rung
down when the current one is expected to take more than ``high`` of the period (0.95) and a
lighter one exists, and one rung up once the next heavier one is expected to take less than
``low`` of it (0.8); in between it stays. A median, not a mean: on a small CPU single fits
take 2-3 times their usual time now and then, and one of them must not switch a server that
is on time. While below the full fit, one tick every ``probe_s`` runs the next heavier rung
to measure it again, since the load that made it slow may be gone (a median turns after
about half the window: some 5 s per rung; probing again at once after a probe that fit
brought the full fit back sooner but raised the latency under load, see
``docs/serving.md``, session 14). One level holds for every batch size; a batch size not
measured yet at the current level runs it (at level 0: the full fit) until it is.

The choice is made when a tick begins (``TrackerCore.begin_tick``) and recorded with it
(``tracker/tick``), so a replay runs the same fit at every tick without timing anything.

Fewer iterations cost accuracy, and switching back and forth costs smoothness (the bundled
model's 21 training-side tuning clips, clean, streaming, eager; hand PE / head V2V / jitter:
6 iterations 1.85 cm / 11.0 mm / 1.17 km/s³, 4 iterations 2.35 / 11.6 / 1.21, 2 iterations
3.40 / 13.1 / 1.31, a random 30 % of ticks at 4 1.96 / 11.1 / 1.63, every other tick at 4
2.06 / 11.3 / 2.69; MPJPE 7.14-7.32 and lower body 12.38-12.45 cm in all). Hence the light
fits only under load, one rung at a time, and the hysteresis between ``low`` and ``high``,
which keeps runs of one kind.
"""

from __future__ import annotations

from collections import deque
from statistics import median

from engines.buckets import bucket_for

HIGH = 0.95
LOW = 0.8
PROBE_S = 1.0
WINDOW = 9


def default_light_iterations(iterations: int) -> tuple[int, ...]:
    """The light fits for a checkpoint running ``iterations``: two and four fewer (an even
    count stays even: with the bundled model's data-term weights odd counts jitter, see its
    model card), none below 2."""
    return tuple(n for n in (iterations - 2, iterations - 4) if n >= 2)


def parse_light_iterations(text: str) -> tuple[int, ...]:
    """``"4,2"`` -> ``(4, 2)``; ``"0"`` -> ``()``; :class:`ValueError` for anything else."""
    parts = [t.strip() for t in text.split(",")]
    counts = tuple(int(t) for t in parts)  # ValueError for a word or an empty part
    if counts == (0,):
        return ()
    if any(n < 1 for n in counts):
        raise ValueError("counts must be 1 or more (or one 0 for none)")
    return counts


class Pacer:
    """Chooses the fit of each tick; see the module docstring.

    Attributes:
        level: the current rung (0: the full fit).
        samples: ``{(kind, level, bucket): deque of ns}`` the last durations of the ``fit``
            and of the ``rest`` of a tick at each level.
    """

    def __init__(self, high: float = HIGH, low: float = LOW, probe_s: float = PROBE_S,
                 window: int = WINDOW):
        if not 0 < low <= high:
            raise ValueError(f"need 0 < low <= high, got low {low}, high {high}")
        self.high, self.low, self.window = high, low, window
        self.probe_ns = int(probe_s * 1e9)
        self.level = 0
        self.samples: dict[tuple[str, int, int], deque[int]] = {}
        self._last_probe = 0
        self.last: tuple[int, int] = (0, 0)
        """``(batch, period_ns)`` of the last choice."""

    @property
    def light(self) -> bool:
        """A light fit is the current choice."""
        return self.level > 0

    def expected(self, kind: str, level: int, batch: int) -> float | None:
        """The expected duration (ns) of ``kind`` (``fit``, ``rest``) at ``level`` for
        ``batch`` sessions, ``None`` if not measured."""
        d = self.samples.get((kind, level, bucket_for(batch)))
        return median(d) if d else None

    def expected_tick(self, level: int, batch: int) -> float | None:
        """Fit plus rest of a tick at ``level``; the rest of the nearest level measured when
        this one's is not; ``None`` while its fit is not measured."""
        fit = self.expected("fit", level, batch)
        if fit is None:
            return None
        near = sorted(self.levels_measured("rest", batch), key=lambda k: (abs(k - level), k))
        return fit + (self.expected("rest", near[0], batch) if near else 0.0)

    def levels_measured(self, kind: str, batch: int) -> list[int]:
        b = bucket_for(batch)
        return [k for (kd, k, bk), d in self.samples.items() if kd == kind and bk == b and d]

    def choose(self, t_now: int, batch: int, period_ns: int, levels: int = 2) -> int:
        """The level of a tick at ``t_now`` (ns) of ``batch`` sessions whose shortest frame
        period is ``period_ns`` (``0``: not known yet: the current level is kept), on an
        engine with ``levels`` rungs (1: the full fit only)."""
        self.last = (batch, period_ns)
        level = min(self.level, levels - 1)
        if period_ns > 0:
            now = self.expected_tick(level, batch)
            if now is not None and now > self.high * period_ns and level + 1 < levels:
                level += 1
                self._last_probe = t_now  # the rung just left was late: no probe of it now
            elif level > 0:
                up = self.expected_tick(level - 1, batch)
                if up is not None and up < self.low * period_ns:
                    level -= 1
        self.level = level
        if level == 0:
            self._last_probe = t_now
        elif t_now - self._last_probe >= self.probe_ns:
            self._last_probe = t_now
            return level - 1  # a probe: measure the next heavier fit again
        return level

    def report(self, levels: int = 2) -> dict:
        """The status's ``pacing``: the current choice and what it was made from (ms), for an
        engine with ``levels`` rungs."""
        batch, period = self.last

        def ms(kind, level):
            v = self.expected(kind, level, batch) if batch else None
            return None if v is None else round(v / 1e6, 3)

        fits = [ms("fit", k) for k in range(max(levels, self.level + 1))]
        return {"light": self.level > 0, "level": self.level, "batch": batch,
                "period_ms": round(period / 1e6, 3) if period else None,
                "fit_ms": fits, "rest_ms": ms("rest", self.level)}

    def forget(self) -> None:
        """Drop what was measured (another engine now fits: its times differ)."""
        self.samples.clear()
        self.level = 0

    def observe(self, level: int, batch: int, fit_ns: int) -> None:
        """The fit of a tick of ``batch`` sessions at ``level`` took ``fit_ns``."""
        self._add("fit", level, batch, fit_ns)

    def observe_rest(self, level: int, batch: int, ns: int) -> None:
        """A tick of ``batch`` sessions at ``level`` spent ``ns`` beside its fit, from the
        receipt of its frames to its last pose sent (the live loop; a replay does not
        time)."""
        self._add("rest", level, batch, ns)

    def _add(self, kind: str, level: int, batch: int, ns: int) -> None:
        key = (kind, int(level), bucket_for(batch))
        if key not in self.samples:
            self.samples[key] = deque(maxlen=self.window)
        self.samples[key].append(ns)
