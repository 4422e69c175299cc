"""The OpenXR source: conversions from pyopenxr structures built here (no runtime needed),
the joint-array workaround, runtime discovery messages, and (only with a runtime) live
frames."""

from __future__ import annotations

import ctypes
import math

import numpy as np
import pytest
import torch

xr = pytest.importorskip("xr")

from synthetic_models import write_open_style_npz  # noqa: E402

from tracker.body import load_body_model  # noqa: E402
from tracker.cli import main as tracker_main  # noqa: E402
from tracker.geometry.transforms import pose7_to_transform, transform_to_pose7  # noqa: E402
from tracker.openxr_source import (  # noqa: E402
    HAND_JOINT_COUNT,
    TIP_JOINTS,
    WRIST_JOINT,
    HandSample,
    OpenXRUnavailable,
    allocate_joint_locations,
    available_extensions,
    choose_extensions,
    frame_payload,
    hand_from_joints,
    head_from_location,
    locate_hand_joints,
    ns_to_timespec,
    posef_to_pose7,
    timespec_to_ns,
)
from tracker.protocol import parse_frame  # noqa: E402
from tracker.signals.headset import signals_from_state  # noqa: E402
from tracker.stream import frames_to_signals  # noqa: E402

F = xr.SpaceLocationFlags
ALL = F.ORIENTATION_VALID_BIT | F.POSITION_VALID_BIT | F.ORIENTATION_TRACKED_BIT \
    | F.POSITION_TRACKED_BIT
VALID = F.ORIENTATION_VALID_BIT | F.POSITION_VALID_BIT


def posef(p, q) -> xr.Posef:
    return xr.Posef(xr.Quaternionf(*q), xr.Vector3f(*p))


def joints(flags=ALL, positions=None, wrist=None):
    """26 ``xr.HandJointLocationEXT``; joint j at (j, 2j, 3j) cm unless given."""
    arr = (xr.HandJointLocationEXT * HAND_JOINT_COUNT)()
    for j in range(HAND_JOINT_COUNT):
        p = positions[j] if positions is not None else (0.01 * j, 0.02 * j, 0.03 * j)
        arr[j] = xr.HandJointLocationEXT(location_flags=flags, pose=posef(p, (0, 0, 0, 1)),
                                         radius=0.01)
    if wrist is not None:
        arr[WRIST_JOINT].pose = wrist
    return arr


def runtime_with_hand_tracking() -> bool:
    try:
        return "XR_EXT_hand_tracking" in available_extensions()
    except OpenXRUnavailable:
        return False


# ---------------------------------------------------------------------- conversions
def test_joint_indices_match_openxr():
    H = xr.HandJointEXT
    assert HAND_JOINT_COUNT == 26 == len(list(H))
    assert WRIST_JOINT == H.WRIST and H.PALM == 0
    assert TIP_JOINTS == (H.THUMB_TIP, H.INDEX_TIP, H.MIDDLE_TIP, H.RING_TIP, H.LITTLE_TIP)
    assert TIP_JOINTS == (5, 10, 15, 20, 25)


def test_pose_quaternion_order_axes_and_units():
    a = math.radians(90)
    q = (0.0, math.sin(a / 2), 0.0, math.cos(a / 2))  # x y z w: +90 degrees about +Y
    pose = posef((1.25, 1.6, -0.5), q)
    p7 = posef_to_pose7(pose)
    assert np.allclose(p7, [1.25, 1.6, -0.5, *q])  # metres unchanged, x y z w order kept
    R = pose7_to_transform(torch.as_tensor(p7))[:3, :3].numpy()
    # right-handed, Y up: +90 degrees about +Y turns +Z into +X and -Z (VIEW forward) into -X
    assert np.allclose(R @ [0, 0, 1], [1, 0, 0], atol=1e-12)
    assert np.allclose(R @ [0, 1, 0], [0, 1, 0], atol=1e-12)


