"""Procedural motion: layout, determinism, what each action does, floor contact, fingers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tracker.body import DEFAULT_MODEL_PATH, load_body_model
from tracker.body.joints import JOINT_NAMES, PARENTS
from tracker.motion.procedural import ACTIONS, finger_curl_pose, generate_motion, write_amass_npz
from tracker.signals.stage import amass_to_stage

FPS = 20.0  # low, to keep the tests fast

# A stick-figure SMPL+H (floor at y = 0, facing +Z, left at +X): realistic joint positions and
# rigidly skinned capsules, so that geometric checks mean something without the real model.
_LEFT_JOINTS = {
    "pelvis": (0, .93, 0), "left_hip": (.08, .85, -.01), "spine1": (0, 1.04, -.02),
    "left_knee": (.10, .48, 0), "spine2": (0, 1.17, 0), "left_ankle": (.09, .08, -.04),
    "spine3": (0, 1.23, 0), "left_foot": (.11, .02, .09), "neck": (0, 1.45, -.02),
    "left_collar": (.07, 1.38, -.01), "head": (0, 1.52, .02), "left_shoulder": (.18, 1.40, -.02),
    "left_elbow": (.44, 1.40, -.03), "left_wrist": (.69, 1.40, -.02),
    "left_index1": (.78, 1.40, .025), "left_index2": (.815, 1.40, .025),
    "left_index3": (.84, 1.40, .025), "left_middle1": (.785, 1.40, .005),
    "left_middle2": (.825, 1.40, .005), "left_middle3": (.853, 1.40, .005),
    "left_pinky1": (.765, 1.395, -.04), "left_pinky2": (.79, 1.395, -.04),
    "left_pinky3": (.808, 1.395, -.04), "left_ring1": (.78, 1.40, -.018),
    "left_ring2": (.815, 1.40, -.018), "left_ring3": (.84, 1.40, -.018),
    "left_thumb1": (.72, 1.39, .03), "left_thumb2": (.745, 1.385, .055),
    "left_thumb3": (.765, 1.38, .075),
}
_TIPS = {"thumb": (.78, 1.378, .092), "index": (.862, 1.40, .025), "middle": (.877, 1.40, .005),
         "ring": (.862, 1.40, -.018), "pinky": (.826, 1.395, -.04)}


def _skeleton_arrays() -> dict:
    pos = np.zeros((52, 3))
    for j, name in enumerate(JOINT_NAMES):
        src = name.replace("right_", "left_")
        p = np.array(_LEFT_JOINTS[src], dtype=np.float64)
        pos[j] = p * ([-1, 1, 1] if name.startswith("right_") else 1)
    verts, owner = list(pos), list(range(52))
    children = {j: [c for c, p in enumerate(PARENTS) if p == j] for j in range(52)}
    for j in range(52):
        if len(children[j]) == 1:  # a capsule along the bone
            a, b = pos[j], pos[children[j][0]]
            r = 0.012 if j >= 22 else 0.04
            d = (b - a) / np.linalg.norm(b - a)
            u = np.cross(d, [0, 0, 1] if abs(d[2]) < .9 else [1, 0, 0])
            u /= np.linalg.norm(u)
            w = np.cross(d, u)
            for s in np.linspace(0.1, 0.9, 4):
                for ang in np.linspace(0, 2 * np.pi, 6, endpoint=False):
                    verts.append(a + s * (b - a) + r * (np.cos(ang) * u + np.sin(ang) * w))
                    owner.append(j)
    for side, sx in (("left", 1), ("right", -1)):  # soles: heel on the ankle, toes on the foot
        ankle, foot = JOINT_NAMES.index(f"{side}_ankle"), JOINT_NAMES.index(f"{side}_foot")
        for z in np.linspace(-.08, .15, 8):
            for x in (-.035, .035):
                verts.append([sx * .10 + x, 0.0, z])
                owner.append(ankle if z < .07 else foot)
        verts.append(pos[JOINT_NAMES.index("head")] + [0, .15, 0])
        owner.append(JOINT_NAMES.index("head"))
    tips = []
    for side, sx in (("left", 1), ("right", -1)):
        row = []
        for f in ("thumb", "index", "middle", "ring", "pinky"):
            row.append(len(verts))
            verts.append(np.array(_TIPS[f]) * [sx, 1, 1])
            owner.append(JOINT_NAMES.index(f"{side}_{f}3"))
        tips.append(row)
    V = len(verts)
    weights = np.zeros((V, 52))
    weights[np.arange(V), owner] = 1.0
    J_reg = np.zeros((52, V))
    J_reg[np.arange(52), np.arange(52)] = 1.0
    kin = np.stack([np.array(PARENTS), np.arange(52)]).astype(np.int64)
    kin[0, 0] = 4294967295
    rng = np.random.default_rng(0)
    return dict(
        v_template=np.array(verts), f=rng.integers(0, V, (V, 3)).astype(np.uint32),
        shapedirs=rng.normal(scale=1e-3, size=(V, 3, 16)), posedirs=np.zeros((V, 3, 459)),
        J_regressor=J_reg, weights=weights, kintree_table=kin,
        hands_componentsl=np.eye(45), hands_componentsr=np.eye(45),
        hands_meanl=np.zeros(45), hands_meanr=np.zeros(45),
        tip_vids_left=np.array(tips[0]), tip_vids_right=np.array(tips[1]),
        vertex_ids_names=np.array(["lthumb"]), vertex_ids_values=np.array([tips[0][0]]),
    )


@pytest.fixture(scope="module")
def body(tmp_path_factory):
    """The bundled open model if it is there, else the stick figure."""
    if DEFAULT_MODEL_PATH.is_file():
        return load_body_model()
    path = tmp_path_factory.mktemp("body") / "SMPLH_NEUTRAL.npz"
    np.savez(path, **_skeleton_arrays())
    return load_body_model(path)


def _stage(body, motion, vertices=False):
    """The motion's bodies posed in the stage frame (Y up, floor y = 0)."""
    betas = torch.as_tensor(motion["betas"][None, :body.num_betas])
    pelvis = body.rest_joints(betas)[0, 0]
    poses, trans = amass_to_stage(torch.as_tensor(motion["poses"]),
                                  torch.as_tensor(motion["trans"]), pelvis)
    n = poses.shape[0]
    return body.forward_axis_angle(poses, betas.expand(n, -1), trans, vertices=vertices)


