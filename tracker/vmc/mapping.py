"""SMPL+H -> Unity humanoid bones (``HumanBodyBones``): the map, the frames, the thumb.

Shared by ``tracker vmc`` (VMC protocol over OSC) and, line for line, by the Unity client's
engine-independent core (``clients/unity/Core/BodyMapping.cs``); both are checked against
the same golden vectors (``clients/unity/Tests~/golden_vectors.txt``, written by
``tools/make_golden_vectors.py``).

**Bones.** The 52 SMPL+H joints map one to one onto 52 Unity humanoid bones, and the two
trees have the same shape (every bone's parent is the map of its joint's parent), so local
rotations carry over bone by bone:

==============================  ====================================================
SMPL+H joint                    HumanBodyBones
==============================  ====================================================
pelvis                          Hips
spine1, spine2, spine3          Spine, Chest, UpperChest
neck, head                      Neck, Head
{l,r}_collar                    {Left,Right}Shoulder
{l,r}_shoulder, _elbow, _wrist  {Left,Right}UpperArm, LowerArm, Hand
{l,r}_hip, _knee, _ankle, _foot {Left,Right}UpperLeg, LowerLeg, Foot, Toes
{l,r}_index1..3                 {Left,Right}IndexProximal, Intermediate, Distal
{l,r}_middle1..3                ...MiddleProximal..Distal
{l,r}_ring1..3                  ...RingProximal..Distal
{l,r}_pinky1..3                 ...LittleProximal..Distal
{l,r}_thumb1..3                 ...ThumbProximal..Distal
==============================  ====================================================

(The hand joints of AMASS files come in the order index, middle, pinky, ring, thumb:
``tracker.body.joints.HAND_JOINT_NAMES``; the map goes by name, never by position.)

**Frames.** *Body frame*: SMPL+H's, which is also the stage frame of the wire protocol:
right-handed, +Y up, metres, at zero global orientation the body faces +Z and its left is at
+X. SMPL+H's zero pose is a T-pose (arms along ±X, palms down, fingers straight), so a joint's
axis-angle is already "the rotation from the T-pose, in the parent's T-pose frame", which is
what a VMC receiver applies to a normalised (VRM) avatar whose bones all have identity
rotation in the T-pose. *Unity frame*: left-handed, +Y up; the stage maps to Unity world by
``p -> (x, y, -z)``, ``q -> (-x, -y, z, w)`` (``S = diag(1, 1, -1)``). A Unity humanoid in
its T-pose faces +Z with its left hand at -X (VRM 1.0 and UniVRM's import), so the avatar's
own frame is the body frame mirrored in X (``S_x = diag(-1, 1, 1)``):

* a local rotation ``R`` (body frame) becomes ``S_x R S_x``: quaternion ``(x, -y, -z, w)``;
* a rest bone offset ``v`` (body frame) becomes ``S_x v = (-x, y, z)``;
* the hips' rotation relative to the (identity) VMC root is ``S G_0 S_x = Ry(180°) S_x G_0
  S_x`` (``G_0``: the global orientation): the user who faces the stage's +Z faces Unity's -Z,
  which is where the stage's +Z goes; the hips' position is ``S`` times the pelvis joint.

A Unity bone's world rotation relative to its T-pose is then ``W_b = S G_b S_x`` with ``G_b``
the body-frame global rotation of its joint: the avatar's T-pose point ``v`` goes to the
stage point ``G_b S_x v``, seen in Unity as ``S G_b S_x v``.

**The thumb.** SMPL+H's rest thumb is not the humanoid T-pose thumb. VRM 1.0 (the VMC
protocol's avatar format) defines the T-pose thumb as straight, level, 45° between the
sideways axis and +Z (forward) (``vrm-specification/specification/VRMC_vrm-1.0/tpose.md``,
definition 1.8); the bundled open model's rest thumb (thumb1 -> thumb3) points about 60°
forward of the sideways axis and 20° below level (real SMPL+H's MANO hand is similar). Each
hand's thumb chain is therefore re-expressed relative to a thumb swung by ``D``, the
shortest-arc rotation taking the body's rest thumb direction onto the VRM one:
``L'_1 = R_1 D^-1`` (proximal), ``L'_k = D R_k D^-1`` (intermediate, distal), and the thumb's
rest offsets are swung by ``D`` too. Posed positions are unchanged by this (``G_1 D^-1 D v =
G_1 v``); only the reference pose moves: at SMPL+H's zero pose the proximal thumb bone carries
``D^-1``. The roll about the thumb's own axis is not corrected: VRM 1.0 wants the thumbnail
rolled 90° outward from the other nails; the shortest arc keeps SMPL+H's roll.
"""

