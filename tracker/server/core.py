"""The tracker's per-tick logic, free of sockets and clocks: live and replay.

Drive it with two calls (times are server monotonic ns, supplied by the caller)::

    core.receive(payload, t_recv)   # validate, count rejections, latest frame wins
    out = core.tick(t_now)          # fit every session with a new frame as ONE batch

The live server (``tracker.server.loop``) calls ``receive`` from the worker reading its
socket and ``tick`` from the worker in the tick role (splitting it as ``begin_tick`` under its
lock and ``run_tick`` outside it); ``tracker replay`` calls them with the recorded receive
and tick times, and reaches the same decisions and the same poses. The fit itself is
``tracker.stream.fit_tick``, which offline evaluation (``trainer.eval``) calls too.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import msgpack
import torch

from engines.base import Engine, FitBatch
from tracker.protocol import REJECT_REASONS, Frame, Rejected, parse_frame
from tracker.server.pacing import Pacer
from tracker.server.profiles import DefaultProfiles, ProfileTensors
from tracker.server.publish import echo_payload, pose_messages
from tracker.server.samples import Samples, percentiles_ms
from tracker.server.sessions import Pending, Session, SessionRules, SessionTable
from tracker.server.skeleton import encode_skeleton, skeleton_message, wanted
from tracker.stream import StreamState, fit_tick, frames_to_signals

TIMING_WINDOW = 8192
"""The status's timing percentiles (``fit_ms`` over ticks; ``latency_ms``, ``queue_ms``,
``overhead_ms`` over frames) are over this many of the latest values."""

ISOLATE_S = 10.0
"""A session whose tick failed on its own is fitted alone for this long (:meth:`TrackerCore.
fault`)."""


@dataclass
class TickInput:
    """What one tick fits: ``items`` in batch order, and the sessions whose profile changed
    (recorded so a replay applies them at the same tick)."""

    t: int
    items: list[tuple[Session, Pending]]
    resets: list[bool]
    profile_changes: list[tuple[str, object]] = field(default_factory=list)
    level: int = 0
    """Which fit: 0 the full fit, k the engine's k-th light fit (``Engine.rungs``, fewer
    iterations; ``tracker.server.pacing``); past the engine's lightest, its lightest."""


@dataclass
class PoseOut:
    """A pose to publish: ``msg`` lacks ``t_pub`` (stamped when sent); ``payload`` is the
    ingest payload it answers and ``frame`` that payload validated (the ``frame/<session>``
    echo is :meth:`echo`, re-encoded from ``frame``, never the raw payload)."""

    session: str
    msg: dict
    payload: bytes
    frame: Frame | None = None

    def echo(self) -> bytes:
        """The ``frame/<session>`` payload (``tracker.server.publish.echo_payload``)."""
        return echo_payload(self.frame, self.payload) if self.frame is not None else b""


@dataclass
class TickOutput:
    t: int
    poses: list[PoseOut]
    fit_ns: int
    batch: int
    skeletons: list[tuple[str, bytes]] = field(default_factory=list)
    """``(session, packed skeleton)`` of the sessions that started or changed profile in this
    tick: published before the poses (``skeleton/<session>``)."""
    level: int = 0
    """The fit the tick ran (``TickInput.level``; the engine's rung, so never past its
    lightest)."""
    settle: Callable[[], None] | None = None
    """The tick's accounting (counts, fit times for the status and the pacer), not yet done:
    :meth:`TrackerCore.run_tick` with ``settle=False`` leaves it to the caller, to run once the
    poses are sent (nothing in it changes a message)."""


