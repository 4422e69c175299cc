"""Wire protocol v1: validation (every rejection reason), encoding, multipart, oversize."""

import dataclasses
import math
import time

import msgpack
import numpy as np
import pytest
import torch
import zmq

from tracker.protocol import (
    MAX_MESSAGE_BYTES,
    POSE_KEYS,
    REJECT_REASONS,
    Rejected,
    decode_pose,
    encode_frame,
    encode_pose,
    ground_truth,
    ingest_payload,
    parse_frame,
    pose_topic,
)
from tracker.server.faults import PARSER_REASONS, _variants, bad_payload, good_message
from tracker.server.sessions import SessionRules, SessionTable
from tracker.stream import frames_to_signals


def test_good_frame_round_trip():
    p = encode_frame("user-1", 7, 123, [0, 1.6, 0, 0, 0, 0, 2.0], left=[0.2, 1, 0.3, 0, 0, 0, 1],
                     left_tips=np.ones((5, 3)), right=None, extra={"gt": {"x": 1}})
    f = parse_frame(p)
    assert (f.session, f.seq, f.t) == ("user-1", 7, 123)
    assert f.head[6] == pytest.approx(1.0)  # quaternion normalised
    assert f.right is None and f.left.tracked and f.left.tips.shape == (5, 3)
    assert ground_truth(p) is None  # gt without pose/transl is not a ground truth


@pytest.mark.parametrize("reason", PARSER_REASONS + ("oversize",))
def test_every_parser_rejection(reason):
    variants = _variants(reason, "s-1", 1)
    assert variants
    for payload in variants:
        with pytest.raises(Rejected) as exc:
            parse_frame(payload)
        assert exc.value.reason == reason, payload[:80]


def test_rejection_names_the_session_once_it_is_valid():
    with pytest.raises(Rejected) as exc:
        parse_frame(msgpack.packb({**good_message("abc"), "head": [0.0] * 6}))
    assert exc.value.session == "abc"
    with pytest.raises(Rejected) as exc:
        parse_frame(msgpack.packb({**good_message("abc"), "session": "a b"}))
    assert exc.value.session is None


def test_unknown_keys_and_float32_ignored_or_accepted():
    msg = {**good_message("s"), "extra": {"anything": [1, 2]}}
    f = parse_frame(msgpack.packb(msg, use_single_float=True))
    assert f.left.tips.shape == (5, 3)


def test_boundaries():
    g = good_message("s")
    parse_frame(msgpack.packb({**g, "head": [100.0, 1, 0, 0, 0, 0, 1]}))  # exactly 100 m is ok
    parse_frame(msgpack.packb({**g, "head": [0, 1, 0, 0, 0, 0, 0.5]}))  # norm 0.5 is ok
    parse_frame(msgpack.packb({**g, "head": [0, 1, 0, 0, 0, 0, 2.0]}))  # norm 2 is ok
    parse_frame(msgpack.packb({**g, "session": "a" * 64}))
    with pytest.raises(Rejected, match="bad_quaternion"):
        parse_frame(msgpack.packb({**g, "head": [0, 1, 0, 0, 0, 0, 2.001]}))


def test_server_side_reasons():
    table = SessionTable(SessionRules(max_sessions=2))
    table.accept(parse_frame(msgpack.packb(good_message("a", 5))), 0)
    with pytest.raises(Rejected) as exc:
        table.accept(parse_frame(bad_payload("stale_seq", session="a", seq=5)), 1)
    assert exc.value.reason == "stale_seq" and exc.value.session == "a"
    table.accept(parse_frame(msgpack.packb(good_message("b", 1))), 2)
    with pytest.raises(Rejected) as exc:
        table.accept(parse_frame(bad_payload("session_limit", session="c")), 3)
    assert exc.value.reason == "session_limit"
    assert set(REJECT_REASONS) >= {"stale_seq", "session_limit", "oversize"}
    # a silent session frees its slot after forget_s
    table.accept(parse_frame(msgpack.packb(good_message("c", 1))), 61 * 10**9)
    assert "c" in table.sessions and "a" not in table.sessions


def test_multipart_payload_is_the_last_frame():
    p = msgpack.packb(good_message("m"))
    assert ingest_payload([b"topic", p]) == p and ingest_payload([p]) == p
    assert pose_topic("m") == b"pose/m"


def test_pose_encoding_is_float32_and_finite_ints_kept():
    msg = {"v": 1, "seq": 2**40, "transl": [0.1, 0.2, 0.3], "t_pub": 2**62}
    back = decode_pose(encode_pose(msg))
    assert back["seq"] == 2**40 and back["t_pub"] == 2**62
    assert back["transl"][0] == pytest.approx(0.1, abs=1e-7)
    assert back["transl"][0] == float(np.float32(0.1))
    assert "joints" in POSE_KEYS and "state" in POSE_KEYS


