"""Joint-level SMPL+H kinematics for fitting: FK without skinning, analytic IK.

Frames: whatever world the targets are in (the retargeter uses the AMASS world, Z up); rest
joints are in the body model frame (Y up, facing +Z). Rotations act on column vectors.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from tracker.body.joints import PARENTS, depth_levels
from tracker.geometry.arrays import kabsch, min_rotation, unit
from tracker.motion.limits import clamp_joint, joint_excess, joint_swing_twist
from tracker.motion.targets import Targets


def _twist_towards(G: np.ndarray, v: np.ndarray, T: np.ndarray) -> np.ndarray:
    """``R_v(phi) @ G`` with the twist ``phi`` about unit axes ``v (N, 3)`` that brings
    ``G (N, 3, 3)`` closest to ``T (N, 3, 3)`` (Frobenius)."""
    M = T @ np.swapaxes(G, -1, -2)
    a = np.trace(M, axis1=-2, axis2=-1) - np.einsum("ni,nij,nj->n", v, M, v)
    b = np.sum(v * np.stack([M[:, 2, 1] - M[:, 1, 2], M[:, 0, 2] - M[:, 2, 0],
                             M[:, 1, 0] - M[:, 0, 1]], -1), -1)
    return Rotation.from_rotvec(v * np.arctan2(b, a)[:, None]).as_matrix() @ G


def analytic_ik(rest: np.ndarray, tg: Targets, target_rot: np.ndarray | None = None,
                max_dev_deg: float = 25.0, offsets: np.ndarray | None = None,
                limits: bool = False, target_ok: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame SMPL+H pose from target positions (and optionally orientations).

    Joints are solved parents first, each from the directions to its nearest mapped
    descendants (Kabsch where there are several).

    Args:
        rest: ``(52, 3)`` rest joints for the clip's betas (model frame).
        target_rot: ``(N, M, 3, 3)`` wanted global orientations of the mapped joints
            (``O C``): they set the twist of single-child joints and the orientation of
            mapped joints with nothing mapped below; otherwise twist is inherited. A
            single-child joint whose position-given bone direction is more than
            ``max_dev_deg`` from the one ``target_rot`` gives takes ``target_rot`` whole: the
            two skeletons place that child differently (a short neck, a low toe), and turning
            the joint to reach it would fold it.
        offsets: ``(M, 3)`` joint-placement offsets (metres, parent joint frame) of the mapped
            joints, as in the refinement: mapped joint ``m`` is aimed at from its SMPL+H
            joint plus ``offsets[m]`` (e.g. a BVH spine joint placed further back than SMPL+H's
            turns the SMPL+H spine no more than the two rigs' spines differ).
        limits: keep every joint within its human range (``tracker.motion.limits``): each
            local rotation is projected into its ranges as it is solved, so the joints below
            start from the clamped pose; a wrist twist beyond its range is first handed to the
            elbow (SMPL+H splits forearm pronation between the two; rigs often put all of it
            in the hand).
        target_ok: ``(N, M)`` bool, which frames of ``target_rot`` to follow (default all);
            elsewhere the joint is treated as if it had no orientation (twist inherited, an
            end joint turned with its parent).

    Returns:
        local rotations ``(N, 52, 3, 3)`` and SMPL translation ``(N, 3)``, AMASS world.
    """
    idx = {int(j): k for k, j in enumerate(tg.joints)}
    P, N = tg.pos, tg.pos.shape[0]
    kids = {j: [c for c in range(52) if PARENTS[c] == j] for j in range(52)}
    off = np.zeros((len(tg.joints), 3)) if offsets is None else np.asarray(offsets)

    def firsts(j):  # nearest mapped joints below j
        out = []
        for c in kids[j]:
            out += [c] if c in idx else firsts(c)
        return out

    def wanted(j):  # target orientations (N, 3, 3) and the frames to follow (N,), or None
        if target_rot is None or j not in idx or not tg.has_rot[idx[j]]:
            return None, None
        ok = np.ones(N, bool) if target_ok is None else target_ok[:, idx[j]]
        return (target_rot[:, idx[j]], ok) if ok.any() else (None, None)

    def aim(j, D):  # rest directions from joint j to the markers of D (frames between: rest)
        return rest[D] + off[[idx[d] for d in D]] - rest[j]

    G = np.zeros((N, 52, 3, 3))
    x = np.zeros((N, 52, 3))
    S = ([0] if 0 in idx else []) + firsts(0)
    m = aim(0, S) + rest[0]
    u = m - m.mean(0)
    v = P[:, [idx[s] for s in S]]
    w = tg.weights[[idx[s] for s in S]]
    G[:, 0] = kabsch(u, v - v.mean(1, keepdims=True), w)
    x[:, 0] = v.mean(1) - G[:, 0] @ (m.mean(0) - rest[0])
    for j in range(1, 52):
        p = PARENTS[j]
        x[:, j] = x[:, p] + G[:, p] @ (rest[j] - rest[p])
        D, (T, ok) = firsts(j), wanted(j)
        if not D:
            G[:, j] = G[:, p] if T is None else np.where(ok[:, None, None], T, G[:, p])
        else:
            u = unit(aim(j, D))
            v = unit(P[:, [idx[d] for d in D]] - x[:, j, None])
            if len(D) == 1:
                G[:, j] = min_rotation(unit(G[:, p] @ u[0]), v[:, 0]) @ G[:, p]
                if T is not None:
                    G[ok, j] = _twist_towards(G[ok, j], v[ok, 0], T[ok])
                    far = np.sum((T @ u[0]) * v[:, 0], -1) < np.cos(np.deg2rad(max_dev_deg))
                    far &= ok
                    G[far, j] = T[far]
                if j in HINGES and D[0] == HINGES[j][0] and HINGES[j][1] in idx:
                    _twist_to_hinge(G, j, v[:, 0], P[:, idx[HINGES[j][1]]] - P[:, idx[D[0]]])
                c = D[0]
                if limits and j in TWIST_FOR_CHILD and PARENTS[c] == j and len(firsts(c)) == 1:
                    g = firsts(c)[0]
                    xc = x[:, j] + G[:, j] @ (rest[c] - rest[j])
                    _twist_for_child(G, j, c, unit(aim(c, [g])[0]),
                                     unit(rest[c] - rest[j]), unit(P[:, idx[g]] - xc))
            else:
                G[:, j] = kabsch(u, v, tg.weights[[idx[d] for d in D]])
        if limits:
            if j in _WRISTS:
                _pass_twist_to_elbow(G, rest, j)
            R = clamp_joint(np.swapaxes(G[:, p], -1, -2) @ G[:, j], j)
            G[:, j] = G[:, p] @ R
    R = G.copy()
    R[:, 1:] = np.swapaxes(G[:, list(PARENTS[1:])], -1, -2) @ G[:, 1:]
    return R, x[:, 0] - rest[0]


