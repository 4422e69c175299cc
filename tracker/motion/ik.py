"""Joint-level SMPL+H kinematics for fitting: FK without skinning, analytic IK.

Frames: whatever world the targets are in (the retargeter uses the AMASS world, Z up); rest
joints are in the body model frame (Y up, facing +Z). Rotations act on column vectors.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from tracker.body.joints import PARENTS, depth_levels
from tracker.motion.targets import Targets


def _min_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
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


def _kabsch(u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Rotations ``(N, 3, 3)`` best taking ``u (K, 3)`` (or ``(N, K, 3)``) to ``v (N, K, 3)``."""
    H = np.einsum("k,nki,nkj->nij", w, v, np.broadcast_to(u, v.shape))
    U, _, Vt = np.linalg.svd(H)
    d = np.sign(np.linalg.det(U @ Vt))
    D = np.broadcast_to(np.eye(3), H.shape).copy()
    D[:, 2, 2] = d
    return U @ D @ Vt


def _unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)


def _twist_towards(G: np.ndarray, v: np.ndarray, T: np.ndarray) -> np.ndarray:
    """``R_v(phi) @ G`` with the twist ``phi`` about unit axes ``v (N, 3)`` that brings
    ``G (N, 3, 3)`` closest to ``T (N, 3, 3)`` (Frobenius)."""
    M = T @ np.swapaxes(G, -1, -2)
    a = np.trace(M, axis1=-2, axis2=-1) - np.einsum("ni,nij,nj->n", v, M, v)
    b = np.sum(v * np.stack([M[:, 2, 1] - M[:, 1, 2], M[:, 0, 2] - M[:, 2, 0],
                             M[:, 1, 0] - M[:, 0, 1]], -1), -1)
    return Rotation.from_rotvec(v * np.arctan2(b, a)[:, None]).as_matrix() @ G


def analytic_ik(rest: np.ndarray, tg: Targets, target_rot: np.ndarray | None = None,
                max_dev_deg: float = 25.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame SMPL+H pose from target positions (and optionally orientations).

    Args:
        rest: ``(52, 3)`` rest joints for the clip's betas (model frame).
        target_rot: ``(N, M, 3, 3)`` wanted global orientations of the mapped joints
            (``O C``): they set the twist of single-child joints and the orientation of
            mapped joints with nothing mapped below; otherwise twist is inherited. A
            single-child joint whose position-given bone direction is more than
            ``max_dev_deg`` from the one ``target_rot`` gives takes ``target_rot`` whole: the
            two skeletons place that child differently (a short neck, a low toe), and turning
            the joint to reach it would fold it.

    Returns:
        local rotations ``(N, 52, 3, 3)`` and SMPL translation ``(N, 3)``, AMASS world.
    """
    idx = {int(j): k for k, j in enumerate(tg.joints)}
    P, N = tg.pos, tg.pos.shape[0]
    kids = {j: [c for c in range(52) if PARENTS[c] == j] for j in range(52)}

    def firsts(j):  # nearest mapped joints below j
        out = []
        for c in kids[j]:
            out += [c] if c in idx else firsts(c)
        return out

    def wanted(j):
        ok = target_rot is not None and j in idx and tg.has_rot[idx[j]]
        return target_rot[:, idx[j]] if ok else None

    G = np.zeros((N, 52, 3, 3))
    x = np.zeros((N, 52, 3))
    S = ([0] if 0 in idx else []) + firsts(0)
    u = rest[S] - rest[S].mean(0)
    v = P[:, [idx[s] for s in S]]
    w = tg.weights[[idx[s] for s in S]]
    G[:, 0] = _kabsch(u, v - v.mean(1, keepdims=True), w)
    x[:, 0] = v.mean(1) - G[:, 0] @ (rest[S].mean(0) - rest[0])
    for j in range(1, 52):
        p = PARENTS[j]
        x[:, j] = x[:, p] + G[:, p] @ (rest[j] - rest[p])
        D, T = firsts(j), wanted(j)
        if not D:
            G[:, j] = G[:, p] if T is None else T
            continue
        u = _unit(rest[D] - rest[j])
        v = _unit(P[:, [idx[d] for d in D]] - x[:, j, None])
        if len(D) == 1:
            G[:, j] = _min_rotation(_unit(G[:, p] @ u[0]), v[:, 0]) @ G[:, p]
            if T is not None:
                G[:, j] = _twist_towards(G[:, j], v[:, 0], T)
                off = np.sum((T @ u[0]) * v[:, 0], -1) < np.cos(np.deg2rad(max_dev_deg))
                G[off, j] = T[off]
        else:
            G[:, j] = _kabsch(u, v, tg.weights[[idx[d] for d in D]])
    R = G.copy()
    R[:, 1:] = np.swapaxes(G[:, list(PARENTS[1:])], -1, -2) @ G[:, 1:]
    return R, x[:, 0] - rest[0]


# ------------------------------------------------------------------------------ refinement
_LEVELS = depth_levels(PARENTS)
_LEVEL_POS = [[0]] + [[_LEVELS[d - 1].index(PARENTS[j]) for j in _LEVELS[d]]
                      for d in range(1, len(_LEVELS))]
_UNPERMUTE = np.argsort([j for lv in _LEVELS for j in lv]).tolist()


def joint_fk(rest: torch.Tensor, R: torch.Tensor, t: torch.Tensor):
    """SMPL+H joint kinematics without skinning.

    ``rest (1 or B, 52, 3)`` rest joints, ``R (B, 52, 3, 3)`` local rotations, ``t (B, 3)``
    translation -> global rotations ``(B, 52, 3, 3)`` and joint positions ``(B, 52, 3)``
    (the same as ``BodyModel.forward``'s ``rotations`` and ``joints``).
    """
    Gs, xs = [R[:, :1]], [rest[:, :1].expand(R.shape[0], 1, 3)]
    for d in range(1, len(_LEVELS)):
        lv, pos = _LEVELS[d], _LEVEL_POS[d]
        par = [PARENTS[j] for j in lv]
        Gp, xp = Gs[-1][:, pos], xs[-1][:, pos]
        Gs.append(Gp @ R[:, lv])
        xs.append(xp + (Gp @ (rest[:, lv] - rest[:, par])[..., None])[..., 0])
    G = torch.cat(Gs, 1)[:, _UNPERMUTE]
    x = torch.cat(xs, 1)[:, _UNPERMUTE] + t[:, None]
    return G, x


