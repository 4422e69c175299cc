"""``tracker vmc``: the SMPL+H -> Unity humanoid map against golden vectors and known poses,
and the bridge end to end: a real ``tracker serve``, a ``tracker simulate`` headset, the
``tracker vmc`` command, and an independent OSC receiver (python-osc's server)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from server_harness import ROOT, ServerProc

from tracker.body import JOINT_NAMES, PARENTS, load_body_model
from tracker.geometry import arrays as A
from tracker.geometry import rotations as TR
from tracker.vmc import mapping as M
from tracker.vmc.osc import MAX_DATAGRAM, parse_target, vmc_frame

GOLDEN = ROOT / "clients" / "unity" / "Tests~" / "golden_vectors.txt"
S = np.diag([1.0, 1.0, -1.0])  # stage -> Unity world


def read_golden(path: Path = GOLDEN) -> dict:
    """The golden file (format: tools/make_golden_vectors.py) as a dict of arrays."""
    out: dict = {"cases": {}, "position": [], "rotation": []}
    case = None
    for line in path.read_text().splitlines():
        key, *rest = line.split()
        if key in ("bones", "smplh"):
            out[key] = rest
        elif key == "parents":
            out[key] = [int(x) for x in rest]
        elif key in ("position", "rotation"):
            v = np.array(rest, dtype=np.float64)
            out[key].append((v[: len(v) // 2], v[len(v) // 2:]))
        elif key == "case":
            case = out["cases"][rest[0]] = {}
        elif key == "end":
            case = None
        elif case is not None:
            case[key] = np.array(rest, dtype=np.float64)
    return out


@pytest.fixture(scope="module")
def golden():
    return read_golden()


@pytest.fixture(scope="module")
def body():
    return load_body_model(dtype=torch.float64)


def rotate(q, v):
    return A.quaternion_to_matrix(np.asarray(q, float)) @ np.asarray(v, float)


def test_new_array_rotations_agree_with_torch():
    rng = np.random.default_rng(0)
    aa = rng.normal(size=(500, 3)) * 1.5
    aa[:3] = [[0, 0, 0], [1e-7, 0, 0], [np.pi, 0, 0]]
    R = A.axis_angle_to_matrix(aa)
    assert np.abs(R - TR.axis_angle_to_matrix(torch.tensor(aa)).numpy()).max() < 1e-12
    q = A.matrix_to_quaternion(R)
    assert np.abs(np.linalg.norm(q, axis=-1) - 1).max() < 1e-12 and (q[:, 3] >= 0).all()
    assert np.abs(A.quaternion_to_matrix(q) - R).max() < 1e-12
    ab = A.quaternion_multiply(q[:250], q[250:])
    assert np.abs(A.quaternion_to_matrix(ab) - R[:250] @ R[250:]).max() < 1e-12


def test_bone_map_is_complete_and_keeps_the_tree():
    assert len(set(M.HUMANOID_BONES)) == 52 and len(M.FINGER_BONES) == 30
    expect = {"pelvis": "Hips", "spine1": "Spine", "spine2": "Chest", "spine3": "UpperChest",
              "left_collar": "LeftShoulder", "right_shoulder": "RightUpperArm",
              "left_foot": "LeftToes", "left_pinky1": "LeftLittleProximal",
              "right_ring3": "RightRingDistal", "left_thumb1": "LeftThumbProximal",
              "right_index2": "RightIndexIntermediate"}
    for joint, bone in expect.items():
        assert M.HUMANOID_BONES[JOINT_NAMES.index(joint)] == bone
    # Unity's humanoid hierarchy: each bone's parent is the map of its joint's parent
    unity_parent = {"Spine": "Hips", "Chest": "Spine", "UpperChest": "Chest",
                    "Neck": "UpperChest", "LeftShoulder": "UpperChest",
                    "LeftUpperArm": "LeftShoulder", "LeftHand": "LeftLowerArm",
                    "LeftThumbProximal": "LeftHand", "RightLittleDistal":
                    "RightLittleIntermediate", "LeftUpperLeg": "Hips", "LeftToes": "LeftFoot"}
    for bone, parent in unity_parent.items():
        assert M.HUMANOID_BONES[PARENTS[M.HUMANOID_BONES.index(bone)]] == parent


def test_golden_vectors_match_the_kinematics_and_the_map(golden, body):
    assert golden["bones"] == list(M.HUMANOID_BONES) and golden["parents"] == list(PARENTS)
    assert golden["smplh"] == list(JOINT_NAMES)
    for p, u in golden["position"]:
        assert np.allclose(M.stage_to_unity_position(p), u, atol=1e-15)
    for q, u in golden["rotation"]:
        assert np.allclose(M.stage_to_unity_quaternion(q), u, atol=1e-15)
    assert set(golden["cases"]) == {"tpose", "arms_down", "fist", "turned_random"}
    for c in golden["cases"].values():
        b = torch.tensor(c["betas"])[None]
        st = body.forward_axis_angle(torch.tensor(c["pose"])[None], b,
                                     torch.tensor(c["transl"])[None])
        assert np.abs(st.joints[0].numpy().reshape(-1) - c["joints"]).max() < 1e-12
        assert np.abs(body.rest_joints(b)[0].numpy().reshape(-1) - c["rest"]).max() < 1e-12
        rest = c["rest"].reshape(52, 3)
        assert np.abs(M.rest_from_pose(c["pose"], c["transl"], c["joints"]) - rest).max() < 1e-12
        pos, rot = M.unity_bones(c["pose"], c["joints"], rest)
        assert np.abs(pos.reshape(-1) - c["local_pos"]).max() < 1e-12
        assert np.abs(rot.reshape(-1) - c["local_rot"]).max() < 1e-12
        W = M.unity_world_rotations(rot)
        assert np.abs(W.reshape(-1) - c["world_rot"]).max() < 1e-12
        assert np.abs(M.thumb_corrections(rest).reshape(-1) - c["thumb"]).max() < 1e-12
        # Unity forward kinematics of the bones lands on the posed joints, seen in Unity
        P = np.zeros((52, 3))
        for j, p in enumerate(PARENTS):
            P[j] = pos[j] if p < 0 else P[p] + rotate(W[p], pos[j])
        assert np.abs(P - c["joints"].reshape(52, 3) @ S).max() < 1e-12


def test_tpose_is_identity_but_for_the_hips_turn_and_the_thumbs(golden):
    c = golden["cases"]["tpose"]
    rot = c["local_rot"].reshape(52, 4)
    thumbs = {M.HUMANOID_BONES.index(f"{s}ThumbProximal") for s in ("Left", "Right")}
    # the stage's +Z (where an unturned body faces) is Unity's -Z: the avatar turns 180 deg
    assert np.allclose(rot[M.HIPS], [0, 1, 0, 0], atol=1e-12)
    for j in set(range(1, 52)) - thumbs:
        assert np.allclose(rot[j], [0, 0, 0, 1], atol=1e-12), M.HUMANOID_BONES[j]
    # the proximal thumb turns the avatar's VRM thumb (level, 45 deg forward; Unity: left hand
    # at -X) onto the body's rest thumb (thumb1 -> thumb3), all seen in Unity world
    rest = c["rest"].reshape(52, 3)
    for side, vrm in (("Left", [-1, 0, 1]), ("Right", [1, 0, 1])):
        j = M.HUMANOID_BONES.index(f"{side}ThumbProximal")
        d = rest[j + 2] - rest[j]
        seen = rotate(rot[M.HIPS], rotate(rot[j], np.array(vrm) / np.sqrt(2)))
        assert np.allclose(seen, S @ d / np.linalg.norm(d), atol=1e-12)
        angle = 2 * np.degrees(np.arccos(min(1.0, abs(rot[j][3]))))
        assert 10 < angle < 40  # a real difference between the two T-poses


def test_arms_down_and_fist_turn_the_avatar_bones_as_expected(golden):
    rot = golden["cases"]["arms_down"]["local_rot"].reshape(52, 4)
    h = np.sqrt(0.5)
    left, right = (M.HUMANOID_BONES.index(f"{s}UpperArm") for s in ("Left", "Right"))
    # Unity avatar frame: the left arm lies along -X; +90 deg about +Z takes it to -Y (down)
    assert np.allclose(rot[left], [0, 0, h, h], atol=1e-12)
    assert np.allclose(rot[right], [0, 0, -h, h], atol=1e-12)
    assert np.allclose(rotate(rot[left], [-1, 0, 0]), [0, -1, 0], atol=1e-12)
    assert np.allclose(rotate(rot[right], [1, 0, 0]), [0, -1, 0], atol=1e-12)
    others = set(range(1, 52)) - {left, right} - {
        M.HUMANOID_BONES.index(f"{s}ThumbProximal") for s in ("Left", "Right")}
    assert all(np.allclose(rot[j], [0, 0, 0, 1], atol=1e-12) for j in others)

    rot = golden["cases"]["fist"]["local_rot"].reshape(52, 4)
    for side, out in (("Left", -1.0), ("Right", 1.0)):
        for finger in ("Index", "Middle", "Ring", "Little"):
            p, i, d = (M.HUMANOID_BONES.index(f"{side}{finger}{k}")
                       for k in ("Proximal", "Intermediate", "Distal"))
            along = np.array([out, 0.0, 0.0])  # the finger's T-pose direction, hand frame
            assert np.allclose(rotate(rot[p], along), [0, -1, 0], atol=1e-12)  # down
            back = rotate(rot[p], rotate(rot[i], along))
            assert np.allclose(back, -along, atol=1e-12)  # back towards the wrist
            tip = rotate(rot[p], rotate(rot[i], rotate(rot[d], along)))
            assert tip[1] > 0.7 and np.dot(tip, along) < -0.7  # up and back (45 deg more)


def test_rest_from_float32_poses_is_the_body_rest(body):
    rng = np.random.default_rng(3)
    pose, betas = rng.normal(scale=0.5, size=156), rng.normal(size=16)
    transl = np.array([1.0, 0.9, -2.0])
    st = body.forward_axis_angle(torch.tensor(pose)[None], torch.tensor(betas)[None],
                                 torch.tensor(transl)[None])
    f32 = lambda x: np.asarray(x, np.float32).astype(np.float64)  # noqa: E731  (the wire)
    rest = M.rest_from_pose(f32(pose), f32(transl), f32(st.joints[0].numpy()))
    assert np.abs(rest - body.rest_joints(torch.tensor(betas)[None])[0].numpy()).max() < 2e-6


def test_a_vmc_frame_is_small_bundles_of_well_formed_messages():
    from pythonosc.osc_bundle import OscBundle

    rng = np.random.default_rng(0)
    pos = rng.normal(size=(52, 3))
    rot = A.matrix_to_quaternion(A.axis_angle_to_matrix(rng.normal(size=(52, 3))))
    dgrams = vmc_frame(M.HUMANOID_BONES, pos, rot, 2.5)
    assert all(len(d) <= MAX_DATAGRAM for d in dgrams) and len(dgrams) == 4
    msgs = [m for d in dgrams for m in OscBundle(d)]
    assert [m.address for m in msgs] == (["/VMC/Ext/Root/Pos"] + ["/VMC/Ext/Bone/Pos"] * 52
                                         + ["/VMC/Ext/OK", "/VMC/Ext/T"])
    assert msgs[0].params == ["root", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    assert [m.params[0] for m in msgs[1:53]] == list(M.HUMANOID_BONES)
    assert np.allclose([m.params[1:] for m in msgs[1:53]], np.hstack([pos, rot]), atol=1e-6)
    assert msgs[-2].params == [1, 3, 0, 1] and msgs[-1].params == [2.5]


def test_poses_that_cannot_drive_bones_are_named():
    from tracker.vmc.bridge import check_pose

    good = {"pose": [0.0] * 156, "joints": [0.1] * 156, "transl": [0, 1, 0]}
    assert check_pose(good) is None
    assert check_pose([1, 2]) == "not a map"
    assert check_pose({**good, "pose": [0.0] * 155}) == "pose is not 156 numbers"
    assert "other than numbers" in check_pose({**good, "transl": [0, "1", 0]})
    assert "NaN" in check_pose({**good, "joints": [float("nan")] * 156})


def test_targets():
    assert parse_target("127.0.0.1:39539").sockaddr == ("127.0.0.1", 39539)
    assert parse_target("localhost:9000").sockaddr[1] == 9000
    assert parse_target("[::1]:39539").sockaddr[:2] == ("::1", 39539)


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tracker.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=_env())


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1",
                PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


@pytest.mark.parametrize("args, says", [
    (["--to", "127.0.0.1"], "expected HOST:PORT"),
    (["--to", "127.0.0.1:70000"], "outside 1-65535"),
    (["--to", "127.0.0.1:osc"], "is not a number"),
    (["--to", "no-such-host.invalid:39539"], "cannot resolve host"),
    (["--connect", "127.0.0.1:5556"], "expected a ZeroMQ address"),
    (["--connect", "tcp://127.0.0.1:port"], "--connect"),
    (["--session", "two words"], "--session"),
])
def test_bad_addresses_are_one_line(args, says):
    r = run_cli("vmc", *args)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tracker vmc: error:") and says in lines[0]


class OscReceiver:
    """An independent VMC receiver: python-osc's blocking UDP server (datagrams handled in
    order) recording every message as ``(address, args)``."""

    def __init__(self):
        from pythonosc.dispatcher import Dispatcher
        from pythonosc.osc_server import BlockingOSCUDPServer

        self.messages: list[tuple[str, tuple]] = []
        d = Dispatcher()
        d.set_default_handler(lambda address, *args: self.messages.append((address, args)))
        self.server = BlockingOSCUDPServer(("127.0.0.1", 0), d)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def frames(self) -> list[list[tuple[str, tuple]]]:
        """Messages grouped into frames, each closed by ``/VMC/Ext/T``."""
        out, cur = [], []
        for m in list(self.messages):
            cur.append(m)
            if m[0] == "/VMC/Ext/T":
                out.append(cur)
                cur = []
        return out


@pytest.mark.slow
def test_tracker_vmc_end_to_end():
    receiver = OscReceiver()
    server = ServerProc()
    sim = vmc = None
    try:
        sim = subprocess.Popen(
            [sys.executable, "-m", "tracker.cli", "simulate", "--connect", server.ingest,
             "--rate", "30", "--loop", "--seconds", "4", "--duration", "120", "--noise",
             "none", "--no-ground-truth", "--session-prefix", "vmc-"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=_env())
        vmc = subprocess.Popen(
            [sys.executable, "-m", "tracker.cli", "vmc", "--connect", server.publish, "--to",
             f"127.0.0.1:{receiver.port}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=_env())
        deadline = time.monotonic() + 120
        while len(receiver.frames()) < 20 and time.monotonic() < deadline:
            assert vmc.poll() is None, vmc.stderr.read()
            time.sleep(0.2)
        vmc.send_signal(signal.SIGINT)
        _, err = vmc.communicate(timeout=20)
    finally:
        for p in (vmc, sim):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        server.stop()
        receiver.server.shutdown()
        receiver.server.server_close()
    assert vmc.returncode == 0, err
    assert "following session 'vmc-0' (the first seen" in err
    assert "Traceback" not in err and "sent " in err.splitlines()[-1]
    frames = receiver.frames()
    assert len(frames) >= 20
    for frame in frames:  # complete frames only: each closes with /VMC/Ext/T
        addresses = [a for a, _ in frame]
        assert addresses.count("/VMC/Ext/Root/Pos") == 1 and addresses.count("/VMC/Ext/OK") == 1
        bones = {args[0]: np.array(args[1:], float) for a, args in frame
                 if a == "/VMC/Ext/Bone/Pos"}
        assert len(bones) >= 50 and "Head" in bones and "Hips" in bones
        assert len(set(bones) & set(M.FINGER_BONES)) == 30
        for v in bones.values():
            assert v.shape == (7,) and np.isfinite(v).all()
            assert abs(np.linalg.norm(v[3:]) - 1.0) < 1e-5  # unit quaternions (float32)
        root = dict(frame)["/VMC/Ext/Root/Pos"]
        assert root[0] == "root" and len(root) == 8
    # the avatar stands where the simulated user stands: hips about a metre up
    hips_y = [dict((args[0], args) for a, args in f if a == "/VMC/Ext/Bone/Pos")["Hips"][2]
              for f in frames]
    assert 0.6 < float(np.median(hips_y)) < 1.3
