"""NumPy rotations and rigid transforms: the wire and publish paths (small batches, no torch).

For the batch sizes of a live tick (1-16 sessions) torch's per-operation overhead dominates:
these compute the same quantities as ``tracker.geometry.rotations`` and
``tracker.geometry.transforms`` in float64 NumPy (``tests/test_protocol.py`` checks them
against the torch versions; SciPy is the oracle of the torch ones). Quaternions are
``x y z w``; any leading batch shape. Also the vector helpers of the retargeter's IK
(``tracker.motion``): :func:`unit`, :func:`min_rotation`, :func:`kabsch`.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["axis_angle_to_matrix", "kabsch", "matrix_to_axis_angle", "matrix_to_quaternion",
           "min_rotation", "pose7_rows", "pose7_to_transform", "quaternion_multiply",
           "quaternion_to_matrix", "rot6d_to_matrix", "unit"]


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


# quaternion_to_matrix: the row-major 3 x 3 entries as ``(P_a + s P_b) * 2 * sign`` (plus 1 on
# the diagonal) with ``P = q q^T`` flattened (x y z w = 0 1 2 3: xx 0, xy 1, xz 2, yy 5, yz 6,
# zz 10, wx 12, wy 13, wz 14), e.g. R00 = 1 - 2 (yy + zz), R01 = 2 (xy - wz).
_QM_A = np.array([5, 1, 2, 1, 0, 6, 2, 6, 0])  # yy xy xz | xy xx yz | xz yz xx
_QM_B = np.array([10, 14, 13, 14, 10, 12, 13, 12, 5])  # zz wz wy | wz zz wx | wy wx yy
_QM_S = np.array([1.0, -1.0, 1.0, 1.0, 1.0, -1.0, -1.0, 1.0, 1.0])
_QM_SIGN = np.array([-1.0, 1.0, 1.0, 1.0, -1.0, 1.0, 1.0, 1.0, -1.0])


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """``x y z w`` quaternions ``(..., 4)`` (normalised here) -> ``(..., 3, 3)``.

    ``R00 = 1 - 2 (y^2 + z^2)``, ``R01 = 2 (x y - w z)``, ... computed as a few whole-array
    operations (gathers of the products ``q_a q_b``) rather than one per entry: a live tick
    converts 3 poses per session, where NumPy's per-call overhead is the cost. The result is
    bit for bit that of the entry-by-entry formulas (``tests/test_protocol.py``): the same
    products, sums and scalings (``a - b`` is ``a + (-1) b``, ``1 - t`` is ``1 + (-t)``).
    """
    q = np.asarray(q)
    if q.dtype.kind not in "fc":
        q = q.astype(np.float64)
    q = q / np.sqrt(np.add.reduce(q * q, axis=-1, keepdims=True))  # as np.linalg.norm does
    qq = (q[..., :, None] * q[..., None, :]).reshape(*q.shape[:-1], 16)
    R = (qq[..., _QM_A] + qq[..., _QM_B] * _QM_S) * 2.0 * _QM_SIGN
    R[..., 0::4] += 1.0
    return R.reshape(*q.shape[:-1], 3, 3)


def pose7_to_transform(p: np.ndarray) -> np.ndarray:
    """``px py pz qx qy qz qw`` ``(..., 7)`` -> ``(..., 4, 4)``."""
    T = np.zeros((*p.shape[:-1], 4, 4))
    T[..., :3, :3] = quaternion_to_matrix(p[..., 3:])
    T[..., :3, 3] = p[..., :3]
    T[..., 3, 3] = 1.0
    return T


def pose7_rows(p, y0: float = 0.0):
    """One ``px py pz qx qy qz qw`` pose (Python floats) -> 4 x 4 rows of Python floats, ``y0``
    added to the y: :func:`pose7_to_transform` for a few poses, without NumPy's per-call cost.

    :func:`quaternion_to_matrix`'s operations in its order (normalise
    by the root of the sequential sum of squares; each entry ``(q_a q_b ± q_c q_d) · 2 · ±1``,
    then ``1 +`` on the diagonal), so the bits match."""
    px, py, pz, x, y, z, w = p
    n = math.sqrt(((x * x + y * y) + z * z) + w * w)
    x, y, z, w = x / n, y / n, z / n, w / n
    return (
        (1.0 + (y * y + z * z) * 2.0 * -1.0, (x * y + -(w * z)) * 2.0, (x * z + w * y) * 2.0, px),
        ((x * y + w * z) * 2.0, 1.0 + (x * x + z * z) * 2.0 * -1.0, (y * z + -(w * x)) * 2.0,
         py + y0),
        ((x * z + -(w * y)) * 2.0, (y * z + w * x) * 2.0, 1.0 + (x * x + y * y) * 2.0 * -1.0, pz),
        (0.0, 0.0, 0.0, 1.0),
    )


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


def min_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotations ``(N, 3, 3)`` taking unit vectors ``a`` to ``b`` ``(N, 3)``."""
    v, c = np.cross(a, b), np.sum(a * b, -1)
    K = np.zeros((len(a), 3, 3))
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -v[:, 2], v[:, 1], -v[:, 0]
    K = K - K.transpose(0, 2, 1)
    R = np.eye(3) + K + (K @ K) / np.maximum(1 + c, 1e-9)[:, None, None]
    flip = 1 + c < 1e-6  # opposite: half turn about any axis perpendicular to a
    if flip.any():
        perp = np.cross(a[flip], np.where(np.abs(a[flip, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]]))
        perp /= np.linalg.norm(perp, axis=-1, keepdims=True)
        R[flip] = 2 * perp[:, :, None] * perp[:, None, :] - np.eye(3)
    return R


def kabsch(u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Rotations ``(N, 3, 3)`` best taking ``u (K, 3)`` (or ``(N, K, 3)``) to ``v (N, K, 3)``
    with weights ``w (K,)`` (Kabsch: least squares, no reflection)."""
    H = np.einsum("k,nki,nkj->nij", w, v, np.broadcast_to(u, v.shape))
    U, _, Vt = np.linalg.svd(H)
    d = np.sign(np.linalg.det(U @ Vt))
    D = np.broadcast_to(np.eye(3), H.shape).copy()
    D[:, 2, 2] = d
    return U @ D @ Vt


def unit(x: np.ndarray) -> np.ndarray:
    """Vectors ``(..., 3)`` scaled to length 1 (zero vectors stay about zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)
