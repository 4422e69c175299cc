"""A real ``tracker serve`` process on loopback, and pyzmq clients for it (tests only)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgpack
import zmq

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProc:
    """``python -m tracker.cli serve`` on two free loopback ports; waits for ``ready``.

    The eager engine by default: compiled engines build (minutes) on first use. ``env``:
    extra environment variables (e.g. ``TRACKER_SERVE_FAULTS``)."""

    def __init__(self, *extra: str, status_period: float = 0.25, timeout: float = 180.0,
                 wait: bool = True, engine: str = "eager", env: dict | None = None):
        self.ingest = f"tcp://127.0.0.1:{free_port()}"
        self.publish = f"tcp://127.0.0.1:{free_port()}"
        env = dict(os.environ, **(env or {}),
                   PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        cmd = [sys.executable, "-m", "tracker.cli", "serve", "--ingest", self.ingest,
               "--publish", self.publish, "--status-period", str(status_period), "--threads",
               "1", "--engine", engine, *extra]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env, cwd=ROOT)
        self.lines: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        self.ctx = zmq.Context()
        self.timeout = timeout
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Block until the server printed ``ready`` (start-up loads torch and the model)."""
        if not self._ready.wait(self.timeout) or self.proc.poll() is not None:
            self.proc.kill()
            raise RuntimeError("server did not start:\n" + "".join(self.lines))

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)
            if "ready" in line:
                self._ready.set()

    def device(self, curve=None) -> zmq.Socket:
        """An XPUB connected to ingest, returned once the server's subscription arrived (so
        no frame is lost to ZeroMQ's slow-joiner start)."""
        s = self.ctx.socket(zmq.XPUB)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.XPUB_VERBOSE, 1)
        if curve:
            curve(s)
        s.connect(self.ingest)
        assert s.poll(20000), "server never subscribed"
        s.recv()
        return s

    def subscriber(self, *topics: bytes, curve=None) -> zmq.Socket:
        """A SUB on the output, returned once a status message came through."""
        s = self.ctx.socket(zmq.SUB)
        s.setsockopt(zmq.LINGER, 0)
        if curve:
            curve(s)
        for t in (*topics, b"status"):
            s.subscribe(t)
        s.connect(self.publish)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if s.poll(200) and s.recv_multipart()[0] == b"status":
                return s
        raise AssertionError("no status from the server")

    def stop(self, sig=signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.ctx.destroy(linger=0)
        return rc


def collect(sub: zmq.Socket, seconds: float, until=None) -> list[tuple[bytes, dict]]:
    """Messages ``(topic, decoded)`` for ``seconds`` or until ``until(list)`` is true."""
    out: list = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if sub.poll(50):
            topic, data = sub.recv_multipart()[-2:]
            out.append((topic, msgpack.unpackb(data, raw=False)))
            if until is not None and until(out):
                break
    return out


def last_status(sub: zmq.Socket, timeout: float = 10.0, where=None) -> dict:
    """The next status message (satisfying ``where`` if given)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sub.poll(100):
            topic, data = sub.recv_multipart()[-2:]
            if topic == b"status":
                st = msgpack.unpackb(data, raw=False)
                if where is None or where(st):
                    return st
    raise AssertionError("no (matching) status message")
