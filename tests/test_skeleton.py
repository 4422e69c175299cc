"""``skeleton/<session>``: the message, its agreement with the poses, and when it is sent.

In-process: the message and the core's bookkeeping (a small untrained fitter on the eager
engine). Then a real ``tracker serve`` process on loopback: the skeleton precedes a session's
first pose, a late subscriber's subscription is its request, subscribers of other topics are
unaffected, and the recording keeps one skeleton per session start.
"""

import time

import msgpack
import numpy as np
import pytest
import torch
import zmq
from scipy.spatial.transform import Rotation
from server_harness import ServerProc, collect, last_status

from calibration.profile import Profile
from engines.registry import make_engine
from tracker.body import load_body_model
from tracker.body.joints import JOINT_NAMES, PARENTS
from tracker.protocol import SKELETON_KEYS, decode_pose
from tracker.recording import read_recording
from tracker.server.core import TrackerCore
from tracker.server.faults import good_message
from tracker.server.profiles import RecordedProfiles

SMALL = dict(hidden=32, layers=2, init_hidden=32, lg_hidden=16, iterations=3)


def forward_kinematics(skeleton: dict, pose, transl) -> np.ndarray:
    """The documented rule (docs/protocol.md): joints = FK of ``pose`` over ``rest``, plus
    ``transl``. Written out here independently of the server's code."""
    rest = np.asarray(skeleton["rest"], dtype=np.float64).reshape(52, 3)
    R = Rotation.from_rotvec(np.asarray(pose, dtype=np.float64).reshape(52, 3)).as_matrix()
    G = np.zeros((52, 4, 4))
    for j, p in enumerate(skeleton["parents"]):
        local = np.eye(4)
        local[:3, :3] = R[j]
        local[:3, 3] = rest[j] - (rest[p] if p >= 0 else 0.0)
        G[j] = local if p < 0 else G[p] @ local  # a parent always precedes its children
    return G[:, :3, 3] + np.asarray(transl)


@pytest.fixture(scope="module")
def body():
    return load_body_model()


@pytest.fixture()
def core(body):
    from tracker.fitter.fitter import FitterConfig, NeuralFitter

    torch.manual_seed(0)
    fitter = NeuralFitter(body, FitterConfig(**SMALL)).eval()
    return TrackerCore(make_engine("eager", fitter), profiles=RecordedProfiles(body))


def frame(session, seq, t=None):
    return msgpack.packb(good_message(session, seq, t if t is not None else seq * 11_111_111))


def test_skeleton_message_and_forward_kinematics_match_the_pose(core, body):
    core.receive(frame("a", 1), 0)
    out = core.tick(1)
    (sid, data), = out.skeletons
    sk = decode_pose(data)
    assert sid == "a" and tuple(sk) == SKELETON_KEYS
    assert sk["v"] == 1 and sk["session"] == "a" and sk["units"] == "m"
    assert sk["joints"] == list(JOINT_NAMES) and len(sk["joints"]) == 52
    assert sk["parents"] == list(PARENTS) and sk["parents"][0] == -1
    assert all(p < j for j, p in enumerate(sk["parents"]))
    assert len(sk["rest"]) == 156 and isinstance(sk["frame"], str) and sk["pose_layout"]
    assert all(float(np.float32(x)) == x for x in sk["rest"])  # float32, like poses
    rest = body.rest_joints(torch.tensor([sk["betas"]], dtype=body.dtype))[0]
    assert np.allclose(sk["rest"], rest.reshape(-1).numpy(), atol=1e-6)
    (pose,) = out.poses
    assert pose.msg["betas"] == sk["betas"]
    for q in range(2, 5):  # several poses (state carried): joints = FK(pose over rest) + transl
        core.receive(frame("a", q), q * 10**7)
        out = core.tick(q * 10**7 + 1)
        assert out.skeletons == []  # only when a session starts or its shape changes
        m = out.poses[0].msg
        J = forward_kinematics(sk, m["pose"], m["transl"])
        assert np.abs(J - np.asarray(m["joints"]).reshape(52, 3)).max() < 1e-4


def test_sent_on_start_and_shape_change_and_answered_by_prefix(core, body):
    core.receive(frame("a", 1), 0)
    core.receive(frame("b", 1), 1)
    out = core.tick(2)
    assert [s for s, _ in out.skeletons] == ["a", "b"]
    assert core.skeletons_for([b"skeleton/"]) == out.skeletons
    assert core.skeletons_for([b""]) == out.skeletons  # subscribed to everything
    assert [s for s, _ in core.skeletons_for([b"skeleton/b"])] == ["b"]
    assert core.skeletons_for([b"pose/", b"status", b"skeleton/c"]) == []
    assert core.skeletons_for([]) == []
    d = Profile.default(body)
    tall = Profile(np.r_[1.5, np.zeros(len(d.betas) - 1)], d.T_hmd, 0.0, d.body_fingerprint)
    core.profiles.set("b", tall)
    core.receive(frame("a", 2), 10**7)
    core.receive(frame("b", 2), 10**7)
    out = core.tick(10**7 + 1)
    ((sid, data),) = out.skeletons
    assert sid == "b" and decode_pose(data)["betas"][0] == pytest.approx(1.5)
    rest_a = np.array(decode_pose(core.skeletons["a"])["rest"])
    assert not np.allclose(decode_pose(data)["rest"], rest_a, atol=1e-3)
    # a forgotten session's skeleton is no longer offered
    core.receive(frame("b", 3), 70 * 10**9)
    core.tick(70 * 10**9 + 1)
    assert [s for s, _ in core.skeletons_for([b""])] == ["b"] and "a" not in core.skeletons