def test_head_needs_valid_position_and_orientation():
    loc = xr.SpaceLocation(location_flags=VALID, pose=posef((0, 1.7, 0), (0, 1, 0, 0)))
    assert np.allclose(head_from_location(loc), [0, 1.7, 0, 0, 1, 0, 0])
    loc.location_flags = F.ORIENTATION_VALID_BIT
    assert head_from_location(loc) is None


def test_hand_flags_and_tips():
    arr = joints()
    h = hand_from_joints(arr, is_active=True)
    assert h.tracked
    assert np.allclose(h.tips, [[0.01 * j, 0.02 * j, 0.03 * j] for j in TIP_JOINTS])
    assert np.allclose(h.wrist, [0.01, 0.02, 0.03, 0, 0, 0, 1])
    assert hand_from_joints(arr, is_active=False) is None
    inferred = joints(flags=VALID)  # valid but not tracked: the runtime's guess
    assert hand_from_joints(inferred, True).tracked is False
    assert hand_from_joints(inferred, True, require_tracked=False).tracked is True
    arr[WRIST_JOINT].location_flags = F.ORIENTATION_VALID_BIT | F.ORIENTATION_TRACKED_BIT
    assert hand_from_joints(arr, True) is None  # no wrist position: the hand is not sent
    arr = joints()
    arr[TIP_JOINTS[3]].location_flags = F.ORIENTATION_VALID_BIT
    h = hand_from_joints(arr, True)
    assert h is not None and h.tips is None  # a tip missing: no tips, wrist still sent
    assert hand_from_joints(arr[:10], True) is None


def test_payload_roundtrip_through_protocol():
    left = hand_from_joints(joints(), True)
    payload = frame_payload("quest-1", 7, 123_456_789, np.array([0, 1.6, 0, 0, 0, 0, 1.0]),
                            left, None)
    f = parse_frame(payload)
    assert (f.session, f.seq, f.t) == ("quest-1", 7, 123_456_789)
    assert f.right is None and f.left.tracked
    assert np.allclose(f.left.wrist, left.wrist, atol=1e-6)
    assert np.allclose(f.left.tips, left.tips, atol=1e-6)
    untracked = HandSample(left.wrist, None, False)
    f = parse_frame(frame_payload("quest-1", 8, 2, f.head, None, untracked))
    assert f.left is None and f.right.tracked is False and f.right.tips is None


