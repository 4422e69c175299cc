"""Plausible finger articulation for motions without usable fingers (CMU and most mocap).

Instead of sampling MANO poses (the paper's choice, licensed), hands are built from open
anatomical knowledge: per-joint ranges of motion, a mixture of everyday hand shapes (open,
relaxed, fist, point, pinch, grasp), moved between smoothly in time, seeded.

Anatomical angles, degrees, per hand ``(..., 5, 4)`` with fingers in :data:`FINGERS` order:

* index, middle, ring, pinky: ``(mcp_flex, mcp_abd, pip, dip)``; ``mcp_abd`` > 0 spreads the
  finger away from the middle finger;
* thumb: ``(cmc_flex, cmc_abd, mcp, ip)``: CMC flexion (in the palm plane, towards the
  fingers), CMC palmar abduction (away from the palm; with flexion it opposes the thumb),
  MCP and IP flexion (towards and across the palm).

Axes (SMPL+H rest pose, model frame): the left fingers point along +X with the palm down
(-Y) and the thumb on the +Z side, so finger flexion is a rotation about the joint's -Z axis
(tips move towards -Y) and spreading is about +-Y; the thumb flexes about the axis
``d x (-Y)`` across its own direction ``d``. The right hand is the mirror image:
axis-angles ``(x, y, z) -> (x, -y, -z)``.
"""

from __future__ import annotations

import numpy as np

FINGERS = ("index", "middle", "ring", "pinky", "thumb")
# SMPL+H order of the hand joints: index, middle, pinky, ring, thumb (3 joints each).
_SMPLH_ORDER = (0, 1, 3, 2, 4)
HAND_LIMITS = np.array([  # (min, max) degrees per finger and parameter
    [[0, 90], [-20, 20], [0, 110], [0, 80]],  # index
    [[0, 90], [-20, 20], [0, 110], [0, 80]],  # middle
    [[0, 90], [-20, 20], [0, 110], [0, 80]],  # ring
    [[0, 90], [-20, 20], [0, 110], [0, 80]],  # pinky
    [[-15, 50], [0, 60], [0, 60], [-10, 80]],  # thumb: CMC flex, CMC abd, MCP, IP
], dtype=np.float64)
DIP_PIP_RATIO = 2.0 / 3.0
# Rest direction of the left thumb (from its CMC to its tip) in the model frame.
THUMB_DIR = np.array([0.47, -0.37, 0.80]) / np.linalg.norm([0.47, -0.37, 0.80])
_MIRROR = np.array([1.0, -1.0, -1.0])

# Shapes: per finger (mcp_flex, mcp_abd, pip) for index..pinky (dip follows the pip), and
# (cmc_flex, cmc_abd, mcp, ip) for the thumb. Degrees.
SHAPES: dict[str, tuple[np.ndarray, np.ndarray]] = {
    "open": (np.array([[3, 12, 3], [3, 2, 3], [3, 8, 3], [3, 15, 3]]),
             np.array([-10, 5, 0, 0])),
    "relaxed": (np.array([[20, 4, 30], [25, 1, 38], [30, 3, 42], [35, 6, 45]]),
                np.array([10, 20, 15, 15])),
    "fist": (np.array([[85, 0, 100], [88, 0, 105], [88, 0, 105], [85, 0, 100]]),
             np.array([30, 45, 40, 20])),
    "point": (np.array([[3, 2, 3], [85, 0, 100], [88, 0, 105], [85, 0, 100]]),
              np.array([30, 40, 40, 30])),
    "pinch": (np.array([[35, 0, 45], [35, 0, 50], [45, 0, 60], [50, 2, 65]]),
              np.array([30, 30, 20, 5])),
    "grasp": (np.array([[55, 0, 65], [58, 0, 70], [60, 0, 70], [62, 3, 70]]),
              np.array([15, 40, 20, 20])),
}
SHAPE_WEIGHTS = {"relaxed": 0.35, "open": 0.15, "fist": 0.1, "point": 0.1, "pinch": 0.15,
                 "grasp": 0.15}


def shape_angles(name: str) -> np.ndarray:
    """Anatomical angles ``(5, 4)`` (degrees) of a named shape of :data:`SHAPES`."""
    f, t = SHAPES[name]
    out = np.zeros((5, 4))
    out[:4, :3] = f
    out[:4, 3] = DIP_PIP_RATIO * f[:, 2]
    out[4] = t
    return out


def clip_to_limits(angles: np.ndarray) -> np.ndarray:
    """``angles (..., 5, 4)`` clipped to :data:`HAND_LIMITS`."""
    return np.clip(angles, HAND_LIMITS[..., 0], HAND_LIMITS[..., 1])


def thumb_flexion_axis() -> np.ndarray:
    """Left thumb MCP/IP flexion axis ``(3,)``: turns :data:`THUMB_DIR` towards the palm and
    across it (the thumb's pad faces the fingers, so it does not curl straight down)."""
    y = np.array([0.0, 1, 0])
    across = np.cross(y, THUMB_DIR)  # in the palm plane, towards the fingers
    u = 0.6 * across / np.linalg.norm(across) - 0.8 * y
    axis = np.cross(THUMB_DIR, u)
    return axis / np.linalg.norm(axis)


