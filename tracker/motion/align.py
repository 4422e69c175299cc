"""Joint-frame alignment between a BVH skeleton and SMPL+H: the constants ``C_j``.

Frames: AMASS world (Z up, metres) for positions and global orientations; SMPL+H rest joints
in the body model frame (Y up, facing +Z, left at +X). A mapped BVH joint's world orientation
``O_j`` and the SMPL+H joint's ``G_j`` differ by a constant, ``G_j = O_j C_j`` (the two
skeletons' joint frames are fixed to the same bone). Where positions do not determine
``G_j`` (the twist of single-child joints; head, neck, wrists and feet, whose segments are
short and placed differently on every rig) the fit takes it from ``O_j C_j``, so ``C_j`` must
be right: an error in it is an error of the head, hands and feet in every frame. Position-only
IK cannot give it: its twists are arbitrary, and it folds a joint whose child sits elsewhere
than on SMPL+H (a BVH head 6 cm above a low neck).

Three estimates, each used where it is valid (:func:`align`):

* **rest pose**: at zero channels every BVH joint frame is the file's world frame, so
  ``C_j = O_j,rest^T G_j,rest`` where ``G_j,rest`` is SMPL+H posed like the rest skeleton.
  The body frame ``B`` best fits the T-pose trunk onto the rest skeleton's (all of pelvis,
  hips, spine, collars and shoulders, so no single placement tilts it);
  limb joints are swung from the T-pose along the rest skeleton's long bones (upper arm,
  forearm, thigh, shin) without twist; torso, neck, head, collars and feet are upright and
  facing forward in ``B``, hands in line with the forearm. Exact for T-, A- and arms-down
  rest poses of any proportions and joint placements; used per body part only where the rest
  skeleton stands like a person there (:func:`rest_problems`). Rigs whose bones all point
  along one axis at rest (iClone, LAFAN1-style exports) fail that check.
* **limb hinges**: knees and elbows are hinges, so in frames where they are bent the normal
  of the hip-knee-ankle (shoulder-elbow-wrist) plane is the SMPL+H hinge axis (``+X`` for
  knees; ``-Y``/``+Y`` for the left/right elbow) turned by ``G`` of hip and knee (shoulder and
  elbow); with the bone direction it fixes their ``C`` from the motion alone. It replaces the
  rest pose where that part does not stand or where the two disagree by more than
  ``HINGE_TOL_DEG`` (e.g. a rest pose with the palms forward).
* **neutral mean**: a joint's ``C`` such that its mean local rotation over the clip, relative
  to its aligned parent (the head: to the torso, as rigs split the bending of neck and head
  differently), is the SMPL+H rest. Only a fallback for joints that neither the rest pose nor
  a hinge covers: it is off by the clip's mean posture (a dancer's bent spine, pointed feet,
  a head hanging forward) and it absorbs whatever the file gets wrong for most of a clip (a
  foot's roll flipped by the solver), so it gives the same rig different frames in different
  clips. The rest pose is the rig's own definition, the same for all its clips: where it is
  valid it is used as it is. (It used to be checked against the neutral mean and replaced
  where the two differed by more than 45°, 25° for the spine; on the shared iClone clips that
  turned spine, head and feet of the same rig by up to 170° from clip to clip.)

Wrists with two or more mapped finger bases take their orientation from those positions
(position-only IK), as do joints with several mapped joints below and no other estimate; an
ankle's neutral mean is turned to point the foot at the mapped toes.

Whatever the alignment, a frame in which a file orientation is no human pose relative to its
parent is not followed (:func:`trusted_orientations`).
"""

from __future__ import annotations

import numpy as np

from tracker.body.joints import JOINT_NAMES, PARENTS
from tracker.geometry.arrays import kabsch, min_rotation, unit
from tracker.motion.ik import analytic_ik
from tracker.motion.limits import LIMITED, joint_excess
from tracker.motion.targets import Targets