def test_body_signals_survive_the_openxr_structures(tmp_path):
    """A posed body's headset signals, written into OpenXR structures the way a runtime
    reports them and converted back, arrive at the fitter unchanged."""
    body = load_body_model(write_open_style_npz(tmp_path / "m.npz"), dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    poses = 0.3 * torch.randn(1, 156, generator=g, dtype=torch.float64)
    sig = signals_from_state(body.forward_axis_angle(poses, transl=torch.tensor(
        [[0.2, 1.0, -0.4]], dtype=torch.float64)))
    head7 = transform_to_pose7(sig.head[0]).numpy()
    view = xr.SpaceLocation(location_flags=ALL, pose=posef(head7[:3], head7[3:]))
    hands = []
    for s in (0, 1):
        w7 = transform_to_pose7(sig.wrists[0, s]).numpy()
        pos = np.zeros((HAND_JOINT_COUNT, 3))
        pos[list(TIP_JOINTS)] = sig.tips[0, s].numpy()
        hands.append(hand_from_joints(joints(positions=pos, wrist=posef(w7[:3], w7[3:])), True))
    frame = parse_frame(frame_payload("s", 1, 0, head_from_location(view), *hands))
    back = frames_to_signals([frame], "device", torch.float64)
    for a, b in ((back.head, sig.head), (back.wrists, sig.wrists), (back.tips, sig.tips)):
        assert torch.allclose(a, b, atol=2e-6)  # float32 on the wire
    assert back.tracked.all() and back.tips_valid.all()


def test_timespec_conversion():
    ts = ns_to_timespec(12_345_678_901)
    assert (ts.tv_sec, ts.tv_nsec) == (12, 345_678_901)
    assert timespec_to_ns(ts) == 12_345_678_901


# ---------------------------------------------------------------------- the joint array
def test_pyopenxr_default_array_is_empty_and_ours_is_not():
    assert xr.HandJointLocationsEXT().joint_count == 0  # what xr.locate_hand_joints_ext passes
    loc = allocate_joint_locations()
    assert loc.joint_count == 26 and bool(loc._joint_locations)
    assert len(loc.joint_locations) == 26


def test_locate_hand_joints_fills_our_array():
    calls = []

    def fake_runtime(tracker, info_ref, locations_ref):  # xrLocateHandJointsEXT stand-in
        info, loc = info_ref._obj, locations_ref._obj
        calls.append((tracker, info.time, loc.joint_count))
        out = ctypes.cast(loc._joint_locations,
                          ctypes.POINTER(xr.HandJointLocationEXT * loc.joint_count)).contents
        for j in range(loc.joint_count):
            out[j].location_flags = ALL
            out[j].pose.position.x = 0.1 * j
            out[j].pose.orientation.w = 1.0
        loc.is_active = 1
        return 0  # XR_SUCCESS

    loc = allocate_joint_locations()
    res = locate_hand_joints("tracker", None, 4242, loc, fn=fake_runtime)
    assert res is loc and calls == [("tracker", 4242, 26)]
    h = hand_from_joints(loc.joint_locations, bool(loc.is_active))
    assert h.tracked and np.allclose(h.tips[:, 0], [0.1 * j for j in TIP_JOINTS])
    assert math.isclose(h.wrist[0], 0.1, abs_tol=1e-6)  # float32 in the structures


# ---------------------------------------------------------------------- runtime discovery
def test_extension_choice():
    with pytest.raises(OpenXRUnavailable, match="XR_EXT_hand_tracking"):
        choose_extensions({"XR_KHR_opengl_enable", "XR_MND_headless"})
    ext, headless = choose_extensions({"XR_EXT_hand_tracking", "XR_MND_headless",
                                       "XR_KHR_convert_timespec_time", "XR_KHR_opengl_enable"})
    assert headless and ext[:2] == ["XR_EXT_hand_tracking", "XR_MND_headless"]
    assert "XR_KHR_opengl_enable" not in ext and "XR_KHR_convert_timespec_time" in ext
    ext, headless = choose_extensions({"XR_EXT_hand_tracking", "XR_KHR_opengl_enable"})
    assert not headless and ext == ["XR_EXT_hand_tracking", "XR_KHR_opengl_enable"]
    with pytest.raises(OpenXRUnavailable, match="neither"):
        choose_extensions({"XR_EXT_hand_tracking"})


@pytest.mark.skipif(runtime_with_hand_tracking(), reason="an OpenXR runtime is installed")
def test_openxr_command_without_runtime_fails_cleanly(capfd):
    assert tracker_main(["openxr", "--connect", "tcp://127.0.0.1:9"]) == 2
    out, err = capfd.readouterr()
    assert "tracker openxr: error:" in err and "Traceback" not in err
    assert ("no OpenXR runtime" in err and "Monado" in err and "SteamVR" in err
            and "XR_RUNTIME_JSON" in err) or "XR_EXT_hand_tracking" in err
    assert "OpenXR-Loader" not in err  # the loader's own noise is kept out


@pytest.mark.skipif(not runtime_with_hand_tracking(),
                    reason="needs a live OpenXR runtime with XR_EXT_hand_tracking")
def test_live_runtime_publishes_frames():
    import time

    from tracker.openxr_source import OpenXRSource

    with OpenXRSource() as src:
        t_end = time.monotonic() + 10.0
        samples = []
        for s in src.samples(stop=lambda: time.monotonic() > t_end):
            samples.append(s)
            if len(samples) >= 30:
                break
    assert samples, "the runtime delivered no located frame in 10 s (headset on and tracking?)"
    assert all(np.isfinite(s.head).all() for s in samples)
    assert all(b.t_ns > a.t_ns for a, b in zip(samples, samples[1:], strict=False))
