"""The tracker's per-tick logic, free of sockets and clocks: live and replay.

Drive it with two calls (times are server monotonic ns, supplied by the caller)::

    core.receive(payload, t_recv)   # validate, count rejections, latest frame wins
    out = core.tick(t_now)          # fit every session with a new frame as ONE batch

The live server (``tracker.server.loop``) calls ``receive`` from its receiver thread and
``tick`` from its main loop (splitting it as ``begin_tick`` under its lock and ``run_tick``
outside it); ``tracker replay`` calls them with the recorded receive and tick times, and
reaches the same decisions and the same poses. The fit itself is ``tracker.stream.fit_tick``,
which offline evaluation (``trainer.eval``) calls too.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import msgpack
import torch

from engines.base import Engine, FitBatch
from tracker.protocol import REJECT_REASONS, Frame, Rejected, parse_frame
from tracker.server.profiles import DefaultProfiles, ProfileTensors
from tracker.server.publish import pose_messages
from tracker.server.samples import Samples, percentiles_ms
from tracker.server.sessions import Pending, Session, SessionRules, SessionTable
from tracker.stream import fit_tick, frames_to_signals


@dataclass
class TickInput:
    """What one tick fits: ``items`` in batch order, and the sessions whose profile changed
    (recorded so a replay applies them at the same tick)."""

    t: int
    items: list[tuple[Session, Pending]]
    resets: list[bool]
    profile_changes: list[tuple[str, object]] = field(default_factory=list)


@dataclass
class PoseOut:
    """A pose to publish: ``msg`` lacks ``t_pub`` (stamped when sent); ``payload`` is the
    ingest payload it answers (for the ``frame/<session>`` echo)."""

    session: str
    msg: dict
    payload: bytes


@dataclass
class TickOutput:
    t: int
    poses: list[PoseOut]
    fit_ns: int
    batch: int


class TrackerCore:
    """Sessions + engine + profiles. Not thread-safe: the live loop serialises the calls
    that touch sessions (``receive``, ``begin_tick``, ``status``) with one lock."""

    def __init__(self, engine: Engine, visibility: str = "device", profiles=None,
                 rules: SessionRules | None = None, model_info: dict | None = None):
        self.engine = engine
        self.body = engine.fitter.body
        self.visibility = visibility
        self.profiles = profiles if profiles is not None else DefaultProfiles(self.body)
        self.table = SessionTable(rules or SessionRules())
        self.model_info = model_info or {}
        self.rejected = Counter({r: 0 for r in REJECT_REASONS})
        self.totals = Counter(received=0, fitted=0, dropped=0, resets=0, diverged=0,
                              non_finite_output=0)
        self.ticks = 0
        self.ticks_begun = 0
        self.max_age_ticks = 0
        self.fit_ns = Samples(1024)
        self.queue_ns = Samples(8192)
        self.overhead_ns = Samples(8192)
        self.batch_sizes = Samples(1024)
        self.latency_ns = Samples(8192)
        self._tensors = ProfileTensors(self.body.num_betas)

    # ------------------------------------------------------------------ ingest
    def receive(self, payload: bytes, t_recv: int) -> Frame | None:
        """Validate one ingest payload received at ``t_recv``; the frame, or ``None`` when it
        was rejected (counted by reason, per session when the session is known)."""
        try:
            frame = parse_frame(payload)
        except Rejected as exc:
            self.reject(exc.reason, exc.session)
            return None
        return self.receive_frame(frame, t_recv, payload)

    def receive_frame(self, frame: Frame, t_recv: int, payload: bytes = b"") -> Frame | None:
        """Like :meth:`receive` for an already parsed frame (what :meth:`receive` calls)."""
        old = self.table.get(frame.session)
        old_dropped = old.dropped if old is not None else 0
        try:
            s = self.table.accept(frame, t_recv, payload)
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
    def begin_tick(self, t_now: int) -> TickInput | None:
        """Take every pending frame (forgetting silent sessions first); ``None`` when none."""
        self.table.expire(t_now)
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
        # Consumed here, under the live loop's lock: a gap seen by the receiver while this
        # tick fits belongs to the next frame, and is kept for the next tick.
        resets = [s.need_reset or s.stream.fit is None for s, _ in items]
        for s, _ in items:
            s.need_reset = False
        return TickInput(t_now, items, resets, changes)

    def run_tick(self, tin: TickInput) -> TickOutput:
        """Fit ``tin`` as one batch (one ``engine.fit`` call) and build its pose messages."""
        dev = self.engine.device
        sessions = [s for s, _ in tin.items]
        frames = [p.frame for _, p in tin.items]
        B = len(frames)
        betas, T_hmd, floor = self._tensors.stack([s.profile for s in sessions])
        sig = frames_to_signals(frames, self.visibility, floor=floor.numpy())
        res, resets, fit_ns = fit_tick(self.engine, [s.stream for s in sessions], sig, betas,
                                       T_hmd, [f.t for f in frames], tin.resets)
        reset = torch.tensor(resets)

        ok = res.ok.cpu().tolist()
        heads = []
        for s, (_, p), r, good in zip(sessions, tin.items, reset.tolist(), ok, strict=True):
            heads.append({"session": s.id, "seq": p.frame.seq, "t": p.frame.t,
                          "t_recv": p.t_recv, "state": "reset" if (r or not good) else "ok"})
        msgs = pose_messages(self.body, res.theta, betas.to(dev), floor.to(dev),
                             sig.visible.to(dev), res.residual, heads)
        poses = []
        for i, (s, (_, p), msg) in enumerate(zip(sessions, tin.items, msgs, strict=True)):
            s.fitted += 1
            s.last_fitted_seq = p.frame.seq
            if bool(reset[i]):
                s.resets += 1
                self.totals["resets"] += 1
            if not ok[i] or msg is None:
                s.need_reset, s.reset_reason = True, "diverged"
                s.diverged += 1
                self.totals["diverged"] += 1
            if msg is None:
                self.totals["non_finite_output"] += 1
                continue
            poses.append(PoseOut(s.id, msg, p.payload))
        self.ticks += 1
        self.totals["fitted"] += B
        self.fit_ns.append(fit_ns)
        self.batch_sizes.append(B)
        return TickOutput(tin.t, poses, fit_ns, B)

    def warm_up(self, sizes=(1,)) -> None:
        """Run the engine once per batch size on a synthetic frame (compiled engines build or
        load their artifacts on first use); touches no session."""
        from tracker.server.faults import good_message

        frame = parse_frame(msgpack.packb(good_message("warm-up")))
        for B in sizes:
            sig = frames_to_signals([frame] * B, self.visibility)
            betas, T_hmd, _ = self._tensors.stack([self.profiles.get("warm-up")] * B)
            batch = FitBatch(sig, betas, T_hmd, self.engine.initial_state(B),
                             torch.ones(B, dtype=torch.bool), torch.full((B,), 1.0 / 90))
            self.engine.fit(batch if self.engine.device.type == "cpu"
                            else batch.to(self.engine.device))

    def tick(self, t_now: int) -> TickOutput | None:
        """``begin_tick`` + ``run_tick`` (replay and tests)."""
        tin = self.begin_tick(t_now)
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
                "rejected": s.rejected, "resets": s.resets, "diverged": s.diverged,
                "silent_s": (t_now - s.last_recv) / 1e9, "latency_ms": percentiles_ms(s.latency_ns),
            }
        bs = self.batch_sizes.values()
        msg = {
            "v": 1, "t": int(t_now), "engine": self.engine.name, "model": self.model_info,
            "visibility": self.visibility, "live_sessions": len(self.table),
            "forgotten_sessions": self.table.forgotten, "sessions": sessions,
            "rejected": dict(self.rejected), **dict(self.totals), "ticks": self.ticks,
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
