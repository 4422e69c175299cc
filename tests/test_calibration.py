"""Calibration: profiles, the profile store, shape/T_HMD/floor fits on synthetic users,
refusals, and the live, recording and CLI paths.

Synthetic users are generated through the body model: ``calibration.pose`` poses a user of
known betas in the calibration motion, ``motion_signals`` turns it into headset signals with
the user's own ``T_HMD``, and the floor error shifts every y (as a mis-set headset floor
does). Run with ``-s`` to see the measured errors.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from calibration.capture import CalibrationRefused, Capture, CaptureError, find_hold, listen
from calibration.capture import read_recording as read_capture
from calibration.fit import body_measurements, estimate_hmd_offset, fit_capture, fit_known
from calibration.pose import CalibrationMotionConfig, calibration_motion
from calibration.profile import Profile, ProfileError, ProfileStore
from tracker.body import load_body_model
from tracker.cli import main as tracker_main
from tracker.geometry.transforms import transform_to_pose7
from tracker.protocol import encode_frame, parse_frame
from tracker.signals.headset import head_to_hmd
from tracker.signals.motion import motion_signals

F64 = torch.float64
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These problems are tiny: extra threads only cost on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def body():
    return load_body_model(dtype=F64)


@pytest.fixture
def cli_body(body, monkeypatch):
    """The CLI tests reuse the loaded model (loading it costs seconds per command)."""
    monkeypatch.setattr("tracker.body.load_body_model", lambda *a, **k: body)
    return body


def user_betas(body, stature_beta: float, others: float = 0.0, seed: int = 0) -> np.ndarray:
    b = np.zeros(body.num_betas)
    b[0] = stature_beta
    b[1:] = others * np.random.default_rng(seed).normal(size=body.num_betas - 1)
    return b


def synthetic_payloads(body, betas, config=None, hmd_offset=(0, 0.04, 0.09), floor_offset=0.0,
                       noise=(0.001, 0.005), seed=0, session="user",
                       lost=None, head_drift=0.0) -> list[bytes]:
    """Protocol payloads of a synthetic user performing the calibration.

    ``floor_offset`` is the profile's value that corrects this stream (``y_true = y + f``),
    so every published y is ``y_true - f``. ``lost``: ``(N, 2)`` bool, hands not tracked.
    ``head_drift``: metres the headset drifts sideways during the look-around (body moving).
    """
    config = config or CalibrationMotionConfig()
    m = calibration_motion(body, betas, config)
    sig, _, _ = motion_signals(body, m["poses"], m["trans"], m["betas"],
                               T_hmd=head_to_hmd(hmd_offset, dtype=F64))
    head = transform_to_pose7(sig.head).numpy()
    wr = transform_to_pose7(sig.wrists).numpy()
    tips = sig.tips.numpy().copy()
    rng = np.random.default_rng(seed)
    N = len(head)
    head[:, :3] += rng.normal(scale=noise[0], size=(N, 3))
    wr[..., :3] += rng.normal(scale=noise[1], size=(N, 2, 3))
    tips += rng.normal(scale=noise[1], size=tips.shape)
    if head_drift:
        look = np.arange(N) / config.fps >= config.hold_s
        head[look, 0] += head_drift * np.linspace(0, 1, look.sum())
    head[:, 1] -= floor_offset
    wr[..., 1] -= floor_offset
    tips[..., 1] -= floor_offset
    out = []
    for i in range(N):
        hands = [(None if lost is not None and lost[i, s] else wr[i, s], tips[i, s])
                 for s in (0, 1)]
        out.append(encode_frame(session, i + 1, int(i * 1e9 / config.fps), head[i],
                                hands[0][0], hands[1][0], hands[0][1], hands[1][1]))
    return out


def capture_of(payloads) -> Capture:
    return Capture.from_frames([parse_frame(p) for p in payloads], "test")


def errors(body, profile, betas, hmd_offset, floor_offset) -> dict:
    true = body_measurements(body, betas, hmd_offset)
    fit = body_measurements(body, profile.betas, profile.hmd_offset)
    return {
        "height_cm": 100 * (fit["height"] - true["height"]),
        "arm_span_cm": 100 * (fit["arm_span"] - true["arm_span"]),
        "wrist_span_cm": 100 * (fit["wrist_span"] - true["wrist_span"]),
        "eye_height_cm": 100 * (fit["headset_height"] - true["headset_height"]),
        "t_hmd_cm": 100 * float(np.linalg.norm(profile.hmd_offset - np.asarray(hmd_offset))),
        "floor_cm": 100 * (profile.floor_offset - floor_offset),
        "height_m": true["height"],
    }


# ---------------------------------------------------------------------- profiles
def test_profile_roundtrip_and_errors(body, tmp_path):
    p = Profile.default(body)
    assert p.betas.shape == (body.num_betas,) and p.floor_offset == 0.0
    assert np.allclose(p.T_hmd, head_to_hmd(dtype=F64).numpy())
    q = Profile(np.arange(16) * 0.1, p.T_hmd, 0.025, body.fingerprint,
                {"source": "test", "measured": {"arm_span_wrist_m": np.float64(1.4)}})
    path = q.save(tmp_path / "a.json")
    r = Profile.load(path, body)
    assert r == q and r.metadata["source"] == "test"
    assert r.metadata["measured"]["arm_span_wrist_m"] == 1.4 and "created" in r.metadata
    data = json.loads(path.read_text())
    assert data["version"] == 1 and data["body_fingerprint"] == body.fingerprint
    assert len(data["betas"]) == 16 and np.array(data["T_hmd"]).shape == (4, 4)

    other = replace(q, body_fingerprint="0123456789abcdef")
    other.save(tmp_path / "b.json")
    with pytest.raises(ProfileError, match="calibrated for body model 0123456789abcdef"):
        Profile.load(tmp_path / "b.json", body)
    Profile.load(tmp_path / "b.json")  # without a body: no check
    (tmp_path / "c.json").write_text('{"version": 1, "betas": [0.0,')
    with pytest.raises(ProfileError, match="not valid JSON.*line 1"):
        Profile.load(tmp_path / "c.json", body)
    bad = dict(data, T_hmd=np.diag([1.0, 2.0, 1.0, 1.0]).tolist())
    (tmp_path / "d.json").write_text(json.dumps(bad))
    with pytest.raises(ProfileError, match="not a rigid transform"):
        Profile.load(tmp_path / "d.json", body)
    (tmp_path / "e.json").write_text(json.dumps(dict(data, version=7)))
    with pytest.raises(ProfileError, match="version 7"):
        Profile.load(tmp_path / "e.json", body)
    with pytest.raises(ProfileError, match="cannot read"):
        Profile.load(tmp_path / "missing.json", body)


def test_profile_store_reloads_and_falls_back(body, tmp_path, caplog):
    store = ProfileStore(tmp_path, body)
    default = Profile.default(body)
    assert store.get("alice") == default
    good = Profile(np.full(16, 0.5), default.T_hmd, 0.02, body.fingerprint)
    good.save(tmp_path / "alice.json")
    assert store.get("alice") == good
    assert store.get("bob") == default
    newer = replace(good, floor_offset=-0.01)
    newer.save(tmp_path / "alice.json")  # same size, new inode and mtime
    assert store.get("alice") == newer
    caplog.set_level(logging.WARNING, logger="calibration.profile")
    (tmp_path / "alice.json").write_text("{ not json")
    for _ in range(3):
        assert store.get("alice") == newer  # the last good one
    assert sum("not valid JSON" in r.getMessage() for r in caplog.records) == 1
    replace(good, body_fingerprint="ffffffffffffffff").save(tmp_path / "bob.json")
    assert store.get("bob") == default
    assert any("calibrated for body model" in r.getMessage() for r in caplog.records)
    for weird in ("../etc/passwd", "", "a" * 100, None):
        assert store.get(weird) == default  # never raises
    (tmp_path / "alice.json").unlink()
    assert store.get("alice") == default
    lazy = ProfileStore(tmp_path, body, check_interval_s=60.0)
    assert lazy.get("carol") == default
    good.save(tmp_path / "carol.json")
    assert lazy.get("carol") == default  # not re-checked before the interval


# ---------------------------------------------------------------------- known numbers
@pytest.mark.parametrize("height,span", [(1.55, None), (1.80, None), (1.80, 1.82), (1.95, 2.0)])
def test_fit_known_numbers(body, height, span):
    p = fit_known(body, height, span)
    m = body_measurements(body, p.betas)
    assert abs(m["height"] - height) < 0.001
    if span is not None:
        assert abs(m["arm_span"] - span) < 0.002
    assert p.body_fingerprint == body.fingerprint and p.floor_offset == 0.0
    assert not p.metadata["warnings"]


def test_calibrate_height_cli(cli_body, tmp_path, capsys):
    body = cli_body
    out = tmp_path / "me.json"
    assert tracker_main(["calibrate", "--height", "1.80", "--arm-span", "1.82",
                         "--out", str(out)]) == 0
    p = Profile.load(out, body)
    assert abs(body_measurements(body, p.betas)["height"] - 1.80) < 0.001
    assert "stature 1.800 m" in capsys.readouterr().out
    assert tracker_main(["calibrate", "--height", "3.5", "--out", str(out)]) == 2
    assert tracker_main(["calibrate", "--out", str(out)]) == 2
    assert "--ingest" in capsys.readouterr().err


# ---------------------------------------------------------------------- synthetic users
USERS = [  # stature beta, other betas' std, T_HMD translation, floor offset, facing, droop
    pytest.param(-1.4, 0.0, (0.0, 0.04, 0.09), 0.04, 30.0, 2.0, id="1.55m-floor+4cm"),
    pytest.param(0.0, 0.2, (0.01, 0.06, 0.11), -0.03, -75.0, 6.0, id="1.68m-offset-floor-3cm"),
    pytest.param(2.9, 0.0, (0.0, 0.02, 0.08), 0.0, 160.0, 0.0, id="1.95m"),
]


@pytest.mark.parametrize("stature,others,hmd,floor,facing,droop", USERS)
def test_recovers_synthetic_user(body, stature, others, hmd, floor, facing, droop):
    betas = user_betas(body, stature, others, seed=3)
    cfg = CalibrationMotionConfig(facing_deg=facing, arm_droop_deg=droop, position=(0.5, -0.8))
    cap = capture_of(synthetic_payloads(body, betas, cfg, hmd, floor, seed=1))
    hold = find_hold(cap)
    assert hold.start < 5 and abs(hold.duration_s - cfg.hold_s) < 0.3
    profile = fit_capture(body, cap, hold)
    e = errors(body, profile, betas, hmd, floor)
    print(f"\nuser {e['height_m']:.3f} m: height {e['height_cm']:+.2f} cm, arm span "
          f"{e['arm_span_cm']:+.2f} cm (wrists {e['wrist_span_cm']:+.2f}), T_HMD "
          f"{e['t_hmd_cm']:.2f} cm, floor {e['floor_cm']:+.2f} cm, eye height "
          f"{e['eye_height_cm']:+.2f} cm")
    assert abs(e["height_cm"]) < 1.0
    assert abs(e["arm_span_cm"]) < 2.0 and abs(e["wrist_span_cm"]) < 2.0
    assert e["t_hmd_cm"] < 1.0
    assert abs(e["floor_cm"]) < 1.0
    meta = profile.metadata
    assert meta["measured"]["hold_s"] > 2.0 and not meta["warnings"]
    assert abs(meta["measured"]["arm_droop_deg"] - droop) < 1.0


def test_known_height_pins_a_population_user(body):
    """A user of a random population shape: the arm span alone leaves the stature uncertain
    (a few cm, see calibration.fit); the known height makes the floor exact."""
    betas = user_betas(body, 0.8, 1.0, seed=11)
    cap = capture_of(synthetic_payloads(body, betas, floor_offset=0.05, seed=2))
    true_h = body_measurements(body, betas)["height"]
    p = fit_capture(body, cap, height=true_h)
    e = errors(body, p, betas, (0, 0.04, 0.09), 0.05)
    print(f"\npopulation user with known height: height {e['height_cm']:+.2f} cm, floor "
          f"{e['floor_cm']:+.2f} cm, T_HMD {e['t_hmd_cm']:.2f} cm")
    assert abs(e["height_cm"]) < 0.3 and abs(e["floor_cm"]) < 0.5 and e["t_hmd_cm"] < 1.0


def test_pivot_needs_two_axes():
    """Yaw-only look-around cannot place the headset vertically: it stays near the default."""
    rng = np.random.default_rng(0)
    c, t = np.array([0.3, 1.5, -0.2]), np.array([0.0, 0.06, 0.10])
    R_hmd = head_to_hmd(dtype=F64).numpy()[:3, :3]

    def rot(axis, a):
        v = np.zeros(3)
        v["xyz".index(axis)] = 1.0
        K = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
        return np.eye(3) + np.sin(a) * K + (1 - np.cos(a)) * K @ K

    yaw = rng.uniform(-0.8, 0.8, 200)
    pitch = rng.uniform(-0.4, 0.4, 200)
    for pitch_scale, ok in ((1.0, True), (0.0, False)):
        R = np.stack([rot("y", a) @ rot("x", pitch_scale * b) @ R_hmd
                      for a, b in zip(yaw, pitch, strict=True)])
        p = c + np.einsum("nij,j->ni", R, R_hmd.T @ t) + rng.normal(scale=0.001, size=(200, 3))
        fit = estimate_hmd_offset(p, R)
        assert (np.linalg.norm(fit.offset - t) < 0.005) == ok
        assert (fit.spread[0] > 0.02) == ok


# ---------------------------------------------------------------------- refusals
def test_refuses_noisy_capture(body):
    cap = capture_of(synthetic_payloads(body, user_betas(body, 0.5), noise=(0.01, 0.04)))
    with pytest.raises(CalibrationRefused) as e:
        fit_capture(body, cap)
    assert e.value.reason == "too_much_motion" and "wrists moved" in str(e.value)


def test_refuses_moving_body(body):
    cfg = CalibrationMotionConfig(sway_m=0.06)
    cap = capture_of(synthetic_payloads(body, user_betas(body, 0.5), cfg))
    with pytest.raises(CalibrationRefused, match="too much motion") as e:
        fit_capture(body, cap)
    assert e.value.reason == "too_much_motion"


def test_refuses_body_moving_while_looking_around(body):
    cap = capture_of(synthetic_payloads(body, user_betas(body, 0.5), head_drift=0.15))
    with pytest.raises(CalibrationRefused, match="fixed point") as e:
        fit_capture(body, cap)
    assert e.value.reason == "body_moved"


def test_refuses_untracked_hand(body):
    cfg = CalibrationMotionConfig()
    n = round(cfg.fps * (cfg.hold_s + cfg.look_s))
    lost = np.zeros((n, 2), bool)
    lost[::20, 0] = True  # the left hand flickers: never a second of both hands
    cap = capture_of(synthetic_payloads(body, user_betas(body, 0.5), lost=lost))
    with pytest.raises(CalibrationRefused, match="left hand was lost") as e:
        fit_capture(body, cap)
    assert e.value.reason == "hand_not_tracked"


def test_refuses_arms_down(body):
    cfg = CalibrationMotionConfig(arm_droop_deg=60.0, lower_arms_s=0.0)
    cap = capture_of(synthetic_payloads(body, user_betas(body, 0.5), cfg))
    with pytest.raises(CalibrationRefused, match="not stretched out") as e:
        fit_capture(body, cap)
    assert e.value.reason == "arms_not_out"


# ---------------------------------------------------------------------- live, recording, CLI
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Publisher(threading.Thread):
    """Publishes payloads in a loop (with fresh seq/t) to a bound SUB, like a headset app,
    from the first payload once the SUB is bound."""

    def __init__(self, address: str, payloads: list[bytes], fps: float = 60.0, delay: float = 0.3):
        super().__init__(daemon=True)
        self.address, self.payloads, self.fps, self.delay = address, payloads, fps, delay
        self.stop = threading.Event()

    def run(self):
        import msgpack
        import zmq

        port = int(self.address.rsplit(":", 1)[1])
        while not self.stop.is_set():  # start with the motion once the listener is bound
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        ctx = zmq.Context()
        sock = ctx.socket(zmq.PUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.address)
        time.sleep(self.delay)
        seq, t0 = 0, time.monotonic_ns()
        while not self.stop.is_set():
            for p in self.payloads:
                if self.stop.is_set():
                    break
                msg = msgpack.unpackb(p)
                seq += 1
                msg["seq"], msg["t"] = seq, t0 + int(seq * 1e9 / self.fps)
                sock.send_multipart([b"topic-is-ignored", msgpack.packb(msg)])
                time.sleep(1.0 / (8 * self.fps))  # faster than real time: a short test
        sock.close(0)
        ctx.term()


def test_live_capture_over_zeromq(body):
    betas = user_betas(body, 1.5)
    payloads = synthetic_payloads(body, betas, floor_offset=0.02, session="live-1")
    addr = f"tcp://127.0.0.1:{free_port()}"
    other = synthetic_payloads(body, betas, session="someone-else")[:50]
    pub = Publisher(addr, other[:20] + payloads)
    pub.start()
    try:
        cap = listen(addr, "live-1", seconds=4.5, wait_s=10.0)
    finally:
        pub.stop.set()
        pub.join()
    assert cap.session == "live-1" and cap.duration_s >= 4.5
    e = errors(body, fit_capture(body, cap), betas, (0, 0.04, 0.09), 0.02)
    assert abs(e["height_cm"]) < 1.0 and abs(e["floor_cm"]) < 1.0 and e["t_hmd_cm"] < 1.0
    with pytest.raises(CaptureError, match="no frames of session 'nobody'"):
        listen(addr, "nobody", seconds=1.0, wait_s=0.3)


def test_calibrate_ingest_cli(cli_body, tmp_path, capsys):
    body = cli_body
    betas = user_betas(body, -0.7)
    addr = f"tcp://127.0.0.1:{free_port()}"
    pub = Publisher(addr, synthetic_payloads(body, betas, floor_offset=-0.02, session="cli"))
    pub.start()
    out = tmp_path / "cli.json"
    try:
        rc = tracker_main(["calibrate", "--ingest", addr, "--session", "cli", "--seconds",
                           "4.5", "--out", str(out)])
    finally:
        pub.stop.set()
        pub.join()
    assert rc == 0, capsys.readouterr().err
    e = errors(body, Profile.load(out, body), betas, (0, 0.04, 0.09), -0.02)
    assert abs(e["height_cm"]) < 1.0 and abs(e["floor_cm"]) < 1.0
    assert "receiving session cli" in capsys.readouterr().err


def write_recording(path, payloads):
    from tracker.recording import INGEST, RecordingWriter

    w = RecordingWriter(path)
    for i, p in enumerate(payloads):
        w.write(INGEST, 1_000_000 * i, p)
        w.write("pose/rec", 1_000_000 * i + 1, b"\x80")  # not a frame: skipped
    w.close()
    return path


def test_calibrate_cli_refuses_a_moving_user(cli_body, tmp_path, capsys):
    noisy = synthetic_payloads(cli_body, user_betas(cli_body, 0.0), noise=(0.01, 0.05))
    rec = write_recording(tmp_path / "noisy.mcap", noisy)
    rc = tracker_main(["calibrate", "--recording", str(rec), "--out", str(tmp_path / "x.json")])
    assert rc == 2 and not (tmp_path / "x.json").exists()
    err = capsys.readouterr().err
    assert "calibration refused (too_much_motion)" in err and "no profile written" in err


def test_calibrate_from_recording(body, tmp_path):
    betas = user_betas(body, 0.3)
    payloads = synthetic_payloads(body, betas, floor_offset=0.03, session="rec")
    path = write_recording(tmp_path / "take.mcap", payloads)
    cap = read_capture(path, "rec", seconds=None)
    assert len(cap) == len(payloads)
    e = errors(body, fit_capture(body, cap), betas, (0, 0.04, 0.09), 0.03)
    assert abs(e["height_cm"]) < 1.0 and abs(e["floor_cm"]) < 1.0
    (tmp_path / "junk.mcap").write_bytes(b"not an mcap file")
    with pytest.raises(CaptureError, match="not a readable MCAP"):
        read_capture(tmp_path / "junk.mcap")


def test_write_motion_cli(cli_body, tmp_path):
    body = cli_body
    out = tmp_path / "calib.npz"
    assert tracker_main(["calibrate", "--height", "1.62", "--write-motion", str(out),
                         "--fps", "30"]) == 0
    m = np.load(out)
    assert m["poses"].shape[1] == 156 and m["poses"].shape[0] == m["trans"].shape[0] == 165
    assert m["betas"].shape == (16,) and float(m["mocap_framerate"]) == 30.0
    assert abs(body_measurements(body, m["betas"])["height"] - 1.62) < 0.001


# ---------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_simulate_then_calibrate_end_to_end(body, tmp_path):
    """``tracker simulate`` publishes a known synthetic user holding the calibration pose;
    ``tracker calibrate --ingest`` recovers it (real processes on loopback)."""
    try:
        import tracker.commands.simulate  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"this test needs `tracker simulate` (tracker.commands.simulate): {exc}")
    height, hmd, floor_err = 1.74, (0.0, 0.055, 0.1), 0.035
    motion = tmp_path / "calib.npz"
    assert tracker_main(["calibrate", "--height", str(height), "--write-motion", str(motion),
                         "--fps", "60"]) == 0
    truth = np.load(motion)["betas"]
    addr = f"tcp://127.0.0.1:{free_port()}"
    out = tmp_path / "sim.json"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    cal = subprocess.Popen(
        [sys.executable, "-m", "tracker.cli", "calibrate", "--ingest", addr, "--session",
         "sim-0", "--seconds", "5", "--wait", "60", "--out", str(out)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = cal.stderr.readline()  # "listening on ..." once bound
        assert "listening on" in line, line
        sim = subprocess.run(
            [sys.executable, "-m", "tracker.cli", "simulate", str(motion), "--connect", addr,
             "--rate", "60", "--hmd-offset", *map(str, hmd), "--floor-offset", str(floor_err),
             "--no-ground-truth"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert sim.returncode == 0, sim.stderr
        stdout, stderr = cal.communicate(timeout=60)
    finally:
        cal.kill()
    assert cal.returncode == 0, stderr
    p = Profile.load(out, body)
    # simulate's --floor-offset M adds M to every y: the matching profile has -M
    e = errors(body, p, truth, hmd, -floor_err)
    print(f"\nsimulate -> calibrate: height {e['height_cm']:+.2f} cm, arm span "
          f"{e['arm_span_cm']:+.2f} cm, T_HMD {e['t_hmd_cm']:.2f} cm, floor "
          f"{e['floor_cm']:+.2f} cm")
    assert abs(e["height_cm"]) < 1.0 and abs(e["arm_span_cm"]) < 2.0
    assert e["t_hmd_cm"] < 1.0 and abs(e["floor_cm"]) < 1.0