_IDX = {n: i for i, n in enumerate(JOINT_NAMES)}
TRUST_TOL_DEG = 30.0
"""A file orientation that puts its joint further than this beyond a human range relative to
its aligned parent is not followed in that frame (:func:`trusted_orientations`)."""
TURNED_SHARE = (0.9, 0.05)
"""A rest-pose estimate that is no human pose in at least the first share of a clip's frames,
where the neutral mean is in at most the second, is replaced by the neutral mean
(:func:`_turned_frame`)."""
_WRISTS = (_IDX["left_wrist"], _IDX["right_wrist"])
HINGE_TOL_DEG = 20.0
"""Rest-pose alignment of a limb root further than this from its hinge alignment is replaced."""
MIN_BEND_DEG = 10.0
"""A knee or elbow bent at least this much shows its hinge axis (frames weighted by the sine of
the bend)."""
MIN_EVIDENCE = 3.0
"""Least sum over frames of the sine of the bend for a hinge to count (e.g. 12 frames at 15°)."""


def _limbs() -> dict[str, dict]:
    """Per limb: its joints (root, mid, end, tip) and the hinge axis (model frame)."""
    out = {}
    for s, sign in (("left", -1.0), ("right", 1.0)):
        out[f"{s} leg"] = dict(joints=[_IDX[f"{s}_{n}"] for n in ("hip", "knee", "ankle", "foot")],
                               hinge=np.array([1.0, 0.0, 0.0]))
        out[f"{s} arm"] = dict(joints=[_IDX[f"{s}_{n}"] for n in ("shoulder", "elbow", "wrist",
                                                                  "middle1")],
                               hinge=np.array([0.0, sign, 0.0]))
    return out


LIMBS = _limbs()
LONG_BONES = frozenset(j for limb in LIMBS.values() for j in limb["joints"][:2])
"""Joints whose swing positions determine well (long segments, placed alike on all rigs)."""


def _procrustes(M: np.ndarray) -> np.ndarray:
    """Rotations ``(..., 3, 3)`` maximising ``tr(C^T M)`` for ``M (..., 3, 3)``."""
    U, _, Vt = np.linalg.svd(M)
    D = np.ones(M.shape[:-1])
    D[..., 2] = np.sign(np.linalg.det(U @ Vt))
    return (U * D[..., None, :]) @ Vt


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    """Degrees between vectors ``(3,)``."""
    return float(np.degrees(np.arccos(np.clip(np.dot(unit(a), unit(b)), -1, 1))))


def _rot_angle(Ra: np.ndarray, Rb: np.ndarray) -> float:
    """Degrees between rotations ``(3, 3)``."""
    return float(np.degrees(np.arccos(np.clip((np.trace(Ra.T @ Rb) - 1) / 2, -1, 1))))


def _rest_ik(tg: Targets, rest: np.ndarray) -> np.ndarray:
    """Global rotations ``(52, 3, 3)`` of position-only IK on the rest pose."""
    one = Targets(tg.joints, tg.rest_pos[None], tg.rest_rot[None], tg.has_rot, tg.weights,
                  tg.fps, tg.unit, tg.up, tg.hands_animated, tg.exact)
    R, _ = analytic_ik(rest, one)
    G = R[0]
    for j in range(1, 52):
        G[j] = G[PARENTS[j]] @ G[j]
    return G


# ------------------------------------------------------------------------------ rest pose
TORSO = tuple(_IDX[n] for n in ("pelvis", "left_hip", "right_hip", "spine1", "spine2", "spine3",
                                "left_collar", "right_collar", "left_shoulder", "right_shoulder"))


def body_frame(tg: Targets, rest: np.ndarray) -> np.ndarray:
    """The rest skeleton's body frame ``B (3, 3)``: the rotation that best takes the SMPL+H
    T-pose trunk (pelvis, hips, spine, collars, shoulders; model frame) onto the mapped ones at
    rest (AMASS world), so that no one joint's placement (a spine joint further back) tilts it
    much. Neck and head, placed most differently between rigs, are left out."""
    idx = {int(j): k for k, j in enumerate(tg.joints)}
    S = [j for j in TORSO if j in idx]
    if len(S) < 3:
        return _rest_ik(tg, rest)[0]
    u = rest[S] - rest[S].mean(0)
    v = tg.rest_pos[[idx[j] for j in S]]
    return kabsch(u, (v - v.mean(0))[None], np.ones(len(S)))[0]


