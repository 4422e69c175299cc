"""Replay reproduces what a live server published; ``--out`` writes AMASS-layout npz files."""

import time

import msgpack
import numpy as np
import pytest
import torch
from server_harness import ServerProc, collect

from tracker.body import load_body_model
from tracker.protocol import decode_pose
from tracker.recording import STATUS, TICK, read_recording
from tracker.server.simulator import load_motion, make_headset


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """Two simulated users streamed into a real server for ~2 s; the poses it published."""
    rec = tmp_path_factory.mktemp("replay") / "live.mcap"
    server = ServerProc("--record", str(rec), "--visibility", "half-space", wait=False)
    body = load_body_model()
    motion = load_motion("procedural", 60, 1.5, 0, body)
    heads = [make_headset(body, motion, f"user-{k}", "consumer", "half-space",
                          floor_offset=0.02, seed=k) for k in (0, 1)]
    try:
        server.wait_ready()
        sub = server.subscriber(b"pose/")
        dev = server.device()
        t0 = time.monotonic()
        for i in range(heads[0].num_frames):
            for h in heads:
                dev.send(h.payload(i, i + 1, time.monotonic_ns()))
            time.sleep(max(0.0, t0 + (i + 1) / 60 - time.monotonic()))
        last = heads[0].num_frames  # the newest frame of a session is always fitted
        msgs = collect(sub, 20, until=lambda m: {p["session"] for t, p in m
                                                 if t != b"status" and p["seq"] == last}
                       == {"user-0", "user-1"})
    finally:
        assert server.stop() == 0
    poses = [m for t, m in msgs if t.startswith(b"pose/")]
    return rec, poses


def _core():
    from tracker.server.build import build_engine
    from tracker.server.core import TrackerCore
    from tracker.server.profiles import RecordedProfiles

    eng, _ = build_engine(engine="eager", light_iterations="auto")  # as the server ran
    return TrackerCore(eng, "half-space", RecordedProfiles(eng.fitter.body))


def test_replay_reproduces_the_live_poses(live):
    from tracker.server.replay import replay

    rec, live_poses = live
    assert len(live_poses) > 10
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # as the server ran (--threads 1)
    try:
        replayed = {}
        stats = replay(rec, _core(), lambda m, p, d: replayed.setdefault((m["session"], m["seq"]),
                                                                          dict(m)))
    finally:
        torch.set_num_threads(old)
    assert not stats.truncated
    # where the eager fit of the bundled model is slower than the 60 Hz frame period (a small
    # CPU) the server ran light ticks (tracker.server.pacing), and the replay the same ones
    recorded = list(read_recording(rec))
    ticks = [msgpack.unpackb(m.data) for m in recorded if m.topic == TICK]
    status = [decode_pose(m.data) for m in recorded if m.topic == STATUS]
    if status[-1]["fit_ms"]["p50"] > 0.85 * 1000 / 60:
        assert any(t["light"] for t in ticks), "no light tick recorded"
    for s, c in stats.compare.items():
        assert c["matched"] == c["recorded"] == c["replayed"] > 0, (s, c)
        assert c["max_abs_diff"] == 0.0 and c["state_mismatches"] == 0, (s, c)
    # and what went over the wire equals the replay, key by key
    for p in live_poses:
        r = replayed[(p["session"], p["seq"])]
        for key in ("pose", "transl", "joints", "betas", "visible", "residual"):
            assert np.array_equal(np.float32(p[key]), np.float32(r[key])), key
        assert (p["state"], p["t"], p["t_recv"]) == (r["state"], r["t"], r["t_recv"])


def test_replay_out_writes_amass_npz(live, tmp_path):
    from tracker.cli import main
    from tracker.signals.stage import amass_to_stage

    rec, live_poses = live
    assert main(["replay", str(rec), "--out", str(tmp_path), "--threads", "1"]) == 0  # as recorded
    body = load_body_model()
    for session in ("user-0", "user-1"):
        z = np.load(tmp_path / f"{session}.npz")
        n = len(z["seq"])
        assert z["poses"].shape == (n, 156) and z["trans"].shape == (n, 3)
        assert z["betas"].shape == (16,) and z["t"].shape == (n,)
        # the rate of the fitted frames (frames the server skipped leave gaps in seq)
        assert float(z["mocap_framerate"]) == pytest.approx(1e9 / np.median(np.diff(z["t"])))
        assert (np.diff(z["seq"]) > 0).all() and str(z["gender"]) == "neutral"
        # back to the stage frame: the published poses
        live_s = {p["seq"]: p for p in live_poses if p["session"] == session}
        pelvis = body.rest_joints(torch.tensor(z["betas"][None]))[0, 0].double()
        poses, trans = amass_to_stage(torch.tensor(z["poses"]).double(),
                                      torch.tensor(z["trans"]).double(), pelvis)
        k = [i for i, q in enumerate(z["seq"]) if q in live_s]
        assert k
        want = np.array([live_s[z["seq"][i]]["transl"] for i in k])
        assert np.allclose(trans.numpy()[k], want, atol=1e-4)
        want_go = torch.tensor([live_s[z["seq"][i]]["pose"][:3] for i in k]).double()
        from tracker.geometry import axis_angle_to_matrix

        assert torch.allclose(axis_angle_to_matrix(poses[k, :3]), axis_angle_to_matrix(want_go),
                              atol=1e-4)
