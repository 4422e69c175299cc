"""The Open3D viewer renders headless under Xvfb (CI installs xvfb and Mesa)."""

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq
from server_harness import free_port

from tracker.recording import read_recording

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tracker" / "data" / "sample.mcap"

pytestmark = pytest.mark.skipif(
    shutil.which("xvfb-run") is None or shutil.which("Xvfb") is None,
    reason="needs Xvfb (apt-get install xvfb xauth libgl1-mesa-dri); CI installs it")


def _run(args, timeout=240):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = ["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24", sys.executable, "-m",
           "tracker.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def _check_png(path):
    import open3d as o3d

    img = np.asarray(o3d.io.read_image(str(path)))
    assert img.shape[:2] == (800, 1280)
    rgb = img[..., :3].astype(int)
    body = (rgb[..., 2] > rgb[..., 0] + 25) & (rgb[..., 2] > 120)  # the blue-grey mesh
    assert body.sum() > 5000, "no body on screen"
    assert (rgb.sum(-1) < 700).mean() > 0.02  # more than a blank white frame


def test_replay_view_screenshot(tmp_path):
    out = tmp_path / "replay.png"
    r = _run(["replay", str(SAMPLE), "--view", "--speed", "max", "--screenshot", str(out),
              "--engine", "eager"])
    assert r.returncode == 0, r.stderr
    _check_png(out)


def test_live_view_screenshot(tmp_path):
    """``tracker view`` on a live output stream (the sample's recorded poses, republished)."""
    msgs = list(read_recording(SAMPLE))
    ingest = {msgpack.unpackb(m.data)["seq"]: m.data for m in msgs if m.topic == "ingest"}
    poses = [m.data for m in msgs if m.topic.startswith("pose/")]
    addr = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(addr)
    stop = threading.Event()

    def publish():
        i = 0
        while not stop.is_set():
            data = poses[i % len(poses)]
            seq = msgpack.unpackb(data)["seq"]
            pub.send_multipart([b"frame/sample", ingest[seq]])
            pub.send_multipart([b"pose/sample", data])
            i += 1
            time.sleep(1 / 30)

    t = threading.Thread(target=publish)
    t.start()
    try:
        out = tmp_path / "live.png"
        r = _run(["view", "--connect", addr, "--session", "sample", "--screenshot", str(out)])
        assert r.returncode == 0, r.stderr
        _check_png(out)
    finally:
        stop.set()
        t.join()
        pub.close()
        ctx.term()
