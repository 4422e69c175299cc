"""BVH parser edge cases, the SMPL+H writer, mappings, glitch repair and the exact round trip
SMPL+H -> BVH -> importer (retargeting)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tracker.body import load_body_model
from tracker.body.joints import JOINT_NAMES
from tracker.motion.bvh import BvhError, parse_bvh, smplh_to_bvh_text, world_transforms
from tracker.motion.mappings import (
    PROFILES,
    detect_profile,
    load_mapping,
    mapping_from_dict,
    normalize_name,
    resolve,
)
from tracker.motion.targets import bvh_targets, repair_jumps

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "motion"
FPS = 15.0


def _rot(axis: str, deg: float) -> np.ndarray:
    """Elementary rotation matrix (column vectors), written out by hand."""
    c, s = np.cos(np.deg2rad(deg)), np.sin(np.deg2rad(deg))
    return {"X": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
            "Y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "Z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def _world(bvh):
    R, t = bvh.local_transforms()
    return world_transforms(bvh.parents, R, t)


@pytest.mark.parametrize("order", ["XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX"])
def test_rotation_orders_compose_in_file_order(order):
    a = (30.0, -50.0, 70.0)
    chans = " ".join(f"{ax}rotation" for ax in order)
    text = f"""HIERARCHY
ROOT hips
{{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition {chans}
  JOINT arm
  {{
    OFFSET 1 2 3
    CHANNELS 3 {chans}
    End Site
    {{
      OFFSET 0 0 4
    }}
  }}
}}
MOTION
Frames: 1
Frame Time: 0.01
5 6 7 {a[0]} {a[1]} {a[2]} {a[2]} {a[0]} {a[1]}
"""
    bvh = parse_bvh(text)
    R, p = _world(bvh)
    R0 = _rot(order[0], a[0]) @ _rot(order[1], a[1]) @ _rot(order[2], a[2])
    R1 = _rot(order[0], a[2]) @ _rot(order[1], a[0]) @ _rot(order[2], a[1])
    np.testing.assert_allclose(R[0, 0], R0, atol=1e-12)
    np.testing.assert_allclose(p[0, 1], [5, 6, 7] + R0 @ [1, 2, 3], atol=1e-9)
    np.testing.assert_allclose(p[0, 2], p[0, 1] + R0 @ R1 @ [0, 0, 4], atol=1e-9)


def test_channel_counts_positions_scales_and_end_sites():
    text = (
        "HIERARCHY\nROOT Root\n{\n OFFSET 0 0 0\n CHANNELS 3 Xposition Yposition Zposition\n"
        " JOINT Slide\n {\n  OFFSET 1 0 0\n  CHANNELS 6 Xposition Yposition Zposition"
        " Zrotation Xrotation Yrotation\n"
        "  JOINT Hinge\n  {\n   OFFSET 0 1 0\n   CHANNELS 1 Zrotation\n"
        "   JOINT Scaled\n   {\n    OFFSET 0 0 1\n    CHANNELS 9 Xposition Yposition Zposition"
        " Xrotation Yrotation Zrotation Xscale Yscale Zscale\n"
        "    End Site\n    {\n     OFFSET 2 0 0\n    }\n   }\n  }\n }\n}\n"
        "MOTION\nFrames: 2\nFrame Time: 0.5\n"
        "0 0 0  1 0 0 0 0 0  0  0 0 1 0 0 0 9 9 9\n"
        "1 2 3  0 5 0 0 0 0  90  0 0 1 0 0 0 1 1 1\n"
    )
    bvh = parse_bvh(text)
    assert bvh.names == ["Root", "Slide", "Hinge", "Scaled", "Scaled_end"]
    assert list(bvh.parents) == [-1, 0, 1, 2, 3]
    assert bvh.is_end.tolist() == [False, False, False, False, True]
    assert bvh.channels[4] == () and bvh.fps == 2.0 and bvh.num_frames == 2
    _, p = _world(bvh)
    # frame 0: position channels replace offsets (Slide at 1,0,0), scale ignored
    np.testing.assert_allclose(p[0, 4], [1 + 2, 1, 1], atol=1e-9)
    # frame 1: root moved, Slide at (0,5,0) from it, Hinge turns 90 deg about Z
    np.testing.assert_allclose(p[1, 2], [1, 8, 3], atol=1e-9)
    np.testing.assert_allclose(p[1, 4], [1, 8, 3] + np.array([0, 0, 1]) + [0, 2, 0], atol=1e-9)


def test_tabs_crlf_braces_on_the_same_line_and_names_with_spaces():
    text = ("HIERARCHY\r\nROOT Bip01 Pelvis {\r\n\tOFFSET\t0\t0\t0\r\n\tCHANNELS\t6\tXposition\t"
            "Yposition\tZposition\tZrotation\tXrotation\tYrotation\r\n\tJOINT Bip01 L Thigh\r\n"
            "\t{\r\n\t\tOFFSET 0.1 -0.05 0\r\n\t\tCHANNELS 3 Zrotation Xrotation Yrotation\r\n"
            "\t\tEnd Site\r\n\t\t{\r\n\t\t\tOFFSET 0 -0.4 0\r\n\t\t}\r\n\t}\r\n}\r\n"
            "MOTION\r\nFrames:\t2\r\nFrame Time:\t0.0083333\r\n"
            "0\t1\t0\t0\t0\t0\t0\t0\t0\r\n0 1 0 0 0 0 0 0 0\r\n")
    bvh = parse_bvh(text)
    assert bvh.names == ["Bip01 Pelvis", "Bip01 L Thigh", "Bip01 L Thigh_end"]
    assert abs(bvh.fps - 120.0) < 0.01
    _, p = _world(bvh)
    np.testing.assert_allclose(p[0, 2], [0.1, 0.55, 0], atol=1e-9)


def test_truncated_and_malformed_files():
    head = ("HIERARCHY\nROOT a\n{\nOFFSET 0 0 0\nCHANNELS 3 Xposition Yposition Zposition\n"
            "End Site\n{\nOFFSET 0 1 0\n}\n}\nMOTION\nFrames: 3\nFrame Time: 0.1\n")
    bvh = parse_bvh(head + "1 2 3\n4 5 6\n7 8")  # the last frame is cut off
    assert bvh.num_frames == 2 and "truncated" in bvh.warnings[0]
    with pytest.raises(BvhError, match="no motion frames"):
        parse_bvh(head)
    with pytest.raises(BvhError, match="non-numeric"):
        parse_bvh(head + "1 2 x\n")
    with pytest.raises(BvhError, match="line 5"):
        parse_bvh(head.replace("CHANNELS 3", "CHANNELS three"))
    with pytest.raises(BvhError, match="MOTION"):
        parse_bvh(head.split("MOTION")[0])
    with pytest.raises(BvhError):
        parse_bvh("not a bvh at all")


# ------------------------------------------------------------------------------ the writer
@pytest.fixture(scope="module")
def body():
    return load_body_model()


@pytest.fixture(scope="module")
def motion(body):
    from tracker.motion.procedural import generate_motion

    return generate_motion(["reach", "wave"], seconds=2.0, fps=FPS, seed=3, body=body,
                           shape_std=1.0)


@pytest.mark.parametrize("up,unit", [("y", "cm"), ("z", "m")])
def test_writer_skeleton_is_the_body_and_not_mirrored(body, motion, up, unit):
    bvh = parse_bvh(smplh_to_bvh_text(motion["poses"], motion["trans"], motion["betas"], body,
                                      FPS, unit=unit, up=up))
    assert {n for n in bvh.names if not n.endswith("_end")} == set(JOINT_NAMES)
    tg = bvh_targets(bvh, PROFILES["smplh"], fps=None, clean=False)
    assert tg.up == "+" + up and tg.unit == {"cm": 0.01, "m": 1.0}[unit]
    with torch.no_grad():
        st = body.forward_axis_angle(torch.as_tensor(motion["poses"]),
                                     torch.as_tensor(motion["betas"])[None].expand(30, -1),
                                     torch.as_tensor(motion["trans"]))
    np.testing.assert_allclose(tg.pos, st.joints[:, tg.joints].numpy(), atol=2e-5)
    # joint frames: SMPL+H's, turned by the file's rest frame (Rx(90) for a Z-up file)
    A = np.eye(3) if up == "y" else _rot("X", 90)
    np.testing.assert_allclose(tg.rot @ A, st.rotations[:, tg.joints].numpy(), atol=1e-4)
    # rest pose in the file: the left wrist on the +X side (Y up, facing +Z), as in SMPL+H
    R, t = bvh.local_transforms()
    _, p = world_transforms(bvh.parents, np.broadcast_to(np.eye(3), R.shape), t)
    if up == "y":
        assert p[0, bvh.index("left_wrist"), 0] > 50 and p[0, bvh.index("right_wrist"), 0] < -50


def test_unit_and_up_detection(body, motion):
    text = smplh_to_bvh_text(motion["poses"], motion["trans"], motion["betas"], body, FPS,
                             unit="m", up="z")
    bvh = parse_bvh(text)
    for scale, want in ((1.0, 1.0), (100.0, 0.01), (1000.0, 0.001)):
        b = parse_bvh(text)
        b.offsets *= scale
        b.motion[:, :3] *= scale  # the root's position channels
        tg = bvh_targets(b, PROFILES["smplh"], fps=None, clean=False)
        assert tg.unit == want and tg.up == "+z"
        np.testing.assert_allclose(tg.pos, bvh_targets(bvh, PROFILES["smplh"], None, False).pos,
                                   atol=1e-6)
    # the mapping can set both
    m = mapping_from_dict({"joints": {n: n for n in JOINT_NAMES}, "up": "z", "unit": "cm"})
    assert bvh_targets(bvh, m, fps=None).unit == 0.01


@pytest.mark.parametrize("up", ["y", "z"])
def test_round_trip_smplh_writer_importer_within_5mm(body, motion, up):
    from tracker.motion.retarget import RetargetOptions, retarget

    text = smplh_to_bvh_text(motion["poses"], motion["trans"], motion["betas"], body, FPS, up=up)
    res = retarget(parse_bvh(text), body, None, RetargetOptions(fps=FPS, floor=False))
    assert res.mapping == "smplh" and res.hands and res.segments == [(0, 30)] and not res.notes
    n = len(res.poses)
    with torch.no_grad():
        a = body.forward_axis_angle(torch.as_tensor(motion["poses"]),
                                    torch.as_tensor(motion["betas"])[None].expand(n, -1),
                                    torch.as_tensor(motion["trans"]))
        b = body.forward_axis_angle(torch.as_tensor(res.poses),
                                    torch.as_tensor(res.betas)[None].expand(n, -1),
                                    torch.as_tensor(res.trans))
    err = (a.joints - b.joints).norm(dim=-1)
    assert err.max() < 0.005, f"max joint error {err.max() * 1000:.1f} mm"
    assert res.error_mm < 3.0
    # wrist orientations (what the headset sees) come back too
    Rw = a.rotations[:, [20, 21]].transpose(-1, -2) @ b.rotations[:, [20, 21]]
    ang = torch.arccos(((Rw.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1))
    assert torch.rad2deg(ang).max() < 3.0


def test_rig_writer_other_skeleton_and_rest_pose(body, motion):
    """``rig_bvh_text``: a rig in an A-pose rest, Z up, in metres, XYZ order, without spine2;
    its joints sit on the SMPL+H joints and turn with them (constant frame offsets)."""
    from tracker.motion.bvh import RigJoint, rig_bvh_text
    from tracker.motion.mappings import mapping_from_dict

    joints = [RigJoint("Hips", "pelvis"), RigJoint("Spine", "spine1", "Hips"),
              RigJoint("Chest", "spine3", "Spine"), RigJoint("Head", "head", "Chest",
                                                             end=("head", (0, 0.1, 0)))]
    for s in ("left", "right"):
        joints += [RigJoint(f"{s}Arm", f"{s}_shoulder", "Chest"),
                   RigJoint(f"{s}Hand", f"{s}_wrist", f"{s}Arm", end=(f"{s}_wrist", (0, 0, 0.1))),
                   RigJoint(f"{s}Leg", f"{s}_hip", "Hips"),
                   RigJoint(f"{s}Foot", f"{s}_ankle", f"{s}Leg", end=(f"{s}_foot", (0, 0, 0)))]
    poses = np.array(motion["poses"], np.float64).reshape(-1, 52, 3)
    poses[:, [6, 9, 12, 18, 19, 4, 5, 13, 14]] = 0  # what the rig lacks does not move
    rest = np.zeros((52, 3))
    rest[16], rest[17] = [0, 0, -np.pi / 4], [0, 0, np.pi / 4]
    text = rig_bvh_text(poses.reshape(-1, 156), motion["trans"], motion["betas"], body, FPS,
                        joints, rest, unit="m", up="z", order="XYZ")
    bvh = parse_bvh(text)
    tg = bvh_targets(bvh, mapping_from_dict({"joints": {j.follows: j.name for j in joints}}),
                     fps=None, clean=False)
    with torch.no_grad():
        st = body.forward_axis_angle(torch.as_tensor(poses.reshape(-1, 156), dtype=torch.float32),
                                     torch.as_tensor(motion["betas"])[None].expand(30, -1),
                                     torch.as_tensor(motion["trans"]))
    np.testing.assert_allclose(tg.pos, st.joints[:, tg.joints].numpy(), atol=2e-5)
    C = np.swapaxes(tg.rot, -1, -2) @ st.rotations[:, tg.joints].double().numpy()
    np.testing.assert_allclose(C, np.broadcast_to(C[:1], C.shape), atol=1e-4)
    # at rest the arms hang 45 degrees down (A-pose), in the file's Z-up world
    _, p = world_transforms(bvh.parents, np.broadcast_to(np.eye(3), (1, len(bvh.names), 3, 3)),
                            bvh.offsets[None])
    arm = p[0, bvh.index("leftHand")] - p[0, bvh.index("leftArm")]
    assert abs(np.degrees(np.arctan2(-arm[2], arm[0])) - 45) < 1


# ------------------------------------------------------------------------------ mappings
def test_mapping_profiles_names_and_user_files(tmp_path):
    assert normalize_name("mixamorig:LeftArm") == normalize_name("Left_Arm") == "leftarm"
    iclone = list(PROFILES["iclone-cc"].joints.values()) + ["RL_BoneRoot", "CC_Base_Hip"]
    poser = list(PROFILES["poser"].joints.values()) + ["chest", "lButtock"]
    mixamo = ["mixamorig:" + n for n in PROFILES["mixamo"].joints.values()]
    assert detect_profile(iclone).name == "iclone-cc"
    assert detect_profile(poser).name == "poser"
    assert detect_profile(mixamo).name == "mixamo"
    assert detect_profile(["a", "b", "c"]) is None
    found, missing = resolve(PROFILES["mixamo"], mixamo[:-1])
    assert len(missing) == 1 and len(found) == len(mixamo) - 1
    p = tmp_path / "m.json"
    p.write_text(json.dumps({"joints": {"pelvis": "Hips", "left_knee": "LKnee"}, "unit": "in",
                             "up": "z"}))
    m = load_mapping(p)
    assert m.unit == 0.0254 and m.up == "z" and m.joints["left_knee"] == "LKnee"
    with pytest.raises(ValueError, match="unknown SMPL"):
        mapping_from_dict({"joints": {"left_elbw": "x"}})
    with pytest.raises(ValueError, match="'up'"):
        mapping_from_dict({"joints": {"pelvis": "x"}, "up": "w"})
    with pytest.raises(ValueError, match="neither"):
        load_mapping(tmp_path / "missing.json")


def test_repair_jumps_fills_spikes_and_cuts_teleports():
    fps, n = 60.0, 200
    t = np.arange(n) / fps
    pos = np.stack([np.stack([np.sin(t + k), np.cos(t), 0 * t + k * 0.1], -1)
                    for k in range(5)], 1)  # (n, 5, 3), about 1 m/s
    rot = np.broadcast_to(np.eye(3), (n, 5, 3, 3)).copy()
    spiky = pos.copy()
    spiky[100:102, 2] += 0.8  # a two-frame glitch of one joint
    out, _, segs, fixed = repair_jumps(spiky, rot, fps, list(range(5)))
    assert fixed == 2 and segs == [(0, n)]
    np.testing.assert_allclose(out, pos, atol=2e-3)
    cut = pos.copy()
    cut[:1] += 1.5  # a calibration pose glued in front
    cut[120:] += 2.0  # and a teleport
    _, _, segs, _ = repair_jumps(cut, rot, fps, list(range(5)))
    assert segs == [(1, 120), (120, n)]


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/motion")
def test_shared_clip_retargets_within_30mm(body):
    from tracker.motion.bvh import read_bvh
    from tracker.motion.retarget import RetargetOptions, retarget

    bvh = read_bvh(SHARED / "cmu-iclone" / "002_01.bvh")
    bvh.motion = bvh.motion[:60]
    res = retarget(bvh, body, None, RetargetOptions(fps=30, shape_iters=100, iters=40))
    assert res.mapping == "iclone-cc" and res.up == "+y" and res.unit == 0.01
    assert res.error_mm < 30.0
    assert not res.hands and np.all(res.poses[:, 66:] == 0)  # CMU fingers do not move


def test_joint_fk_matches_the_body_model(body):
    from tracker.motion.ik import joint_fk

    g = torch.Generator().manual_seed(0)
    R = torch.linalg.qr(torch.randn(4, 52, 3, 3, generator=g))[0]
    R = R * torch.det(R)[..., None, None]  # proper rotations
    b, t = torch.randn(1, 16, generator=g), torch.randn(4, 3, generator=g)
    st = body(R, b.expand(4, -1), t)
    G, x = joint_fk(body.rest_joints(b), R, t)
    torch.testing.assert_close(G, st.rotations)
    torch.testing.assert_close(x, st.joints, atol=1e-5, rtol=0)