def test_wire_layer_imports_without_torch():
    import subprocess
    import sys

    code = "import sys; sys.modules['torch'] = None; import tracker.protocol"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_frames_to_signals_masks():
    g = good_message("s")
    a = parse_frame(msgpack.packb(g))
    b = parse_frame(msgpack.packb({**g, "left": None,
                                   "right": {**g["right"], "tracked": False, "tips": None}}))
    sig = frames_to_signals([a, b], "device")
    assert sig.head.shape == (2, 4, 4) and sig.tips.shape == (2, 2, 5, 3)
    assert sig.tracked.tolist() == [[True, True], [False, False]]
    assert sig.tips_valid.tolist() == [[True, True], [False, False]]
    hs = frames_to_signals([a], "half-space")  # wrists at z = +0.3 are behind a -Z-looking head
    assert hs.visible.tolist() == [[False, False]]
    assert torch.isfinite(sig.head).all()


def test_oversize_is_dropped_by_zmq_maxmsgsize():
    """The server's ingest option: a message over 64 KiB never reaches the application."""
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
    sub.setsockopt(zmq.LINGER, 0)
    sub.subscribe(b"")
    port = sub.bind_to_random_port("tcp://127.0.0.1")
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.connect(f"tcp://127.0.0.1:{port}")

    def sync():
        deadline = time.monotonic() + 10
        while not sub.poll(20):
            pub.send(b"sync")
            assert time.monotonic() < deadline
        while sub.poll(50):
            sub.recv()

    try:
        sync()
        pub.send(b"x" * MAX_MESSAGE_BYTES)  # exactly 64 KiB passes
        assert sub.poll(2000) and len(sub.recv()) == MAX_MESSAGE_BYTES
        pub.send(bad_payload("oversize"))
        pub.send_multipart([b"topic", b"y" * (MAX_MESSAGE_BYTES + 1)])
        assert not sub.poll(300)  # dropped (with the connection) before the parser
        sync()  # the PUB reconnects by itself
    finally:
        sub.close()
        pub.close()
        ctx.term()


def test_non_finite_never_published():
    from engines.base import FitResult, FitState
    from tracker.body import load_body_model
    from tracker.fitter.outputs import wire_outputs
    from tracker.server.publish import pose_messages

    theta = torch.zeros(3, 315)
    theta[:, [0, 4]] = 1.0  # identity root (6D), the rest as is
    theta[1, 312] = math.nan  # translation
    residual = torch.tensor([0.01, 0.01, math.inf])
    heads = [{"session": f"s{i}", "seq": 1, "t": 0, "t_recv": 0, "state": "ok"}
             for i in range(3)]
    body = load_body_model()
    res = FitResult(FitState(theta, torch.zeros(3, 1), torch.zeros(3, 1)), residual,
                    torch.ones(3, dtype=torch.bool),
                    *wire_outputs(body, theta, torch.zeros(3, 16), torch.zeros(3)))
    msgs = pose_messages(res, torch.zeros(3, 16), torch.ones(3, 2, dtype=torch.bool), heads)
    assert msgs[0] is not None and msgs[1] is None and msgs[2] is None


def test_finiteness_by_sum_keeps_huge_numbers_and_catches_nan_betas():
    """The message's finiteness test adds the row up in float64: float32's largest numbers,
    however many, stay finite; a NaN or infinity anywhere (betas included) does not."""
    from engines.base import FitResult, FitState
    from tracker.server.publish import pose_messages

    big = torch.finfo(torch.float32).max
    pose = torch.full((3, 156), big)
    pose[2, 7] = -big
    betas = torch.zeros(3, 10)
    betas[1, 3] = math.nan
    heads = [{"session": f"s{i}", "seq": 1, "t": 0, "t_recv": 0, "state": "ok"}
             for i in range(3)]
    res = FitResult(FitState(torch.zeros(3, 315), torch.zeros(3, 1), torch.zeros(3, 1)),
                    torch.full((3,), big), torch.ones(3, dtype=torch.bool), pose,
                    torch.full((3, 3), big), torch.full((3, 156), big))
    msgs = pose_messages(res, betas, torch.ones(3, 2, dtype=torch.bool), heads)
    assert msgs[0] is not None and msgs[1] is None and msgs[2] is not None
    assert msgs[0]["pose"][0] == float(big) and msgs[0]["visible"] == [True, True]


