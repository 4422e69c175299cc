"""Is a retargeted clip a plausible human motion? A per-clip report and a refusal reason.

Frames: AMASS world (Z up); SMPL+H joint frames are the model's (at the T-pose: Y up, facing
+Z), so a joint's up axis is column 1 and its facing column 2 of its global rotation.

The report (:func:`plausibility_report`), as stored in ``summary.json`` by ``trainer
import-bvh``:

* ``limit_violations``: per joint whose local rotation leaves its human range
  (``tracker.motion.limits``) by more than ``LIMIT_TOL_DEG`` in some frame: the share of
  frames, the largest excess and which range (twist, swing1, swing2);
* ``head_up``: the head's up axis dotted with world up (median and 5th percentile; about
  +0.95 for a walking person, negative for a head upside down);
* ``head_torso_deg``: angle between the head's and the upper torso's (spine3) up axes, and
  ``head_facing_deg``: the head's heading relative to the pelvis' about world up (median and
  95th percentile of the absolute value; a head facing backwards is near 180);
* ``end_error_deg``: per mapped end joint (head, wrists, ankles), the angle between the fitted
  global orientation and the source's after alignment (``O_j C_j``), median and 95th
  percentile over the frames whose file orientation was followed: how well the pose follows
  what the file says where positions are silent;
* ``ignored_orientations``: per mapped joint, the share of frames whose file orientation was
  not followed because it is no human pose relative to its parent (a bone's roll flipped by
  the mocap solver; ``tracker.motion.align.trusted_orientations``); there the joint follows
  the positions and its parent;
* ``alignment``: how the joint frames were aligned (``rest`` pose or ``motion``, see
  ``tracker.motion.align``).

:func:`refusal` turns a report into a one-line reason to refuse the clip (or None).
"""

from __future__ import annotations

import numpy as np
import torch

from tracker.body.joints import JOINT_NAMES
from tracker.motion.limits import violations

LIMIT_TOL_DEG = 10.0
"""Excess over a joint range that counts as a violation."""
MAX_VIOLATION_SHARE = 0.05
"""A joint may violate its range in at most this share of the frames."""
MAX_END_ERROR_DEG = 20.0
"""Median orientation error of an end joint against the source beyond which a clip is refused."""
MAX_HEAD_TORSO_DEG = 80.0
"""Median angle between the head's and the upper torso's up axes beyond which a clip is
refused. Neck and head flexion together reach about 80-90° (chin on the chest), and a dancer
may hold the head hanging forward for most of a clip: in the shared CMU modern-dance clips
(iClone set, subject 5) the file's eyes sit up to 74° below level (median over a clip) with
the torso tilted by 17°, 60-70° between head and torso. A head folded over by 150° is far
beyond."""
MAX_HEAD_FACING_DEG = 75.0
"""Median heading of the head relative to the pelvis beyond which a clip is refused (cervical
rotation reaches about 80°, AAOS, and the trunk adds some; a clip's median is normally within
15°, a fighting stance's about 45°)."""
MAX_IGNORED_SHARE = 0.1
"""Share of frames in which the file's head orientation may be ignored (no human pose; the
head then turns with the neck, a guess) before a clip is refused: the head's orientation is
the headset signal. Longer stretches are cut out before the fit (``tracker.motion.retarget``),
so this refuses clips where it flickers or where too little would be left."""
END_JOINTS = ("head", "left_wrist", "right_wrist", "left_ankle", "right_ankle")
_HEAD, _SPINE3, _PELVIS = (JOINT_NAMES.index(n) for n in ("head", "spine3", "pelvis"))


def _stats(x: np.ndarray, q: float) -> dict[str, float]:
    return dict(median=round(float(np.median(x)), 3), **{f"p{q:g}": round(
        float(np.percentile(x, q)), 3)})


