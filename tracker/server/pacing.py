"""Per tick, the full fit or the light one: publish in time on a busy machine.

A tick has to be published before its sessions' next frames arrive, or frames wait and the
newest supersedes the ones before it (``dropped`` in the status). Beside a game on the
headset PC, or with many sessions on a small CPU, the full fit (N iterations) can take
longer than the frame period. The light fit (``Engine.light``: the same networks and
checkpoint, ``N_light`` iterations, ``NeuralFitter.with_iterations``) costs a fifth to a
quarter less: the bundled model on inductor, one thread, this project's 2-core CPU, full and
light calls interleaved, batch 1 p50 4.97 ms at 6 iterations against 4.01 at 4, batch 8 11.6
against 8.8 ms.

:class:`Pacer` keeps, per batch bucket, the median of the last ``window`` (9) durations of
each fit (full, light) and of the rest of a tick's time (from its frames' receipt to its
last pose sent, less the fit: waiting for the tick, inputs, messages, sending; kept apart
for full and light ticks, since a late tick makes the next one wait), and takes the frame
period of a tick from its sessions (the shortest of their averaged device-time steps
between frames, ``Session.period_ns``). A tick runs the light fit when the full fit and the rest are
expected (the medians) to take more than ``high`` of the period (0.95), and the full fit
again once they are expected to take less than ``low`` of it (0.8; in between, the previous
choice stays). A median, not a mean: on a small CPU single fits take 2-3 times their usual
time now and then, and one of them must not switch a server that is on time to the light
fit. While
light, one tick every ``probe_s`` runs the full fit to measure it again, since the load that
made it slow may be gone (the median then turns after about half the window: 5 s). One
choice holds for every batch size; a batch size not measured yet runs the full fit.

The choice is made when a tick begins (``TrackerCore.begin_tick``) and recorded with it
(``tracker/tick``), so a replay runs the same fit at every tick without timing anything.

Fewer iterations cost accuracy, and switching back and forth costs smoothness (the bundled
model's 21 training-side tuning clips, clean, streaming, eager; hand PE / head V2V / jitter:
6 iterations 1.85 cm / 11.0 mm / 1.17 km/s³, 4 iterations 2.35 / 11.6 / 1.21, a random 30 %
of ticks light 1.96 / 11.1 / 1.63, every other tick light 2.06 / 11.3 / 2.69; MPJPE 7.14-7.18
and lower body 12.40-12.45 cm in all four). Hence the light fit only under load, and the
hysteresis between ``low`` and ``high``, which keeps runs of one kind.
"""

from __future__ import annotations

from collections import deque
from statistics import median

from engines.buckets import bucket_for

HIGH = 0.95
LOW = 0.8
PROBE_S = 1.0
WINDOW = 9


def default_light_iterations(iterations: int) -> int | None:
    """The light fit's iterations for a checkpoint running ``iterations``: two fewer (an
    even count stays even: with the bundled model's data-term weights odd counts jitter,
    see its model card), ``None`` below 4."""
    return iterations - 2 if iterations >= 4 else None


class Pacer:
    """Chooses the fit of each tick; see the module docstring.

    Attributes:
        light: the current choice (``True`` while the full fit would be late).
        samples: ``{(kind, bucket): deque of ns}`` the last durations of the ``full`` and
            ``light`` fits and of the ``rest`` of a tick.
    """

    def __init__(self, high: float = HIGH, low: float = LOW, probe_s: float = PROBE_S,
                 window: int = WINDOW):
        if not 0 < low <= high:
            raise ValueError(f"need 0 < low <= high, got low {low}, high {high}")
        self.high, self.low, self.window = high, low, window
        self.probe_ns = int(probe_s * 1e9)
        self.light = False
        self.samples: dict[tuple[str, int], deque[int]] = {}
        self._last_full = 0
        self.last: tuple[int, int, float | None] = (0, 0, None)
        """``(batch, period_ns, expected full tick ns)`` of the last choice."""

    def expected(self, kind: str, batch: int) -> float | None:
        """The expected duration (ns) of ``kind`` (``full``, ``light``: the fit; ``rest
        full``, ``rest light``: the tick beside it) for ``batch`` sessions, ``None`` if not
        measured."""
        d = self.samples.get((kind, bucket_for(batch)))
        return median(d) if d else None

    def choose(self, t_now: int, batch: int, period_ns: int) -> bool:
        """``True``: run the light fit for a tick at ``t_now`` (ns) of ``batch`` sessions
        whose shortest frame period is ``period_ns`` (``0``: not known yet: full)."""
        full = self.expected("full", batch)
        if full is not None:
            rest = self.expected("rest full", batch)
            full += rest if rest is not None else self.expected("rest light", batch) or 0.0
        self.last = (batch, period_ns, full)
        if period_ns <= 0 or full is None:  # not measured: the full fit, the choice kept
            self._last_full = t_now
            return False
        if full > self.high * period_ns:
            light = True
        elif full < self.low * period_ns:
            light = False
        else:
            light = self.light
        self.light = light
        if light and t_now - self._last_full >= self.probe_ns:
            light = False  # a probe: measure the full fit again
        if not light:
            self._last_full = t_now
        return light

    def report(self) -> dict:
        """The status's ``pacing``: the current choice and what it was made from (ms)."""
        batch = self.last[0]

        def ms(kind):
            v = self.expected(kind, batch) if batch else None
            return None if v is None else round(v / 1e6, 3)

        period = self.last[1]
        return {"light": self.light, "batch": batch,
                "period_ms": round(period / 1e6, 3) if period else None,
                "full_ms": ms("full"), "light_ms": ms("light"),
                "rest_ms": ms("rest light" if self.light else "rest full")}

    def forget(self) -> None:
        """Drop what was measured (another engine now fits: its times differ)."""
        self.samples.clear()
        self.light = False

    def observe(self, light: bool, batch: int, fit_ns: int) -> None:
        """The fit of a tick of ``batch`` sessions took ``fit_ns``."""
        self._add("light" if light else "full", batch, fit_ns)

    def observe_rest(self, light: bool, batch: int, ns: int) -> None:
        """A tick of ``batch`` sessions spent ``ns`` beside its (light) fit, from the
        receipt of its frames to its last pose sent (the live loop; a replay does not
        time)."""
        self._add("rest light" if light else "rest full", batch, ns)

    def _add(self, kind: str, batch: int, ns: int) -> None:
        key = (kind, bucket_for(batch))
        if key not in self.samples:
            self.samples[key] = deque(maxlen=self.window)
        self.samples[key].append(ns)
