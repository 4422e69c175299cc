"""Per-session state and the ingest rules of ``protocol.md`` (pure: no sockets, no clock).

Every rule is a function of the message order and the receive times ``t_recv`` (server
monotonic ns) alone, so a replay that feeds the recorded payloads with their recorded
receive times takes exactly the same decisions as the live server:

* latest frame wins: a session holds at most one *pending* frame; a newer one replaces it
  and the replaced one is counted as ``dropped``;
* ``seq`` increases within a stream. A frame whose ``seq`` does not (``seq <= last``) is
  either a late duplicate or the first frame of a *restarted* device, told apart by the device
  time ``t``: a late duplicate is no later than the last frame and less than ``gap_reset_s``
  (1 s) before it: rejected (``stale_seq``, state untouched). Otherwise (``t`` ahead: the
  device app restarted, its clock running on; or ``t`` more than 1 s back: the device
  rebooted, its clock starting again) the frame starts a new stream of the session: accepted,
  and the session is reset (reason ``restart``). A ``seq`` ahead by more than
  ``max_seq_jump`` (2**20, hours at any frame rate) is a restart too, so no single frame
  (``seq = 2**64 - 1``, a far-future ``t``) can lock a session: the real device's next
  frame is then behind in ``seq`` and either ahead in ``t`` or more than 1 s behind, and
  restarts the stream again (at worst ``stale_seq`` for the 1 s until its ``t`` passes a
  spoofed ``t``). Without CURVE anyone can send any session's frames anyway; with it, a
  session belongs to the client key that started it (below);
* a gap of more than ``gap_reset_s`` (1 s) between received frames, or a device clock ``t``
  that jumps by more than that or runs backwards, resets the session (its Θ and GRU state are
  re-initialised from the next fitted frame);
* a session silent for ``forget_s`` (60 s) is forgotten: its next frame starts a new session
  (``seq`` may then start again from anything);
* at most ``max_sessions`` (256) live sessions. At the cap, a frame of a *new* session is
  rejected with reason ``session_limit`` (after forgetting the silent ones); live sessions are
  never evicted for a newcomer, so a flood of made-up session ids cannot knock real users
  off. A slot frees when a session has been silent for ``forget_s``.
* with CURVE, frames carry the sender's client key (ZeroMQ's ``User-Id``, ``owner`` here): a
  session belongs to the key that started it, other keys' frames for it are rejected
  (``session_taken``), and one key holds at most ``max_sessions_per_client`` (16) live
  sessions (``client_quota``), so one client can neither take over nor squat all slots.
  Without CURVE ``owner`` is ``None`` and neither rule applies.

Rejected frames change nothing (so recordings keep accepted frames only, and a replay of
them takes the same decisions). ``events`` (when set to a list) receives ``(kind, session,
detail)`` for ``started``, ``forgotten`` (the server's log lines).
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
    max_seq_jump: int = 1 << 20
    """A ``seq`` ahead of the last by more than this starts a new stream (``restart``)."""
    max_sessions_per_client: int = 16
    """With CURVE: live sessions one client key may hold (``client_quota`` beyond)."""


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
    owner: str | None = None  # the CURVE client key (z85) that started it; None without CURVE
    silent: bool = False  # reported silent (no frame for gap_reset_s) since its last frame
    isolated_until: int = 0  # fitted alone until then (a tick of it alone failed; core.fault)
    need_reset: bool = True
    reset_reason: str = "first"
    profile: object | None = None  # calibration.profile.Profile in use
    stream: StreamState = field(default_factory=StreamState)
    received: int = 0
    fitted: int = 0
    dropped: int = 0
    rejected: int = 0
    resets: int = 0
    restarts: int = 0
    diverged: int = 0
    last_fitted_seq: int | None = None
    latency_ns: Samples = field(default_factory=lambda: Samples(2048))
    rate_mark: tuple[int, int] | None = None  # (t, received) at the last status
    period_ns: int = 0  # averaged device-time step between its frames (0: not known yet)


class SessionTable:
    """The live sessions, in order of their first frame (the batch order of every tick)."""

    def __init__(self, rules: SessionRules | None = None):
        self.rules = rules = rules or SessionRules()
        self.sessions: dict[str, Session] = {}
        self.forgotten = 0
        self.restarts = 0
        self.per_owner: dict[str, int] = {}
        self.events: list | None = None
        self._gap_ns = int(rules.gap_reset_s * NS_PER_S)
        self._forget_ns = int(rules.forget_s * NS_PER_S)

    def __len__(self) -> int:
        return len(self.sessions)

    def get(self, session: str) -> Session | None:
        return self.sessions.get(session)

    def accept(self, frame: Frame, t_recv: int, payload: bytes = b"",
               owner: str | None = None) -> Session:
        """Take a validated frame received at ``t_recv`` from client key ``owner`` (CURVE's
        ``User-Id``; ``None`` without CURVE); raises :class:`Rejected` with ``stale_seq``,
        ``session_limit``, ``session_taken`` or ``client_quota`` (then nothing changed)."""
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
            if owner is not None and \
                    self.per_owner.get(owner, 0) >= self.rules.max_sessions_per_client:
                raise Rejected("client_quota", f"{self.rules.max_sessions_per_client} live "
                               "sessions for this client key", frame.session)
            s = Session(frame.session, t_recv, t_recv, frame.seq, frame.t, owner=owner)
            self.sessions[frame.session] = s
            if owner is not None:
                self.per_owner[owner] = self.per_owner.get(owner, 0) + 1
            self._event("started", s.id, "" if owner is None else f"key {owner[:8]}")
        else:
            if owner != s.owner:
                raise Rejected("session_taken", "the session belongs to another client key",
                               frame.session)
            d_seq, d_t = frame.seq - s.last_seq, frame.t - s.last_t
            if d_seq <= 0 and -self._gap_ns <= d_t <= 0:
                s.rejected += 1
                raise Rejected("stale_seq", f"seq {frame.seq} <= {s.last_seq}", frame.session)
            if d_seq <= 0 or d_seq > self.rules.max_seq_jump:
                s.need_reset, s.reset_reason = True, "restart"
                s.restarts += 1
                self.restarts += 1
            elif t_recv - s.last_recv > self._gap_ns or not 0 <= d_t <= self._gap_ns:
                s.need_reset, s.reset_reason = True, "gap"
            elif d_t > 0:  # the device's frame period (per seq step: frames it skipped)
                step = d_t // d_seq
                s.period_ns = step if s.period_ns == 0 else s.period_ns + (step - s.period_ns) // 8
        if s.pending is not None:
            s.dropped += 1
        s.pending = Pending(frame, t_recv, payload)
        s.last_seq, s.last_t, s.last_recv = frame.seq, frame.t, t_recv
        s.silent = False
        s.received += 1
        return s

    def _event(self, kind: str, session: str, detail: str = "") -> None:
        if self.events is not None:
            self.events.append((kind, session, detail))

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

    def silent(self, now: int) -> list[Session]:
        """Sessions that became silent (no frame for ``gap_reset_s``) since the last call."""
        out = []
        for s in self.sessions.values():
            if not s.silent and now - s.last_recv > self._gap_ns:
                s.silent = True
                out.append(s)
        return out

    def _forget(self, session: str) -> None:
        s = self.sessions.pop(session)
        self.forgotten += 1
        if s.owner is not None:
            n = self.per_owner.get(s.owner, 1) - 1
            if n > 0:
                self.per_owner[s.owner] = n
            else:
                self.per_owner.pop(s.owner, None)
        self._event("forgotten", session, f"silent {self.rules.forget_s:g} s")