def rest_problems(tg: Targets, rest: np.ndarray) -> dict[str, str]:
    """Body parts (``torso``, ``left leg``, ``left arm``, ``left collar``...) whose rest
    skeleton is no standing T-, A- or arms-down pose, and why: torso, legs and collar bones
    more than 45° from the T-pose's directions, arms raised or out of the body's frontal
    plane. ``rest (52, 3)``."""
    idx = {int(j): k for k, j in enumerate(tg.joints)}
    B = body_frame(tg, rest)

    def bone(a, b):
        if a in idx and b in idx:
            return tg.rest_pos[idx[b]] - tg.rest_pos[idx[a]], B @ (rest[b] - rest[a])
        return None

    out = {}
    top = next((j for j in (15, 12, 9, 6) if j in idx), None)
    pair = bone(0, top) if top is not None else None
    if pair is not None and _angle(*pair) > 45.0:
        out["torso"] = f"{_angle(*pair):.0f}° from standing"
    for name, limb in LIMBS.items():
        root, mid, end, _ = limb["joints"]
        pair = bone(root, end) or bone(root, mid)
        if pair is None:
            continue
        d = B.T @ unit(pair[0])  # in the body frame: x left, y up, z forward
        if "leg" in name and _angle(*pair) > 45.0:
            out[name] = f"{_angle(*pair):.0f}° from standing"
        elif "arm" in name and (abs(d[2]) > 0.5 or d[1] > 0.5):
            out[name] = "neither a T-, A- nor arms-down pose"
    for s in ("left", "right"):
        pair = bone(_IDX[f"{s}_collar"], _IDX[f"{s}_shoulder"])
        if pair is not None and _angle(*pair) > 45.0:
            out[f"{s} collar"] = f"{_angle(*pair):.0f}° from the T-pose"
    return out


def rest_globals(tg: Targets, rest: np.ndarray) -> np.ndarray:
    """SMPL+H global rotations ``(52, 3, 3)`` posed like the rest skeleton (module notes):
    pelvis, torso, collars, neck, head and feet in the body frame ``B``
    (:func:`body_frame`); limbs swung along their long bones; hands in line with the
    forearm."""
    idx = {int(j): k for k, j in enumerate(tg.joints)}
    B = body_frame(tg, rest)
    G = np.broadcast_to(B, (52, 3, 3)).copy()
    for limb in LIMBS.values():
        root, mid, end, _ = limb["joints"]
        for j, pairs in ((root, [(root, mid), (root, end)]), (mid, [(mid, end), (root, end)])):
            pair = next(((a, b) for a, b in pairs if a in idx and b in idx), None)
            if pair is not None:
                a, b = pair
                v = tg.rest_pos[idx[b]] - tg.rest_pos[idx[a]]
                G[j] = min_rotation(unit(B @ (rest[b] - rest[a]))[None], unit(v)[None])[0] @ B
        if root in (_IDX["left_shoulder"], _IDX["right_shoulder"]):
            G[end] = G[mid]  # the hand in line with the forearm
    return G


def _fingers(G: np.ndarray, tg: Targets, rest: np.ndarray) -> np.ndarray:
    """``G (52, 3, 3)`` with the fingers placed relative to their wrists as the rest IK has
    them."""
    G_ik = _rest_ik(tg, rest)
    for j in range(22, 52):
        w = 20 if j < 37 else 21
        G[j] = G[w] @ G_ik[w].T @ G_ik[j]
    return G


# ------------------------------------------------------------------------------ hinges
def hinge_alignment(tg: Targets, rest: np.ndarray, limb: dict) -> dict[int, np.ndarray] | None:
    """``{root: C, mid: C}`` of a limb from its hinge (module notes), or None when the clip
    bends it too little or the joints are not all mapped with orientations."""
    idx = {int(j): k for k, j in enumerate(tg.joints)}
    root, mid, end, _ = limb["joints"]
    if not all(j in idx for j in (root, mid, end)) or not (
            tg.has_rot[idx[root]] and tg.has_rot[idx[mid]]):
        return None
    P = tg.pos
    t1, t2 = unit(P[:, idx[mid]] - P[:, idx[root]]), unit(P[:, idx[end]] - P[:, idx[mid]])
    bent = np.sum(t1 * t2, -1) < np.cos(np.deg2rad(MIN_BEND_DEG))
    n = np.cross(t1[bent], t2[bent])  # length: sine of the bend (the weight of the frame)
    if bent.sum() < 10 or np.linalg.norm(n, axis=-1).sum() < MIN_EVIDENCE:
        return None
    out = {}
    for j, b in ((root, mid), (mid, end)):
        O = tg.rot[:, idx[j]]
        axis = unit(np.einsum("nji,nj->i", O[bent], n))
        bone = unit(np.einsum("nji,nj->i", O, unit(P[:, idx[b]] - P[:, idx[j]])))
        u = np.stack([unit(rest[b] - rest[j]), limb["hinge"]])
        out[j] = kabsch(u, np.stack([bone, axis])[None], np.array([2.0, 1.0]))[0]
    return out


