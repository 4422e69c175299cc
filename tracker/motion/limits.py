"""Human joint limits for SMPL+H body joints: swing and twist ranges of each local rotation.

Frames: a joint's local rotation ``R`` (relative to its parent) acts in the SMPL+H model frame
of the T-pose (Y up, facing +Z, the subject's left at +X). It is split into a *twist* about the
joint's bone axis ``a`` and a *swing* that moves ``a`` to ``R a``; the swing is the vector
``axis * angle`` (perpendicular to ``a``), read along two anatomical axes ``e1``, ``e2``. Each of
twist, swing-along-``e1`` and swing-along-``e2`` has a range in degrees. Right-side joints use
the left side's ranges on the mirrored rotation ``M R M`` (``M = diag(-1, 1, 1)``: the mirror
that maps SMPL+H's right side onto its left).

The ranges start from the normal active ranges of motion of the American Academy of
Orthopaedic Surgeons (AAOS, "Joint Motion: Method of Measuring and Recording", 1965; the values
as tabulated by Norkin & White, "Measurement of Joint Motion", 5th ed., 2016, e.g. hip flexion
120°, abduction 45°, knee flexion 135°, ankle plantarflexion 50°, cervical flexion 45° and
rotation 80°, shoulder internal/external rotation 70°/90°) and are then widened on purpose,
chosen conservatively: athletes and dancers exceed normal ranges (high kicks, splits), SMPL+H
splits a motion between neighbouring joints in ways that differ from anatomy (spine and neck
over two or three joints, forearm pronation between elbow and wrist), and retargeting adds a
few degrees. They are meant to catch folds and flips (a neck bent by 150°, a knee bent
sideways, a foot turned backwards), not to police unusual but possible motion.

They are used three ways: :func:`clamp_to_limits` / :func:`clamp_joint` project a pose into
the ranges (the retargeter's IK solves within them), :func:`limit_penalty` is a smooth loss,
and :func:`violations` reports what is left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tracker.body.joints import JOINT_NAMES
from tracker.geometry.rotations import axis_angle_to_matrix, matrix_to_quaternion

_X, _Y, _Z = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)


@dataclass(frozen=True)
class JointLimit:
    """Ranges (degrees) of one joint's local rotation, left-side or centre joint frame.

    Attributes:
        axis: bone axis ``a`` (twist axis). e1, e2: swing read-out axes (perpendicular to
            ``a``); a positive swing along ``e`` is a right-handed turn about ``e``.
        twist, swing1, swing2: ``(low, high)`` in degrees.
    """

    axis: tuple[float, float, float]
    e1: tuple[float, float, float]
    e2: tuple[float, float, float]
    twist: tuple[float, float]
    swing1: tuple[float, float]
    swing2: tuple[float, float]


# Signs, left side: +X turns a downward leg backwards (hip extension, knee flexion) and an
# upward spine forwards (flexion); +Z lifts a left arm; -Y swings a left arm (and forearm)
# forwards; +X on a forward foot points the toes down (plantarflexion).
_SPINE = JointLimit(_Y, _X, _Z, (-50, 50), (-45, 65), (-45, 45))  # AAOS: flex 80, ext 25,
# lateral 35, rotation 45 over the whole thoracolumbar spine; here per joint.
_CERVICAL = JointLimit(_Y, _X, _Z, (-85, 85), (-65, 70), (-55, 55))  # AAOS: flex 45, ext 45,
# lateral 45, rotation 60-80 over the neck; neck and head joints each get most of it.
LIMITS: dict[str, JointLimit] = {
    "spine1": _SPINE, "spine2": _SPINE, "spine3": _SPINE,
    "neck": _CERVICAL, "head": _CERVICAL,
    # hip: flex 120 (here 150, high kicks), ext 30 (50), abd 45 (90, splits), add 30 (45),
    # internal/external rotation 45/45 (90/90: twist from the T-pose also grows with large
    # swings, as at the shoulder)
    "left_hip": JointLimit((0, -1, 0), _X, _Z, (-90, 90), (-150, 50), (-45, 90)),
    # knee: flexion 135 (165), a little hyperextension, small varus/valgus and tibial rotation
    "left_knee": JointLimit((0, -1, 0), _X, _Z, (-50, 50), (-15, 165), (-25, 25)),
    # ankle (bone axis forward along the foot): plantarflexion 50 (75), dorsiflexion 20 (45),
    # inversion/eversion 35/15 as twist (50/50), abduction/adduction (45)
    "left_ankle": JointLimit(_Z, _X, _Y, (-50, 50), (-45, 75), (-45, 45)),
    # toes: MTP extension 70 (80) (toes up: -X), flexion 40 (60)
    "left_foot": JointLimit(_Z, _X, _Y, (-35, 35), (-80, 60), (-35, 35)),
    # clavicle: elevation 45 / depression 10, protraction/retraction 25 (all widened)
    "left_collar": JointLimit(_X, _Z, _Y, (-45, 45), (-40, 55), (-45, 45)),
    # shoulder from the T-pose: arm down by 90 and across the body (-140), up by 90 (100);
    # forwards (flexion) to -140, backwards 80. Rotation is 70/90, but twist measured from the
    # T-pose differs by up to 90 between reaching up through flexion and through abduction
    # (Codman's paradox), so it is left almost free; the elbow's hinge limits catch a wrong
    # upper-arm twist.
    "left_shoulder": JointLimit(_X, _Z, _Y, (-175, 175), (-140, 100), (-140, 80)),
    # elbow: flexion 150 (160) forwards (-Y), hyperextension 15, carrying angle; pronation and
    # supination 80/80 are shared with the wrist in SMPL+H (100 each)
    "left_elbow": JointLimit(_X, _Y, _Z, (-100, 100), (-160, 15), (-30, 30)),
    # wrist: flexion 80 / extension 70 (95), radial/ulnar deviation 20/30 (50), twist (100)
    "left_wrist": JointLimit(_X, _Z, _Y, (-100, 100), (-95, 95), (-50, 50)),
}
for _n in [n for n in LIMITS if n.startswith("left_")]:
    LIMITS["right_" + _n[5:]] = LIMITS[_n]
LIMITED = tuple(j for j, n in enumerate(JOINT_NAMES) if n in LIMITS)
"""SMPL+H joints with limits (the 21 body joints below the pelvis)."""
_RIGHT = torch.tensor([JOINT_NAMES[j].startswith("right_") for j in LIMITED])
_MIRROR = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))


def _table(dtype) -> tuple[torch.Tensor, ...]:
    """Axes ``(L, 3, 3)`` (rows a, e1, e2) and ranges ``(L, 3, 2)`` radians (twist, s1, s2)."""
    lim = [LIMITS[JOINT_NAMES[j]] for j in LIMITED]
    axes = torch.tensor([[m.axis, m.e1, m.e2] for m in lim], dtype=dtype)
    rng = torch.tensor([[m.twist, m.swing1, m.swing2] for m in lim], dtype=dtype)
    return axes, torch.deg2rad(rng)


def swing_twist(R: torch.Tensor, axes: torch.Tensor) -> torch.Tensor:
    """Twist and swing components (radians) ``(..., L, 3)`` of local rotations ``R (..., L, 3,
    3)`` about per-joint axes ``axes (L, 3, 3)`` (rows: bone axis ``a``, ``e1``, ``e2``).

    Twist: ``2 atan2(v . a, w)`` of the quaternion ``(v, w)`` with ``w >= 0`` (in
    ``[-pi, pi]``). Swing: the rotation vector from ``a`` to ``R a`` read along ``e1``, ``e2``;
    smooth at zero, so it can be used as a loss.
    """
    a, e1, e2 = axes[:, 0], axes[:, 1], axes[:, 2]
    q = matrix_to_quaternion(R)
    q = q * torch.where(q[..., 3:] < 0, -1.0, 1.0)
    twist = 2 * torch.atan2((q[..., :3] * a).sum(-1), q[..., 3])
    b = (R @ a[..., None])[..., 0]
    c = torch.linalg.cross(a.expand_as(b), b)
    s = torch.sqrt((c * c).sum(-1) + 1e-12)
    ang = torch.atan2(s, (a * b).sum(-1))
    vec = c * (ang / s)[..., None]
    return torch.stack([twist, (vec * e1).sum(-1), (vec * e2).sum(-1)], -1)


def _mirrored(R: torch.Tensor) -> torch.Tensor:
    """Local rotations ``(..., L, 3, 3)`` of ``LIMITED`` joints, right side mirrored."""
    M = _MIRROR.to(R.dtype)
    return torch.where(_RIGHT[:, None, None], M @ R @ M, R)


def limit_excess(R_local: torch.Tensor) -> torch.Tensor:
    """How far (radians, >= 0) each range is exceeded: ``(..., L, 3)`` (twist, swing1, swing2)
    of the ``LIMITED`` joints, for SMPL+H local rotations ``R_local (..., 52, 3, 3)``."""
    axes, rng = _table(R_local.dtype)
    st = swing_twist(_mirrored(R_local[..., list(LIMITED), :, :]), axes)
    return torch.relu(rng[..., 0] - st) + torch.relu(st - rng[..., 1])


def _project(R: torch.Tensor, axes: torch.Tensor, rng: torch.Tensor) -> torch.Tensor:
    """Rotations ``R (..., L, 3, 3)`` moved into their ranges ``rng (L, 3, 2)`` (radians; twist,
    swing1, swing2 about ``axes (L, 3, 3)``): ``R = S T`` with the twist ``T`` about the bone
    axis and the swing ``S = exp(s1 e1 + s2 e2)`` (see :func:`swing_twist`); each of
    ``twist``, ``s1``, ``s2`` is clipped to its range and the rotation rebuilt. Rotations
    within their ranges are returned unchanged."""
    st = swing_twist(R, axes)
    lo, hi = rng[..., 0], rng[..., 1]
    cl = torch.minimum(torch.maximum(st, lo), hi)
    a, e1, e2 = axes[:, 0], axes[:, 1], axes[:, 2]
    swing = axis_angle_to_matrix(cl[..., 1:2] * e1 + cl[..., 2:3] * e2)
    out = swing @ axis_angle_to_matrix(cl[..., :1] * a)
    inside = ((st >= lo) & (st <= hi)).all(-1)[..., None, None]
    return torch.where(inside, R, out)


def clamp_to_limits(R_local: torch.Tensor | np.ndarray, joints=None) -> torch.Tensor:
    """Local rotations ``(..., 52, 3, 3)`` with each limited joint (or only those of
    ``joints``, SMPL+H indices) projected into its ranges (:func:`_project`: twist and both
    swing components clipped); other joints unchanged. The result has no
    :func:`limit_excess`, up to rounding."""
    R = torch.as_tensor(R_local)
    axes, rng = _table(R.dtype)
    keep = [k for k, j in enumerate(LIMITED) if joints is None or j in set(joints)]
    cols = [LIMITED[k] for k in keep]
    M = _MIRROR.to(R.dtype)
    right = _RIGHT[keep][:, None, None]
    Rm = R[..., cols, :, :]
    Rm = torch.where(right, M @ Rm @ M, Rm)
    P = _project(Rm, axes[keep], rng[keep])
    out = R.clone()
    out[..., cols, :, :] = torch.where(right, M @ P @ M, P)
    return out


def clamp_joint(R: np.ndarray, joint: int) -> np.ndarray:
    """One joint's local rotations ``(N, 3, 3)`` (SMPL+H index ``joint``) projected into its
    ranges (unchanged for joints without limits)."""
    if joint not in LIMITED:
        return R
    k = LIMITED.index(joint)
    axes, rng = _table(torch.float64)
    Rt = torch.as_tensor(R, dtype=torch.float64)
    M = _MIRROR
    if _RIGHT[k]:
        Rt = M @ Rt @ M
    P = _project(Rt[:, None], axes[k:k + 1], rng[k:k + 1])[:, 0]
    return (M @ P @ M if _RIGHT[k] else P).numpy()


def joint_swing_twist(R: np.ndarray, joint: int) -> tuple[np.ndarray, np.ndarray]:
    """Twist, swing1 and swing2 (radians, ``(N, 3)``) of a limited joint's local rotations
    ``R (N, 3, 3)`` in its left-side frame (right-side joints mirrored as in
    :func:`limit_excess`), and the joint's ranges ``(3, 2)`` (radians)."""
    k = LIMITED.index(joint)
    axes, rng = _table(torch.float64)
    Rt = torch.as_tensor(np.asarray(R), dtype=torch.float64)
    if _RIGHT[k]:
        Rt = _MIRROR @ Rt @ _MIRROR
    return swing_twist(Rt[:, None], axes[k:k + 1])[:, 0].numpy(), rng[k].numpy()


