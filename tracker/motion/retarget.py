"""Retarget BVH motion onto SMPL+H: joint positions, and orientations where they are silent.

Frames: the BVH is run through forward kinematics in its own world (file units, its up axis),
then converted to the AMASS world (Z up, metres); every result here is in the AMASS world.

The fit (per clip), robust to different skeletons, joint placements and rest poses:

1. targets (``tracker.motion.targets``): mapped BVH joints' world positions ``P (N, M, 3)``
   and orientations ``O (N, M, 3, 3)`` after resampling the file's local channels to the
   target rate (slerp); glitches interpolated, the clip cut at jumps; and the same joints in
   the file's rest pose;
2. joint-frame alignment (``tracker.motion.align``): per mapped joint a constant rotation
   ``C_j`` with ``G_j = O_j C_j``, from the rest pose once it is verified to be a standing
   pose (T, A, arms down), else from the knee and elbow hinges or the motion; never from
   position-only IK, whose twists are arbitrary and which folds joints whose child sits
   elsewhere than on SMPL+H (a BVH head 6 cm above a low neck turned the SMPL+H neck by 150°).
   File orientations that are no human pose relative to their parent are not followed in
   those frames (``align.trusted_orientations``); stretches where that holds for the head
   (or a hand without finger data) are cut out;
3. body shape: betas from the skeleton's bone lengths, refined jointly with the poses of a
   subset of frames and the joint-placement offsets (initialised from the rest pose);
4. analytic IK for every frame, within the human joint limits (``tracker.motion.ik``: each
   joint turned so that the rest directions to its next mapped descendants' markers point at
   their targets, Kabsch where there are several; twist, end joints and joints whose child
   is placed too differently from ``O_j C_j``; then projected into its ranges, with a wrist's
   excess twist handed to the elbow and limb twists turned to where bent knees and elbows
   and their children can reach);
5. refinement of all frames (Adam on rotation increments, in batches): weighted squared
   marker error + orientation term ``|G_j - O_j C_j|^2`` + human joint limits
   (``tracker.motion.limits``) + a small pose prior;
6. feet on the floor: the lowest mesh vertex at z = 0 on average over grounded frames;
7. a plausibility report and, for implausible results, a refusal reason
   (``tracker.motion.plausibility``).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from tracker.body.joints import JOINT_NAMES, PARENTS
from tracker.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from tracker.motion.align import align, mapped_below, rest_offsets, trusted_orientations
from tracker.motion.amass import NUM_BETAS
from tracker.motion.bvh import Bvh
from tracker.motion.ik import analytic_ik, joint_fk
from tracker.motion.limits import limit_penalty
from tracker.motion.mappings import Mapping, detect_profile
from tracker.motion.plausibility import plausibility_report, refusal
from tracker.motion.targets import RetargetError, Targets, bvh_targets

# Joints whose placement differs between skeletons: their BVH joints may sit at a constant
# offset from the SMPL+H joint (fitted per clip, in the parent's frame).
OFFSET_JOINTS = frozenset(
    ["pelvis", "spine1", "spine2", "spine3", "neck", "head"]
    + [f"{s}_{j}" for s in ("left", "right") for j in ("hip", "collar", "shoulder", "foot",
                                                         "thumb1")])


@dataclass
class RetargetOptions:
    """Settings of the fit."""

    fps: float = 60.0
    """Output frame rate (the BVH is resampled to it before the fit)."""
    shape_frames: int = 64
    """Frames used to fit the body shape."""
    shape_iters: int = 150
    """Adam steps of the shape fit."""
    iters: int = 60
    """Adam steps of the all-frames refinement."""
    batch: int = 1024
    """Frames per refinement batch."""
    beta_prior: float = 3e-4
    """Weight of ``|betas|^2`` (m^2 of squared joint error per unit^2)."""
    ori_weight: float = 3e-3
    """Weight of ``|G_j - O_j C_j|^2`` per mapped joint (a 5 degree error weighs like 7 mm of
    position error): it sets what positions leave open (twists, head, hands, feet)."""
    pose_prior: float = 3e-5
    """Weight of ``|R_local - I|^2`` per joint."""
    limit_weight: float = 2.0
    """Weight of the squared excess (radians^2) over the joint limits
    (``tracker.motion.limits``): 10° beyond a range weighs like 25 mm of marker error, so the
    refinement, which starts from a pose within the limits (``analytic_ik``), stays within a
    few degrees of them even where the file's positions are no human pose."""
    offset_prior: float = 0.3
    """Weight of ``|offset|^2`` (m^2) of the joint-placement offsets of ``OFFSET_JOINTS``: a
    5 cm offset costs as much as 2.7 cm of marker error in every frame, so placements that
    differ by a few centimetres are mostly met by the joints themselves (the SMPL+H joint goes
    where the file's is) and rig conventions of 10 cm (a neck joint at the base of the neck,
    the issue's head 6 cm above it) by the offset. Much weaker (0.02) moved every SMPL+H joint
    3-8 cm from the file's on the shared CMU rigs."""
    floor: bool = True
    """Shift the motion vertically so the feet stand on z = 0."""
    clean: bool = True
    """Interpolate glitches and cut at jumps (``tracker.motion.targets.repair_jumps``), and cut
    out stretches where the file's head or hand orientation is no human pose."""
    max_gap_s: float = 0.3
    """Longest stretch of such head or hand orientations left to the fit (seconds)."""
    min_segment_s: float = 1.0
    """Shortest piece of motion kept after cutting (seconds)."""
    threads: int | None = 1
    """Torch CPU threads during the fit (small batches: 1 is fastest on a busy machine)."""


