"""What the wire needs from a fit, computed inside the fit's graph.

Every engine returns, beside the state it carries, the pose message's numbers ready to pack
(``tracker.protocol.encode_pose``): axis-angle per joint, the SMPL translation and the 52 joint
positions, float32, in the *device's* stage frame. The fitter works in the corrected stage
frame of the session profiles (the device's stage frame with the profile's ``floor_offset``
added to every y, so that the real floor is y = 0; ``tracker.server.profiles``); here the
offset is subtracted again, so a client draws the body over what its own runtime reports.
Rotations do not change with the offset.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tracker.body.kinematics import BodyModel
from tracker.fitter.theta import split_theta
from tracker.geometry.rotations import matrix_to_axis_angle, rotation_6d_to_matrix


def wire_outputs(body: BodyModel, theta: Tensor, betas: Tensor,
                 floor: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Pose-message numbers for fitted parameters.

    Args:
        theta: ``(B, 315)`` Θ in the corrected stage frame.
        betas: ``(B, K)`` shapes, ``K <= body.num_betas``.
        floor: ``(B,)`` metres, the profile's floor offset (subtracted from every y).

    Returns:
        ``pose (B, 156)`` axis-angle per joint (AMASS ``poses`` layout, angle in [0, π]),
        ``transl (B, 3)`` and ``joints (B, 156)`` (the 52 joints, x y z each) in the device's
        stage frame; float32.
    """
    d6, transl = split_theta(theta)
    R = rotation_6d_to_matrix(d6)  # (B, 52, 3, 3)
    B = theta.shape[0]
    pose = matrix_to_axis_angle(R).reshape(B, 156)
    down = torch.stack([torch.zeros_like(floor), floor, torch.zeros_like(floor)], -1)
    transl = transl - down
    joints = body.posed_joints(R, betas, transl).reshape(B, 156)
    f32 = torch.float32
    return pose.to(f32), transl.to(f32), joints.to(f32)