def _hinge_chain(G: np.ndarray, tg: Targets, rest: np.ndarray, limb: dict,
                 C: dict[int, np.ndarray]) -> None:
    """Put a limb's rest globals in ``G (52, 3, 3)`` from hinge ``C``; the end joint follows
    the mid joint as at rest (the hand in line with the forearm; the foot turned along the
    mapped toes if there are any)."""
    idx = {int(j): k for k, j in enumerate(tg.joints)}
    root, mid, end, tip = limb["joints"]
    for j in (root, mid):
        G[j] = tg.rest_rot[idx[j]] @ C[j]
    G[end] = G[mid]
    if end in idx and tip in idx and tip < 22:
        v = G[mid].T @ (tg.rest_pos[idx[tip]] - tg.rest_pos[idx[end]])
        G[end] = G[mid] @ min_rotation(unit(rest[tip] - rest[end])[None], unit(v)[None])[0]
    if tip < 22:
        G[tip] = G[end]


# ------------------------------------------------------------------------------ motion
def _ik_globals(tg: Targets, rest: np.ndarray, sub: np.ndarray) -> np.ndarray:
    """Global rotations ``(S, 52, 3, 3)`` of position-only IK on frames ``sub``."""
    R, _ = analytic_ik(rest, tg.subset(sub))
    G = R.copy()
    for j in range(1, 52):
        G[:, j] = G[:, PARENTS[j]] @ R[:, j]
    return G


def mapped_below(j: int, mapped) -> list[int]:
    """The nearest mapped joints below SMPL+H joint ``j``."""
    out = []
    for c in (c for c in range(52) if PARENTS[c] == j):
        out += [c] if c in mapped else mapped_below(c, mapped)
    return out


def _mapped_parent(j: int, idx) -> int:
    """The nearest mapped ancestor of SMPL+H joint ``j`` (-1: none)."""
    a = PARENTS[j]
    while a >= 0 and a not in idx:
        a = PARENTS[a]
    return a


def _neutral_mean(O: np.ndarray, k: int, a_world: np.ndarray) -> np.ndarray:
    """``C`` of mapped joint ``k`` whose mean local rotation relative to the aligned parent
    orientations ``a_world (S, 3, 3)`` is the rest; ``O (S, M, 3, 3)``."""
    return _procrustes((np.swapaxes(O[:, k], -1, -2) @ a_world).sum(0))


def _toe_swing(C: np.ndarray, tg: Targets, rest: np.ndarray, j: int, sub: np.ndarray
               ) -> np.ndarray:
    """An ankle's ``C (3, 3)`` turned so that the SMPL+H foot points at the mapped toes as in
    the file (the toes' direction is constant in the ankle's BVH frame); its twist about the
    foot stays. Feet are placed alike on all rigs, unlike a foot's mean posture in a clip."""
    idx = {int(i): k for k, i in enumerate(tg.joints)}
    toe = _IDX["left_foot"] if j == _IDX["left_ankle"] else _IDX["right_foot"]
    if toe not in idx:
        return C
    d = tg.pos[sub, idx[toe]] - tg.pos[sub, idx[j]]
    b = unit(np.einsum("nji,nj->i", tg.rot[sub, idx[j]], unit(d)))
    u = unit(C @ unit(rest[toe] - rest[j]))
    return min_rotation(u[None], b[None])[0] @ C


def _beyond(R: np.ndarray, j: int) -> np.ndarray:
    """``(N,)`` whether local rotations ``R (N, 3, 3)`` of joint ``j`` are further than
    ``TRUST_TOL_DEG`` beyond one of its ranges (a wrist's twist is not judged: the elbow takes
    what the wrist cannot)."""
    ex = joint_excess(R, j)
    if j in _WRISTS:
        ex[:, 0] = 0.0
    return ex.max(-1) > np.deg2rad(TRUST_TOL_DEG)