@dataclass
class RetargetResult:
    """An AMASS-layout motion fitted to a BVH clip.

    Attributes:
        poses: ``(N, 156)`` float32 axis-angle, AMASS world. trans: ``(N, 3)`` float32.
        betas: ``(16,)`` float32. fps: frame rate. error_mm: mean mapped-joint distance.
        joint_error_mm: per SMPL+H joint name (distances between the SMPL+H joints and the
        mapped BVH joints, so they include the skeletons' different joint placements).
        floor_shift_mm: vertical shift applied (mean
        over the segments, each of which is put on the floor on its own).
        segments: ``[(start, end), ...]`` continuous parts (the clip was cut at jumps).
    """

    poses: np.ndarray
    trans: np.ndarray
    betas: np.ndarray
    fps: float
    error_mm: float
    joint_error_mm: dict[str, float]
    floor_shift_mm: float
    mapping: str
    unit: float
    up: str
    hands: bool
    seconds: float
    segments: list[tuple[int, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plausibility: dict = field(default_factory=dict)
    """The clip's plausibility report (``tracker.motion.plausibility``)."""
    refusal: str | None = None
    """Why the result is not a plausible human motion (None: it is); callers that store
    motion for training should not keep a refused clip."""
    marker_error_mm: float = 0.0
    """Mean distance of the mapped BVH joints from where the fit puts them on the body (the
    joint positions plus the fitted per-clip placement offsets)."""

    def parts(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(poses, trans)`` of each continuous segment."""
        return [(self.poses[a:b], self.trans[a:b]) for a, b in self.segments]


# ------------------------------------------------------------------------------ the fit
def _refine(body, R0, t0, betas, offsets, P, O, C, trust, tg, opt, iters, fit_shape, lr=0.03):
    """Adam on ``R = R0 exp(d)`` (free joints), translation and optionally the shape.

    Markers: the BVH joint ``m`` sits at ``J_j + G_parent(j) offsets[m]`` on the SMPL+H body
    (joint-placement conventions differ between skeletons). ``R0 (B, 52, 3, 3)``,
    ``t0 (B, 3)``, ``betas (K,)``, ``offsets (M, 3)``, ``P (B, M, 3)``, ``O (B, M, 3, 3)``,
    ``C (M, 3, 3)``, float64; ``trust (B, M)``: which file orientations to follow
    (``tracker.motion.align.trusted_orientations``). Returns ``R, t, betas, offsets``.
    """
    free = sorted({a for j in tg.joints for a in _chain(int(j))} | set(map(int, tg.joints)))
    d = torch.zeros(R0.shape[0], len(free), 3, dtype=R0.dtype, requires_grad=True)
    dt = torch.zeros_like(t0, requires_grad=True)
    b = betas.clone().requires_grad_(fit_shape)
    off = offsets.clone().requires_grad_(fit_shape)
    params = [{"params": [d], "lr": lr}, {"params": [dt], "lr": 0.01}]
    if fit_shape:
        params += [{"params": [b], "lr": 0.05}, {"params": [off], "lr": 0.003}]
    adam = torch.optim.Adam(params)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(adam, iters, eta_min=lr * 0.01)
    w = torch.as_tensor(tg.weights, dtype=R0.dtype)
    jt = torch.as_tensor(tg.joints)
    pj = torch.as_tensor([max(PARENTS[j], 0) for j in tg.joints])
    om = torch.as_tensor(tg.has_rot, dtype=R0.dtype) * opt.ori_weight * trust.to(R0.dtype)
    off_w = torch.as_tensor([opt.offset_prior if JOINT_NAMES[j] in OFFSET_JOINTS else 1.0
                             for j in tg.joints], dtype=R0.dtype)
    beta_prior = opt.beta_prior * (0.01 if tg.exact else 1.0)
    if tg.exact:
        off_w = off_w * 0 + 1e3
    eye = torch.eye(3, dtype=R0.dtype)
    OC = O @ C
    for step in range(iters + 1):
        R = R0.clone()
        R[:, free] = R0[:, free] @ axis_angle_to_matrix(d)
        G, x = joint_fk(body.rest_joints(b[None]), R, t0 + dt)
        marker = x[:, jt] + (G[:, pj] @ off[..., None])[..., 0]
        loss = (((marker - P) ** 2).sum(-1) @ w
                + (((G[:, jt] - OC) ** 2).sum((-1, -2)) * om).sum(-1)
                + opt.pose_prior * ((R[:, free[1:]] - eye) ** 2).sum((1, 2, 3))
                + opt.limit_weight * limit_penalty(R, free)).mean()
        if fit_shape:
            loss = loss + beta_prior * (b ** 2).sum() + ((off ** 2).sum(-1) * off_w).sum()
        if step == iters:
            break
        adam.zero_grad()
        loss.backward()
        adam.step()
        sched.step()
    with torch.no_grad():
        R = R0.clone()
        R[:, free] = R0[:, free] @ axis_angle_to_matrix(d)
    return R, (t0 + dt).detach(), b.detach(), off.detach()


def _chain(j: int) -> list[int]:
    out = []
    while j >= 0:
        out.append(j)
        j = PARENTS[j]
    return out


def _shape_from_bones(body, tg: Targets, K: int, prior: float) -> torch.Tensor:
    """Betas ``(K,)`` matching the mapped bone lengths (median over frames)."""
    idx = {int(j): k for k, j in enumerate(tg.joints)}
    pairs, wts = [], []
    for j in idx:
        a = PARENTS[j]
        while a >= 0 and a not in idx:
            a = PARENTS[a]
        if a >= 0:
            pairs.append((j, a))
            wts.append(1.0 if a == PARENTS[j] else 0.3)
    if not pairs:
        return torch.zeros(K, dtype=torch.float64)
    L = np.array([np.median(np.linalg.norm(tg.pos[:, idx[j]] - tg.pos[:, idx[a]], axis=-1))
                  for j, a in pairs])
    L, wt = torch.as_tensor(L), torch.as_tensor(wts, dtype=torch.float64)
    ji, ai = torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])
    b = torch.zeros(K, dtype=torch.float64, requires_grad=True)
    lbfgs = torch.optim.LBFGS([b], max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        lbfgs.zero_grad()
        J = body.rest_joints(b[None])[0]
        loss = (wt * ((J[ji] - J[ai]).norm(dim=-1) - L) ** 2).sum() + prior * (b ** 2).sum()
        loss.backward()
        return loss

    lbfgs.step(closure)
    return b.detach()


def _floor_shift(body, R, t, betas, n_max: int = 120) -> float:
    """Vertical shift putting the lowest vertex on z = 0 over the grounded frames."""
    step = max(1, R.shape[0] // n_max)
    with torch.no_grad():
        st = body(R[::step], betas.expand(R[::step].shape[0], -1), t[::step], vertices=True)
    zmin = st.vertices[..., 2].amin(1).numpy()
    ground = zmin <= np.percentile(zmin, 10) + 0.03
    return float(-zmin[ground].mean())


def _alignment(tg: Targets, rest: np.ndarray) -> tuple[torch.Tensor, str, list[str]]:
    """``C (M, 3, 3)`` with ``G_j = O_j C_j`` (``tracker.motion.align``), how, notes."""
    C, how, notes = align(tg, rest)
    C = torch.as_tensor(C)
    if tg.exact and 0 in tg.joints:  # SMPL+H's own frames, up to the file's rest frame:
        C = C[list(tg.joints).index(0)].expand_as(C).clone()  # the pelvis (determined) has it
        how, notes = "exact", []
    return C, how, notes


def _signal_joints(tg: Targets) -> list[int]:
    """Columns of the mapped joints whose orientation comes from the file alone and is an
    input signal of the tracker: the head (headset) and wrists (controllers) without two
    mapped joints below them (finger bases, which orient the hand by their positions)."""
    idx = {int(j): k for k, j in enumerate(tg.joints)}
    out = []
    for name in ("head", "left_wrist", "right_wrist"):
        j = JOINT_NAMES.index(name)
        if j in idx and tg.has_rot[idx[j]] and (name == "head" or len(mapped_below(j, idx)) < 2):
            out.append(idx[j])
    return out


def _cut_unreliable(tg: Targets, C: np.ndarray, opt: RetargetOptions) -> Targets:
    """The targets without the stretches (longer than ``opt.max_gap_s``) in which the file's
    head or hand orientation is no human pose (``tracker.motion.align.trusted_orientations``):
    nothing says where the head or hand was there, and a guess would be a wrong headset or
    controller signal. Shorter ones are left to the fit, which ignores those orientations
    there. Unchanged when too little (``opt.min_segment_s``) would be left; the plausibility
    report then refuses the clip."""
    cols = _signal_joints(tg)
    if not cols or not opt.clean:
        return tg
    ok = trusted_orientations(tg, C)[:, cols]
    bad = ~ok.all(-1)
    gap = max(1, int(round(opt.max_gap_s * tg.fps)))
    cut = np.zeros_like(bad)
    d = np.diff(np.r_[0, bad.astype(int), 0])
    for a, b in zip(np.nonzero(d == 1)[0], np.nonzero(d == -1)[0], strict=True):
        if b - a > gap:
            cut[a:b] = True
    if not cut.any():
        return tg
    kept = tg.keep(~cut, int(round(opt.min_segment_s * tg.fps)))
    if kept is None:
        return tg
    names = " and ".join(JOINT_NAMES[int(tg.joints[c])] for k, c in enumerate(cols)
                         if not ok[cut, k].all())
    kept.notes = list(tg.notes) + [
        f"cut {len(tg.pos) - len(kept.pos)} frames where the file's {names} orientation is no "
        f"human pose; {len(kept.segments)} segment(s) left"]
    return kept


def retarget(bvh: Bvh, body, mapping: Mapping | None = None,
             options: RetargetOptions | None = None) -> RetargetResult:
    """Fit SMPL+H pose, translation and a per-clip body shape to a BVH clip.

    Args:
        bvh: parsed file. body: ``tracker.body.BodyModel`` (float64 is used internally).
        mapping: joint mapping (default: the best-matching built-in profile).

    Returns:
        :class:`RetargetResult` in the AMASS layout and world (Z up, metres).
    """
    opt = options or RetargetOptions()
    old_threads = torch.get_num_threads()
    if opt.threads:
        torch.set_num_threads(opt.threads)
    try:
        return _retarget(bvh, body, mapping, opt)
    finally:
        torch.set_num_threads(old_threads)


def _retarget(bvh: Bvh, body, mapping: Mapping | None, opt: RetargetOptions) -> RetargetResult:
    t_start = time.perf_counter()
    if mapping is None:
        mapping = detect_profile(bvh.names)
        if mapping is None:
            raise RetargetError("no built-in mapping matches this skeleton; pass --mapping "
                                "FILE.json (see tracker/motion/mappings.py)")
    if body.dtype != torch.float64:
        body = copy.deepcopy(body).to(torch.float64)
    tg = bvh_targets(bvh, mapping, opt.fps, clean=opt.clean)
    K = body.num_betas

    # Shape: bone lengths, then jointly with the poses of a subset of frames.
    betas = _shape_from_bones(body, tg, K, opt.beta_prior * (0.01 if tg.exact else 1.0))
    rest = body.rest_joints(betas[None])[0].detach().numpy()
    C, _, _ = _alignment(tg, rest)
    tg = _cut_unreliable(tg, C.numpy(), opt)
    N = tg.pos.shape[0]
    P, O = torch.as_tensor(tg.pos), torch.as_tensor(tg.rot)
    sub = np.unique(np.linspace(0, N - 1, min(N, opt.shape_frames)).round().astype(int))
    off0 = torch.zeros(len(tg.joints), 3, dtype=torch.float64)
    if tg.rest_pos is not None and not tg.exact:  # where each BVH joint sits on the body
        off0 = torch.as_tensor(rest_offsets(tg, rest, C.numpy()))
    trust = torch.as_tensor(trusted_orientations(tg, C.numpy()))
    R0, t0 = analytic_ik(rest, tg.subset(sub), (O[sub] @ C).numpy(), offsets=off0.numpy(),
                         limits=True, target_ok=trust[sub].numpy())
    _, _, betas, offsets = _refine(body, torch.as_tensor(R0), torch.as_tensor(t0), betas, off0,
                                   P[sub], O[sub], C, trust[sub], tg, opt, opt.shape_iters,
                                   True)

    # All frames: constant joint-frame offsets C, IK, refinement in batches.
    rest = body.rest_joints(betas[None])[0].detach().numpy()
    C, how, align_notes = _alignment(tg, rest)
    trust = torch.as_tensor(trusted_orientations(tg, C.numpy()))
    R_ik, t_ik = analytic_ik(rest, tg, (O @ C).numpy(), offsets=offsets.numpy(), limits=True,
                             target_ok=trust.numpy())  # twist from the orientations, in range
    R_ik, t_ik = torch.as_tensor(R_ik), torch.as_tensor(t_ik)
    Rs, ts = [], []
    for s in range(0, N, opt.batch):
        e = min(N, s + opt.batch)
        R, t, _, _ = _refine(body, R_ik[s:e], t_ik[s:e], betas, offsets, P[s:e], O[s:e], C,
                             trust[s:e], tg, opt, opt.iters, False, lr=0.01)
        Rs.append(R)
        ts.append(t)
    R, t = torch.cat(Rs), torch.cat(ts)

    jt = torch.as_tensor(tg.joints)
    with torch.no_grad():
        G, X = joint_fk(body.rest_joints(betas[None]), R, t)
    pj = torch.as_tensor([max(PARENTS[j], 0) for j in tg.joints])
    err = (X[:, jt] - P).norm(dim=-1).mean(0).numpy() * 1000
    marker = X[:, jt] + (G[:, pj] @ offsets[..., None])[..., 0]
    marker_err = float((marker - P).norm(dim=-1).mean()) * 1000
    report = plausibility_report(R, G, tg.joints, O @ C, tg.has_rot, how, trust)
    notes = list(tg.notes) + align_notes
    shifts = [_floor_shift(body, R[a:b], t[a:b], betas) if opt.floor else 0.0
              for a, b in tg.segments]  # per segment: a cut may change the floor
    for (a, b), sh in zip(tg.segments, shifts, strict=True):
        t[a:b, 2] += sh
    shift = float(np.average(shifts, weights=[b - a for a, b in tg.segments]))
    poses = matrix_to_axis_angle(R).reshape(N, 156).numpy()
    if not tg.hands_animated:
        poses[:, 66:] = 0.0
    b16 = np.zeros(NUM_BETAS, np.float32)
    b16[: min(K, NUM_BETAS)] = betas.numpy()[:NUM_BETAS]
    names = [JOINT_NAMES[j] for j in tg.joints]
    return RetargetResult(
        poses=poses.astype(np.float32), trans=t.numpy().astype(np.float32), betas=b16,
        fps=tg.fps, error_mm=float(err.mean()),
        joint_error_mm={n: round(float(e), 1) for n, e in zip(names, err, strict=True)},
        floor_shift_mm=shift * 1000, mapping=mapping.name, unit=tg.unit, up=tg.up,
        hands=tg.hands_animated, seconds=time.perf_counter() - t_start, segments=tg.segments,
        notes=notes, plausibility=report, refusal=refusal(report), marker_error_mm=marker_err)


__all__ = ["RetargetError", "RetargetOptions", "RetargetResult", "Targets", "bvh_targets",
           "retarget"]
