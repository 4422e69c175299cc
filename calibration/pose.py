"""The calibration motion of a synthetic user: a T-pose hold, then looking around.

What ``tracker calibrate`` asks of a user, played by the body model so that the whole live
path (``tracker simulate`` -> ZeroMQ -> ``tracker calibrate --ingest``) can be checked against
a user whose shape is known:

1. ``hold_s`` seconds standing straight, arms stretched out sideways (``arm_droop_deg`` below
   horizontal, palms down), looking ahead;
2. ``look_s`` seconds looking around (a figure of eight: yaw ``±look_yaw_deg``, pitch
   ``±look_pitch_deg``) with the shoulders still, while the arms come down to the sides.

The head turns about the head joint (``neck_share`` moves part of it to the neck joint, to
study a user who also bends the neck). The body stands with its soles on the floor (``y = 0``)
at ``position`` on the stage, facing ``facing_deg`` (about +Y, 0 = facing +Z).

The result is written in the AMASS layout (Z-up world, ``poses (N, 156)``, ``trans (N, 3)``,
``betas (16,)``, ``gender``, ``mocap_framerate``) like any other motion; the T_HMD offset and a
floor error are the *device's* business (``tracker simulate --hmd-offset / --floor-offset``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from tracker.body.joints import HEAD, NUM_JOINTS
from tracker.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from tracker.signals.stage import stage_to_amass

NECK = 12
LEFT_SHOULDER, RIGHT_SHOULDER = 16, 17
AMASS_NUM_BETAS = 16


@dataclass(frozen=True)
class CalibrationMotionConfig:
    """How the synthetic user performs the calibration."""

    fps: float = 60.0
    """Frames per second."""
    hold_s: float = 2.5
    """Duration of the T-pose hold, seconds."""
    look_s: float = 3.0
    """Duration of the look-around, seconds."""
    arm_droop_deg: float = 4.0
    """How far the stretched arms hang below horizontal during the hold, degrees."""
    lower_arms_s: float = 0.6
    """Time to bring the arms down to ``lowered_deg`` at the start of the look-around
    (0: the arms stay out)."""
    lowered_deg: float = 65.0
    """Arm angle below horizontal after lowering, degrees."""
    look_yaw_deg: float = 45.0
    """Amplitude of the look-around, left/right, degrees."""
    look_pitch_deg: float = 25.0
    """Amplitude of the look-around, up/down, degrees."""
    neck_share: float = 0.0
    """Fraction of the look-around rotation done at the neck joint instead of the head."""
    facing_deg: float = 0.0
    """Body yaw on the stage, degrees about +Y (0: facing +Z)."""
    position: tuple[float, float] = (0.0, 0.0)
    """Stage x, z of the pelvis, metres."""
    sway_m: float = 0.0
    """Amplitude of a slow whole-body sway during the hold, metres (0: perfectly still)."""


def _rot(axis: str, deg) -> torch.Tensor:
    """Rotation matrices ``(N, 3, 3)`` about a stage axis for angles ``deg (N,)``."""
    a = torch.as_tensor(np.radians(np.asarray(deg, dtype=np.float64)))
    aa = torch.zeros(*a.shape, 3, dtype=torch.float64)
    aa[..., "xyz".index(axis)] = a
    return axis_angle_to_matrix(aa)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def stage_calibration_motion(body, betas,
                             config: CalibrationMotionConfig = CalibrationMotionConfig()):
    """The calibration motion in the stage frame (Y up).

    Args:
        body: a :class:`tracker.body.BodyModel`.
        betas: ``(K,)`` the synthetic user's shape (``K <= body.num_betas``).

    Returns:
        ``poses (N, 156)`` axis-angle and ``transl (N, 3)`` as float64 tensors (stage frame),
        and ``phase (N,)`` numpy strings ``"hold"`` / ``"look"``.
    """
    c = config
    n_hold = round(c.hold_s * c.fps)
    n_look = round(c.look_s * c.fps)
    N = n_hold + n_look
    t = np.arange(N) / c.fps
    tl = np.clip(t - c.hold_s, 0.0, None)  # time into the look-around

    # arms: droop during the hold, then (optionally) come down
    lower = _smoothstep(tl / c.lower_arms_s) if c.lower_arms_s > 0 else np.zeros(N)
    droop = c.arm_droop_deg + lower * (c.lowered_deg - c.arm_droop_deg)
    # head: a figure of eight that starts and ends looking ahead
    s = np.clip(tl / max(c.look_s, 1e-9), 0.0, 1.0)
    envelope = _smoothstep(s / 0.15) * _smoothstep((1 - s) / 0.15)
    yaw = c.look_yaw_deg * envelope * np.sin(2 * np.pi * s)
    pitch = c.look_pitch_deg * envelope * np.sin(4 * np.pi * s)

    R = torch.eye(3, dtype=torch.float64).repeat(N, NUM_JOINTS, 1, 1)
    R[:, 0] = _rot("y", np.full(N, c.facing_deg))
    R[:, LEFT_SHOULDER] = _rot("z", -droop)   # the left arm lies along +X: -z turns it down
    R[:, RIGHT_SHOULDER] = _rot("z", droop)
    look = _rot("y", yaw) @ _rot("x", pitch)
    if c.neck_share > 0:
        R[:, NECK] = _rot("y", c.neck_share * yaw) @ _rot("x", c.neck_share * pitch)
        look = _rot("y", (1 - c.neck_share) * yaw) @ _rot("x", (1 - c.neck_share) * pitch)
    R[:, HEAD] = look
    poses = matrix_to_axis_angle(R).reshape(N, -1)

    b = torch.tensor(np.asarray(betas, dtype=np.float64))[None].to(body.dtype)
    v_rest = body.v_template + torch.einsum("vck,bk->bvc", body.shapedirs[..., : b.shape[1]], b)
    sole = float(v_rest[0, :, 1].min())
    transl = torch.zeros(N, 3, dtype=torch.float64)
    transl[:, 0] = c.position[0]
    transl[:, 1] = -sole
    transl[:, 2] = c.position[1]
    if c.sway_m > 0:
        hold = torch.as_tensor((t < c.hold_s).astype(np.float64))
        transl[:, 0] += hold * c.sway_m * torch.as_tensor(np.sin(2 * np.pi * 0.4 * t))
        transl[:, 2] += hold * c.sway_m * torch.as_tensor(np.cos(2 * np.pi * 0.3 * t))
    phase = np.where(t < c.hold_s, "hold", "look")
    return poses, transl, phase


def calibration_motion(body, betas, config: CalibrationMotionConfig = CalibrationMotionConfig()
                       ) -> dict:
    """The calibration motion as an AMASS-layout dict (Z-up world), ready for ``np.savez``.

    Keys: ``poses (N, 156)``, ``trans (N, 3)``, ``betas (16,)``, ``gender``,
    ``mocap_framerate``, and ``calibration_config`` (a JSON string of ``config``).
    """
    import json

    poses, transl, _ = stage_calibration_motion(body, betas, config)
    b = np.zeros(max(AMASS_NUM_BETAS, len(betas)))
    b[: len(betas)] = np.asarray(betas, dtype=np.float64)
    pelvis = body.rest_joints(torch.as_tensor(b[None, : body.num_betas]).to(body.dtype))[0, 0]
    a_poses, a_trans = stage_to_amass(poses, transl, pelvis.double())
    return {
        "poses": a_poses.numpy().astype(np.float64),
        "trans": a_trans.numpy().astype(np.float64),
        "betas": b,
        "gender": np.array("neutral"),
        "mocap_framerate": np.array(float(config.fps)),
        "calibration_config": np.array(json.dumps(asdict(config))),
    }


def write_calibration_motion(path, body, betas,
                             config: CalibrationMotionConfig = CalibrationMotionConfig()) -> Path:
    """Write :func:`calibration_motion` as an ``.npz`` file; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **calibration_motion(body, betas, config))
    return path


def motion_duration_s(config: CalibrationMotionConfig) -> float:
    return math.fsum((config.hold_s, config.look_s))
