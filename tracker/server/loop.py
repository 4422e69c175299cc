"""The live server: ZeroMQ sockets, two workers and the clock.

Threads: two workers (the thread that calls :meth:`Server.serve` and ``fit-helper``) take
turns at two roles (leader/follower), so that the thread that reads a frame fits it, with no
hand-over to a sleeping thread on its way to its pose:

* the *reader* (whoever holds ``_reader``) polls the ingest SUB (and its socket monitor),
  stamps every message with ``t_recv = time.monotonic_ns()`` *as it is read*, and hands it
  to :meth:`TrackerCore.receive` (latest frame wins there). Once a frame is pending (or the
  status, the housekeeping or a look at new subscriptions is due) and the other worker is not
  ticking, it takes the *tick* role and lets the other worker read;
* the *ticker* takes all pending frames at once (``begin_tick``), fits them as one batch
  (``run_tick``, outside the lock, so frames keep being received and stamped meanwhile) and
  publishes; it goes on while frames arrived during its tick, then gives the role up. Only
  the ticker touches the output XPUB, so it also reads new subscriptions (at every tick, at
  least every ``SUBSCRIPTION_POLL_S``) and answers those that cover a ``skeleton/<session>``
  topic with the current skeletons; and it sends the ``status`` about once a second.

Before this (session 15) a receiver thread read and then woke a tick-loop thread: a sleeping
thread's wake-up on every frame's way (``queue_ms`` p50 0.21-0.31 ms against 0.15-0.25
ms now, on this project's 2-core VM: ``docs/serving.md``, session 15). A worker looks at
``stop`` at least every 0.1 s while it waits or reads, and after each tick.

``t_recv`` is stamped under the same lock as ``begin_tick`` reads the pending frames, so a
frame is in a tick exactly when ``t_recv`` < the tick time: a replay of the recorded times
rebuilds the same batches.

Bounds (``tracker.server.ingest``): a message over 64 KiB in all or of more than 4 frames is
dropped frame by frame (``oversize``); the ingest high-water mark is small (16 messages per
peer); only accepted frames are recorded (rejected ones are counted, ``recorder.
rejected_not_recorded`` in the status); the recorder's queue is bounded
(``tracker.recording``).

Faults: an exception while a tick is fitted or published resets that tick's sessions
(``TrackerCore.fault``), is logged and counted (``faults``), and the loop goes on: a batch of
several sessions is fitted again session by session at once (each afresh), and a session
that fails alone is then fitted apart from the others for 10 s, so one bad session cannot
keep resetting everyone. An exception while the reader handles one message drops that
message (``ingest_errors``). Anything else escaping a worker is fatal, as is, with CURVE, the
end of the ZAP authenticator thread (the ticker watches it): :meth:`Server.serve` returns
with ``fatal`` set (``tracker serve`` then exits 1) instead of serving blind or (without
ZAP) unauthenticated.

Oversize messages: ZeroMQ drops the connection of a peer that sends a message over
``ZMQ_MAXMSGSIZE`` (64 KiB) and reports only a disconnect, without a reason. A PUB peer
reconnects by itself (after ``ZMQ_RECONNECT_IVL``, 100-200 ms by default), a peer that quit
does not; so a disconnect followed within 0.5 s by a successful handshake counts as one
``oversize`` rejection. ZeroMQ's monitor gives no peer identity, so this is exact only when
no other peer quits and another connects within the same 0.5 s (and a peer that sends an
oversize message and quits at once is not counted). ``disconnects`` in the status counts
every dropped connection.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass

import msgpack
import zmq
from zmq.utils.monitor import recv_monitor_message

from engines.background import BackgroundBuild
from tracker.protocol import (
    DEFAULT_INGEST,
    DEFAULT_PUBLISH,
    STATUS_TOPIC,
    encode_pose,
    frame_topic,
    pose_topic,
    skeleton_topic,
)
from tracker.recording import ENGINE, INGEST, PROFILE, STATUS, TICK, RecordingWriter
from tracker.server import ingest
from tracker.server.core import TickInput, TickOutput, TrackerCore
from tracker.server.faults import FaultInjection, InjectedFault
from tracker.server.profiles import encode_profile
from tracker.server.publish import finish_pose
from tracker.server.security import (
    CurveKeys,
    make_curve_server,
    start_authenticator,
    stop_authenticator,
)
from tracker.server.serve_log import ServeLog, counts
from tracker.server.subscriptions import Subscriptions

RECONNECT_WINDOW_NS = 500_000_000
SUBSCRIPTION_POLL_S = 0.05
"""The ticker reads new subscriptions at least this often (and at every tick): a late
subscriber's ``skeleton/<session>`` arrives within it (``tracker.server.skeleton``)."""


