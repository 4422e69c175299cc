"""The SMPL+H skeleton: 52 joints, their names and parents (see shared GUIDE.md)."""

from __future__ import annotations

NUM_JOINTS = 52
NUM_BODY_JOINTS = 22  # pelvis + 21 body joints
NUM_HAND_JOINTS = 15  # per hand

BODY_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
    "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)
_FINGERS = ("index", "middle", "pinky", "ring", "thumb")
HAND_JOINT_NAMES = tuple(f"{f}{i}" for f in _FINGERS for i in (1, 2, 3))
JOINT_NAMES: tuple[str, ...] = (
    BODY_JOINT_NAMES
    + tuple(f"left_{n}" for n in HAND_JOINT_NAMES)
    + tuple(f"right_{n}" for n in HAND_JOINT_NAMES)
)

PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19,
    20, 22, 23, 20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35,
    21, 37, 38, 21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50,
)

HEAD = JOINT_NAMES.index("head")
LEFT_WRIST = JOINT_NAMES.index("left_wrist")
RIGHT_WRIST = JOINT_NAMES.index("right_wrist")
WRISTS = (LEFT_WRIST, RIGHT_WRIST)
# The joints that touch the floor when standing: left/right ankle, left/right foot (ball).
FOOT_JOINTS = tuple(JOINT_NAMES.index(n) for n in ("left_ankle", "right_ankle", "left_foot",
                                                  "right_foot"))

# The leg chain below the pelvis, which no headset signal observes.
LEG_JOINT_NAMES = ("left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
                   "right_ankle", "left_foot", "right_foot")

# Fingertip order used everywhere (protocol.md, OpenXR): thumb, index, middle, ring, little.
TIP_NAMES = ("thumb", "index", "middle", "ring", "little")
# smplx's own vertex_ids keys for the SMPL+H fingertips, in TIP_NAMES order.
SMPLX_TIP_KEYS = (
    ("lthumb", "lindex", "lmiddle", "lring", "lpinky"),
    ("rthumb", "rindex", "rmiddle", "rring", "rpinky"),
)


def depth_levels(parents: tuple[int, ...] = PARENTS) -> list[list[int]]:
    """Joints grouped by depth: level ``k`` holds every joint ``k`` edges below the root."""
    depth = [0] * len(parents)
    for j, p in enumerate(parents):
        depth[j] = 0 if p < 0 else depth[p] + 1
    return [[j for j in range(len(parents)) if depth[j] == d] for d in range(max(depth) + 1)]
