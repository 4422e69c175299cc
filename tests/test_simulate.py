"""Synthetic headsets: motions in, valid protocol frames out (``tracker simulate``)."""

import numpy as np
import pytest
import torch
import zmq

from tracker.body import load_body_model
from tracker.geometry.transforms import invert_transform, pose7_to_transform
from tracker.protocol import ground_truth, parse_frame
from tracker.server.simulator import MotionSpecError, load_motion, make_headset


@pytest.fixture(scope="module")
def body():
    return load_body_model()


@pytest.fixture(scope="module")
def motion(body):
    return load_motion("procedural:walk,wave", 30, 1.0, 3, body)


def test_load_motion(body, motion, tmp_path):
    assert motion["poses"].shape == (30, 156) and motion["fps"] == 30
    np.savez(tmp_path / "m.npz", poses=motion["poses"], trans=motion["trans"],
             betas=motion["betas"], mocap_framerate=30.0)
    m = load_motion(str(tmp_path / "m.npz"), 90, 0, 0, body)  # resampled to the rate
    assert m["poses"].shape == (88, 156) and m["fps"] == 90
    with pytest.raises(MotionSpecError):
        load_motion("procedural:fly", 30, 1, 0, body)
    with pytest.raises(MotionSpecError):
        load_motion(str(tmp_path / "missing.npz"), 30, 1, 0, body)


def test_frames_are_valid_and_carry_ground_truth(body, motion):
    h = make_headset(body, motion, "sim-0", noise="consumer", seed=1)
    for i in range(h.num_frames):
        p = h.payload(i, i + 1, 1000 * i)
        f = parse_frame(p)
        assert (f.session, f.seq, f.t) == ("sim-0", i + 1, 1000 * i)
        gt = ground_truth(p)
        assert len(gt["pose"]) == 156 and len(gt["transl"]) == 3 and len(gt["betas"]) == 16
        for s, hand in enumerate((f.left, f.right)):
            assert (hand is not None) == bool(h.hand_on[i, s])
    assert len(make_headset(body, motion, "x", ground_truth=False).payload(0, 1, 0)) < 400


def test_floor_and_hmd_offsets(body, motion):
    a = make_headset(body, motion, "a", noise="none")
    b = make_headset(body, motion, "b", noise="none", floor_offset=0.1)
    assert np.allclose(b.head[:, 1] - a.head[:, 1], 0.1, atol=1e-6)
    assert np.allclose(b.gt_transl[:, 1] - a.gt_transl[:, 1], 0.1, atol=1e-6)
    assert np.allclose(b.wrists[..., 1] - a.wrists[..., 1], 0.1, atol=1e-6)
    c = make_headset(body, motion, "c", noise="none", hmd_offset=(0.0, 0.12, 0.05))
    st = body.forward_axis_angle(torch.tensor(a.gt_pose), torch.tensor(a.betas)[None].expand(
        len(a.gt_pose), -1), torch.tensor(a.gt_transl))
    head_c = pose7_to_transform(torch.tensor(c.head, dtype=torch.float32))
    offset = (invert_transform(st.head) @ head_c)[:, :3, 3]
    assert torch.allclose(offset, torch.tensor([0.0, 0.12, 0.05]), atol=1e-4)


def test_half_space_hides_hands_behind_the_headset(body, motion):
    dev = make_headset(body, motion, "d", noise="none", visibility="device")
    hs = make_headset(body, motion, "h", noise="none", visibility="half-space")
    assert dev.hand_on.all()
    T = pose7_to_transform(torch.tensor(hs.head, dtype=torch.float64))
    T_inv = invert_transform(T)[:, None]
    wrist = torch.tensor(hs.wrists[..., :3], dtype=torch.float64)
    z = (T_inv[..., 2, :3] * wrist).sum(-1) + T_inv[..., 2, 3]
    assert np.array_equal(hs.hand_on, (z < 0).numpy())


def test_simulate_command_publishes_frames(tmp_path):
    import threading

    from tracker.cli import main

    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.subscribe(b"")
    port = sub.bind_to_random_port("tcp://127.0.0.1")
    payloads, done = [], threading.Event()

    def read():  # a SUB only sends its subscription while its owner keeps polling it
        while not done.is_set() or sub.poll(300):
            if sub.poll(50):
                payloads.append(sub.recv_multipart()[-1])

    reader = threading.Thread(target=read)
    reader.start()
    try:
        rc = main(["simulate", "procedural:idle", "--seconds", "1", "--rate", "30",
                   "--sessions", "2", "--connect", f"tcp://127.0.0.1:{port}", "--noise", "none",
                   "--floor-offset", "0.05", "--hmd-offset", "0", "0.08", "0.1"])
        assert rc == 0
    finally:
        done.set()
        reader.join()
        sub.close()
        ctx.term()
    frames = [parse_frame(p) for p in payloads]
    assert {f.session for f in frames} == {"sim-0", "sim-1"}
    assert len(frames) >= 40  # 2 x 30, less what ZeroMQ's connection start may lose
    seqs = [f.seq for f in frames if f.session == "sim-0"]
    assert seqs == sorted(seqs) and seqs[-1] == 30
