"""NumPy rotations and rigid transforms: the wire and publish paths (small batches, no torch).

For the batch sizes of a live tick (1-16 sessions) torch's per-operation overhead dominates:
these compute the same quantities as ``tracker.geometry.rotations`` and
``tracker.geometry.transforms`` in float64 NumPy (``tests/test_protocol.py`` checks them
against the torch versions; SciPy is the oracle of the torch ones). Quaternions are
``x y z w``; any leading batch shape.
"""

from __future__ import annotations

import numpy as np

__all__ = ["axis_angle_to_matrix", "matrix_to_axis_angle", "matrix_to_quaternion",
           "pose7_to_transform", "quaternion_multiply", "quaternion_to_matrix",
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


def axis_angle_to_matrix(aa: np.ndarray) -> np.ndarray:
    """Axis-angle ``(..., 3)`` (axis times angle, radians) -> ``(..., 3, 3)`` (Rodrigues).

    ``R = I + sin(a) K + (1 - cos(a)) K^2`` with ``K`` the skew matrix of the unit axis; near
    zero angle the series ``sin(a)/a ~ 1 - a^2/6`` and ``(1 - cos a)/a^2 ~ 1/2 - a^2/24`` keeps it
    exact (no division by a vanishing angle).
    """
    aa = np.asarray(aa, dtype=np.float64)
    a2 = (aa * aa).sum(-1)
    a = np.sqrt(a2)
    small = a < 1e-4
    safe = np.where(small, 1.0, a)
    s = np.where(small, 1.0 - a2 / 6.0, np.sin(safe) / safe)  # sin(a)/a
    c = np.where(small, 0.5 - a2 / 24.0, (1.0 - np.cos(safe)) / (safe * safe))  # (1-cos a)/a^2
    x, y, z = aa[..., 0], aa[..., 1], aa[..., 2]
    zero = np.zeros_like(x)
    K = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*aa.shape[:-1], 3, 3)
    return np.eye(3) + s[..., None, None] * K + c[..., None, None] * (K @ K)


def matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` -> unit quaternions ``x y z w`` ``(..., 4)``, ``w >= 0``.

    Shepperd's method: the largest of ``w, x, y, z`` is computed from the diagonal and the
    others from off-diagonal sums, which stays accurate at every angle.
    """
    R = np.asarray(R, dtype=np.float64)
    m = R.reshape(-1, 3, 3)
    r00, r01, r02 = m[:, 0, 0], m[:, 0, 1], m[:, 0, 2]
    r10, r11, r12 = m[:, 1, 0], m[:, 1, 1], m[:, 1, 2]
    r20, r21, r22 = m[:, 2, 0], m[:, 2, 1], m[:, 2, 2]
    # 4 * (w^2, x^2, y^2, z^2); the largest picks the well-conditioned formula
    sq = np.stack([1 + r00 + r11 + r22, 1 + r00 - r11 - r22, 1 - r00 + r11 - r22,
                   1 - r00 - r11 + r22], -1)
    cand = np.stack([  # each row times 4 * (its own component): (x, y, z, w) candidates
        np.stack([r21 - r12, r02 - r20, r10 - r01, sq[:, 0]], -1),
        np.stack([sq[:, 1], r01 + r10, r02 + r20, r21 - r12], -1),
        np.stack([r01 + r10, sq[:, 2], r12 + r21, r02 - r20], -1),
        np.stack([r02 + r20, r12 + r21, sq[:, 3], r10 - r01], -1),
    ], 1)  # (n, 4, 4)
    k = np.argmax(sq, axis=-1)
    q = cand[np.arange(len(k)), k]
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    q = np.where(q[:, 3:] < 0, -q, q)
    return q.reshape(*R.shape[:-2], 4)


def quaternion_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product ``a * b`` of ``x y z w`` quaternions ``(..., 4)`` (``b`` acts first)."""
    ax, ay, az, aw = np.moveaxis(np.asarray(a, dtype=np.float64), -1, 0)
    bx, by, bz, bw = np.moveaxis(np.asarray(b, dtype=np.float64), -1, 0)
    return np.stack([
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    ], -1)
