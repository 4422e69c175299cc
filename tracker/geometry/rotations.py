"""Rotation conversions on torch tensors with any leading batch shape.

Conventions (used everywhere in the project):

* Rotation matrices ``(..., 3, 3)`` act on column vectors: ``p_world = R @ p_local``.
* Axis-angle ``(..., 3)``: direction = axis, norm = angle in radians (AMASS / SMPL layout).
* Quaternions ``(..., 4)`` are ``x y z w`` (OpenXR and the wire protocol), not ``w x y z``.
* The 6D representation (Zhou et al., CVPR 2019, "On the Continuity of Rotation
  Representations") is the first two *columns* of the matrix, concatenated:
  ``d6 = [R[:, 0], R[:, 1]]``, shape ``(..., 6)``.

Every function is differentiable, free of Python branching on tensor values (so it
traces into a single graph for ONNX / TensorRT), and works in float32 and float64.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "rotation_6d_to_matrix",
    "matrix_to_rotation_6d",
    "quaternion_to_matrix",
    "matrix_to_quaternion",
    "quaternion_normalize",
    "axis_angle_to_quaternion",
    "quaternion_to_axis_angle",
    "quaternion_multiply",
    "quaternion_slerp",
    "skew",
]


def _eps(x: Tensor) -> float:
    return 1e-12 if x.dtype == torch.float64 else 1e-7


def skew(v: Tensor) -> Tensor:
    """Cross-product matrices ``(..., 3, 3)`` of vectors ``(..., 3)``: ``skew(a) @ b == a x b``."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(*v.shape[:-1], 3, 3)


def axis_angle_to_matrix(aa: Tensor) -> Tensor:
    """Axis-angle ``(..., 3)`` -> rotation matrices ``(..., 3, 3)`` (Rodrigues).

    Uses the Taylor expansions of ``sin(t)/t`` and ``(1-cos t)/t^2`` near zero so that the
    gradient at the identity is exact (no NaN from dividing by the angle).
    """
    t2 = (aa * aa).sum(-1, keepdim=True)  # (..., 1)
    small = t2 < 1e-6
    t2_safe = torch.where(small, torch.ones_like(t2), t2)
    t = torch.sqrt(t2_safe)
    a = torch.where(small, 1.0 - t2 / 6.0 + t2 * t2 / 120.0, torch.sin(t) / t)
    b = torch.where(small, 0.5 - t2 / 24.0 + t2 * t2 / 720.0, (1.0 - torch.cos(t)) / t2_safe)
    K = skew(aa)
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand(K.shape)
    return eye + a[..., None] * K + b[..., None] * (K @ K)


def quaternion_normalize(q: Tensor) -> Tensor:
    """Unit quaternions ``(..., 4)`` with ``w >= 0`` (the canonical hemisphere)."""
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(_eps(q))
    return torch.where(q[..., 3:4] < 0, -q, q)


def quaternion_to_matrix(q: Tensor) -> Tensor:
    """Quaternions ``(..., 4)`` as ``x y z w`` (need not be unit) -> matrices ``(..., 3, 3)``."""
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(_eps(q))
    x, y, z, w = q.unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz = x * y, x * z, y * z
    wx, wy, wz = w * x, w * y, w * z
    m = torch.stack(
        [
            1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy),
            2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx),
            2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy),
        ],
        dim=-1,
    )
    return m.reshape(*q.shape[:-1], 3, 3)


def matrix_to_quaternion(R: Tensor) -> Tensor:
    """Rotation matrices ``(..., 3, 3)`` -> unit quaternions ``(..., 4)`` ``x y z w``, ``w >= 0``.

    Evaluates all four of Shepperd's candidates and keeps the best-conditioned one
    with a one-hot mask, so there is no data-dependent control flow.
    """
    m00, m01, m02 = R[..., 0, 0], R[..., 0, 1], R[..., 0, 2]
    m10, m11, m12 = R[..., 1, 0], R[..., 1, 1], R[..., 1, 2]
    m20, m21, m22 = R[..., 2, 0], R[..., 2, 1], R[..., 2, 2]
    tr = m00 + m11 + m22
    # 4*q_i^2 for i = x, y, z, w
    d = torch.stack([1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22, 1 + tr], -1)
    s = torch.sqrt(d.clamp_min(_eps(R)))  # 2*|q_i|
    # candidate i: divide the off-diagonal combinations by 2*q_i
    cx = torch.stack([s[..., 0] ** 2, m01 + m10, m02 + m20, m21 - m12], -1) / (2 * s[..., 0:1])
    cy = torch.stack([m01 + m10, s[..., 1] ** 2, m12 + m21, m02 - m20], -1) / (2 * s[..., 1:2])
    cz = torch.stack([m02 + m20, m12 + m21, s[..., 2] ** 2, m10 - m01], -1) / (2 * s[..., 2:3])
    cw = torch.stack([m21 - m12, m02 - m20, m10 - m01, s[..., 3] ** 2], -1) / (2 * s[..., 3:4])
    cands = torch.stack([cx, cy, cz, cw], -2)  # (..., 4 candidates, 4)
    best = torch.nn.functional.one_hot(d.argmax(-1), 4).to(R.dtype)  # (..., 4)
    q = (cands * best[..., None]).sum(-2)
    return quaternion_normalize(q)