def _facing(state):
    """Unit facing directions ``(N, 3)`` on the floor (the pelvis' +Z, stage frame)."""
    f = state.rotations[:, 0, :, 2] * torch.tensor([1.0, 0.0, 1.0])
    return f / f.norm(dim=-1, keepdim=True)


@pytest.fixture(scope="module")
def mix(body):
    return generate_motion(None, seconds=10.0, fps=FPS, seed=7, body=body)


def test_layout_and_dtypes(body):
    m = generate_motion(["idle", "walk"], seconds=2.0, fps=FPS, seed=0, body=body)
    assert m["poses"].shape == (40, 156) and m["poses"].dtype == np.float32
    assert m["trans"].shape == (40, 3) and m["trans"].dtype == np.float32
    assert m["betas"].shape == (16,) and m["betas"].dtype == np.float32
    assert m["gender"] == "neutral" and m["mocap_framerate"] == FPS
    assert set(m["labels"]) == {"idle", "walk"} and m["labels"][0] == "idle"
    assert all(np.isfinite(m[k]).all() for k in ("poses", "trans"))
    shaped = generate_motion(["idle"], seconds=0.5, seed=0, body=body, shape_std=1.0)
    assert np.abs(shaped["betas"]).max() > 0


def test_deterministic(body, tmp_path):
    a = generate_motion(None, seconds=1.5, fps=FPS, seed=3, body=body)
    b = generate_motion(None, seconds=1.5, fps=FPS, seed=3, body=body)
    c = generate_motion(None, seconds=1.5, fps=FPS, seed=4, body=body)
    for k in ("poses", "trans", "betas", "labels"):
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["poses"], c["poses"])
    with np.load(write_amass_npz(tmp_path / "m.npz", a)) as z:
        np.testing.assert_array_equal(z["poses"], a["poses"])
        assert str(z["gender"]) == "neutral" and float(z["mocap_framerate"]) == FPS


def test_random_model_runs(tmp_path):
    from synthetic_models import write_open_style_npz

    body = load_body_model(write_open_style_npz(tmp_path / "r.npz", num_vertices=400))
    m = generate_motion(["walk", "crouch"], seconds=2.0, fps=FPS, seed=1, body=body)
    assert np.isfinite(m["trans"]).all() and np.isfinite(m["poses"]).all()


def test_unknown_action():
    with pytest.raises(ValueError):
        generate_motion(["moonwalk"], seconds=1.0)