class TrackerCore:
    """Sessions + engine + profiles. Not thread-safe: the live loop serialises the calls
    that touch sessions (``receive``, ``begin_tick``, ``status``) with one lock."""

    def __init__(self, engine: Engine, visibility: str = "device", profiles=None,
                 rules: SessionRules | None = None, model_info: dict | None = None,
                 pacer: Pacer | None = None):
        self.engine = engine
        self.pacer = pacer if pacer is not None else Pacer()
        """Chooses each tick's fit when the engine has light ones (``Engine.rungs``)."""
        self.body = engine.fitter.body
        self.visibility = visibility
        self.profiles = profiles if profiles is not None else DefaultProfiles(self.body)
        self.table = SessionTable(rules or SessionRules())
        self.model_info = model_info or {}
        self.rejected = Counter({r: 0 for r in REJECT_REASONS})
        self.totals = Counter(received=0, fitted=0, dropped=0, resets=0, diverged=0,
                              non_finite_output=0, faults=0, light_ticks=0)
        self.rung_ticks: Counter = Counter()
        """Ticks per iteration count (the status's ``ticks_by_iterations``)."""
        self.events: list | None = None
        """``None``, or a list/deque that gets ``(kind, session, detail)`` for ``started``,
        ``reset`` (detail: the reason), ``silent``, ``forgotten`` (the server's log)."""
        self.ticks = 0
        self.ticks_begun = 0
        self.max_age_ticks = 0
        # The timing windows are equal (the last 8,192 ticks or frames): with one session the
        # status's ``fit_ms`` and ``latency_ms`` then describe the same ticks.
        self.fit_ns = Samples(TIMING_WINDOW)
        self.queue_ns = Samples(TIMING_WINDOW)
        self.overhead_ns = Samples(TIMING_WINDOW)
        self.batch_sizes = Samples(1024)
        self.latency_ns = Samples(TIMING_WINDOW)
        self._tensors = ProfileTensors(self.body.num_betas)
        self.skeletons: dict[str, bytes] = {}
        """The current packed ``skeleton/<session>`` message of each session (written by
        :meth:`run_tick`; :meth:`skeletons_for` answers late subscribers from it)."""

    # ------------------------------------------------------------------ ingest
    def receive(self, payload: bytes, t_recv: int, owner: str | None = None) -> Frame | None:
        """Validate one ingest payload received at ``t_recv`` (from CURVE client key
        ``owner``, if any); the frame, or ``None`` when it was rejected (counted by reason,
        per session when the session is known)."""
        try:
            frame = parse_frame(payload)
        except Rejected as exc:
            self.reject(exc.reason, exc.session)
            return None
        return self.receive_frame(frame, t_recv, payload, owner)

    def receive_frame(self, frame: Frame, t_recv: int, payload: bytes = b"",
                      owner: str | None = None) -> Frame | None:
        """Like :meth:`receive` for an already parsed frame (what :meth:`receive` calls)."""
        old = self.table.get(frame.session)
        old_dropped = old.dropped if old is not None else 0
        try:
            s = self.table.accept(frame, t_recv, payload, owner)
        except Rejected as exc:
            self.rejected[exc.reason] += 1
            return None
        self.totals["received"] += 1
        self.totals["dropped"] += s.dropped - (old_dropped if s is old else 0)
        s.pending.tick = self.ticks_begun
        return frame

    def reject(self, reason: str, session: str | None = None) -> None:
        """Count a rejection (the live loop uses it for ``oversize`` seen by ZeroMQ)."""
        self.rejected[reason] += 1
        s = self.table.get(session) if session else None
        if s is not None:
            s.rejected += 1

    # ------------------------------------------------------------------ tick
    def begin_tick(self, t_now: int, level: int | None = None) -> TickInput | None:
        """Take every pending frame (forgetting silent sessions first); ``None`` when none.

        ``level``: the fit to run (``TickInput.level``; a replay passes the recorded choice);
        ``None``: the pacer chooses (``tracker.server.pacing``), the full fit when the engine
        has no light one."""
        for sid in self.table.expire(t_now):
            self.skeletons.pop(sid, None)
        if len(self.skeletons) > len(self.table):  # forgotten while receiving
            for sid in [k for k in self.skeletons if self.table.get(k) is None]:
                del self.skeletons[sid]
        items = self.table.take_pending()
        if not items:
            return None
        self.ticks_begun += 1
        for _, p in items:  # 1: fitted by the first tick after it arrived (latest wins)
            self.max_age_ticks = max(self.max_age_ticks, self.ticks_begun - p.tick)
        changes = []
        for s, _ in items:
            profile = self.profiles.get(s.id)
            if s.profile is None or (profile is not s.profile and profile != s.profile):
                if s.profile is not None:
                    s.need_reset, s.reset_reason = True, "profile"
                s.profile = profile
                changes.append((s.id, profile))
        # Consumed here, under the live loop's lock: a gap seen by the reader while this
        # tick fits belongs to the next frame, and is kept for the next tick.
        resets = [s.need_reset or s.stream.fit is None for s, _ in items]
        for s, _ in items:
            if s.need_reset and s.stream.fit is not None and self.events is not None:
                self.events.append(("reset", s.id, s.reset_reason))
            s.need_reset = False
        if level is None:
            levels = len(self.engine.rungs)
            level = 0 if levels == 1 else self.pacer.choose(
                t_now, len(items), min((s.period_ns for s, _ in items if s.period_ns > 0),
                                       default=0), levels)
        return TickInput(t_now, items, resets, changes, int(level))

    def fault(self, tin: TickInput, isolate: bool = False) -> list[str]:
        """A tick failed (an exception anywhere in fitting or publishing it): forget the fit
        state of its sessions, so that their next frames start afresh (``reset``, reason
        ``fault``); counted in ``faults``. ``isolate``: the tick held one session, which is
        then fitted alone (:meth:`split`) for ``ISOLATE_S`` (10 s) after this fault, so that
        a session that keeps failing cannot reset the others. Returns the session ids."""
        self.totals["faults"] += 1
        ids = []
        for s, _ in tin.items:
            s.stream = StreamState()
            s.need_reset, s.reset_reason = True, "fault"
            if self.events is not None:
                self.events.append(("reset", s.id, "fault"))
            if isolate:
                s.isolated_until = tin.t + int(ISOLATE_S * 1e9)
            ids.append(s.id)
        return ids

    def retry_alone(self, tin: TickInput) -> list[TickInput]:
        """After :meth:`fault` of a tick of several sessions: one tick per session, each
        starting afresh (its pose says ``reset``), to fit what can be fitted and find the
        session that fails."""
        out = []
        for s, p in tin.items:
            s.need_reset = False
            out.append(TickInput(tin.t, [(s, p)], [True],
                                 [c for c in tin.profile_changes if c[0] == s.id], tin.level))
        return out

    def split(self, tin: TickInput) -> list[TickInput]:
        """``tin`` as the batches to fit: the sessions isolated after a fault each alone
        (after the rest), the rest as one batch. Just ``[tin]`` when none is isolated (the
        usual case, and always in a replay: isolation follows live faults only)."""
        alone = [i for i, (s, _) in enumerate(tin.items) if s.isolated_until > tin.t]
        if not alone:
            return [tin]
        rest = [i for i in range(len(tin.items)) if i not in alone]
        groups = ([rest] if rest else []) + [[i] for i in alone]
        out = []
        for g in groups:
            ids = {tin.items[i][0].id for i in g}
            out.append(TickInput(tin.t, [tin.items[i] for i in g], [tin.resets[i] for i in g],
                                 [c for c in tin.profile_changes if c[0] in ids], tin.level))
        return out

    def enable_events(self, maxlen: int = 4096) -> deque:
        """Collect ``events`` (table and core) in a bounded deque; returns it."""
        self.events = self.table.events = deque(maxlen=maxlen)
        return self.events

    def check_silent(self, t_now: int) -> None:
        """Report (``events``) the sessions without a frame for ``gap_reset_s``."""
        for s in self.table.silent(t_now):
            if self.events is not None:
                self.events.append(("silent", s.id, f"{(t_now - s.last_recv) / 1e9:.1f} s"))

    def run_tick(self, tin: TickInput, settle: bool = True) -> TickOutput:
        """Fit ``tin`` as one batch (one ``engine.fit`` call, on the rung ``tin.level``) and
        build its pose messages.

        ``settle=False``: the tick's accounting is left in ``TickOutput.settle`` (the live loop
        runs it after sending the poses: it is not on a frame's way to its pose); it must run
        before the next tick begins (a diverged session's reset is set there)."""
        sessions = [s for s, _ in tin.items]
        frames = [p.frame for _, p in tin.items]
        B = len(frames)
        betas, T_hmd, floor = self._tensors.stack([s.profile for s in sessions])
        sig = frames_to_signals(frames, self.visibility, floor=floor.numpy())
        rungs = self.engine.rungs
        level = min(tin.level, len(rungs) - 1)
        engine = rungs[level]
        res, resets, fit_ns = fit_tick(engine, [s.stream for s in sessions], sig, betas,
                                       T_hmd, [f.t for f in frames], tin.resets, floor)
        ok = [not s.stream.diverged for s in sessions]  # fit_tick's reading of res.ok
        heads = []
        for s, (_, p), r, good in zip(sessions, tin.items, resets, ok, strict=True):
            heads.append({"session": s.id, "seq": p.frame.seq, "t": p.frame.t,
                          "t_recv": p.t_recv, "state": "reset" if (r or not good) else "ok"})
        msgs = pose_messages(res, betas, sig.visible, heads)
        poses = [PoseOut(s.id, msg, p.payload, p.frame)
                 for s, (_, p), msg in zip(sessions, tin.items, msgs, strict=True)
                 if msg is not None]
        skeletons = []
        changed = {sid for sid, _ in tin.profile_changes}
        for i, s in enumerate(sessions):
            if s.id in changed or s.id not in self.skeletons:
                data = encode_skeleton(skeleton_message(self.body, s.id, betas[i]))
                self.skeletons[s.id] = data
                skeletons.append((s.id, data))

        def account() -> None:
            self.pacer.observe(level, B, fit_ns)
            self.totals["light_ticks"] += level > 0
            self.rung_ticks[engine.iterations[0]] += 1
            for i, (s, (_, p), msg) in enumerate(zip(sessions, tin.items, msgs, strict=True)):
                s.fitted += 1
                s.last_fitted_seq = p.frame.seq
                if resets[i]:
                    s.resets += 1
                    self.totals["resets"] += 1
                if not ok[i] or msg is None:
                    s.need_reset, s.reset_reason = True, "diverged"
                    s.diverged += 1
                    self.totals["diverged"] += 1
                if msg is None:
                    self.totals["non_finite_output"] += 1
            self.ticks += 1
            self.totals["fitted"] += B
            self.fit_ns.append(fit_ns)
            self.batch_sizes.append(B)

        if settle:
            account()
            return TickOutput(tin.t, poses, fit_ns, B, skeletons, level)
        return TickOutput(tin.t, poses, fit_ns, B, skeletons, level, account)

    def skeletons_for(self, prefixes: list[bytes]) -> list[tuple[str, bytes]]:
        """``(session, packed skeleton)`` of every live session with a skeleton whose topic
        one of the subscription ``prefixes`` covers (the answer to late subscribers)."""
        if not prefixes:
            return []
        return [(sid, data) for sid, data in self.skeletons.items()
                if self.table.get(sid) is not None and wanted(prefixes, sid)]

    def warm_up(self, sizes=(1,)) -> None:
        """Run the engine once per batch size on a synthetic frame (compiled engines build or
        load their artifacts on first use); touches no session."""
        from tracker.server.faults import good_message

        frame = parse_frame(msgpack.packb(good_message("warm-up")))
        engines = self.engine.rungs
        for B in sizes:
            sig = frames_to_signals([frame] * B, self.visibility)
            betas, T_hmd, _ = self._tensors.stack([self.profiles.get("warm-up")] * B)
            batch = FitBatch(sig, betas, T_hmd, self.engine.initial_state(B),
                             torch.ones(B, dtype=torch.bool), torch.full((B,), 1.0 / 90))
            for engine in engines:  # the light fits too: their first ticks come under load
                engine.fit(batch if engine.device.type == "cpu" else batch.to(engine.device))

    def tick(self, t_now: int, level: int | None = None) -> TickOutput | None:
        """``begin_tick`` + ``run_tick`` (replay and tests)."""
        tin = self.begin_tick(t_now, level)
        return None if tin is None else self.run_tick(tin)

    def note_published(self, session: str, t_recv: int, t_pub: int, t_tick: int | None = None,
                       fit_ns: int | None = None) -> None:
        """Record ``t_pub - t_recv`` for the status percentiles; with the tick's time and fit
        duration also its parts: ``queue`` (``t_tick - t_recv``, waiting for the tick) and
        ``overhead`` (``t_pub - t_tick - fit``: batching, pose messages, sending)."""
        lat = t_pub - t_recv
        self.latency_ns.append(lat)
        if t_tick is not None and fit_ns is not None:
            self.queue_ns.append(t_tick - t_recv)
            self.overhead_ns.append(t_pub - t_tick - fit_ns)
        s = self.table.get(session)
        if s is not None:
            s.latency_ns.append(lat)

    # ------------------------------------------------------------------ status
    def status(self, t_now: int, extra: dict | None = None) -> dict:
        """The ``status`` message (see the README's protocol section)."""
        sessions = {}
        for s in self.table.sessions.values():
            t0, n0 = s.rate_mark or (s.first_recv, 0)
            rate = (s.received - n0) * 1e9 / (t_now - t0) if t_now > t0 else 0.0
            s.rate_mark = (t_now, s.received)
            sessions[s.id] = {
                "rate_hz": rate, "last_seq": s.last_seq, "last_fitted_seq": s.last_fitted_seq,
                "received": s.received, "fitted": s.fitted, "dropped": s.dropped,
                "rejected": s.rejected, "resets": s.resets, "restarts": s.restarts,
                "diverged": s.diverged,
                "silent_s": (t_now - s.last_recv) / 1e9, "latency_ms": percentiles_ms(s.latency_ns),
            }
        bs = self.batch_sizes.values()
        msg = {
            "v": 1, "t": int(t_now), "engine": self.engine.name, "model": self.model_info,
            "iterations": {"full": self.engine.iterations[0],
                           "light": list(self.engine.iterations[1:])},
            "ticks_by_iterations": {str(n): c for n, c in sorted(self.rung_ticks.items(),
                                                                 reverse=True)},
            "pacing": self.pacer.report(len(self.engine.rungs)),
            "visibility": self.visibility, "live_sessions": len(self.table),
            "forgotten_sessions": self.table.forgotten, "sessions": sessions,
            "rejected": dict(self.rejected), **dict(self.totals),
            "restarts": self.table.restarts, "ticks": self.ticks,
            "fit_ms": percentiles_ms(self.fit_ns),
            "latency_ms": percentiles_ms(self.latency_ns),
            "queue_ms": percentiles_ms(self.queue_ns),
            "overhead_ms": percentiles_ms(self.overhead_ns),
            "max_age_ticks": self.max_age_ticks,
            "batch": {"mean": float(bs.mean()) if bs.size else 0.0,
                      "max": int(bs.max()) if bs.size else 0},
        }
        msg.update(extra or {})
        return msg
