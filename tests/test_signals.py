"""Headset signal geometry: frames, OpenXR conventions, visibility, AMASS -> stage."""

import math

import pytest
import torch
from synthetic_models import write_open_style_npz

from tracker.body import load_body_model
from tracker.geometry import axis_angle_to_matrix, make_transform
from tracker.signals.headset import (
    hand_visibility,
    head_to_hmd,
    signals_from_state,
    with_visibility,
)
from tracker.signals.motion import motion_signals
from tracker.signals.stage import amass_to_stage, stage_to_amass

F64 = torch.float64


@pytest.fixture(scope="module")
def body(tmp_path_factory):
    p = write_open_style_npz(tmp_path_factory.mktemp("m") / "SMPLH_NEUTRAL.npz")
    return load_body_model(p, dtype=F64)


def rest_state(body, B=1, global_aa=(0.0, 0.0, 0.0)):
    poses = torch.zeros(B, 156, dtype=F64)
    poses[:, :3] = torch.tensor(global_aa, dtype=F64)
    return body.forward_axis_angle(poses)


def test_headset_looks_where_the_body_faces(body):
    sig = signals_from_state(rest_state(body))
    forward = sig.head[0, :3, :3] @ torch.tensor([0.0, 0, -1], dtype=F64)  # VIEW looks along -Z
    assert torch.allclose(forward, torch.tensor([0.0, 0, 1], dtype=F64))
    up = sig.head[0, :3, :3] @ torch.tensor([0.0, 1, 0], dtype=F64)
    assert torch.allclose(up, torch.tensor([0.0, 1, 0], dtype=F64))
    # T_HMD's offset is in the head frame: in front of (+Z) and above (+Y) the head joint
    off = sig.head[0, :3, 3] - rest_state(body).joints[0, 15]
    assert torch.allclose(off, head_to_hmd(dtype=F64)[:3, 3])


def test_openxr_wrist_axes_at_rest(body):
    sig = signals_from_state(rest_state(body))
    R_left, R_right = sig.wrists[0, 0, :3, :3], sig.wrists[0, 1, :3, :3]
    minus_z = torch.tensor([0.0, 0, -1], dtype=F64)
    y = torch.tensor([0.0, 1, 0], dtype=F64)
    # fingers point along -Z of the OpenXR wrist: +X for the left arm, -X for the right
    assert torch.allclose(R_left @ minus_z, torch.tensor([1.0, 0, 0], dtype=F64))
    assert torch.allclose(R_right @ minus_z, torch.tensor([-1.0, 0, 0], dtype=F64))
    # back of the hand (+Y) faces up with palms down
    assert torch.allclose(R_left @ y, y) and torch.allclose(R_right @ y, y)
    for R in (R_left, R_right):
        assert torch.allclose(torch.linalg.det(R), torch.tensor(1.0, dtype=F64))


def test_wrists_follow_the_body(body):
    turned = rest_state(body, global_aa=(0.0, math.pi / 2, 0.0))  # body turned to face +X
    sig = signals_from_state(turned)
    forward = sig.head[0, :3, :3] @ torch.tensor([0.0, 0, -1], dtype=F64)
    assert torch.allclose(forward, torch.tensor([1.0, 0, 0], dtype=F64), atol=1e-12)


@pytest.mark.parametrize(
    "point,expected", [((0, 0, -0.5), True), ((0, 0, 0.5), False), ((2, 1, -0.01), True)]
)
def test_half_space_visibility(point, expected):
    head = torch.eye(4, dtype=F64)[None]
    wrist = torch.tensor([[point, point]], dtype=F64)
    tracked = torch.tensor([[True, False]])
    vis = hand_visibility(head, wrist, tracked, "half-space")
    assert vis.tolist() == [[expected, False]]
    assert hand_visibility(head, wrist, tracked, "device").tolist() == [[True, False]]


def test_half_space_uses_the_headset_frame():
    # headset at (0, 1.7, 0) turned to look along +X (yaw -90° about Y: -Z -> +X)
    R = axis_angle_to_matrix(torch.tensor([0.0, -math.pi / 2, 0.0], dtype=F64))
    head = make_transform(R, torch.tensor([0.0, 1.7, 0.0], dtype=F64))[None]
    wrists = torch.tensor([[[0.4, 1.2, 0.0], [-0.4, 1.2, 0.0]]], dtype=F64)
    vis = hand_visibility(head, wrists, torch.ones(1, 2, dtype=torch.bool), "half-space")
    assert vis.tolist() == [[True, False]]
    with pytest.raises(ValueError, match="unknown visibility mode"):
        hand_visibility(head, wrists, torch.ones(1, 2, dtype=torch.bool), "fov")


def test_arms_behind_the_back_are_invisible_in_half_space(body):
    poses = torch.zeros(1, 156, dtype=F64)
    poses[0, 16 * 3 + 1] = 2.0  # left shoulder swings the arm back (about +Y)
    poses[0, 17 * 3 + 1] = -2.0
    st = body.forward_axis_angle(poses)
    sig = signals_from_state(st, mode="half-space")
    dev = with_visibility(sig, "device")
    assert dev.visible.all()
    wrist_h = torch.cat([st.joints[0, 20], torch.ones(1, dtype=F64)])
    z_head = (torch.linalg.inv(sig.head[0]) @ wrist_h)[2]
    assert sig.visible[0, 0].item() == bool(z_head < 0)


def test_amass_to_stage_round_trip_and_upright(body):
    N = 4
    poses = 0.3 * torch.randn(N, 156, dtype=F64)
    poses[:, :3] = torch.tensor([math.pi / 2, 0, 0], dtype=F64)  # AMASS upright, facing -Y
    trans = torch.randn(N, 3, dtype=F64)
    pelvis = body.rest_joints(torch.zeros(1, 1, dtype=F64))[0, 0]
    sp, st = amass_to_stage(poses, trans, pelvis)
    assert torch.allclose(sp[:, :3], torch.zeros(N, 3, dtype=F64), atol=1e-9)  # identity
    back_p, back_t = stage_to_amass(sp, st, pelvis)
    assert torch.allclose(back_p, poses, atol=1e-9) and torch.allclose(back_t, trans, atol=1e-9)
    # joints: stage = R @ amass
    a = body.forward_axis_angle(poses, None, trans).joints
    s = body.forward_axis_angle(sp, None, st).joints
    assert torch.allclose(s[..., 1], a[..., 2]) and torch.allclose(s[..., 2], -a[..., 1])


def test_motion_signals_shapes(body):
    N = 7
    poses = 0.1 * torch.randn(N, 156, dtype=F64)
    sig, state, stage_poses = motion_signals(body, poses, torch.zeros(N, 3), torch.zeros(16),
                                             mode="half-space", chunk=3)
    assert sig.head.shape == (N, 4, 4) and sig.wrists.shape == (N, 2, 4, 4)
    assert sig.tips.shape == (N, 2, 5, 3) and sig.visible.shape == (N, 2)
    assert state.joints.shape == (N, 52, 3) and stage_poses.shape == (N, 156)