def _turned_frame(cand: np.ndarray, O: np.ndarray, k: int, j: int, idx, C: np.ndarray, a: int,
                  tg: Targets, rest: np.ndarray, sub: np.ndarray) -> np.ndarray | None:
    """The neutral-mean ``C`` of joint ``j`` if the rest-pose estimate ``cand`` makes its
    local rotation no human pose (``_beyond``) in at least ``TURNED_SHARE[0]`` of the frames
    and the neutral mean in at most ``TURNED_SHARE[1]``, else None: the file's joint frame is
    turned by a constant for the whole clip (a Poser-style head rolled by 180° about its
    forward axis, its motion relative to that intact), not flipped for a while. ``a``: the
    mapped parent the neutral mean is taken against."""
    p = PARENTS[j]
    if j not in LIMITED or p not in idx or not tg.has_rot[idx[p]] or a < 0 or not tg.has_rot[
            idx[a]]:
        return None
    parent = O[:, idx[p]] @ C[idx[p]]
    if _beyond(np.swapaxes(parent, -1, -2) @ O[:, k] @ cand, j).mean() < TURNED_SHARE[0]:
        return None
    mean = _neutral_mean(O, k, O[:, idx[a]] @ C[idx[a]])
    if j in (_IDX["left_ankle"], _IDX["right_ankle"]):
        mean = _toe_swing(mean, tg, rest, j, sub)
    if _beyond(np.swapaxes(parent, -1, -2) @ O[:, k] @ mean, j).mean() > TURNED_SHARE[1]:
        return None
    return mean


# ------------------------------------------------------------------------------ together
def _rest_candidates(tg: Targets, rest: np.ndarray, bad: dict[str, str], notes: list[str]
                     ) -> tuple[np.ndarray, dict[int, str]]:
    """Rest-pose (and hinge) globals ``(52, 3, 3)`` and, per joint, its source (``rest``,
    ``hinge``, ``chain``; joints absent have no trustworthy rest estimate)."""
    idx = {int(j): k for k, j in enumerate(tg.joints)}
    G = rest_globals(tg, rest)
    src = {} if "torso" in bad else {j: "rest" for j in (0, 3, 6, 9, 12, 15)}
    for s in ("left", "right"):
        if "torso" not in bad and f"{s} collar" not in bad:
            src[_IDX[f"{s}_collar"]] = "rest"
    for name, limb in LIMBS.items():
        if "torso" in bad:  # no body frame to swing the limb from
            bad[name] = bad.get(name, "without a standing torso")
        Ch = hinge_alignment(tg, rest, limb)
        root, mid, end, tip = limb["joints"]
        if Ch is None:
            if name not in bad:
                src.update({j: "rest" for j in limb["joints"]})
            continue
        off = max(_rot_angle(tg.rest_rot[idx[j]] @ Ch[j], G[j]) for j in (root, mid))
        if name not in bad and off <= HINGE_TOL_DEG:
            src.update({j: "rest" for j in limb["joints"]})
            continue
        _hinge_chain(G, tg, rest, limb, Ch)
        src.update({root: "hinge", mid: "hinge", end: "chain", tip: "chain"})
        why = f"rest pose {bad[name]}" if name in bad else f"rest pose {off:.0f}° off"
        notes.append(f"{name}: aligned from its hinge ({why})")
    return _fingers(G, tg, rest), src


