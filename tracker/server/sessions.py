"""Per-session state and the ingest rules of ``protocol.md`` (pure: no sockets, no clock).

Every rule is a function of the message order and the receive times ``t_recv`` (server
monotonic ns) alone, so a replay that feeds the recorded payloads with their recorded
receive times takes exactly the same decisions as the live server:

* latest frame wins: a session holds at most one *pending* frame; a newer one replaces it
  and the replaced one is counted as ``dropped``;
* ``seq`` must increase strictly within a session (else ``stale_seq``, state untouched);
* a gap of more than ``gap_reset_s`` (1 s) between received frames, or a device clock ``t``
  that jumps by more than that or runs backwards, resets the session (its Θ and GRU state are
  re-initialised from the next fitted frame);
* a session silent for ``forget_s`` (60 s) is forgotten: its next frame starts a new session
  (``seq`` may then start again from anything);
* at most ``max_sessions`` (256) live sessions. At the cap, a frame of a *new* session is
  rejected with reason ``session_limit`` (after forgetting the silent ones); live sessions are
  never evicted for a newcomer, so a flood of made-up session ids cannot knock real users
  off. A slot frees when a session has been silent for ``forget_s``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tracker.protocol import Frame, Rejected
from tracker.server.samples import Samples
from tracker.stream import StreamState

NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class SessionRules:
    """Timing rules and limits of the session table."""

    gap_reset_s: float = 1.0
    """A session without frames for this long is reset on its next frame."""
    forget_s: float = 60.0
    """A session without frames for this long is forgotten."""
    max_sessions: int = 256
    """Cap on live sessions; new sessions beyond it are rejected (``session_limit``)."""


@dataclass
class Pending:
    """The newest accepted, not yet fitted frame of a session."""

    frame: Frame
    t_recv: int
    payload: bytes
    tick: int = 0  # ticks begun before it was received (its age in ticks is computed from it)


@dataclass
class Session:
    """One stream. Ingest-side fields are written by :meth:`SessionTable.accept`; fit-side
    fields (``stream``: the carried fit state, ``profile``) by the core's tick."""

    id: str
    first_recv: int
    last_recv: int
    last_seq: int
    last_t: int
    pending: Pending | None = None
    need_reset: bool = True
    reset_reason: str = "first"
    profile: object | None = None  # calibration.profile.Profile in use
    stream: StreamState = field(default_factory=StreamState)
    received: int = 0
    fitted: int = 0
    dropped: int = 0
    rejected: int = 0
    resets: int = 0
    diverged: int = 0
    last_fitted_seq: int | None = None
    latency_ns: Samples = field(default_factory=lambda: Samples(2048))
    rate_mark: tuple[int, int] | None = None  # (t, received) at the last status


class SessionTable:
    """The live sessions, in order of their first frame (the batch order of every tick)."""

    def __init__(self, rules: SessionRules | None = None):
        self.rules = rules = rules or SessionRules()
        self.sessions: dict[str, Session] = {}
        self.forgotten = 0
        self._gap_ns = int(rules.gap_reset_s * NS_PER_S)
        self._forget_ns = int(rules.forget_s * NS_PER_S)

    def __len__(self) -> int:
        return len(self.sessions)

    def get(self, session: str) -> Session | None:
        return self.sessions.get(session)

    def accept(self, frame: Frame, t_recv: int, payload: bytes = b"") -> Session:
        """Take a validated frame received at ``t_recv``; raises :class:`Rejected` with
        ``stale_seq`` or ``session_limit`` (then nothing changed)."""
        s = self.sessions.get(frame.session)
        if s is not None and t_recv - s.last_recv > self._forget_ns:
            self._forget(frame.session)
            s = None
        if s is None:
            if len(self.sessions) >= self.rules.max_sessions:
                self.expire(t_recv)
            if len(self.sessions) >= self.rules.max_sessions:
                raise Rejected("session_limit",
                               f"{self.rules.max_sessions} live sessions", frame.session)
            s = Session(frame.session, t_recv, t_recv, frame.seq, frame.t)
            self.sessions[frame.session] = s
        else:
            if frame.seq <= s.last_seq:
                s.rejected += 1
                raise Rejected("stale_seq", f"seq {frame.seq} <= {s.last_seq}", frame.session)
            dt_dev = frame.t - s.last_t
            if t_recv - s.last_recv > self._gap_ns or not 0 <= dt_dev <= self._gap_ns:
                s.need_reset, s.reset_reason = True, "gap"
        if s.pending is not None:
            s.dropped += 1
        s.pending = Pending(frame, t_recv, payload)
        s.last_seq, s.last_t, s.last_recv = frame.seq, frame.t, t_recv
        s.received += 1
        return s

    def take_pending(self) -> list[tuple[Session, Pending]]:
        """Every session's pending frame (batch order), leaving none pending."""
        out = []
        for s in self.sessions.values():
            if s.pending is not None:
                out.append((s, s.pending))
                s.pending = None
        return out

    def pending_count(self) -> int:
        return sum(s.pending is not None for s in self.sessions.values())

    def expire(self, now: int) -> list[str]:
        """Forget sessions silent for longer than ``forget_s`` at ``now``; their ids."""
        old = [k for k, s in self.sessions.items() if now - s.last_recv > self._forget_ns]
        for k in old:
            self._forget(k)
        return old

    def _forget(self, session: str) -> None:
        del self.sessions[session]
        self.forgotten += 1
