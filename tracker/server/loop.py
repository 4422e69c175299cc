"""The live server: ZeroMQ sockets, a receiver thread, the tick loop and the clock.

Threads:

* receiver: polls the ingest SUB (and its socket monitor), stamps every message with
  ``t_recv = time.monotonic_ns()`` *as it is read*, and hands it to
  :meth:`TrackerCore.receive` (latest frame wins there); then wakes the tick loop;
* main (tick loop): sleeps until a frame is pending (or the next status is due), takes all
  pending frames at once (``begin_tick``), fits them as one batch (``run_tick``, outside the
  lock, so frames keep being received and stamped meanwhile) and publishes; ``status``
  about once a second.

``t_recv`` is stamped under the same lock as ``begin_tick`` reads the pending frames, so a
frame is in a tick exactly when ``t_recv`` < the tick time: a replay of the recorded times
rebuilds the same batches.

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

import sys
import threading
import time
from collections import deque
from dataclasses import dataclass

import msgpack
import zmq
from zmq.utils.monitor import recv_monitor_message

from tracker.protocol import (
    DEFAULT_INGEST,
    DEFAULT_PUBLISH,
    MAX_MESSAGE_BYTES,
    STATUS_TOPIC,
    encode_pose,
    frame_topic,
    pose_topic,
)
from tracker.recording import INGEST, PROFILE, STATUS, TICK, RecordingWriter
from tracker.server.core import TickOutput, TrackerCore
from tracker.server.profiles import encode_profile
from tracker.server.publish import finish_pose
from tracker.server.security import CurveKeys, make_curve_server, start_authenticator

RECONNECT_WINDOW_NS = 500_000_000


@dataclass
class ServerConfig:
    ingest: str = DEFAULT_INGEST
    publish: str = DEFAULT_PUBLISH
    status_period_s: float = 1.0
    keys: CurveKeys | None = None
    recorder: RecordingWriter | None = None
    echo_frames: bool = True
    """Also publish ``frame/<session>`` (the fitted ingest payload) for viewers."""


class Server:
    """Bind, then :meth:`serve` until ``stop`` is set; :meth:`close` always."""

    def __init__(self, core: TrackerCore, cfg: ServerConfig, clock=time.monotonic_ns):
        self.core, self.cfg, self.clock = core, cfg, clock
        self.lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.ctx = zmq.Context()
        self.auth = self.monitor = self.ingest = self.out = None
        self.conn = {"connections": 0, "disconnects": 0, "auth_failures": 0,
                     "handshake_failures": 0}
        self._pending_disc: deque = deque()
        self._last_fail = 0
        self._started = clock()
        try:
            if cfg.keys is not None:
                self.auth = start_authenticator(self.ctx, cfg.keys)
            self.ingest = self.ctx.socket(zmq.SUB)
            self.ingest.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
            self.ingest.setsockopt(zmq.LINGER, 0)
            self.ingest.subscribe(b"")
            self.out = self.ctx.socket(zmq.PUB)
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
        self._receiver = threading.Thread(target=self._receive_loop, name="ingest", daemon=True)

    # ------------------------------------------------------------------ receiver thread
    def _receive_loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self.ingest, zmq.POLLIN)
        poller.register(self.monitor, zmq.POLLIN)
        rec, core, clock = self.cfg.recorder, self.core, self.clock
        while not self._stop.is_set():
            events = dict(poller.poll(100))
            if self.ingest in events:
                got = False
                for _ in range(10000):
                    try:
                        payload = self.ingest.recv_multipart(zmq.NOBLOCK)[-1]
                    except zmq.Again:
                        break
                    with self.lock:
                        t = clock()
                        got |= core.receive(payload, t) is not None
                        if rec is not None:
                            rec.write(INGEST, t, payload)
                if got:
                    self._wake.set()
            if self.monitor in events:
                self._monitor_events()

    def wake(self) -> None:
        """Wake the tick loop now (after a stop request, from a signal handler)."""
        self._wake.set()

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

    # ------------------------------------------------------------------ tick loop
    def serve(self, stop: threading.Event) -> None:
        """Run the tick loop until ``stop`` is set (e.g. from a signal handler).

        The GIL switch interval is lowered to 0.5 ms (Python's default is 5 ms): otherwise the
        tick loop can wait up to 5 ms for the GIL while the receiver parses a burst of frames.
        """
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        self._receiver.start()
        period = int(self.cfg.status_period_s * 1e9)
        next_status = self.clock() + period
        rec = self.cfg.recorder
        while not stop.is_set():
            self._wake.wait(max(0.0, (next_status - self.clock()) / 1e9))
            self._wake.clear()
            if stop.is_set():
                break
            with self.lock:
                t = self.clock()
                tin = self.core.begin_tick(t)
                if tin is not None and rec is not None:
                    for session, profile in tin.profile_changes:
                        rec.write(PROFILE, t, encode_profile(session, profile))
                    rec.write(TICK, t, msgpack.packb({"t": t, "n": len(tin.items)}))
            if tin is not None:
                self._publish(self.core.run_tick(tin))
            now = self.clock()
            if now >= next_status:
                self._send_status(now)
                next_status = max(next_status + period, now + period // 2)

    def _publish(self, out: TickOutput) -> None:
        rec, sent = self.cfg.recorder, []
        for p in out.poses:
            if self.cfg.echo_frames:
                self.out.send_multipart([frame_topic(p.session), p.payload])
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

    def _send_status(self, now: int) -> None:
        extra = dict(self.conn, uptime_s=(now - self._started) / 1e9,
                     ingest=self.ingest_addr, publish=self.publish_addr,
                     recording=str(self.cfg.recorder.path) if self.cfg.recorder else None,
                     curve=self.cfg.keys is not None)
        with self.lock:
            msg = self.core.status(now, extra)
        data = encode_pose(msg)
        self.out.send_multipart([STATUS_TOPIC, data])
        if self.cfg.recorder is not None:
            self.cfg.recorder.write(STATUS, now, data)

    def close(self) -> None:
        """Stop the receiver, close the sockets, finalise the recording (idempotent)."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        self._stop.set()
        t = getattr(self, "_receiver", None)
        if t is not None and t.is_alive():
            t.join()
        if getattr(self, "monitor", None) is not None:
            self.ingest.disable_monitor()
        for name in ("monitor", "ingest", "out"):
            s = getattr(self, name, None)
            if s is not None:
                s.close()
        if self.auth is not None:
            self.auth.stop()
            self.auth = None
        self.ctx.term()
        if self.cfg.recorder is not None:
            self.cfg.recorder.close()