def align(tg: Targets, rest: np.ndarray, max_frames: int = 400
          ) -> tuple[np.ndarray, str, list[str]]:
    """``(C (M, 3, 3), how, notes)``: how the joint frames were aligned (``"rest"``, or which
    other estimates were used) and why.

    Joints in SMPL+H order (parents first): the rest-pose, hinge or chain estimate where valid
    (module notes); else the neutral mean; long bones and joints with several mapped joints
    below that have neither take position-only IK. ``rest (52, 3)``: SMPL+H rest joints for
    the clip's shape.
    """
    idx = {int(j): k for k, j in enumerate(tg.joints)}
    notes: list[str] = []
    sub = np.unique(np.linspace(0, len(tg.pos) - 1, min(len(tg.pos), max_frames)).astype(int))
    O = tg.rot[sub]
    if tg.rest_pos is not None:
        bad = rest_problems(tg, rest)
        G_rest, src = _rest_candidates(tg, rest, bad, notes)
    else:
        bad, G_rest, src = {"all": "missing"}, None, {}
    G_ik = None
    C = np.zeros((len(tg.joints), 3, 3))
    used = set()
    for k, j in enumerate(int(j) for j in tg.joints):
        cand = tg.rest_rot[k].T @ G_rest[j] if j in src else None
        if j in (_IDX["left_wrist"], _IDX["right_wrist"]) and len(mapped_below(j, idx)) >= 2:
            cand = None  # mapped finger bases: positions give the hand's orientation
        a = _mapped_parent(j, idx)
        if j == _IDX["head"] and a == _IDX["neck"]:  # rigs split neck and head bending
            a = _mapped_parent(a, idx)  # differently from SMPL+H: judge it by the torso
        if cand is not None and src[j] != "hinge":
            turned = _turned_frame(cand, O, k, j, idx, C, a, tg, rest, sub)
            if turned is not None:
                cand = turned
                src[j] = "mean"
                notes.append(f"the file's {JOINT_NAMES[j]} frame is no human pose in nearly every "
                             "frame when aligned by the rest pose (turned for the whole clip): "
                             "aligned by the neutral mean")
        if cand is not None:
            C[k] = cand
            used.add(src[j])
        elif (a >= 0 and tg.has_rot[idx[a]] and j not in LONG_BONES
              and len(mapped_below(j, idx)) < 2):
            C[k] = _neutral_mean(O, k, O[:, idx[a]] @ C[idx[a]])
            if j in (_IDX["left_ankle"], _IDX["right_ankle"]):
                C[k] = _toe_swing(C[k], tg, rest, j, sub)
            used.add("mean")
        else:
            G_ik = _ik_globals(tg, rest, sub) if G_ik is None else G_ik
            C[k] = _procrustes((np.swapaxes(O[:, k], -1, -2) @ G_ik[:, j]).sum(0))
            used.add("ik")
    notes += [f"rest pose {k}: {v}" for k, v in bad.items() if k in ("torso", "all")]
    order = ("rest", "hinge", "chain", "mean", "ik")
    return C, "+".join(o for o in order if o in used), notes




def trusted_orientations(tg: Targets, C: np.ndarray) -> np.ndarray:
    """Which file orientations to follow: ``(N, M)`` bool, False where the aligned orientation
    ``O_j C_j`` of a mapped joint, relative to its aligned parent ``O_p C_p``, is further than
    ``TRUST_TOL_DEG`` beyond one of the joint's human ranges (``tracker.motion.limits``).

    Such frames are no pose a person can take: mocap solvers flip a bone's roll about its own
    axis (a foot turned by 160-180° about its length while the toes stay where they are) or a
    head or hand for a while, which positions cannot show. There the fit ignores the file's
    orientation and the joint follows the positions and its parent. A wrist's twist is not
    judged (SMPL+H shares forearm pronation with the elbow, rigs often give it all to the hand;
    ``tracker.motion.ik`` hands it on). Joints without limits, or whose parent is not mapped
    with orientations, are always followed. ``C (M, 3, 3)``."""
    idx = {int(j): k for k, j in enumerate(tg.joints)}
    ok = np.ones(tg.pos.shape[:2], bool)
    for k, j in enumerate(int(j) for j in tg.joints):
        p = PARENTS[j]
        if j not in LIMITED or not tg.has_rot[k] or p not in idx or not tg.has_rot[idx[p]]:
            continue
        R = np.swapaxes(tg.rot[:, idx[p]] @ C[idx[p]], -1, -2) @ tg.rot[:, k] @ C[k]
        ok[:, k] = ~_beyond(R, j)
    return ok


def rest_offsets(tg: Targets, rest: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Joint-placement offsets ``(M, 3)`` (metres, parent joint frame) that put each mapped
    BVH joint on SMPL+H posed like the rest skeleton (``G = O_rest C``; unmapped joints keep
    their parent's orientation): the fit's marker ``m`` of joint ``j`` sits at
    ``x_j + G_parent(j) offsets[m]``. ``rest (52, 3)`` model frame; ``C (M, 3, 3)``."""
    idx = {int(j): k for k, j in enumerate(tg.joints)}
    G = np.zeros((52, 3, 3))
    x = np.zeros((52, 3))
    Gm = tg.rest_rot @ C
    for j in range(52):
        p = PARENTS[j]
        G[j] = Gm[idx[j]] if j in idx else (G[p] if p >= 0 else np.eye(3))
        x[j] = rest[j] if p < 0 else x[p] + G[p] @ (rest[j] - rest[p])
    J = np.asarray(tg.joints)
    t = np.average(tg.rest_pos - x[J], axis=0, weights=tg.weights)
    par = [max(PARENTS[j], 0) for j in J]
    return np.einsum("mji,mj->mi", G[par], tg.rest_pos - x[J] - t)