def test_axis_angle_near_pi_without_scipy():
    from scipy.spatial.transform import Rotation

    from tracker.geometry.arrays import matrix_to_axis_angle

    rng = np.random.default_rng(0)
    axes = rng.normal(size=(400, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angle = np.concatenate([rng.uniform(0, np.pi, 200), np.pi - 10 ** rng.uniform(-9, -3, 200)])
    R = Rotation.from_rotvec(axes * angle[:, None]).as_matrix()
    back = Rotation.from_rotvec(matrix_to_axis_angle(R)).as_matrix()
    assert np.abs(back - R).max() < 1e-9


def test_fast_pose_path_matches_torch():
    from numpy_kinematics import JointChain

    from tracker.body import load_body_model
    from tracker.fitter.theta import split_theta, theta_to_axis_angle
    from tracker.geometry.arrays import matrix_to_axis_angle, rot6d_to_matrix
    from tracker.geometry.rotations import rotation_6d_to_matrix

    body = load_body_model()
    g = torch.Generator().manual_seed(0)
    theta = torch.cat([torch.randn(5, 312, generator=g), torch.randn(5, 3, generator=g)], 1)
    betas = torch.randn(5, 16, generator=g)
    d6, transl = split_theta(theta)
    R = rot6d_to_matrix(d6.double().numpy())
    assert np.allclose(R, rotation_6d_to_matrix(d6.double()).numpy(), atol=1e-12)
    aa, _ = theta_to_axis_angle(theta.double())
    assert np.allclose(matrix_to_axis_angle(R).reshape(5, 156), aa.numpy(), atol=1e-6)
    J = JointChain(body.parents).joints(R, body.rest_joints(betas).double().numpy(),
                                        transl.double().numpy())
    assert np.allclose(J, body.forward_6d(d6, betas, transl).joints.numpy(), atol=1e-5)


class _EchoEngine:
    """A stand-in engine: the fit puts the root at the (lifted) headset position."""

    name = "echo"
    device = torch.device("cpu")
    light = None  # no light fit (``Engine.light``)
    iterations = (1,)

    def __init__(self, body):
        self.fitter = type("F", (), {"body": body})()
        self.rungs = (self,)

    def initial_state(self, B):
        from engines.base import FitState

        return FitState(torch.zeros(B, 315), torch.zeros(B, 1, 4), torch.zeros(B, 2))

    def fit(self, batch):
        from engines.base import FitResult, FitState
        from tracker.fitter.outputs import wire_outputs
        from tracker.geometry.rotations import matrix_to_rotation_6d

        B = batch.betas.shape[0]
        self.seen_head = batch.signals.head.clone()
        d6 = matrix_to_rotation_6d(torch.eye(3).expand(B, 52, 3, 3)).reshape(B, 312)
        theta = torch.cat([d6, batch.signals.head[:, :3, 3]], 1)
        st = FitState(theta, batch.state.hidden, batch.state.motion)
        wire = wire_outputs(self.fitter.body, theta, batch.betas, batch.floor_or_zero())
        return FitResult(st, torch.zeros(B), torch.ones(B, dtype=bool), *wire)


def test_floor_offset_is_added_before_the_fit_and_removed_after():
    from calibration.profile import Profile
    from tracker.body import load_body_model
    from tracker.server.core import TrackerCore
    from tracker.server.profiles import RecordedProfiles

    body = load_body_model()
    eng = _EchoEngine(body)
    profiles = RecordedProfiles(body)
    d = Profile.default(body)
    profiles.set("f", Profile(d.betas, d.T_hmd, 0.1, d.body_fingerprint))
    core = TrackerCore(eng, profiles=profiles)
    core.receive(msgpack.packb(good_message("f", 1)), 0)
    (pose,) = core.tick(1).poses
    assert float(eng.seen_head[0, 1, 3]) == pytest.approx(1.7)  # 1.6 reported + 0.1
    assert pose.msg["transl"] == pytest.approx([0.0, 1.6, 0.0], abs=1e-6)  # device frame
    assert pose.msg["state"] == "reset"
    core.receive(msgpack.packb(good_message("f", 2)), 10**7)
    assert core.tick(2 * 10**7).poses[0].msg["state"] == "ok"


def test_divergence_publishes_reset_and_resets_the_next_frame():
    from tracker.body import load_body_model
    from tracker.server.core import TrackerCore

    class Diverging(_EchoEngine):
        def fit(self, batch):
            self.resets = batch.reset.tolist()
            r = super().fit(batch)
            return dataclasses.replace(r, ok=torch.tensor([self.calls_ok.pop(0)]))

    eng = Diverging(load_body_model())
    eng.calls_ok = [True, True, False, True]
    core = TrackerCore(eng)
    states, resets = [], []
    for q in range(1, 5):
        core.receive(msgpack.packb(good_message("d", q)), q * 10**7)
        states.append(core.tick(q * 10**7 + 1).poses[0].msg["state"])
        resets.append(eng.resets[0])
    assert states == ["reset", "ok", "reset", "reset"]  # diverged at 3: reset at 3 and 4
    assert resets == [True, False, False, True]
    assert core.table.get("d").diverged == 1


def test_gap_and_clock_jumps_reset_but_stale_frames_change_nothing():
    table = SessionTable()
    s = table.accept(parse_frame(msgpack.packb(good_message("g", 1, t=0))), 0)
    table.take_pending()
    s.need_reset = False
    table.accept(parse_frame(msgpack.packb(good_message("g", 2, t=10**7))), 10**7)
    assert not s.need_reset
    with pytest.raises(Rejected):  # seq not ahead, device time not ahead: a late duplicate
        table.accept(parse_frame(msgpack.packb(good_message("g", 2, t=5 * 10**6))), 2 * 10**7)
    assert not s.need_reset and s.last_seq == 2 and s.dropped == 0
    table.accept(parse_frame(msgpack.packb(good_message("g", 3, t=2 * 10**7))), 12 * 10**8)
    assert s.need_reset and s.reset_reason == "gap"  # 1.19 s of silence
    s.need_reset = False
    table.accept(parse_frame(msgpack.packb(good_message("g", 4, t=10**6))), 121 * 10**7)
    assert s.need_reset  # the device clock ran backwards
    assert s.dropped == 2  # frames 2 and 3 were superseded before a tick took them


def test_loopback_detection_and_the_loud_warning():
    import io

    from tracker.server.security import is_loopback, warn_if_exposed

    for a in ("tcp://127.0.0.1:5555", "tcp://localhost:1", "tcp://[::1]:5", "ipc:///tmp/x"):
        assert is_loopback(a)
    for a in ("tcp://*:5555", "tcp://0.0.0.0:5555", "tcp://192.168.1.5:5555"):
        assert not is_loopback(a)
    buf = io.StringIO()
    assert warn_if_exposed(["tcp://127.0.0.1:1", "tcp://*:2"], curve=False, stream=buf)
    assert "WARNING" in buf.getvalue() and "tcp://*:2" in buf.getvalue()
    assert not warn_if_exposed(["tcp://*:2"], curve=True, stream=buf)


def test_status_samples_ring_and_percentiles():
    from tracker.server.samples import Samples, percentiles_ms

    s = Samples(100)
    assert percentiles_ms(s) == {}
    for v in range(1, 251):  # wraps: keeps the last 100 (151..250 ms)
        s.append(v * 1_000_000)
    assert len(s) == 100
    p = percentiles_ms(s)
    assert p["max"] == 250.0 and p["p50"] in (200.0, 201.0) and p["p99"] in (249.0, 250.0)
    ref = np.percentile(s.values() / 1e6, [50, 90, 99])
    assert np.allclose([p["p50"], p["p90"], p["p99"]], ref, atol=1.0)


# --- seq / t written as float64 (msgpackr's default pack(), C# and JS encoders) -------------

def _with(**kw) -> bytes:
    """A valid frame with ``kw`` replaced, floats packed as float64 (MessagePack ``cb``)."""
    return msgpack.packb({**good_message("f64"), **kw}, use_single_float=False)


def test_integral_float64_seq_and_t_are_accepted_as_integers():
    payload = _with(seq=7.0, t=1.7e15)
    assert b"\xa3seq\xcb" in payload and b"\xa1t\xcb" in payload  # really float64 on the wire
    f = parse_frame(payload)
    assert (f.seq, f.t) == (7, 1_700_000_000_000_000)
    assert type(f.seq) is int and type(f.t) is int
    for edge in (2.0**53, -(2.0**53), 0.0, -0.0):  # the exactly representable range, inclusive
        assert parse_frame(_with(t=edge)).t == int(edge)
    # a float seq is compared as the integer it holds
    table = SessionTable()
    table.accept(parse_frame(_with(seq=5.0)), 0)
    with pytest.raises(Rejected, match="stale_seq"):
        table.accept(parse_frame(_with(seq=5)), 1)
    table.accept(parse_frame(_with(seq=6.0)), 2)


@pytest.mark.parametrize("key", ["seq", "t"])
@pytest.mark.parametrize(("value", "reason"), [
    (1.5, "bad_type"), (-0.25, "bad_type"), (2.0**53 + 2, "bad_type"), (-(2.0**53) - 2, "bad_type"),
    (1e300, "bad_type"), (math.nan, "non_finite"), (math.inf, "non_finite"),
    (-math.inf, "non_finite"), (True, "bad_type"), ("7", "bad_type"), (None, "bad_type"),
    ([7], "bad_type"),
])
def test_other_seq_and_t_values_stay_rejected(key, value, reason):
    with pytest.raises(Rejected) as exc:
        parse_frame(_with(**{key: value}))
    assert exc.value.reason == reason and exc.value.session == "f64"
    assert key in str(exc.value)
