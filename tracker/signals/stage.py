"""AMASS world (Z up) <-> tracker stage frame (Y up), and SMPL parameters moved between them.

AMASS stands bodies in a Z-up world (x, y, z); the stage is Y-up (protocol.md). The map is
``(x, y, z) -> (x, z, -y)``, a -90 degree turn about X: an AMASS body facing -Y faces +Z on
the stage, and one standing at ``global_orient = Rx(+90°)`` gets identity orientation.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tracker.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle

R_STAGE_FROM_AMASS = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=torch.float64)


def rotate_smpl_params(
    R: Tensor, global_orient: Tensor, transl: Tensor, pelvis_rest: Tensor
) -> tuple[Tensor, Tensor]:
    """Rigidly rotate SMPL bodies by ``R`` about the world origin.

    SMPL rotates the body about its rest pelvis joint ``J0(β)`` and then adds ``transl``, so
    the new translation is ``R (J0 + t) - J0``.

    Args:
        R: ``(3, 3)`` rotation.
        global_orient: ``(N, 3)`` axis-angle. transl: ``(N, 3)``.
        pelvis_rest: ``(3,)`` or ``(N, 3)`` rest pelvis joint for the bodies' betas.

    Returns:
        ``(global_orient (N, 3), transl (N, 3))`` in the rotated world.
    """
    R = R.to(global_orient)
    go = matrix_to_axis_angle(R @ axis_angle_to_matrix(global_orient))
    t = (transl + pelvis_rest) @ R.T - pelvis_rest
    return go, t


def amass_to_stage(poses: Tensor, trans: Tensor, pelvis_rest: Tensor) -> tuple[Tensor, Tensor]:
    """AMASS ``poses (N, 156)`` and ``trans (N, 3)`` (Z up) -> the same in the stage frame."""
    go, t = rotate_smpl_params(R_STAGE_FROM_AMASS, poses[:, :3], trans, pelvis_rest)
    return torch.cat([go, poses[:, 3:]], 1), t


def stage_to_amass(poses: Tensor, trans: Tensor, pelvis_rest: Tensor) -> tuple[Tensor, Tensor]:
    """Inverse of :func:`amass_to_stage`."""
    go, t = rotate_smpl_params(R_STAGE_FROM_AMASS.T, poses[:, :3], trans, pelvis_rest)
    return torch.cat([go, poses[:, 3:]], 1), t
