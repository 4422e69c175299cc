"""Rigid transforms (SE(3)) as 4x4 homogeneous matrices ``(..., 4, 4)``, and pose vectors.

A *pose vector* is ``(..., 7)`` = ``px py pz qx qy qz qw`` (the wire format of
``protocol.md``). ``T_a_b`` maps points in frame ``b`` into frame ``a``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tracker.geometry.rotations import matrix_to_quaternion, quaternion_to_matrix

__all__ = [
    "make_transform",
    "invert_transform",
    "transform_points",
    "pose7_to_transform",
    "transform_to_pose7",
]


def make_transform(R: Tensor, p: Tensor) -> Tensor:
    """Rotation ``(..., 3, 3)`` and translation ``(..., 3)`` -> ``(..., 4, 4)``."""
    top = torch.cat([R, p[..., :, None]], dim=-1)
    bottom = torch.zeros(*top.shape[:-2], 1, 4, dtype=R.dtype, device=R.device)
    bottom[..., 0, 3] = 1.0
    return torch.cat([top, bottom], dim=-2)


def invert_transform(T: Tensor) -> Tensor:
    """Inverse of rigid transforms ``(..., 4, 4)``."""
    Rt = T[..., :3, :3].transpose(-1, -2)
    return make_transform(Rt, -(Rt @ T[..., :3, 3:4])[..., 0])


def transform_points(T: Tensor, p: Tensor) -> Tensor:
    """Apply ``T (..., 4, 4)`` to points ``p (..., N, 3)`` -> ``(..., N, 3)``."""
    return p @ T[..., :3, :3].transpose(-1, -2) + T[..., None, :3, 3]


def pose7_to_transform(x: Tensor) -> Tensor:
    """``px py pz qx qy qz qw`` ``(..., 7)`` -> ``(..., 4, 4)`` (quaternion normalised)."""
    return make_transform(quaternion_to_matrix(x[..., 3:]), x[..., :3])


def transform_to_pose7(T: Tensor) -> Tensor:
    """``(..., 4, 4)`` -> ``px py pz qx qy qz qw`` ``(..., 7)`` with ``qw >= 0``."""
    return torch.cat([T[..., :3, 3], matrix_to_quaternion(T[..., :3, :3])], dim=-1)