_WRISTS = (20, 21)
HINGES = {1: (4, 7, (1.0, 0, 0)), 2: (5, 8, (1.0, 0, 0)),
          16: (18, 20, (0, -1.0, 0)), 17: (19, 21, (0, 1.0, 0))}
"""Limb roots (hips, shoulders) -> (hinge joint, its child, the hinge's flexion axis in the
root's frame): knees flex about +X, the left elbow about -Y and the right one about +Y."""
HINGE_BEND_DEG = (15.0, 35.0)
"""A limb bent less than the first angle keeps the root's twist from the file's orientation;
bent more than the second, the twist puts the bend in the hinge's plane (linear between)."""


TWIST_FOR_CHILD = (1, 2, 4, 5, 16, 17, 18, 19)
"""Limb joints (hips, knees, shoulders, elbows) whose twist may be turned so that their child
can reach its own child within its range (:func:`_twist_for_child`)."""
TWIST_STEP_DEG, TWIST_SPAN_DEG, TWIST_COST = 5.0, 150.0, 0.01
"""Search grid of that turn (degrees) and its cost per radian^2 (a turn of 1 radian weighs like
6 degrees beyond a range), so that the file's twist is kept unless the child cannot follow."""


def _twist_for_child(G: np.ndarray, j: int, c: int, u_c: np.ndarray, bone: np.ndarray,
                     w: np.ndarray) -> None:
    """Turn joint ``j`` about its bone where its child ``c`` could not point at its own mapped
    child within ``c``'s swing ranges, in place in ``G (N, 52, 3, 3)``.

    The twist of a limb segment is what positions say least about and what files get wrong
    most (a shin rolled by the solver, so that the foot, which points forwards, reads as turned
    far sideways at the ankle). Where ``c``'s swing towards the direction ``w (N, 3)`` (world,
    from ``c`` to its child; ``u_c (3,)`` that direction at rest, in ``c``'s frame) leaves its
    ranges, the turn of ``j`` (within ``+-TWIST_SPAN_DEG``, about ``bone (3,)``, its rest bone
    in its own frame, so that ``c`` stays where it is) that minimises the squared excess of
    ``j`` and of ``c``'s swing, plus ``TWIST_COST`` per radian^2 of turn, is applied."""
    p = PARENTS[j]

    def cost(Gp, Gj, wk, phi):  # (K, 3, 3), (K, 3, 3), (K, 3), (K,) -> (K,)
        Rj = np.swapaxes(Gp, -1, -2) @ Gj
        t = unit(np.einsum("kji,kj->ki", Gj, wk))  # the wanted direction in j's frame
        Rc = min_rotation(np.broadcast_to(u_c, t.shape), t)
        return ((joint_excess(Rj, j) ** 2).sum(-1) + (joint_excess(Rc, c)[:, 1:] ** 2).sum(-1)
                + TWIST_COST * phi ** 2)

    base = cost(G[:, p], G[:, j], w, np.zeros(len(w)))
    bad = np.nonzero(base > 1e-6)[0]
    if not len(bad):
        return
    steps = np.deg2rad(np.arange(-TWIST_SPAN_DEG, TWIST_SPAN_DEG + 1e-9, TWIST_STEP_DEG))
    K = len(steps)
    axis = unit(G[bad, j] @ bone)  # (B, 3) world
    turn = Rotation.from_rotvec((axis[:, None] * steps[None, :, None]).reshape(-1, 3)).as_matrix()
    Gj = turn.reshape(len(bad), K, 3, 3) @ G[bad, j][:, None]
    c_all = cost(np.repeat(G[bad, p], K, axis=0), Gj.reshape(-1, 3, 3),
                 np.repeat(w[bad], K, axis=0), np.tile(steps, len(bad))).reshape(len(bad), K)
    best = np.argmin(c_all, 1)
    better = c_all[np.arange(len(bad)), best] < base[bad]
    G[bad[better], j] = Gj[np.nonzero(better)[0], best[better]]