from __future__ import annotations

import numpy as np

from tracker.body.joints import JOINT_NAMES, NUM_JOINTS, PARENTS
from tracker.geometry.arrays import (
    axis_angle_to_matrix,
    matrix_to_quaternion,
    quaternion_multiply,
)

_BODY_BONES = {
    "pelvis": "Hips", "spine1": "Spine", "spine2": "Chest", "spine3": "UpperChest",
    "neck": "Neck", "head": "Head",
    "left_collar": "LeftShoulder", "left_shoulder": "LeftUpperArm",
    "left_elbow": "LeftLowerArm", "left_wrist": "LeftHand",
    "right_collar": "RightShoulder", "right_shoulder": "RightUpperArm",
    "right_elbow": "RightLowerArm", "right_wrist": "RightHand",
    "left_hip": "LeftUpperLeg", "left_knee": "LeftLowerLeg", "left_ankle": "LeftFoot",
    "left_foot": "LeftToes",
    "right_hip": "RightUpperLeg", "right_knee": "RightLowerLeg", "right_ankle": "RightFoot",
    "right_foot": "RightToes",
}
_FINGERS = {"index": "Index", "middle": "Middle", "pinky": "Little", "ring": "Ring",
            "thumb": "Thumb"}
_PHALANGES = {"1": "Proximal", "2": "Intermediate", "3": "Distal"}


def _humanoid_name(joint: str) -> str:
    if joint in _BODY_BONES:
        return _BODY_BONES[joint]
    side, finger = joint.split("_")
    return side.capitalize() + _FINGERS[finger[:-1]] + _PHALANGES[finger[-1]]


# HUMANOID_BONES[j]: the Unity HumanBodyBones name driven by SMPL+H joint j (JOINT_NAMES order)
HUMANOID_BONES: tuple[str, ...] = tuple(_humanoid_name(n) for n in JOINT_NAMES)
FINGER_BONES: tuple[str, ...] = HUMANOID_BONES[22:]  # 30: left hand then right hand
HIPS, HEAD = HUMANOID_BONES.index("Hips"), HUMANOID_BONES.index("Head")
# (proximal, intermediate, distal) joint indices of the left and right thumb
THUMBS = tuple(tuple(JOINT_NAMES.index(f"{s}_thumb{i}") for i in (1, 2, 3))
               for s in ("left", "right"))
# VRM 1.0 T-pose thumb directions in the body frame: level, 45° between sideways and +Z
VRM_THUMB_DIRECTIONS = np.array([[1.0, 0.0, 1.0], [-1.0, 0.0, 1.0]]) / np.sqrt(2.0)
# Ry(180°) as x y z w: the turn from the avatar's frame (faces +Z) to the stage's image in Unity
HIPS_TURN = np.array([0.0, 1.0, 0.0, 0.0])


# ------------------------------------------------------------------ body frame (SMPL+H)
def local_rotations(pose: np.ndarray) -> np.ndarray:
    """AMASS ``pose`` ``(..., 156)`` axis-angle -> local rotations ``(..., 52, 3, 3)``.

    Row ``j`` rotates joint ``j``'s T-pose frame in its parent's frame (root: the global
    orientation in the stage frame); body frame, radians in, unitless matrices out.
    """
    pose = np.asarray(pose, dtype=np.float64)
    return axis_angle_to_matrix(pose.reshape(*pose.shape[:-1], NUM_JOINTS, 3))