def axis_angle_to_quaternion(aa: Tensor) -> Tensor:
    """Axis-angle ``(..., 3)`` -> unit quaternions ``(..., 4)`` ``x y z w``."""
    t2 = (aa * aa).sum(-1, keepdim=True)
    small = t2 < 1e-6
    t = torch.sqrt(torch.where(small, torch.ones_like(t2), t2))
    k = torch.where(small, 0.5 - t2 / 48.0, torch.sin(0.5 * t) / t)
    w = torch.where(small, 1.0 - t2 / 8.0, torch.cos(0.5 * t))
    return torch.cat([aa * k, w], -1)


def quaternion_to_axis_angle(q: Tensor) -> Tensor:
    """Quaternions ``(..., 4)`` ``x y z w`` -> axis-angle ``(..., 3)`` with angle in ``[0, pi]``."""
    q = quaternion_normalize(q)
    v, w = q[..., :3], q[..., 3:4]
    n = v.norm(dim=-1, keepdim=True)
    angle = 2.0 * torch.atan2(n, w)
    small = n < 1e-6
    scale = torch.where(small, 2.0 / w.clamp_min(_eps(q)), angle / torch.where(small, 1.0, n))
    return v * scale


def matrix_to_axis_angle(R: Tensor) -> Tensor:
    """Rotation matrices ``(..., 3, 3)`` -> axis-angle ``(..., 3)``, angle in ``[0, pi]``."""
    return quaternion_to_axis_angle(matrix_to_quaternion(R))


def rotation_6d_to_matrix(d6: Tensor) -> Tensor:
    """6D ``(..., 6)`` -> rotation matrices ``(..., 3, 3)`` by Gram-Schmidt (Zhou et al. 2019).

    The first three values are the (unnormalised) first column, the last three the second.
    """
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = a1 / a1.norm(dim=-1, keepdim=True).clamp_min(_eps(d6))
    a2p = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    b2 = a2p / a2p.norm(dim=-1, keepdim=True).clamp_min(_eps(d6))
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def matrix_to_rotation_6d(R: Tensor) -> Tensor:
    """Rotation matrices ``(..., 3, 3)`` -> 6D ``(..., 6)``: first two columns."""
    return torch.cat([R[..., :, 0], R[..., :, 1]], dim=-1)


def quaternion_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product ``a * b`` of ``x y z w`` quaternions ``(..., 4)`` (apply b, then a)."""
    ax, ay, az, aw = a.unbind(-1)
    bx, by, bz, bw = b.unbind(-1)
    return torch.stack(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ],
        -1,
    )


def quaternion_slerp(q0: Tensor, q1: Tensor, t: Tensor | float) -> Tensor:
    """Spherical linear interpolation between ``x y z w`` quaternions ``(..., 4)``.

    ``t`` broadcasts against ``(...)``; takes the short way round.
    """
    q0 = quaternion_normalize(q0)
    q1 = quaternion_normalize(q1)
    t = torch.as_tensor(t, dtype=q0.dtype, device=q0.device)
    if t.dim() > 0:
        t = t[..., None]
    dot = (q0 * q1).sum(-1, keepdim=True)
    q1 = torch.where(dot < 0, -q1, q1)
    dot = dot.abs().clamp(max=1.0)
    theta = torch.acos(dot)
    sin_t = torch.sin(theta)
    near = sin_t < 1e-6
    sin_safe = torch.where(near, torch.ones_like(sin_t), sin_t)
    w0 = torch.where(near, 1.0 - t, torch.sin((1.0 - t) * theta) / sin_safe)
    w1 = torch.where(near, t, torch.sin(t * theta) / sin_safe)
    return quaternion_normalize(w0 * q0 + w1 * q1)