def _angles(Ra: torch.Tensor, Rb: torch.Tensor) -> np.ndarray:
    """Degrees between rotation stacks ``(..., 3, 3)``."""
    tr = (Ra.transpose(-1, -2) @ Rb).diagonal(dim1=-2, dim2=-1).sum(-1)
    return torch.rad2deg(torch.arccos(((tr - 1) / 2).clamp(-1, 1))).numpy()


def _heading(v: torch.Tensor) -> torch.Tensor:
    """Angle (radians) of vectors ``(N, 3)`` about world Z (their horizontal direction)."""
    return torch.atan2(v[:, 1], v[:, 0])


def plausibility_report(R_local: torch.Tensor, G: torch.Tensor, joints, OC: torch.Tensor,
                        has_rot, alignment: str, trust=None) -> dict:
    """The report (see the module notes) of a fitted clip.

    Args:
        R_local: ``(N, 52, 3, 3)`` local rotations; G: ``(N, 52, 3, 3)`` global rotations,
            AMASS world. joints: ``(M,)`` mapped SMPL+H joints; OC: ``(N, M, 3, 3)`` source
            orientations after alignment; has_rot: ``(M,)`` which of them carry orientations.
        trust: ``(N, M)`` bool, the file orientations that the fit followed
            (``tracker.motion.align.trusted_orientations``; default all).
    """
    G = G.double()
    up = G[:, _HEAD, :, 1]
    torso = (up * G[:, _SPINE3, :, 1]).sum(-1).clamp(-1, 1)
    yaw = _heading(G[:, _HEAD, :, 2]) - _heading(G[:, _PELVIS, :, 2])
    yaw = torch.rad2deg(torch.remainder(yaw + np.pi, 2 * np.pi) - np.pi).abs()
    trust = (torch.ones(OC.shape[:2], dtype=torch.bool) if trust is None
             else torch.as_tensor(trust, dtype=torch.bool))
    end, ignored = {}, {}
    for k, j in enumerate(int(j) for j in joints):
        ok = trust[:, k]
        if has_rot[k] and not ok.all():
            ignored[JOINT_NAMES[j]] = round(float(1 - ok.double().mean()), 4)
        if JOINT_NAMES[j] in END_JOINTS and has_rot[k] and ok.any():
            end[JOINT_NAMES[j]] = _stats(_angles(G[ok, j], OC[ok, k].double()), 95)
    return dict(
        limit_violations=violations(R_local, LIMIT_TOL_DEG),
        head_up=_stats(up[:, 2].numpy(), 5),
        head_torso_deg=_stats(torch.rad2deg(torch.arccos(torso)).numpy(), 95),
        head_facing_deg=_stats(yaw.numpy(), 95),
        end_error_deg=end,
        ignored_orientations=ignored,
        alignment=alignment,
    )


def refusal(report: dict) -> str | None:
    """A one-line reason why the clip is not a plausible human motion, or None."""
    if report["head_torso_deg"]["median"] > MAX_HEAD_TORSO_DEG:
        return (f"head folded over: {report['head_torso_deg']['median']:.0f}° from the torso's "
                "up axis (median)")
    if report["head_facing_deg"]["median"] > MAX_HEAD_FACING_DEG:
        return (f"head faces {report['head_facing_deg']['median']:.0f}° away from the pelvis "
                "(median)")
    head = report.get("ignored_orientations", {}).get("head", 0.0)
    if head > MAX_IGNORED_SHARE:
        return (f"head orientation in the file is no human pose in {100 * head:.0f}% of "
                "frames (a flipped or broken head joint): nothing says where the head was")
    for name, v in report["limit_violations"].items():
        if v["frames"] > MAX_VIOLATION_SHARE:
            return (f"{name} beyond its human range ({v['what']}) by up to {v['max_deg']:.0f}° "
                    f"in {100 * v['frames']:.0f}% of frames")
    for name, v in report["end_error_deg"].items():
        if v["median"] > MAX_END_ERROR_DEG:
            return (f"{name} orientation {v['median']:.0f}° from the source's (median): the "
                    "joint frames could not be aligned")
    return None