def global_rotations(local: np.ndarray, parents=PARENTS) -> np.ndarray:
    """Local rotations ``(..., J, 3, 3)`` -> global ``(..., J, 3, 3)``: ``G_j = G_p(j) L_j``.

    Joints are listed parents first (true of SMPL+H and of the humanoid tree).
    """
    G = np.empty_like(local)
    for j, p in enumerate(parents):
        G[..., j, :, :] = local[..., j, :, :] if p < 0 else G[..., p, :, :] @ local[..., j, :, :]
    return G


def rest_from_pose(pose: np.ndarray, transl: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """The body's rest joints ``(52, 3)`` (zero pose, zero translation; body frame, metres)
    recovered from one pose message: ``pose (156,)``, ``transl (3,)``, posed ``joints
    (156,)`` or ``(52, 3)`` (stage frame, metres).

    Forward kinematics places ``J_j = J_p + G_p (r_j - r_p)``, so the rest offsets are
    ``r_j - r_p = G_p^T (J_j - J_p)`` and ``r_0 = J_0 - transl``. Equals the ``rest`` of the
    ``skeleton/<session>`` message (for the same betas) up to float32 rounding of the wire.
    """
    J = np.asarray(joints, dtype=np.float64).reshape(NUM_JOINTS, 3)
    G = global_rotations(local_rotations(pose))
    rest = np.empty((NUM_JOINTS, 3))
    rest[0] = J[0] - np.asarray(transl, dtype=np.float64)
    for j, p in enumerate(PARENTS):
        if p >= 0:
            rest[j] = rest[p] + G[p].T @ (J[j] - J[p])
    return rest


def shortest_arc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation ``(3, 3)`` taking direction ``a (3,)`` onto ``b (3,)`` (any frame;
    lengths ignored); about ``a x b``. ``a`` opposite ``b`` is refused (no unique answer)."""
    a = np.asarray(a, np.float64) / np.linalg.norm(a)
    b = np.asarray(b, np.float64) / np.linalg.norm(b)
    axis = np.cross(a, b)
    s, c = np.linalg.norm(axis), float(a @ b)
    if c < -1.0 + 1e-9:
        raise ValueError("shortest_arc: opposite directions")
    if s < 1e-15:
        return np.eye(3)
    return axis_angle_to_matrix(axis / s * np.arctan2(s, c))


def thumb_corrections(rest: np.ndarray) -> np.ndarray:
    """``D (2, 3, 3)`` (left, right; body frame): the shortest arc from the rest thumb's
    direction (thumb1 -> thumb3 of ``rest (52, 3)``) onto the VRM T-pose thumb's."""
    rest = np.asarray(rest, dtype=np.float64).reshape(NUM_JOINTS, 3)
    return np.stack([shortest_arc(rest[t[2]] - rest[t[0]], VRM_THUMB_DIRECTIONS[s])
                     for s, t in enumerate(THUMBS)])


def humanoid_rotations(pose: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """Local rotations ``(52, 3, 3)`` relative to the humanoid (VRM) T-pose, body frame:
    SMPL+H's local rotations of ``pose (156,)``, the thumbs re-based with
    :func:`thumb_corrections` of ``rest (52, 3)`` (module notes). Row ``j`` drives
    ``HUMANOID_BONES[j]``."""
    L = local_rotations(pose)
    for D, (t1, t2, t3) in zip(thumb_corrections(rest), THUMBS, strict=True):
        L[t1] = L[t1] @ D.T
        L[t2] = D @ L[t2] @ D.T
        L[t3] = D @ L[t3] @ D.T
    return L


def humanoid_offsets(rest: np.ndarray) -> np.ndarray:
    """Rest bone offsets ``(52, 3)`` of the humanoid T-pose skeleton, body frame, metres: row
    ``j`` is ``rest_j - rest_parent`` (row 0: the rest pelvis), the thumbs' intermediate and
    distal offsets swung by ``D`` (their proximal bone keeps its place on the hand)."""
    rest = np.asarray(rest, dtype=np.float64).reshape(NUM_JOINTS, 3)
    off = rest - np.vstack([np.zeros(3), rest[list(PARENTS[1:])]])
    for D, (_, t2, t3) in zip(thumb_corrections(rest), THUMBS, strict=True):
        off[t2], off[t3] = D @ off[t2], D @ off[t3]
    return off


# ------------------------------------------------------------------ Unity frame
def stage_to_unity_position(p: np.ndarray) -> np.ndarray:
    """Stage (right-handed) positions ``(..., 3)`` -> Unity world ``(x, y, -z)``, metres."""
    return np.asarray(p, dtype=np.float64) * np.array([1.0, 1.0, -1.0])


def stage_to_unity_quaternion(q: np.ndarray) -> np.ndarray:
    """Stage rotations as ``x y z w`` ``(..., 4)`` -> Unity world ``(-x, -y, z, w)``.

    The same map takes Unity back to the stage (it is its own inverse)."""
    return np.asarray(q, dtype=np.float64) * np.array([-1.0, -1.0, 1.0, 1.0])


def body_to_avatar_rotation(R: np.ndarray) -> np.ndarray:
    """Body-frame rotations ``(..., 3, 3)`` -> the avatar's frame (faces +Z in Unity):
    ``S_x R S_x`` as ``x y z w`` quaternions ``(..., 4)``, i.e. ``(x, -y, -z, w)``."""
    return matrix_to_quaternion(R) * np.array([1.0, -1.0, -1.0, 1.0])


def body_to_avatar_offset(v: np.ndarray) -> np.ndarray:
    """Body-frame vectors ``(..., 3)`` -> the avatar's frame: ``(-x, y, z)``, metres."""
    return np.asarray(v, dtype=np.float64) * np.array([-1.0, 1.0, 1.0])


def unity_bones(pose: np.ndarray, joints: np.ndarray,
                rest: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unity local transforms of the 52 ``HUMANOID_BONES`` for one pose message.

    Args:
        pose: ``(156,)`` AMASS axis-angle (stage frame root).
        joints: ``(156,)`` or ``(52, 3)`` posed joints, stage frame, metres.
        rest: ``(52, 3)`` rest joints (body frame, metres): the ``skeleton`` message's
            ``rest`` or :func:`rest_from_pose`.

    Returns:
        ``positions (52, 3)`` metres and ``rotations (52, 4)`` ``x y z w``, Unity frame, each
        relative to the parent bone as a normalised (VRM) avatar holds them: the T-pose is
        identity everywhere (thumbs: module notes). Hips: relative to an identity root at the
        Unity world origin (position ``S`` times the pelvis joint, rotation ``S G_0 S_x``);
        the others: the rest offset and the rotation from the T-pose, in the parent's frame.
    """
    rot = body_to_avatar_rotation(humanoid_rotations(pose, rest))
    rot[HIPS] = quaternion_multiply(HIPS_TURN, rot[HIPS])
    pos = body_to_avatar_offset(humanoid_offsets(rest))
    pos[HIPS] = stage_to_unity_position(np.asarray(joints, np.float64).reshape(NUM_JOINTS, 3)[0])
    return pos, rot


def unity_world_rotations(local: np.ndarray) -> np.ndarray:
    """Unity local rotations ``(52, 4)`` ``x y z w`` (from :func:`unity_bones`) -> world
    rotations relative to the T-pose ``(52, 4)``: ``W_b = W_parent(b) L_b``, Unity frame.

    An avatar whose bones are not identity in its T-pose takes ``bone.rotation =
    root.rotation * W_b * tpose_b`` (``tpose_b``: the bone's T-pose rotation in root space)."""
    W = np.empty_like(np.asarray(local, dtype=np.float64))
    for j, p in enumerate(PARENTS):
        W[j] = local[j] if p < 0 else quaternion_multiply(W[p], local[j])
    return W