@dataclass
class ServerConfig:
    ingest: str = DEFAULT_INGEST
    publish: str = DEFAULT_PUBLISH
    status_period_s: float = 1.0
    keys: CurveKeys | None = None
    recorder: RecordingWriter | None = None
    echo_frames: bool = True
    """Also publish ``frame/<session>`` (the fitted frame, re-encoded) for viewers; encoded
    only while some subscriber's prefix covers that topic (``tracker.server.subscriptions``)."""
    log: ServeLog | None = None
    """Where session events, periodic totals and errors go (``None``: a quiet log)."""
    faults: FaultInjection = FaultInjection()
    """Faults to commit on purpose (tests, ``TRACKER_SERVE_FAULTS``)."""
    engine_build: BackgroundBuild | None = None
    """A compiled engine being built in the background: polled between ticks, and the core
    switches to it when it is ready (``engines.background``)."""


class Server:
    """Bind, then :meth:`serve` until ``stop`` is set; :meth:`close` always."""

    def __init__(self, core: TrackerCore, cfg: ServerConfig, clock=time.monotonic_ns):
        self.core, self.cfg, self.clock = core, cfg, clock
        self.lock = threading.Lock()
        self._stop = threading.Event()  # set by close() and when serve() ends
        self._stop_asked = threading.Event()  # serve()'s ``stop``
        self._reader = threading.Lock()  # held by the worker that reads the ingest socket
        self._ticking = False  # a worker has the tick role (under ``lock``)
        self._period = int(cfg.status_period_s * 1e9)
        self._next_status = clock() + self._period
        self._due = 0  # when the status, the housekeeping or a subscription read is due
        self._wake_reader = False  # the reader waits for the tick's end (under ``lock``)
        self.ctx = zmq.Context()
        self.auth = self.monitor = self.ingest = self.out = None
        self.conn = {"connections": 0, "disconnects": 0, "auth_failures": 0,
                     "handshake_failures": 0}
        self._pending_disc: deque = deque()
        self._last_fail = 0
        self._started = clock()
        self.log = cfg.log if cfg.log is not None else ServeLog(quiet=True)
        self.fatal: str | None = None
        """Why the server had to stop (a watched thread died), else ``None``."""
        self.ingest_errors = 0
        self.not_recorded = 0
        self.subscriptions = Subscriptions()  # of ``out``; read by the ticker only
        self._errors: deque = deque(maxlen=256)  # (key, text) from the reader
        self._next_housekeeping = 0
        self._rec_error_seen = False
        core.enable_events()
        try:
            if cfg.keys is not None:
                self.auth = start_authenticator(self.ctx, cfg.keys)
            self.ingest = self.ctx.socket(zmq.SUB)
            ingest.configure(self.ingest)
            self.ingest.subscribe(b"")
            # An XPUB sends like a PUB (same filtering, high-water mark and drops) and also
            # hands the server every subscription (VERBOSE: repeated ones too), which is how a
            # late subscriber asks for the skeletons (tracker.server.skeleton).
            self.out = self.ctx.socket(zmq.XPUB)
            self.out.setsockopt(zmq.XPUB_VERBOSE, 1)
            self.out.setsockopt(zmq.LINGER, 200)
            for s in (self.ingest, self.out):
                if cfg.keys is not None:
                    make_curve_server(s, cfg.keys)
            self.monitor = self.ingest.get_monitor_socket()
            self.ingest.bind(cfg.ingest)
            self.out.bind(cfg.publish)
        except Exception:
            self.close()
            raise
        self.ingest_addr = self.ingest.getsockopt_string(zmq.LAST_ENDPOINT)
        self.publish_addr = self.out.getsockopt_string(zmq.LAST_ENDPOINT)
        # The ticker tells a reader that waits for it that its tick is over (``_wake_tx`` is
        # the ticker's end, ``_wake_rx`` the reader's).
        self._wake_rx = self.ctx.socket(zmq.PAIR)
        self._wake_tx = self.ctx.socket(zmq.PAIR)
        for s in (self._wake_rx, self._wake_tx):
            s.setsockopt(zmq.LINGER, 0)
        self._wake_rx.bind(f"inproc://tick-over-{id(self)}")
        self._wake_tx.connect(f"inproc://tick-over-{id(self)}")
        self._poller = zmq.Poller()  # used by the reader only
        for s in (self.ingest, self.monitor, self._wake_rx):
            self._poller.register(s, zmq.POLLIN)
        self._helper = threading.Thread(target=self._work, name="fit-helper", daemon=True)

    # ------------------------------------------------------------------ the two workers
    def serve(self, stop: threading.Event) -> None:
        """Serve until ``stop`` is set (e.g. from a signal handler) or a worker fails
        (``fatal``): the calling thread is one of the two workers, ``fit-helper`` the other.

        The GIL switch interval is lowered to 0.5 ms (Python's default is 5 ms): otherwise a
        worker can wait up to 5 ms for the GIL while the other parses a burst of frames.
        """
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        self._stop_asked = stop
        self._helper.start()
        try:
            self._work()
        finally:
            self._stop.set()  # the helper ends at its next poll (or after its tick)
            if self._helper.is_alive():
                self._helper.join()

    def _stopping(self) -> bool:
        return self._stop.is_set() or self._stop_asked.is_set() or self.fatal is not None

    def _work(self) -> None:
        """A worker: wait to be the reader, read until there is a tick (or the status, the
        housekeeping) to run and nobody runs one, hand the reading over, run it, repeat.
        Anything escaping it is fatal: ``fatal`` says what failed, and both workers stop."""
        role = "ingest"
        try:
            while not self._stopping():
                if not self._reader.acquire(timeout=0.1):
                    continue
                try:
                    ticking = self._read()
                finally:
                    self._reader.release()  # the other worker reads while this one ticks
                if ticking:
                    role = "tick"
                    self._tick_role()
                    role = "ingest"
        except BaseException as exc:  # noqa: BLE001 - reported, then the server stops
            what = (f"{role} failed ({threading.current_thread().name} thread): "
                    f"{type(exc).__name__}: {exc}")
            if not self._stopping():
                self.fatal = what
            else:
                self.log.error(f"while stopping: {what}")
            if role == "tick":
                self._leave_tick_role()

    def _read(self) -> bool:
        """The reader: poll the ingest socket (and its monitor), stamp every message with
        ``t_recv = clock()`` as it is read and hand it to :meth:`TrackerCore.receive` (latest
        frame wins there). Returns ``True`` once this worker has taken the tick role (a frame
        is pending, or something else is due, and the other worker is not ticking), ``False``
        when the server stops."""
        poller, core, clock, rec = self._poller, self.core, self.clock, self.cfg.recorder
        user_id = self.cfg.keys is not None
        fail_on = (self.cfg.faults.receive or "").encode()
        die_on = (self.cfg.faults.ingest_stop or "").encode()
        fresh = False  # a frame accepted since this reader last tried to take the tick role
        while not self._stopping():
            # until something is due (rounded up to the next ms); what falls due while the
            # other worker ticks, it does at its tick's end, or it wakes this reader then
            # (``_wake_rx``) when the reader asked for it (``_take_tick``)
            timeout = -((clock() - self._due) // 1_000_000)
            events = dict(poller.poll(min(timeout, 100) if timeout > 0 else
                                      (100 if self._wake_reader else 0)))
            if self._wake_rx in events:
                self._wake_rx.recv()
            if self.ingest in events:
                first = None  # receive time of the burst's first accepted frame
                for _ in range(10000):
                    try:
                        payload, owner = ingest.read_message(self.ingest, user_id)
                    except zmq.Again:
                        break
                    if die_on and payload and die_on in payload:
                        raise InjectedFault("ingest: injected fault")
                    try:
                        with self.lock:
                            t = clock()
                            if payload is None:
                                core.reject("oversize")
                                continue
                            if fail_on and fail_on in payload:
                                raise InjectedFault("receive: injected fault")
                            ok = core.receive(payload, t, owner) is not None
                            if rec is not None:
                                if ok:
                                    rec.write(INGEST, t, payload)
                                else:
                                    self.not_recorded += 1
                    except Exception as exc:  # one message lost, the reader goes on
                        self.ingest_errors += 1
                        self._errors.append(("ingest", f"ingest: a message raised "
                                             f"{type(exc).__name__}: {exc} (dropped)"))
                        continue
                    if ok:
                        fresh = True
                        first = t if first is None else first
                        if t - first > 1_000_000:  # a long burst: let its tick start
                            if self._take_tick(True):
                                return True
                            first = t  # (the other worker ticks: ask again in 1 ms)
                    if not self.ingest.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                        break  # nothing more waiting: tick now
            if self.monitor in events:
                self._monitor_events()
            if self._take_tick(fresh):
                return True
            fresh = False  # the tick in progress takes it (it looks for pending frames last)
        return False

    def _take_tick(self, fresh: bool) -> bool:
        """Take the tick role when it is free and there is something to do (when something
        is due but the other worker ticks, ask it to wake this reader at its tick's end)."""
        with self.lock:
            if self._stopping() or not (fresh or self.clock() >= self._due):
                return False
            if self._ticking:  # a fresh frame: the ticker looks for pending frames last
                self._wake_reader = self._wake_reader or not fresh
                return False
            self._ticking = True
            return True

    def _monitor_events(self) -> None:
        while True:
            try:
                ev = recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            e, now = ev["event"], self.clock()
            while self._pending_disc and now - self._pending_disc[0] > RECONNECT_WINDOW_NS:
                self._pending_disc.popleft()
            if e == zmq.EVENT_ACCEPTED:
                self.conn["connections"] += 1
            elif e == zmq.EVENT_DISCONNECTED:
                self.conn["connections"] -= 1
                self.conn["disconnects"] += 1
                if now - self._last_fail > 50_000_000:  # not the end of a failed handshake
                    self._pending_disc.append(now)
            elif e == zmq.EVENT_HANDSHAKE_SUCCEEDED and self._pending_disc:
                self._pending_disc.popleft()
                with self.lock:
                    self.core.reject("oversize")
            elif e == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self.conn["auth_failures"] += 1
                self._last_fail = now
            elif e in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
                self.conn["handshake_failures"] += 1
                self._last_fail = now

    # ------------------------------------------------------------------ the tick role
    def _tick_role(self) -> None:
        """Run ticks (and the status, the housekeeping, new subscriptions) while frames keep
        arriving during them, then give the role up. Only this role touches ``out``, the
        engine switch and the log."""
        rec = self.cfg.recorder
        while True:
            tin = None
            if not self._auth_alive():
                return self._leave_tick_role()
            try:
                self._answer_subscriptions()
                with self.lock:
                    t = self.clock()
                    tin = self.core.begin_tick(t)
                    if tin is not None and rec is not None:
                        for session, profile in tin.profile_changes:
                            rec.write(PROFILE, t, encode_profile(session, profile))
                        rec.write(TICK, t, msgpack.packb({"t": t, "n": len(tin.items),
                                                          "light": tin.level}))
            except Exception as exc:  # begin_tick failed: its frames are lost
                self._tick_failed(None, exc)
                if tin is None:  # (it may have left frames pending: retried when due)
                    return self._leave_tick_role()
            if tin is not None:
                self._fit_and_publish(tin)
            now = self.clock()
            try:
                if now >= self._next_housekeeping:
                    self._housekeeping(now)
                if now >= self._next_status:
                    self._next_status = max(self._next_status + self._period,
                                            now + self._period // 2)
                    self._send_status(now)
            except Exception as exc:  # a bug in reporting must not stop the fitting
                self.log.error(f"status: {type(exc).__name__}: {exc}", key="status")
            with self.lock:
                self._due = min(self._next_status, self._next_housekeeping,
                                now + int(SUBSCRIPTION_POLL_S * 1e9))
                if self._stopping() or not self.core.table.pending_count():
                    return self._leave_tick_role(locked=True)

    def _leave_tick_role(self, locked: bool = False) -> None:
        """Give the tick role up (and wake the reader if it waits for that)."""
        if not locked:
            with self.lock:
                return self._leave_tick_role(locked=True)
        self._ticking = False
        if self._wake_reader:
            self._wake_reader = False
            try:
                self._wake_tx.send(b"", zmq.NOBLOCK)
            except zmq.Again:  # wake-ups already queued: the reader wakes anyway
                pass
        return None

    # ------------------------------------------------------------------ faults, watchdog, log
    def _auth_alive(self) -> bool:
        """The watchdog: ``False`` (and ``fatal`` set) when, with CURVE, the ZAP
        authenticator thread is gone (a worker that fails sets ``fatal`` itself)."""
        if self.fatal is None and self.auth is not None and not self.auth.is_alive():
            self.fatal = ("CURVE authenticator (ZAP) thread stopped: no client can be "
                          "authenticated; refusing to go on")
        return self.fatal is None

    def _inject_tick_fault(self, tin: TickInput) -> None:
        f = self.cfg.faults
        ids = {s.id for s, _ in tin.items}
        if f.zap_stop in ids and self.auth is not None and self.auth.is_alive():
            self.auth.pipe.send(b"TERMINATE")  # injected: the ZAP thread ends
        if f.tick in ids:
            raise InjectedFault(f"tick: injected fault (session {f.tick})")

    def _fit_and_publish(self, tin: TickInput) -> None:
        """Fit and publish a tick; a failing batch resets its sessions and is fitted again
        session by session, and a session failing alone is isolated (``TrackerCore.fault``)."""
        for part in self.core.split(tin):
            try:
                self._inject_tick_fault(part)
                self._run_and_publish(part)
                continue
            except Exception as exc:
                self._tick_failed(part, exc, isolate=len(part.items) == 1)
            if len(part.items) > 1:
                with self.lock:
                    alone = self.core.retry_alone(part)
                for one in alone:
                    try:
                        self._inject_tick_fault(one)
                        self._run_and_publish(one)
                    except Exception as exc:
                        self._tick_failed(one, exc, isolate=True)

    def _run_and_publish(self, tin: TickInput) -> None:
        """Fit, send the poses, then the tick's accounting (off the frames' way to their poses;
        done even when sending failed)."""
        out = self.core.run_tick(tin, settle=False)
        try:
            self._publish(out)
        finally:
            out.settle()

    def _tick_failed(self, tin: TickInput | None, exc: Exception, isolate: bool = False) -> None:
        ids = []
        with self.lock:
            if tin is not None:
                ids = self.core.fault(tin, isolate)
            else:
                self.core.totals["faults"] += 1
        what = f"{len(ids)} session(s) reset: {', '.join(ids[:5])}" + (
            ", ..." if len(ids) > 5 else "") if ids else "no session affected"
        self.log.error(f"tick failed ({what}): {type(exc).__name__}: {exc}", key="tick")
        if isolate and ids:
            self.log.error(f"session {ids[0]} failed alone: fitted apart from the others "
                           "for the next 10 s", key=f"isolate {ids[0]}")

    def _housekeeping(self, now: int) -> None:
        """About 10 times a second: silent sessions, log lines, recorder errors."""
        self._next_housekeeping = now + 100_000_000
        self._switch_engine(now)
        with self.lock:
            self.core.check_silent(now)
        events = self.core.events
        while events:
            self.log.event(*events.popleft())
        while self._errors:
            key, text = self._errors.popleft()
            self.log.error(text, key=key)
        rec = self.cfg.recorder
        if rec is not None and rec.error is not None and not self._rec_error_seen:
            self._rec_error_seen = True
            self.log.error(f"recording {rec.path} stopped: {rec.error} (the file reads up to "
                           "the last good write; serving goes on)")
        if self.log.due(now):
            with self.lock:
                c = counts(dict(self.core.totals, rejected=self.core.rejected,
                                restarts=self.core.table.restarts))
                live = len(self.core.table)
            self.log.periodic(now, live, c)

    def _switch_engine(self, now: int) -> None:
        """Between ticks: take the background-built engine when it is ready. Sessions keep
        their state (every CPU engine carries the same ``FitState``); a recording notes the
        switch so that a replay switches at the same tick."""
        build = self.cfg.engine_build
        if build is None:
            return
        engine = build.poll()
        if engine is None:
            return
        with self.lock:
            old, self.core.engine = self.core.engine, engine
            if engine.name != old.name:  # another backend: its fit times are its own
                self.core.pacer.forget()
        # The new engine's objects live as long as the server: out of the collector's view,
        # like everything loaded before serving (``tracker serve``). Freezing is a list move,
        # not a collection, so it costs this tick nothing.
        gc.freeze()
        rec = self.cfg.recorder
        if rec is not None:
            rec.write(ENGINE, now, msgpack.packb({"t": now, "engine": engine.name,
                                                  "light_iterations":
                                                      list(engine.iterations[1:])}))
        self.log.info(f"engine {old.label} -> {engine.label} (sessions keep their state)")

    def status(self, now: int | None = None) -> dict:
        """The status message as :meth:`_send_status` builds it (also for the exit totals)."""
        now = self.clock() if now is None else now
        rec = self.cfg.recorder
        recorder = None
        if rec is not None:
            recorder = dict(rec.stats(), rejected_not_recorded=self.not_recorded)
        extra = dict(self.conn, uptime_s=(now - self._started) / 1e9,
                     ingest=self.ingest_addr, publish=self.publish_addr,
                     recording=str(rec.path) if rec else None, recorder=recorder,
                     curve=self.cfg.keys is not None, ingest_errors=self.ingest_errors)
        build = self.cfg.engine_build
        if build is not None:
            extra["engine_build"] = {"engine": build.name, "state": build.state,
                                     "stage": build.stage, "seconds": round(build.seconds, 1)}
        with self.lock:
            return self.core.status(now, extra)

    def _answer_subscriptions(self) -> None:
        """Publish the current skeletons that new subscriptions cover (subscribing is the
        request); the recording keeps only those sent by ticks (:meth:`_publish`)."""
        prefixes = self.subscriptions.read(self.out)
        if not prefixes:
            return
        with self.lock:
            due = self.core.skeletons_for(prefixes)
        for session, data in due:
            self.out.send_multipart([skeleton_topic(session), data])

    def _publish(self, out: TickOutput) -> None:
        rec, sent = self.cfg.recorder, []
        self._answer_subscriptions()  # those that arrived during the fit: before its poses
        for session, data in out.skeletons:  # a session's skeleton precedes its poses
            topic = skeleton_topic(session)
            self.out.send_multipart([topic, data])
            if rec is not None:
                rec.write(topic.decode(), out.t, data)
        echo, subs = self.cfg.echo_frames, self.subscriptions
        for p in out.poses:
            if echo and subs.covers(topic := frame_topic(p.session)):
                self.out.send_multipart([topic, p.echo()])
            t_pub = self.clock()
            data = finish_pose(p.msg, t_pub)
            topic = pose_topic(p.session)
            self.out.send_multipart([topic, data])
            if rec is not None:
                rec.write(topic.decode(), t_pub, data)
            sent.append((p.session, p.msg["t_recv"], t_pub))
        with self.lock:
            for s, t_recv, t_pub in sent:
                self.core.note_published(s, t_recv, t_pub, out.t, out.fit_ns)
        if sent:  # what the tick took beside its fit, for the pacer (the ticker only)
            self.core.pacer.observe_rest(out.level, out.batch, max(
                t_pub - t_recv for _, t_recv, t_pub in sent) - out.fit_ns)
        for _, t_recv, t_pub in sent:
            self.log.latency(t_pub - t_recv)

    def _send_status(self, now: int) -> None:
        msg = self.status(now)
        data = encode_pose(msg)
        self.out.send_multipart([STATUS_TOPIC, data])
        if self.cfg.recorder is not None:
            self.cfg.recorder.write(STATUS, now, data)

    def close(self) -> None:
        """Close the sockets and finalise the recording (idempotent): after :meth:`serve`
        returned, or instead of it (it waits for the ``fit-helper`` thread)."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        self._stop.set()
        t = getattr(self, "_helper", None)
        if t is not None and t.is_alive():
            t.join()
        if getattr(self, "monitor", None) is not None:
            self.ingest.disable_monitor()
        for name in ("monitor", "ingest", "out", "_wake_rx", "_wake_tx"):
            s = getattr(self, name, None)
            if s is not None:
                s.close()
        if self.auth is not None:
            stop_authenticator(self.auth)
            self.auth = None
        self.ctx.term()
        if self.cfg.recorder is not None:
            self.cfg.recorder.close()
