"""Ready in seconds from cold: a real ``tracker serve`` with an empty engine cache answers on
the eager engine while its compiled engine builds in the background, then switches between
ticks without resetting a session (``engines.background``)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import msgpack
import pytest
import zmq
from server_harness import ROOT, ServerProc

from tracker.server.faults import good_message

FIRST_POSE_S = 20.0  # the bound, from the server's start with frames sent from then


def _send_from_start(address: str, stop: threading.Event, rate: float = 90.0) -> None:
    """A device that starts sending before the server is up (frames sent into the void until
    it binds are lost, as with a real headset)."""
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.PUB)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(address)
    seq, next_t = 0, time.monotonic()
    while not stop.is_set():
        seq += 1
        s.send(msgpack.packb(good_message("cold", seq, time.monotonic_ns())))
        next_t += 1.0 / rate
        time.sleep(max(0.0, next_t - time.monotonic()))
    s.close()


@pytest.mark.slow
def test_serves_at_once_and_switches_to_the_built_engine(tmp_path):
    pytest.importorskip("onnxruntime")
    rec = tmp_path / "cold.mcap"
    t0 = time.monotonic()
    server = ServerProc("--record", str(rec), engine="onnxruntime", wait=False,
                        env={"FITSTREAM_CACHE": str(tmp_path / "cache")})
    stop = threading.Event()
    sender = threading.Thread(target=_send_from_start, args=(server.ingest, stop), daemon=True)
    sender.start()
    sub = server.ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    for topic in (b"pose/", b"status"):
        sub.subscribe(topic)
    sub.connect(server.publish)
    first_pose = switched = None
    poses: list[tuple[float, dict]] = []
    engines, builds = [], []
    try:
        deadline = t0 + 600
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise AssertionError("server exited:\n" + "".join(server.lines))
            if not sub.poll(100):
                continue
            topic, data = sub.recv_multipart()
            msg = msgpack.unpackb(data)
            now = time.monotonic()
            if topic == b"status":
                engines.append(msg["engine"])
                builds.append(msg.get("engine_build", {}).get("state"))
                if msg["engine"] == "onnxruntime" and switched is None:
                    switched = now
            else:
                first_pose = first_pose or now
                poses.append((now, msg))
            if switched is not None and now - switched > 2.0:
                break
    finally:
        stop.set()
        rc = server.stop()
    log = "".join(server.lines)
    assert rc == 0, log
    assert first_pose is not None and first_pose - t0 <= FIRST_POSE_S, \
        f"first pose after {first_pose and first_pose - t0:.1f} s\n{log}"
    assert engines[0] == "eager" and switched is not None, log
    assert "building" in builds and builds[-1] == "ready"
    assert "engine eager -> onnxruntime" in log
    # sessions go on across the switch: no reset after the first pose (which the subscriber
    # may miss while it connects), poses keep coming
    assert "reset" not in [m["state"] for _, m in poses][1:]
    times = [t for t, _ in poses]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert max(gaps) < 0.5, f"a {max(gaps):.2f} s gap in the poses"
    assert any(t > switched for t in times)
    # the recording notes the switch; a replay switches at the same tick and gives the same
    # poses (the engine is in the cache now)
    out = subprocess.run([sys.executable, "-m", "tracker.cli", "replay", str(rec)],
                         capture_output=True, text=True, cwd=ROOT, timeout=600,
                         env={**__import__("os").environ,
                              "FITSTREAM_CACHE": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr
    assert "switched to engine onnxruntime" in out.stderr
