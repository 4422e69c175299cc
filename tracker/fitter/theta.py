"""The fitter's parameter vector Θ and conversions to the AMASS / wire layout.

Θ ``(B, 315)``: 52 joint rotations in 6D (``(B, 52, 6)`` flattened, see
``tracker.geometry.rotations``) followed by the SMPL root translation ``(B, 3)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tracker.geometry.rotations import (
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_rotation_6d,
    rotation_6d_to_matrix,
)

THETA_DIM = 52 * 6 + 3


def split_theta(theta: Tensor) -> tuple[Tensor, Tensor]:
    """Θ ``(B, 315)`` -> 6D rotations ``(B, 52, 6)`` and translation ``(B, 3)``."""
    return theta[:, : 52 * 6].reshape(-1, 52, 6), theta[:, 52 * 6 :]


def theta_to_axis_angle(theta: Tensor) -> tuple[Tensor, Tensor]:
    """Θ ``(B, 315)`` -> AMASS-layout ``poses (B, 156)`` axis-angle and ``transl (B, 3)``."""
    d6, transl = split_theta(theta)
    aa = matrix_to_axis_angle(rotation_6d_to_matrix(d6))
    return aa.reshape(-1, 156), transl


def axis_angle_to_theta(poses: Tensor, transl: Tensor) -> Tensor:
    """AMASS-layout ``poses (B, 156)`` and ``transl (B, 3)`` -> Θ ``(B, 315)``."""
    d6 = matrix_to_rotation_6d(axis_angle_to_matrix(poses.reshape(-1, 52, 3)))
    return torch.cat([d6.reshape(-1, 312), transl], -1)
