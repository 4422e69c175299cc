"""The Open3D viewer renders headless under Xvfb (CI installs xvfb and Mesa)."""

import os
import re
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


def _check_legend(path):
    """The legend in the bottom-left corner: a white panel with lines of text in the colours
    of what they explain (orange plane, red and blue tips, green ground truth)."""
    import open3d as o3d

    from tracker.viewer.scene import GT_COLOR, HAND_COLORS, PLANE_COLOR

    img = np.asarray(o3d.io.read_image(str(path)))[..., :3].astype(float) / 255
    corner = img[500:, :520]
    for colour in (PLANE_COLOR, HAND_COLORS[0], HAND_COLORS[1], GT_COLOR):
        near = np.abs(corner - colour).max(-1) < 0.2
        assert near.sum() > 100, f"no text in the colour {colour} in the legend"
    assert (corner.min(-1) > 0.9).mean() > 0.5  # on a light panel


def test_replay_view_screenshot(tmp_path):
    out = tmp_path / "replay.png"
    r = _run(["replay", str(SAMPLE), "--view", "--speed", "max", "--screenshot", str(out),
              "--engine", "eager"])
    assert r.returncode == 0, r.stderr
    _check_png(out)
    _check_legend(out)


def test_live_view_screenshot(tmp_path):
    """``tracker view`` on a live output stream (the sample's recorded poses, republished at
    60 Hz): the body on screen, and the pose rate it reports is the rate poses arrive, not
    the rate the (software-rendered, slow) window draws them."""
    msgs = list(read_recording(SAMPLE))
    ingest = {msgpack.unpackb(m.data)["seq"]: m.data for m in msgs if m.topic == "ingest"}
    poses = [m.data for m in msgs if m.topic.startswith("pose/")]
    addr = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(addr)
    stop = threading.Event()

    def publish():  # 60 Hz on a schedule: a late wake-up is made up for at once
        i, due = 0, time.monotonic()
        while not stop.is_set():
            data = poses[i % len(poses)]
            seq = msgpack.unpackb(data)["seq"]
            pub.send_multipart([b"frame/sample", ingest[seq]])
            pub.send_multipart([b"pose/sample", data])
            i += 1
            due += 1 / 60
            time.sleep(max(0.0, due - time.monotonic()))

    t = threading.Thread(target=publish)
    t.start()
    try:
        out = tmp_path / "live.png"
        r = _run(["view", "--connect", addr, "--session", "sample", "--screenshot", str(out)])
        assert r.returncode == 0, r.stderr
        _check_png(out)
        shown = float(re.search(r"saved .* \(poses (\d+)/s received\)", r.stderr).group(1))
        assert 36 <= shown <= 72, shown  # 60/s sent
    finally:
        stop.set()
        t.join()
        pub.close()
        ctx.term()
