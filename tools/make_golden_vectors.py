"""Write the humanoid golden vectors: known poses -> Unity bone transforms.

    python tools/make_golden_vectors.py [--out clients/unity/Tests~/golden_vectors.txt]

The file is committed; two consumers check themselves against it:
``tests/test_vmc.py`` (the Python map of ``tracker vmc``) and ``tools/test_csharp.sh`` (the
Unity client's engine-independent C# core, under Mono). Inputs come from the project's own
kinematics (the bundled open body model, float64), outputs from
:mod:`tracker.vmc.mapping`. Rerun it only when the mapping is meant to change.

Format (plain text, one record per line, numbers in C's ``%.17g``, whitespace separated)::

    golden 1
    smplh <52 SMPL+H joint names>            # the wire's joint order (JOINT_NAMES)
    bones <52 HumanBodyBones names>          # HUMANOID_BONES order = SMPL+H joint order
    parents <52 ints>                        # -1 for Hips
    position <stage x y z> <unity x y z>     # stage -> Unity world, several lines
    rotation <stage x y z w> <unity x y z w>
    case <name>
    betas <K>                                # body shape
    transl <3>                               # stage frame, metres
    pose <156>                               # AMASS axis-angle, radians
    joints <156>                             # posed joints, stage frame, metres
    rest <156>                               # rest joints, body frame, metres
    thumb <18>                               # D, left then right, 3x3 row-major
    local_pos <156>                          # Unity local bone positions (52 x 3)
    local_rot <208>                          # Unity local bone rotations (52 x x y z w)
    world_rot <208>                          # Unity world rotations relative to the T-pose
    end
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from tracker.body import JOINT_NAMES, PARENTS, load_body_model
from tracker.vmc.mapping import (
    HUMANOID_BONES,
    stage_to_unity_position,
    stage_to_unity_quaternion,
    thumb_corrections,
    unity_bones,
    unity_world_rotations,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "clients" / "unity" / "Tests~" / "golden_vectors.txt"
FINGERS = ("index", "middle", "ring", "pinky")


def _set(pose: np.ndarray, joint: str, aa) -> None:
    j = JOINT_NAMES.index(joint)
    pose[3 * j:3 * j + 3] = aa


def known_poses(body) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``name -> (pose (156,), betas (K,), transl (3,))``: the T-pose, arms down, a fist,
    and a turned, shaped, random pose. Body frame: +Y up, faces +Z, left at +X."""
    K = body.num_betas
    zero = np.zeros(K)
    cases = {}
    tpose = np.zeros(156)
    cases["tpose"] = (tpose, zero, np.array([0.0, 0.95, 0.0]))

    down = np.zeros(156)  # the left arm (along +X) about +Z by -90 deg, the right by +90 deg
    _set(down, "left_shoulder", [0.0, 0.0, -np.pi / 2])
    _set(down, "right_shoulder", [0.0, 0.0, np.pi / 2])
    cases["arms_down"] = (down, zero, np.array([0.0, 0.95, 0.0]))

    fist = np.zeros(156)  # fingers curl towards the palm (-Y): 90, 90, 45 degrees
    for side, sign in (("left", -1.0), ("right", 1.0)):
        for f in FINGERS:
            for k, angle in ((1, np.pi / 2), (2, np.pi / 2), (3, np.pi / 4)):
                _set(fist, f"{side}_{f}{k}", [0.0, 0.0, sign * angle])
        rest = body.rest_joints(torch.zeros(1, K, dtype=body.dtype))[0].numpy()
        t1, t3 = (JOINT_NAMES.index(f"{side}_thumb{k}") for k in (1, 3))
        d = rest[t3] - rest[t1]
        axis = np.cross(d, [0.0, -1.0, 0.0])  # turns the thumb down, over the palm
        axis /= np.linalg.norm(axis)
        for k, angle in ((1, 0.3), (2, 0.6), (3, 0.6)):
            _set(fist, f"{side}_thumb{k}", axis * angle)
    cases["fist"] = (fist, zero, np.array([0.0, 0.95, 0.0]))

    rng = np.random.default_rng(16)
    turned = rng.normal(scale=0.3, size=156)
    turned[:3] = [0.1, np.pi - 0.2, -0.05]  # facing the stage's -Z, the OpenXR forward
    cases["turned_random"] = (turned, rng.normal(size=K), np.array([0.4, 0.92, -1.3]))
    return cases


def _fmt(xs) -> str:
    return " ".join(f"{float(x):.17g}" for x in np.asarray(xs, dtype=np.float64).reshape(-1))


def golden_lines(body) -> list[str]:
    lines = ["golden 1", "smplh " + " ".join(JOINT_NAMES), "bones " + " ".join(HUMANOID_BONES),
             "parents " + " ".join(str(p) for p in PARENTS)]
    rng = np.random.default_rng(7)
    for _ in range(3):
        p = rng.normal(size=3)
        lines.append(f"position {_fmt(p)} {_fmt(stage_to_unity_position(p))}")
    for _ in range(3):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        lines.append(f"rotation {_fmt(q)} {_fmt(stage_to_unity_quaternion(q))}")
    for name, (pose, betas, transl) in known_poses(body).items():
        b = torch.tensor(betas, dtype=body.dtype)[None]
        st = body.forward_axis_angle(torch.tensor(pose, dtype=body.dtype)[None], b,
                                     torch.tensor(transl, dtype=body.dtype)[None])
        joints = st.joints[0].numpy()
        rest = body.rest_joints(b)[0].numpy()
        pos, rot = unity_bones(pose, joints, rest)
        lines += [f"case {name}", f"betas {_fmt(betas)}", f"transl {_fmt(transl)}",
                  f"pose {_fmt(pose)}", f"joints {_fmt(joints)}", f"rest {_fmt(rest)}",
                  f"thumb {_fmt(thumb_corrections(rest))}", f"local_pos {_fmt(pos)}",
                  f"local_rot {_fmt(rot)}", f"world_rot {_fmt(unity_world_rotations(rot))}",
                  "end"]
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    body = load_body_model(dtype=torch.float64)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(golden_lines(body)) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