# --- a real server ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    rec = tmp_path_factory.mktemp("skeleton") / "live.mcap"
    s = ServerProc("--record", str(rec))
    s.recording = rec
    yield s
    s.stop()


def raw_subscriber(server, *topics) -> zmq.Socket:
    s = server.ctx.socket(zmq.SUB)
    s.setsockopt(zmq.LINGER, 0)
    for t in topics:
        s.subscribe(t)
    s.connect(server.publish)
    return s


def test_skeleton_precedes_the_first_pose_and_subscribing_is_the_request(server):
    sub = server.subscriber(b"skeleton/sk-a", b"pose/sk-a")
    others = server.subscriber(b"pose/sk-a")  # an existing client: pose and status only
    dev = server.device()
    for q in range(1, 6):
        dev.send(frame("sk-a", q, time.monotonic_ns()))
        time.sleep(0.05)
    msgs = collect(sub, 20, until=lambda m: sum(t == b"pose/sk-a" for t, _ in m) >= 3)
    topics = [t for t, _ in msgs if t != b"status"]
    assert topics[0] == b"skeleton/sk-a" and topics.count(b"skeleton/sk-a") == 1
    sk = msgs[[t for t, _ in msgs].index(b"skeleton/sk-a")][1]
    assert tuple(sk) == SKELETON_KEYS and len(sk["joints"]) == 52 and len(sk["rest"]) == 156
    pose = next(m for t, m in msgs if t == b"pose/sk-a")
    assert sk["betas"] == pose["betas"]
    J = forward_kinematics(sk, pose["pose"], pose["transl"])
    assert np.abs(J - np.reshape(pose["joints"], (52, 3))).max() < 1e-4

    seen = {t for t, _ in collect(others, 1.0)}
    assert seen <= {b"pose/sk-a", b"status"} and b"pose/sk-a" in seen
    st = last_status(others)
    assert "sk-a" in st["sessions"] and "skeleton" not in st

    # No frames flow now. A late subscriber's subscription is its request ...
    t0 = time.monotonic()
    late = raw_subscriber(server, b"skeleton/")
    got = collect(late, 5, until=lambda m: any(t == b"skeleton/sk-a" for t, _ in m))
    assert [m for t, m in got if t == b"skeleton/sk-a"] == [sk]
    answered_s = time.monotonic() - t0
    everything = raw_subscriber(server, b"")
    got = collect(everything, 5, until=lambda m: any(t == b"skeleton/sk-a" for t, _ in m))
    assert any(t == b"skeleton/sk-a" for t, _ in got)
    # ... again for the same filter on the same socket (XPUB_VERBOSE passes repeats) ...
    late.subscribe(b"skeleton/sk-a")
    got = collect(late, 5, until=lambda m: any(t == b"skeleton/sk-a" for t, _ in m))
    assert any(t == b"skeleton/sk-a" for t, _ in got)
    # ... and a filter that does not cover the session gets nothing.
    other = raw_subscriber(server, b"skeleton/nobody")
    assert not other.poll(800)
    print(f"late subscriber answered in {answered_s * 1000:.0f} ms (connect included)")
    assert answered_s < 3.0


def test_recording_keeps_one_skeleton_per_session_start(server):
    assert server.stop() == 0
    msgs = list(read_recording(server.recording))
    sks = [m for m in msgs if m.topic == "skeleton/sk-a"]
    assert len(sks) == 1  # the repeats answering subscriptions are not recorded
    first_pose = next(i for i, m in enumerate(msgs) if m.topic == "pose/sk-a")
    assert msgs.index(sks[0]) < first_pose
    assert tuple(decode_pose(sks[0].data)) == SKELETON_KEYS


def test_replay_publishes_skeletons_and_answers_subscriptions():
    """``tracker replay --publish``: the same skeleton topic as ``serve``."""
    import os
    import subprocess
    import sys

    from server_harness import ROOT, free_port

    addr = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context()
    first = ctx.socket(zmq.SUB)
    first.setsockopt(zmq.LINGER, 0)
    for t in (b"skeleton/", b"pose/"):
        first.subscribe(t)
    first.connect(addr)  # before the bind: ZeroMQ connects once it is there
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "tracker.cli", "replay",
                             str(ROOT / "tracker/data/sample.mcap"), "--publish", addr,
                             "--engine", "eager", "--threads", "1", "--speed", "1"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        got = collect(first, 120, until=lambda m: sum(t == b"pose/sample" for t, _ in m) >= 2)
        topics = [t for t, _ in got]
        assert topics[0] == b"skeleton/sample" and b"pose/sample" in topics
        late = ctx.socket(zmq.SUB)
        late.setsockopt(zmq.LINGER, 0)
        late.subscribe(b"skeleton/sample")
        late.connect(addr)
        again = collect(late, 10, until=lambda m: m)
        assert again and again[0][0] == b"skeleton/sample"
        assert again[0][1] == got[0][1] and len(again[0][1]["joints"]) == 52
    finally:
        proc.kill()
        proc.wait()
        ctx.destroy(linger=0)
