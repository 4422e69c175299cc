"""Training-data augmentation of whole motion clips (AMASS layout, Z up), before windowing.

Each clip gets ``variants`` seeded variants besides itself, each drawn from the enabled kinds:

* ``mirror``: the left–right mirror image (hands swapped). The body model's rest frames
  coincide with its canonical axes (X to the body's left), so mirroring across the body's
  sagittal plane maps every joint's axis-angle ``(x, y, z) -> (x, -y, -z)`` and swaps the
  left and right joints; the world is mirrored across its X = 0 plane the same way, and the
  translation so that the mirrored pelvis is the mirror of the pelvis.
* ``speed``: the motion played 0.8–1.25× as fast (slerp resampling at the same frame rate).
* ``shape``: another body (β drawn from N(0, 0.8²) on the first 8 components), lifted or
  lowered so that its feet meet the floor where the clip's own body's did.

Heading and position need no augmentation: the fitter works in a canonical frame that
removes both (``tracker.fitter.canonical``).
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence

import numpy as np
import torch

from tracker.body.joints import FOOT_JOINTS, JOINT_NAMES
from tracker.motion.amass import MotionClip, resample_motion

AUGMENTATIONS = ("mirror", "speed", "shape")
SPEED_RANGE = (0.8, 1.25)
SHAPE_STD = 0.8
_FEET = list(FOOT_JOINTS)


def _mirror_permutation() -> np.ndarray:
    """Joint index of each joint's mirror image ``(52,)``."""
    perm = np.arange(len(JOINT_NAMES))
    for i, n in enumerate(JOINT_NAMES):
        for a, b in (("left_", "right_"), ("right_", "left_")):
            if n.startswith(a):
                perm[i] = JOINT_NAMES.index(b + n[len(a):])
    return perm


MIRROR_PERM = _mirror_permutation()


def mirror_motion(poses: np.ndarray, trans: np.ndarray, pelvis_rest: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The mirror image of an AMASS-layout motion: ``poses (N, 156)``, ``trans (N, 3)``;
    ``pelvis_rest (3,)`` the body's rest pelvis (SMPL rotates about it)."""
    aa = np.asarray(poses, np.float32).reshape(len(poses), 52, 3)[:, MIRROR_PERM]
    aa = aa * np.array([1.0, -1.0, -1.0], np.float32)
    M = np.array([-1.0, 1.0, 1.0], np.float32)
    t = (np.asarray(trans, np.float32) + pelvis_rest) * M - pelvis_rest
    return aa.reshape(len(poses), 156), t.astype(np.float32)


def _foot_floor(body, poses, trans, betas) -> float:
    """Where the feet meet the floor: the 5th percentile over frames of the lowest foot joint's
    height (AMASS Z), metres."""
    with torch.no_grad():
        st = body.forward_axis_angle(torch.as_tensor(poses, dtype=body.dtype),
                                     torch.as_tensor(betas, dtype=body.dtype)[None]
                                     .expand(len(poses), -1)[:, :body.num_betas],
                                     torch.as_tensor(trans, dtype=body.dtype))
    return float(np.percentile(st.joints[:, _FEET, 2].min(-1).values.numpy(), 5))


def clip_variants(clip: MotionClip, body, kinds: Sequence[str], variants: int,
                  seed: int = 0) -> list[MotionClip]:
    """``variants`` augmented copies of ``clip`` (seeded by its name and ``seed``), each with
    every enabled kind of ``kinds`` (see the module docstring); ``[]`` when none is enabled."""
    kinds = [k for k in kinds if k]
    unknown = set(kinds) - set(AUGMENTATIONS)
    if unknown:
        raise ValueError(f"unknown augmentation {sorted(unknown)}; known: {AUGMENTATIONS}")
    if not kinds or variants <= 0:
        return []
    out = []
    base = zlib.crc32(clip.name.encode()) ^ (seed * 0x9E3779B1)
    for v in range(variants):
        rng = np.random.default_rng([base & 0xFFFFFFFF, v])
        poses, trans, betas = clip.poses, clip.trans, np.asarray(clip.betas, np.float32)
        tags = []
        if "speed" in kinds:
            s = float(np.exp(rng.uniform(*np.log(SPEED_RANGE))))
            poses, trans = resample_motion(poses, trans, clip.fps * s, clip.fps)
            tags.append(f"x{s:.3f}")
        if "mirror" in kinds and (v % 2 == 0 or "speed" not in kinds and "shape" not in kinds):
            pelvis = body.rest_joints(torch.as_tensor(betas[None, :body.num_betas],
                                                      dtype=body.dtype))[0, 0]
            poses, trans = mirror_motion(poses, trans, pelvis.float().numpy())
            tags.append("mirror")
        if "shape" in kinds:
            new = np.zeros_like(betas)
            new[:8] = rng.normal(0.0, SHAPE_STD, 8)
            lift = _foot_floor(body, poses, trans, betas) - _foot_floor(body, poses, trans, new)
            trans = trans + np.array([0.0, 0.0, lift], np.float32)
            betas = new
            tags.append("shape")
        tag = "+".join(tags)
        out.append(dataclasses.replace(
            clip, name=f"{clip.name}@{tag}", poses=np.asarray(poses, np.float32),
            trans=np.asarray(trans, np.float32), betas=betas,
            digest=f"{clip.digest or clip.name}@{tag}@{v}"))
    return out