def test_walk_moves_forward_without_sliding(body):
    m = generate_motion(["walk"], seconds=3.0, fps=FPS, seed=1, body=body)
    st = _stage(body, m, vertices=True)
    along = ((st.joints[-1, 0] - st.joints[0, 0]) * _facing(st)[0]).sum()
    assert along > 1.0
    # The standing foot's lowest vertex barely moves (median over near-floor frames).
    owner, v = body.weights.argmax(1), st.vertices
    speeds = []
    for ankle, toe in ((7, 10), (8, 11)):
        vf = v[:, (owner == ankle) | (owner == toe)]
        i, r = vf[..., 1].argmin(1)[:-1], torch.arange(v.shape[0] - 1)
        step = (vf[r + 1, i] - vf[r, i])[:, [0, 2]].norm(dim=-1) * FPS
        speeds.append(step[vf[r, i, 1] < 0.01])
    assert torch.cat(speeds).median() < 0.15  # m/s, against ~1.2 m/s walking


def test_turn_changes_heading(body):
    m = generate_motion(["turn"], seconds=3.0, fps=FPS, seed=2, body=body)
    f = _facing(_stage(body, m))
    assert torch.rad2deg(torch.arccos((f[0] * f[-1]).sum().clamp(-1, 1))) > 50


def test_crouch_lowers_pelvis(body):
    m = generate_motion(["crouch"], seconds=3.0, fps=FPS, seed=0, body=body)
    st = _stage(body, m, vertices=True)
    y = st.joints[:, 0, 1]
    assert y[0] - y.min() > 0.1
    assert st.vertices[..., 1].amin(1).abs().max() < 0.02  # still on its feet


def test_wave_raises_a_wrist_above_its_shoulder(body):
    m = generate_motion(["wave"], seconds=3.0, fps=FPS, seed=0, body=body)
    j = _stage(body, m).joints
    lift = j[:, [20, 21], 1] - j[:, [16, 17], 1]
    assert lift[0].max() < 0 and lift.max() > 0.15


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reach_moves_an_arm(body, seed):
    m = generate_motion(["reach"], seconds=3.0, fps=FPS, seed=seed, body=body)
    j = _stage(body, m).joints
    rel = j[:, [20, 21]] - j[:, [16, 17]]  # wrists from shoulders
    assert (rel - rel[:1]).norm(dim=-1).max() > 0.25


def test_idle_stays_put(body):
    m = generate_motion(["idle"], seconds=3.0, fps=FPS, seed=0, body=body)
    j = _stage(body, m).joints
    assert (j[:, 0, [0, 2]] - j[0, 0, [0, 2]]).norm(dim=-1).max() < 0.1
    assert np.abs(np.diff(m["poses"], axis=0)).max() > 0


def test_feet_on_the_floor_and_smooth(body, mix):
    st = _stage(body, mix, vertices=True)
    lowest = st.vertices[..., 1].amin(1)
    assert lowest.abs().max() < 0.02
    assert (st.joints[1:] - st.joints[:-1]).norm(dim=-1).max() * FPS < 4.0  # m/s
    assert np.abs(np.diff(mix["poses"], axis=0)).max() * FPS < 9.0  # rad/s
    assert len(set(mix["labels"])) >= 3


def test_joint_angles_bounded(mix):
    aa = mix["poses"].reshape(-1, 52, 3)
    angle = np.rad2deg(np.linalg.norm(aa, axis=-1))
    assert angle[:, 1:22].max() < 150 and angle[:, 22:].max() < 110
    knees = aa[:, [4, 5], 0]  # flexion is +X, never hyperextended
    assert np.rad2deg(knees).min() > -5 and np.rad2deg(knees).max() < 145
    curls = aa[:, 22:37, 2]  # left fingers flex about -Z; they move over time
    assert curls.max() - curls.min() > np.deg2rad(30)


@pytest.mark.parametrize("side", ["left", "right"])
def test_fingers_curl_towards_the_palm(body, side):
    poses = np.zeros((3, 156), dtype=np.float32)
    hand = slice(66, 111) if side == "left" else slice(111, 156)
    poses[:, hand] = finger_curl_pose(np.array([0.0, 0.5, 1.0]), side)  # open, half, fist
    st = body.forward_axis_angle(torch.as_tensor(poses))
    h, wrist = (0, 20) if side == "left" else (1, 21)
    tips = st.tips[:, h] - st.joints[:, wrist, None]  # (3, 5, 3) from the wrist
    # The palm faces -Y in the rest pose: every tip moves down and closer to the wrist.
    assert (tips[1, :, 1] < tips[0, :, 1] - 0.02).all()
    assert (tips[2, :, 1] < tips[0, :, 1] - 0.002).all()
    dist = tips.norm(dim=-1)
    assert (dist[2] < dist[1]).all() and (dist[1] < dist[0]).all()


def test_actions_listed():
    assert set(ACTIONS) == {"walk", "turn", "reach", "crouch", "wave", "idle"}