def _twist_to_hinge(G: np.ndarray, root: int, d1: np.ndarray, d2: np.ndarray) -> None:
    """Turn a limb root ``G[:, root]`` about its bone (unit ``d1 (N, 3)``, towards the hinge
    joint) so that the hinge's flexion axis is normal to the plane of the bend (``d2 (N, 3)``:
    hinge joint to its child), in place, in frames where the limb is bent (``HINGE_BEND_DEG``).

    A knee or elbow bends about one axis: where the limb is bent, positions fix the root's
    twist, and a twist taken from a file orientation that disagrees would bend the knee
    sideways (or, within the limits, miss the ankle)."""
    hinge, _, axis = HINGES[root]
    n = np.cross(d1, unit(d2))
    s = np.linalg.norm(n, axis=-1)
    lo, hi = np.sin(np.deg2rad(HINGE_BEND_DEG))
    acute = np.sum(d1 * d2, -1) > 0  # bent less than 90 degrees (beyond: fully bent)
    w = np.where(acute, np.clip((s - lo) / (hi - lo), 0.0, 1.0), 1.0) * (s > 1e-6)
    if not w.any():
        return
    h = G[:, root] @ np.asarray(axis)
    a = h - np.sum(h * d1, -1, keepdims=True) * d1  # both in the plane normal to the bone
    b = n / np.maximum(s, 1e-9)[:, None]
    phi = np.arctan2(np.sum(np.cross(a, b) * d1, -1), np.sum(a * b, -1))
    G[:, root] = Rotation.from_rotvec(d1 * (w * phi)[:, None]).as_matrix() @ G[:, root]


def _pass_twist_to_elbow(G: np.ndarray, rest: np.ndarray, wrist: int) -> None:
    """Hand the part of a wrist's twist beyond its range to the elbow, as far as the elbow's
    twist range allows, in place in ``G (N, 52, 3, 3)``: the elbow turns about its forearm bone
    (so the wrist stays where it is) and the hand keeps its global orientation."""
    e = PARENTS[wrist]
    Re = np.swapaxes(G[:, PARENTS[e]], -1, -2) @ G[:, e]
    Rw = np.swapaxes(G[:, e], -1, -2) @ G[:, wrist]
    st_w, rng_w = joint_swing_twist(Rw, wrist)
    st_e, rng_e = joint_swing_twist(Re, e)
    tw, te = st_w[:, 0], st_e[:, 0]
    excess = tw - np.clip(tw, *rng_w[0])
    phi = np.clip(excess, rng_e[0, 0] - te, rng_e[0, 1] - te) * (excess != 0)
    if not phi.any():
        return
    # Twist is measured about +X on both sides (the mirror diag(-1, 1, 1) of the right side
    # keeps turns about X); the forearm (elbow frame) lies close to +X or -X.
    axis = unit(rest[wrist] - rest[e])
    axis = axis * np.sign(axis[0])
    turn = Rotation.from_rotvec(axis[None] * phi[:, None]).as_matrix()
    G[:, e] = G[:, e] @ turn


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


