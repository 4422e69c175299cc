"""NumPy rotations and rigid transforms: the wire and publish paths (small batches, no torch).

For the batch sizes of a live tick (1-16 sessions) torch's per-operation overhead dominates:
these compute the same quantities as ``tracker.geometry.rotations`` and
``tracker.geometry.transforms`` in float64 NumPy (``tests/test_protocol.py`` checks them
against the torch versions; SciPy is the oracle of the torch ones). Quaternions are
``x y z w``; any leading batch shape.
"""

from __future__ import annotations

import numpy as np

__all__ = ["matrix_to_axis_angle", "pose7_to_transform", "quaternion_to_matrix",
           "rot6d_to_matrix"]


def rot6d_to_matrix(d6: np.ndarray) -> np.ndarray:
    """6D ``(..., 6)`` -> ``(..., 3, 3)`` by Gram-Schmidt (columns: a1, a2 - proj, cross)."""
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = a1 / np.maximum(np.linalg.norm(a1, axis=-1, keepdims=True), 1e-12)
    a2p = a2 - (b1 * a2).sum(-1, keepdims=True) * b1
    b2 = a2p / np.maximum(np.linalg.norm(a2p, axis=-1, keepdims=True), 1e-12)
    x1, y1, z1 = b1[..., 0], b1[..., 1], b1[..., 2]
    x2, y2, z2 = b2[..., 0], b2[..., 1], b2[..., 2]
    b3 = np.stack([y1 * z2 - z1 * y2, z1 * x2 - x1 * z2, x1 * y2 - y1 * x2], -1)  # b1 x b2
    return np.stack([b1, b2, b3], axis=-1)


def matrix_to_axis_angle(R: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` -> axis-angle ``(..., 3)``, angle in ``[0, pi]``.

    ``angle = atan2(|v| / 2, (tr R - 1) / 2)`` with ``v = vee(R - R^T)``, accurate at every
    angle. Within 1e-3 rad of pi, where ``v`` vanishes, the axis comes from the symmetric part
    ``(R + R^T) / 2 - cos(angle) I = (1 - cos(angle)) a a^T`` (its largest column, signed to
    agree with ``v``); a SciPy call there cost ~0.2 ms per tick.
    """
    shape = R.shape[:-2]
    m = R.reshape(-1, 3, 3)
    v = np.stack([m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], -1)
    n = np.linalg.norm(v, axis=-1)
    angle = np.arctan2(0.5 * n, 0.5 * (m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2] - 1.0))
    scale = np.where(n > 1e-12, angle / np.maximum(n, 1e-300), 0.5)
    out = v * scale[:, None]
    near_pi = angle > np.pi - 1e-3
    if near_pi.any():
        mp, ap, vp = m[near_pi], angle[near_pi], v[near_pi]
        S = 0.5 * (mp + mp.transpose(0, 2, 1)) - np.cos(ap)[:, None, None] * np.eye(3)
        k = np.argmax(np.diagonal(S, axis1=1, axis2=2), axis=-1)
        col = S[np.arange(len(k)), :, k]  # (n, 3) ∝ a
        a = col / np.linalg.norm(col, axis=-1, keepdims=True)
        a = np.where((a * vp).sum(-1, keepdims=True) < 0, -a, a)
        out[near_pi] = a * ap[:, None]
    return out.reshape(*shape, 3)


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """``x y z w`` quaternions ``(..., 4)`` (normalised here) -> ``(..., 3, 3)``."""
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = np.moveaxis(q, -1, 0)
    return np.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], axis=-1).reshape(*q.shape[:-1], 3, 3)


def pose7_to_transform(p: np.ndarray) -> np.ndarray:
    """``px py pz qx qy qz qw`` ``(..., 7)`` -> ``(..., 4, 4)``."""
    T = np.zeros((*p.shape[:-1], 4, 4))
    T[..., :3, :3] = quaternion_to_matrix(p[..., 3:])
    T[..., :3, 3] = p[..., :3]
    T[..., 3, 3] = 1.0
    return T