def _quat(rotvec: np.ndarray) -> np.ndarray:
    """Axis-angles ``(..., 3)`` -> quaternions ``(..., 4)`` (x y z w)."""
    t = np.linalg.norm(rotvec, axis=-1, keepdims=True)
    k = np.where(t < 1e-9, 0.5, np.sin(t / 2) / np.maximum(t, 1e-12))
    return np.concatenate([rotvec * k, np.cos(t / 2)], -1)


def _compose_rotvec(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Axis-angle of the rotation ``R(a) @ R(b)``, inputs and output ``(..., 3)``."""
    qa, qb = _quat(a), _quat(b)
    va, wa, vb, wb = qa[..., :3], qa[..., 3:], qb[..., :3], qb[..., 3:]
    v = wa * vb + wb * va + np.cross(va, vb)
    w = wa * wb - np.sum(va * vb, -1, keepdims=True)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v * (2 * np.arctan2(n, w) / np.maximum(n, 1e-12))


_THUMB_AXIS = thumb_flexion_axis()


def hand_pose_from_angles(angles: np.ndarray, side: str = "left") -> np.ndarray:
    """SMPL+H hand axis-angles ``(N, 45)`` (15 joints, SMPL+H order) from ``(N, 5, 4)``
    anatomical angles in degrees (see the module docstring)."""
    a = np.deg2rad(np.asarray(angles, np.float64))
    N = a.shape[0]
    out = np.zeros((N, 5, 3, 3))
    z, y, x = np.eye(3)[2], np.eye(3)[1], np.eye(3)[0]
    spread = np.array([-1.0, -1.0, 1.0, 1.0])[:, None]  # index/middle to +Z, ring/pinky to -Z
    # MCP: flex in the finger's frame, then spread (R = R_abd @ R_flex); PIP, DIP: flexion.
    out[:, :4, 0] = _compose_rotvec(spread * a[:, :4, 1, None] * y, -a[:, :4, 0, None] * z)
    out[:, :4, 1] = -a[:, :4, 2, None] * z
    out[:, :4, 2] = -a[:, :4, 3, None] * z
    # Thumb CMC: flexion in the palm plane (about Y), then palmar abduction (about X).
    out[:, 4, 0] = _compose_rotvec(a[:, 4, 1, None] * x, a[:, 4, 0, None] * y)
    out[:, 4, 1] = a[:, 4, 2, None] * _THUMB_AXIS
    out[:, 4, 2] = a[:, 4, 3, None] * _THUMB_AXIS
    out = out[:, list(_SMPLH_ORDER)].reshape(N, 45)
    return out if side == "left" else out * np.tile(_MIRROR, 15)


def _smooth(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def synthesize_hand_angles(
    n_frames: int, fps: float, rng: np.random.Generator | int, jitter_deg: float = 6.0
) -> np.ndarray:
    """Anatomical angles ``(N, 2, 5, 4)`` (left, right) moving smoothly between shapes.

    Each hand holds a shape drawn from :data:`SHAPE_WEIGHTS` (with per-key jitter of
    ``jitter_deg``) for 0.3-1.5 s, then blends to the next one over 0.25-0.6 s (smoothstep).
    Always within :data:`HAND_LIMITS`; DIP = 2/3 PIP (+-5 deg). Seeded by ``rng``.
    """
    rng = np.random.default_rng(rng)
    names = list(SHAPE_WEIGHTS)
    p = np.array([SHAPE_WEIGHTS[n] for n in names])
    t = np.arange(n_frames) / fps
    out = np.zeros((n_frames, 2, 5, 4))
    for h in range(2):
        keys, holds, blends = [t[0] - rng.uniform(0.0, 1.0)], [], []
        while keys[-1] <= t[-1]:
            holds.append(rng.uniform(0.3, 1.5))
            blends.append(rng.uniform(0.25, 0.6))
            keys.append(keys[-1] + holds[-1] + blends[-1])
        k = len(keys)
        shapes = rng.choice(len(names), size=k, p=p / p.sum())
        poses = np.stack([shape_angles(names[s]) for s in shapes])
        poses = poses + rng.normal(0.0, jitter_deg, poses.shape)
        poses[:, :4, 3] = DIP_PIP_RATIO * poses[:, :4, 2] + rng.normal(0, 2.0, (k, 4))
        poses = clip_to_limits(poses)
        i = np.clip(np.searchsorted(keys, t, side="right") - 1, 0, k - 2)
        hold = np.array(holds)[i]
        blend = np.array(blends)[i]
        w = _smooth((t - np.array(keys)[i] - hold) / blend)[:, None, None]
        out[:, h] = (1 - w) * poses[i] + w * poses[i + 1]
    return out


def synthesize_hands(n_frames: int, fps: float, rng: np.random.Generator | int) -> np.ndarray:
    """SMPL+H hand poses ``(N, 90)`` (left 45 then right 45 axis-angles; ``poses[:, 66:]``)."""
    a = synthesize_hand_angles(n_frames, fps, rng)
    return np.concatenate([hand_pose_from_angles(a[:, 0], "left"),
                           hand_pose_from_angles(a[:, 1], "right")], 1)