def joint_excess(R: np.ndarray, joint: int) -> np.ndarray:
    """How far (radians, ``(N, 3)``: twist, swing1, swing2) a limited joint's local rotations
    ``R (N, 3, 3)`` leave its ranges."""
    st, rng = joint_swing_twist(R, joint)
    return np.maximum(rng[:, 0] - st, 0.0) + np.maximum(st - rng[:, 1], 0.0)


def limit_penalty(R_local: torch.Tensor, joints=None) -> torch.Tensor:
    """``(...,)`` sum of squared excess (radians^2) over the limited joints (or only those of
    ``joints``, SMPL+H indices) for local rotations ``R_local (..., 52, 3, 3)``."""
    ex = limit_excess(R_local)
    if joints is not None:
        keep = torch.tensor([j in set(joints) for j in LIMITED])
        ex = ex[..., keep, :]
    return (ex ** 2).sum((-1, -2))


def violations(R_local: np.ndarray | torch.Tensor, tol_deg: float = 10.0) -> dict[str, dict]:
    """Per joint with some range exceeded by more than ``tol_deg``: the share of frames
    (``frames``), the largest excess (``max_deg``) and which range (``what``: twist, swing1,
    swing2). ``R_local (N, 52, 3, 3)``."""
    R = torch.as_tensor(np.asarray(R_local), dtype=torch.float64)
    ex = torch.rad2deg(limit_excess(R)).numpy()  # (N, L, 3)
    out = {}
    for k, j in enumerate(LIMITED):
        e = ex[:, k]
        bad = (e > tol_deg).any(-1)
        if bad.any():
            w = int(np.argmax(e.max(0)))
            out[JOINT_NAMES[j]] = dict(frames=round(float(bad.mean()), 4),
                                       max_deg=round(float(e.max()), 1),
                                       what=("twist", "swing1", "swing2")[w])
    return out
