"""What ``tracker serve`` says while it runs: one line per event on stderr.

Lines (each ``tracker serve: HH:MM:SS ...``, local time):

* sessions: ``session ID started``, ``session ID reset (REASON)`` with REASON one of ``gap``
  (no frame for 1 s, or the device clock jumped), ``restart`` (the device started a new
  stream, ``tracker.server.sessions``), ``divergence`` (the fit diverged), ``profile change``,
  ``fault`` (a tick failed); ``session ID silent (1.0 s without frames)``, ``session ID
  forgotten (silent 60 s)``. At most ``max_session_lines_per_s`` (20) a second; the rest are
  counted and the number shown in the next totals line;
* every ``period_s`` (10 s) one totals line: live sessions, fits per second, frames dropped
  (superseded) and rejected in the period, tick faults, the p99 of ``t_pub - t_recv`` over the
  period's poses;
* errors (a failing tick, a recording that stopped, a dead thread): always;
* at exit one line of totals since start (always).

``quiet`` turns the session and periodic lines off (errors and the exit totals still print).
"""

from __future__ import annotations

import sys
import time

from tracker.server.samples import Samples, percentiles_ms

PREFIX = "tracker serve:"
REASONS = {"gap": "gap", "restart": "restart", "diverged": "divergence",
           "profile": "profile change", "fault": "fault"}


class ServeLog:
    def __init__(self, stream=None, quiet: bool = False, period_s: float = 10.0,
                 max_session_lines_per_s: int = 20, clock=time.monotonic_ns):
        self.stream = stream if stream is not None else sys.stderr
        self.quiet, self.clock = quiet, clock
        self.period_ns = int(period_s * 1e9)
        self.max_lines = max_session_lines_per_s
        self._next = clock() + self.period_ns
        self._last: dict = {}
        self._latency = Samples(16384)
        self._window_start = self._line_budget_t = clock()
        self._lines_in_window = 0
        self.suppressed = 0
        self._errors: dict = {}

    def _print(self, text: str) -> None:
        try:
            print(f"{PREFIX} {time.strftime('%H:%M:%S')} {text}", file=self.stream, flush=True)
        except (OSError, ValueError):  # stderr gone (a closed terminal): keep serving
            pass

    def error(self, text: str, key: str | None = None, every_s: float = 5.0) -> None:
        """Always printed; with a ``key``, at most once per ``every_s`` per key (the lines left
        out are counted in the next one)."""
        if key is not None:
            now = self.clock()
            last, n = self._errors.get(key, (None, 0))
            if last is not None and now - last < every_s * 1e9:
                self._errors[key] = (last, n + 1)
                return
            self._errors[key] = (now, 0)
            if n:
                text += f" ({n} more like it not shown)"
        self._print(f"error: {text}")

    def info(self, text: str) -> None:
        if not self.quiet:
            self._print(text)

    def event(self, kind: str, session: str, detail: str = "") -> None:
        """A session event (``TrackerCore.events``)."""
        if self.quiet:
            return
        now = self.clock()
        if now - self._window_start >= 1_000_000_000:
            self._window_start, self._lines_in_window = now, 0
        if self._lines_in_window >= self.max_lines:
            self.suppressed += 1
            return
        self._lines_in_window += 1
        if kind == "started":
            text = f"session {session} started" + (f" ({detail})" if detail else "")
        elif kind == "reset":
            text = f"session {session} reset ({REASONS.get(detail, detail)})"
        elif kind == "silent":
            text = f"session {session} silent ({detail} without frames)"
        elif kind == "forgotten":
            text = f"session {session} forgotten ({detail})"
        else:
            text = f"session {session} {kind} {detail}".rstrip()
        self._print(text)

    def latency(self, ns: int) -> None:
        self._latency.append(ns)

    def due(self, now: int) -> bool:
        return now >= self._next

    def periodic(self, now: int, live_sessions: int, counts: dict) -> None:
        """The totals line for the period ending ``now`` (call when :meth:`due`); ``counts``:
        running totals ``fitted``, ``dropped``, ``rejected``, ``faults`` (:func:`counts`)."""
        span = max(1e-9, (now - self._next + self.period_ns) / 1e9)
        self._next = max(self._next + self.period_ns, now + self.period_ns // 2)
        cur = dict(counts)
        d = {k: v - self._last.get(k, 0) for k, v in cur.items()}
        self._last = cur
        p99 = percentiles_ms(self._latency).get("p99")
        self._latency = Samples(16384)
        if self.quiet:
            return
        more = f", {self.suppressed} session lines not shown" if self.suppressed else ""
        self.suppressed = 0
        self._print(f"{live_sessions} sessions, {d['fitted'] / span:.1f} fitted/s, "
                    f"dropped {d['dropped']}, rejected {d['rejected']}, faults {d['faults']}, "
                    f"p99 latency " + (f"{p99:.1f} ms" if p99 is not None else "-")
                    + f" (last {span:.0f} s{more})")

    def exit_totals(self, status: dict) -> None:
        """Totals since start (always printed)."""
        c = counts(status)
        rej = ", ".join(f"{k} {v}" for k, v in status["rejected"].items() if v)
        rec = status.get("recorder")
        recs = ""
        if rec:
            recs = (f"; recording: {rec['written']} messages written, {rec['dropped']} dropped, "
                    f"{rec['write_errors']} write errors")
        lat = status.get("latency_ms", {}).get("p99")
        self._print(f"totals: uptime {status.get('uptime_s', 0):.0f} s, sessions "
                    f"{status['live_sessions']} live / {status['forgotten_sessions']} "
                    f"forgotten, received {c['received']}, fitted {c['fitted']}, dropped "
                    f"{c['dropped']}, rejected {c['rejected']}" + (f" ({rej})" if rej else "")
                    + f", resets {c['resets']}, restarts {c['restarts']}, faults {c['faults']}"
                    + (f", p99 latency {lat:.1f} ms" if lat is not None else "") + recs)


def counts(totals: dict) -> dict:
    """The running totals the lines use, from a ``status`` message or a core's ``totals``
    merged with ``rejected`` (a map of reason to count) and ``restarts``."""
    return {"fitted": totals["fitted"], "dropped": totals["dropped"],
            "received": totals["received"], "rejected": sum(totals["rejected"].values()),
            "faults": totals.get("faults", 0), "resets": totals.get("resets", 0),
            "restarts": totals.get("restarts", 0)}
