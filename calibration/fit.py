"""Estimating a user's profile: body shape β, the head-to-headset offset ``T_HMD``, the floor.

Two entry points:

* :func:`fit_known` — from numbers a user knows: stature (top of the head to the soles) and,
  optionally, arm span (fingertip to fingertip, arms out sideways).
* :func:`fit_capture` — from a live or recorded capture of the calibration pose (see
  :mod:`calibration.capture` and :mod:`calibration.pose`), in two steps:

  1. **T_HMD translation, by pivot calibration.** While the user looks around with the
     shoulders still (before or after the hold), the head joint ``c`` stays put and the
     headset (position ``p_i``, orientation ``R_i``) turns about it: ``p_i = c + R_i u``,
     ``u`` being the head joint -> headset offset in the headset frame. Linear least squares
     over the frames (with a weak prior pulling ``u`` to the default) gives ``c`` and ``u``;
     ``T_HMD``'s translation is ``R_hmd u`` in the head frame. ``u`` is identifiable only
     when the head turns about two axes (left/right *and* up/down); a poorly spread
     look-around leaves the weak direction near the default and says so in ``warnings``.
     The rotation of ``T_HMD`` is not observable from headset data (nothing measures the
     skull) and stays the default. The head joint of every frame is then ``p_i - R_i u``.
     A user who also bends the neck moves the pivot below the head joint: with 30% of the
     turn at the neck the synthetic users' ``T_HMD`` comes out about 3 cm off.

  2. **Shape and floor, by least squares in the model's shape space.** The hold gives the
     head joint and both wrists (position and orientation). The model is posed standing
     straight with each arm straight along its measured hand direction (so a drooping arm
     costs nothing); the residuals are the wrists relative to the head joint in the body
     frame (arm span, and the height of the head above the shoulders), the head joint's
     height above the soles against the measured one plus the floor offset, and Gaussian
     priors on β (the first component, stature, weakly) and on the floor offset.

Identifiability, stated plainly: headset data alone cannot tell a tall user on a floor
reported too low from a shorter user on a correct floor. Everything floor-free (arm span,
head above the wrists) fixes the body up to the shape components that do not change them;
the floor offset is then *the model's* head height minus the measured one. So the stature
comes from the arm span through the model's shape space (``floor_prior_m`` large, the
default): exact for users whose shape varies along the stature component, but for a random
shape of the bundled model's population (all 16 betas ~ N(0, 1)) the stature and the floor
are off by about 2 cm on average (5 cm at worst in our synthetic trials). A known ``height``
removes this (floor within 3 mm), and so does a trusted headset floor (``floor_prior_m``
about 0.01 when the runtime's floor is right).

Sign of the floor offset: ``y_true = y_reported + floor_offset`` (see
:mod:`calibration.profile`).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import torch

from calibration.capture import CalibrationRefused, Capture, Hold, HoldCriteria, find_hold
from calibration.profile import Profile
from tracker.body.joints import HEAD, LEFT_WRIST, RIGHT_WRIST
from tracker.signals.headset import DEFAULT_HMD_OFFSET, WRIST_TO_OPENXR, head_to_hmd

F64 = torch.float64
_SHAPE_MODELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
PELVIS, LEFT_SHOULDER, RIGHT_SHOULDER = 0, 16, 17
MIDDLE_TIP = 2


@dataclass(frozen=True)
class FitOptions:
    """Weights, priors and limits of the shape/floor/T_HMD fit (metres unless noted)."""

    shape_components: int = 4
    """How many leading betas are fitted; the others stay 0."""
    stature_prior_std: float = 3.0
    """Prior std of beta 0 (stature in the bundled model): weak, any stature is fine."""
    beta_prior_std: float = 1.0
    """Prior std of the other fitted betas (the model's betas are N(0, 1) over its population)."""
    floor_prior_m: float = 0.10
    """Prior std of the floor offset: how far the headset's floor may be off."""
    hmd_prior_m: float = 0.05
    """Prior std of the T_HMD translation around the default (regularises the pivot fit)."""
    wrist_sigma_m: tuple[float, float, float] = (0.01, 0.01, 0.02)
    """Weight of the wrist residuals in the body frame: sideways, up, forward."""
    head_sigma_m: float = 0.005
    """Weight of the head-joint height residual."""
    known_sigma_m: float = 0.002
    """Weight of a stature or arm span the user gave."""
    pivot_sigma_m: float = 0.003
    """Weight of each look-around frame in the pivot fit."""
    max_pivot_rms_m: float = 0.015
    """Refuse when the head does not turn about a fixed point (the body moved)."""
    min_look_spread: float = 0.02
    """Smallest eigenvalue of the look-around's rotation spread below which T_HMD stays near
    its default in that direction (about 10 degrees each way)."""
    max_pose_rms_m: float = 0.03
    """Refuse when the fitted body misses the measured wrists by more than this (RMS)."""
    max_abs_floor_m: float = 0.5
    """Refuse a floor offset beyond this (the headset is probably not in a floor space)."""


# ---------------------------------------------------------------------- the model's numbers
class ShapeModel:
    """The rest-pose quantities of a body model as differentiable float64 functions of β.

    Only what calibration needs: rest joints, the rest mesh's extent, eye and fingertip
    vertices. Shapes: betas ``(k,)`` with ``k <= K``.
    """

    def __init__(self, body):
        self.body = body
        self.num_betas = body.num_betas
        self.fingerprint = body.fingerprint
        d = body.data
        self.v_template = torch.as_tensor(d.v_template, dtype=F64)
        self.shapedirs = torch.as_tensor(d.shapedirs, dtype=F64)
        self.j_template = body.j_template.detach().to(F64)
        self.j_dirs = body.j_dirs.detach().to(F64)
        self.tip_template = body.tip_template.detach().to(F64).reshape(2, 5, 3)
        self.tip_dirs = body.tip_dirs.detach().to(F64).reshape(2, 5, 3, -1)
        vid = d.vertex_ids
        self.eye_ids = [vid[k] for k in ("leye", "reye") if k in vid]
        # The soles and the top of the head: every vertex that is the lowest or highest one
        # for some plausible shape (within 1 cm of the extremes over sampled betas), so that
        # min/max over these few equal those over the whole mesh (and differentiate fast).
        g = torch.Generator().manual_seed(0)
        B = 2.0 * torch.randn(1024, self.shapedirs.shape[-1], generator=g, dtype=F64)
        B[:, 0] *= 2.0
        B[0] = 0.0
        y0 = self.v_template[:, 1]
        near = torch.nonzero((y0 < y0.min() + 0.2) | (y0 > y0.max() - 0.2))[:, 0]
        y = y0[near] + torch.einsum("vk,bk->bv", self.shapedirs[near, 1], B)
        lo = (y <= y.min(1, keepdim=True).values + 0.01).any(0)
        hi = (y >= y.max(1, keepdim=True).values - 0.01).any(0)
        self.sole_ids, self.top_ids = near[lo], near[hi]

    @classmethod
    def of(cls, body) -> ShapeModel:
        """The (cached) shape model of ``body``."""
        sm = _SHAPE_MODELS.get(body)
        if sm is None:
            sm = _SHAPE_MODELS[body] = cls(body)
        return sm

    def sole(self, b):
        """The lowest rest-pose vertex height (the soles), ``()``."""
        return self._y(self.sole_ids, b).min()

    def top(self, b):
        """The highest rest-pose vertex height (the top of the head), ``()``."""
        return self._y(self.top_ids, b).max()

    def _y(self, ids, b):
        return self.v_template[ids, 1] + self.shapedirs[ids, 1, : b.shape[-1]] @ b

    def joints(self, b):
        return self.j_template + self.j_dirs[..., : b.shape[-1]] @ b  # (52, 3)

    def vertices(self, b):
        return self.v_template + self.shapedirs[..., : b.shape[-1]] @ b  # (V, 3)

    def tips(self, b):
        return self.tip_template + self.tip_dirs[..., : b.shape[-1]] @ b  # (2, 5, 3)

    def measurements(self, b, hmd_offset=DEFAULT_HMD_OFFSET) -> dict:
        """Rest-pose body measurements, metres, heights above the soles.

        ``height``: top of the head to the soles; ``arm_span``: middle fingertip to middle
        fingertip, arms out sideways; ``wrist_span``: wrist joint to wrist joint;
        ``eye_height``: the model's eye vertices; ``headset_height``: the head joint plus
        ``T_HMD``'s offset (head level); ``shoulder_height``, ``head_joint_height``.
        """
        J, tp = self.joints(b), self.tips(b)
        sole = self.sole(b)
        out = {
            "height": self.top(b) - sole,
            "arm_span": (tp[0, MIDDLE_TIP] - tp[1, MIDDLE_TIP]).norm(),
            "wrist_span": (J[LEFT_WRIST] - J[RIGHT_WRIST]).norm(),
            "shoulder_height": 0.5 * (J[LEFT_SHOULDER, 1] + J[RIGHT_SHOULDER, 1]) - sole,
            "head_joint_height": J[HEAD, 1] - sole,
            "headset_height": J[HEAD, 1] + float(hmd_offset[1]) - sole,
        }
        if self.eye_ids:
            out["eye_height"] = self._y(self.eye_ids, b).mean() - sole
        return out

    def full_betas(self, b) -> np.ndarray:
        out = np.zeros(self.num_betas)
        out[: len(b)] = np.asarray(b, dtype=np.float64)
        return out


def body_measurements(body, betas, hmd_offset=DEFAULT_HMD_OFFSET) -> dict[str, float]:
    """:meth:`ShapeModel.measurements` as plain floats for ``betas (k,)``."""
    m = ShapeModel.of(body).measurements(torch.tensor(np.asarray(betas, dtype=np.float64)),
                                      hmd_offset)
    return {k: float(v) for k, v in m.items()}


def _prior_std(k: int, opt: FitOptions) -> torch.Tensor:
    s = torch.full((k,), opt.beta_prior_std, dtype=F64)
    s[0] = opt.stature_prior_std
    return s


@dataclass
class SolveInfo:
    """How :func:`_solve` went: ``cost`` (half the squared residual norm), ``nfev``."""

    cost: float
    nfev: int
    converged: bool


def _solve(residuals, x0: np.ndarray, max_iter: int = 100) -> tuple[np.ndarray, SolveInfo]:
    """Levenberg-Marquardt on a torch residual function (autograd Jacobian, float64).

    The problems here have a handful of parameters and a few dozen residuals, so a dense
    damped Gauss-Newton step is cheap and (unlike scipy.optimize) costs no import time.
    """
    x = torch.as_tensor(np.asarray(x0, dtype=np.float64)).clone()
    jac = torch.autograd.functional.jacobian
    with torch.no_grad():
        r = residuals(x)
    cost, lam, nfev, converged = 0.5 * float(r @ r), 1e-3, 1, False
    for _ in range(max_iter):
        J = jac(residuals, x)
        g = J.T @ r
        H = J.T @ J
        D = torch.diag(torch.diag(H).clamp_min(1e-12))
        while True:
            step = torch.linalg.solve(H + lam * D, -g)
            with torch.no_grad():
                r_new = residuals(x + step)
            nfev += 1
            cost_new = 0.5 * float(r_new @ r_new)
            if cost_new <= cost:
                break
            lam *= 4.0
            if lam > 1e12:
                return x.numpy(), SolveInfo(cost, nfev, True)  # no descent left: a minimum
        x, r = x + step, r_new
        small_step = float(step.abs().max()) < 1e-10 * (1.0 + float(x.abs().max()))
        small_gain = cost - cost_new <= 1e-14 * max(cost, 1e-30)
        cost, lam = cost_new, max(lam / 3.0, 1e-9)
        if small_step or small_gain:
            converged = True
            break
    return x.numpy(), SolveInfo(cost, nfev, converged)


def _stamp(source: str) -> dict:
    return {"created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "source": source}


def _rounded(d: dict, nd: int = 4) -> dict:
    return {k: (round(float(v), nd) if isinstance(v, float | int | np.floating | torch.Tensor)
                else v) for k, v in d.items()}


# ---------------------------------------------------------------------- known numbers
def fit_known(body, height: float, arm_span: float | None = None,
              hmd_offset=DEFAULT_HMD_OFFSET, floor_offset: float = 0.0,
              options: FitOptions = FitOptions()) -> Profile:
    """The profile of a user who knows their stature (and arm span, fingertip to fingertip).

    β is fitted so that the model's rest stature (top of the head vertex to the soles)
    equals ``height`` and, when given, its fingertip-to-fingertip span equals ``arm_span``;
    the other fitted components stay near 0 through their prior. ``T_HMD`` gets
    ``hmd_offset`` and the default rotation.
    """
    sm = ShapeModel.of(body)
    k = min(options.shape_components, sm.num_betas)
    if arm_span is not None:
        k = max(k, min(2, sm.num_betas))
    prior = _prior_std(k, options)

    def residuals(b):
        m = sm.measurements(b)
        r = [((m["height"] - height) / options.known_sigma_m)[None]]
        if arm_span is not None:
            r.append(((m["arm_span"] - arm_span) / options.known_sigma_m)[None])
        r.append(b / prior)
        return torch.cat(r)

    b, info = _solve(residuals, np.zeros(k))
    m = body_measurements(body, b, hmd_offset)
    fit = {"height_error_m": m["height"] - height}
    if arm_span is not None:
        fit["arm_span_error_m"] = m["arm_span"] - arm_span
    warnings = []
    for key, err in fit.items():
        if abs(err) > 0.01:
            warnings.append(f"the model's shape space cannot match the given numbers: "
                            f"{key.removesuffix('_error_m')} off by {100 * err:+.1f} cm")
    T = head_to_hmd(tuple(float(x) for x in hmd_offset), dtype=F64).numpy()
    given = {"height_m": height}
    if arm_span is not None:
        given["arm_span_m"] = arm_span
    meta = {
        **_stamp("known numbers"),
        "given": given,
        "model": _rounded({f"{k_}_m": v for k_, v in m.items()}),
        "fit": {**_rounded(fit, 5), "shape_components": k, "evaluations": info.nfev},
        "warnings": warnings,
    }
    return Profile(sm.full_betas(b), T, floor_offset, sm.fingerprint, meta)


# ---------------------------------------------------------------------- pivot calibration
@dataclass
class PivotFit:
    """Result of :func:`estimate_hmd_offset`.

    Attributes:
        offset: ``(3,)`` T_HMD translation, head-joint frame.
        u: ``(3,)`` the same offset in the headset frame (head joint -> headset).
        pivot: ``(3,)`` the head joint, stage frame as reported.
        rms_m: residual RMS over the frames kept.
        spread: ``(3,)`` eigenvalues of the rotation spread, ascending (identifiability).
        used: ``(N,)`` bool, the frames kept after trimming.
    """

    offset: np.ndarray
    u: np.ndarray
    pivot: np.ndarray
    rms_m: float
    spread: np.ndarray
    used: np.ndarray


def estimate_hmd_offset(head_pos: np.ndarray, head_rot: np.ndarray,
                        options: FitOptions = FitOptions(),
                        prior_offset=DEFAULT_HMD_OFFSET) -> PivotFit:
    """Pivot calibration of the headset about the head joint.

    Args:
        head_pos: ``(N, 3)`` headset positions; head_rot: ``(N, 3, 3)`` orientations
            (stage frame; frames where the shoulders stay still).
    """
    R_hmd = head_to_hmd(dtype=F64).numpy()[:3, :3]
    u0 = R_hmd.T @ np.asarray(prior_offset, dtype=np.float64)
    N = len(head_pos)
    used = np.ones(N, bool)
    lam = (options.pivot_sigma_m / options.hmd_prior_m) ** 2
    for _ in range(2):  # solve, trim outliers once, solve again
        Rs, ps = head_rot[used], head_pos[used]
        n = len(ps)
        A = np.zeros((3 * n + 3, 6))
        A[: 3 * n, :3] = np.tile(np.eye(3), (n, 1))
        A[: 3 * n, 3:] = Rs.reshape(-1, 3)
        A[3 * n :, 3:] = math.sqrt(lam) * np.eye(3)
        rhs = np.concatenate([ps.reshape(-1), math.sqrt(lam) * u0])
        x, *_ = np.linalg.lstsq(A, rhs, rcond=None)
        c, u = x[:3], x[3:]
        err = np.linalg.norm(c + head_rot @ u - head_pos, axis=1)
        keep = err <= max(3.0 * float(np.median(err[used])), 0.01)
        if keep.sum() < 0.7 * N or np.array_equal(keep, used):
            break
        used = keep
    Rs = head_rot[used]
    D = Rs - Rs.mean(0)
    spread = np.linalg.eigvalsh(np.einsum("nji,njk->ik", D, D) / len(Rs))
    rms = float(np.sqrt(np.mean(err[used] ** 2)))
    return PivotFit(R_hmd @ u, u, c, rms, spread, used)


# ---------------------------------------------------------------------- the live fit
def _mean_rotation(R: np.ndarray) -> np.ndarray:
    U, _, Vt = np.linalg.svd(R.mean(0))
    M = U @ Vt
    if np.linalg.det(M) < 0:
        U[:, -1] *= -1
        M = U @ Vt
    return M


def _rot_y(psi):
    c, s = torch.cos(psi), torch.sin(psi)
    o, z = torch.ones_like(psi), torch.zeros_like(psi)
    return torch.stack([c, z, s, z, o, z, -s, z, c]).reshape(3, 3)


def fit_capture(body, capture: Capture, hold: Hold | None = None,
                height: float | None = None, arm_span: float | None = None,
                options: FitOptions = FitOptions(),
                criteria: HoldCriteria | None = None) -> Profile:
    """The profile from a capture of the calibration pose (see the module docstring).

    Args:
        hold: the hold (default: :func:`calibration.capture.find_hold`).
        height, arm_span: numbers the user knows, added as measurements (optional).

    Raises:
        CalibrationRefused: no usable hold, the body moved while looking around, or the fit
            does not explain the capture.
    """
    if hold is None:
        hold = find_hold(capture, criteria or HoldCriteria())
    sm = ShapeModel.of(body)
    k = min(options.shape_components, sm.num_betas)
    warnings: list[str] = []

    # 1. T_HMD from the look-around: every frame (the user stays in place), else the frames
    #    from the start of the hold on (the user stepped into place first)
    R_all = capture.head_rotations()
    piv = estimate_hmd_offset(capture.head[:, :3], R_all, options)
    if piv.rms_m > options.max_pivot_rms_m and hold.start > 0:
        piv = estimate_hmd_offset(capture.head[hold.start:, :3], R_all[hold.start:], options)
    if piv.rms_m > options.max_pivot_rms_m:
        raise CalibrationRefused(
            "body_moved", f"the head did not turn about a fixed point while looking around "
            f"(residual {100 * piv.rms_m:.1f} cm, limit {100 * options.max_pivot_rms_m:.1f}): "
            "keep the feet and shoulders still and turn only the head")
    if piv.spread[0] < options.min_look_spread:
        warnings.append(
            f"the look-around turned the head too little about one axis (spread "
            f"{piv.spread[0]:.3f} < {options.min_look_spread}): T_HMD stays near its default "
            "in that direction; look left, right, up and down")

    # 2. what the hold measured (head joint per frame from the pivot's offset)
    h = capture.slice(hold.start, hold.stop)
    R_head = h.head_rotations()
    c = (h.head[:, :3] - R_head @ piv.u).mean(0)
    W = h.wrists[:, :, :3].mean(0)  # (2, 3)
    R_w = h.wrist_rotations()
    conv = WRIST_TO_OPENXR.numpy()
    G = np.stack([_mean_rotation(R_w[:, s] @ conv[s].T) for s in (0, 1)])  # SMPL wrist frames
    xb = W[0] - W[1]
    psi0 = math.atan2(-xb[2], xb[0])

    c_t, W_t, G_t = (torch.as_tensor(a, dtype=F64) for a in (c, W, G))
    rel_meas = W_t - c_t  # (2, 3) wrists relative to the head joint
    sig_w = torch.tensor(options.wrist_sigma_m, dtype=F64)
    prior = _prior_std(k, options)
    idx = ((LEFT_SHOULDER, LEFT_WRIST), (RIGHT_SHOULDER, RIGHT_WRIST))

    def model_rel(b, psi):
        J = sm.joints(b)
        Ry = _rot_y(psi)
        rel = [Ry @ (J[sh] - J[HEAD]) + G_t[s] @ (J[wr] - J[sh]) for s, (sh, wr) in enumerate(idx)]
        return torch.stack(rel), Ry, J

    def terms(x):
        b, f, psi = x[:k], x[k], x[k + 1]
        rel, Ry, J = model_rel(b, psi)
        r_w = ((rel - rel_meas) @ Ry) / sig_w  # body frame (row vectors: R^T v)
        sole = sm.sole(b)
        r_h = ((J[HEAD, 1] - sole) - (c_t[1] + f)) / options.head_sigma_m
        r = [r_w.reshape(-1), r_h[None], (f / options.floor_prior_m)[None], b / prior]
        if height is not None or arm_span is not None:
            m = sm.measurements(b)
            if height is not None:
                r.append(((m["height"] - height) / options.known_sigma_m)[None])
            if arm_span is not None:
                r.append(((m["arm_span"] - arm_span) / options.known_sigma_m)[None])
        return torch.cat(r)

    x0 = np.zeros(k + 2)
    x0[k + 1] = psi0
    x, info = _solve(terms, x0)
    b, f = x[:k], float(x[k])
    with torch.no_grad():
        xt = torch.as_tensor(x, dtype=F64)
        rel, Ry, J = model_rel(xt[:k], xt[k + 1])
        wrist_err = ((rel - rel_meas) @ Ry).numpy()  # (2, 3) body frame, metres
        sole = float(sm.sole(xt[:k]))
        head_err = float(J[HEAD, 1] - sole - (c[1] + f))
    pose_rms = float(np.sqrt(np.mean(wrist_err ** 2)))
    if pose_rms > options.max_pose_rms_m:
        raise CalibrationRefused(
            "pose_mismatch", f"no standing body with straight arms explains the hold (wrists "
            f"off by {100 * pose_rms:.1f} cm RMS): stand straight, arms straight out to the "
            "sides, palms down")
    if abs(f) > options.max_abs_floor_m:
        raise CalibrationRefused(
            "implausible", f"the floor would be {f:+.2f} m off: is the headset reporting a "
            "STAGE or LOCAL_FLOOR space (floor at y = 0)?")
    if abs(b[0]) > 2 * options.stature_prior_std or np.any(np.abs(b[1:]) > 4):
        raise CalibrationRefused(
            "implausible", f"the fitted shape is far outside the model's population "
            f"(betas {np.round(b, 1).tolist()})")

    offset = piv.offset
    m = body_measurements(body, b, offset)
    T = head_to_hmd(tuple(float(v) for v in offset), dtype=F64).numpy()
    eye_meas = float(h.head[:, 1].mean() + f)
    Jn = J.numpy()
    arm = np.stack([G[s] @ (Jn[wr] - Jn[sh]) for s, (sh, wr) in enumerate(idx)])  # (2, 3)
    shoulders = W - arm
    measured = {
        "headset_height_m": eye_meas,  # the VIEW origin, between the eyes
        "head_joint_height_m": float(c[1] + f),
        "wrist_height_m": float(W[:, 1].mean() + f),
        "shoulder_height_m": float(shoulders[:, 1].mean() + f),  # wrists minus the fitted arm
        "arm_span_wrist_m": float(np.linalg.norm(W[0] - W[1])),
        "arm_droop_deg": float(np.degrees(np.arcsin(np.clip(
            -arm[:, 1] / np.linalg.norm(arm, axis=1), -1, 1))).mean()),
        "hold_s": hold.duration_s,
        "hold_frames": hold.stop - hold.start,
        "look_frames": int(piv.used.sum()),
        "wrist_motion_m": hold.wrist_motion_m,
        "head_motion_m": hold.head_motion_m,
    }
    tips = h.tips[:, :, MIDDLE_TIP]
    if np.isfinite(tips).all():
        measured["arm_span_fingertip_m"] = float(np.linalg.norm(tips[:, 0] - tips[:, 1],
                                                               axis=-1).mean())
    given = {}
    if height is not None:
        given["height_m"] = height
    if arm_span is not None:
        given["arm_span_m"] = arm_span
    fit = {
        "wrist_residual_m": np.round(wrist_err, 4).tolist(),  # body frame x (side), y, z
        "pose_rms_m": pose_rms,
        "head_height_residual_m": head_err,
        "pivot_rms_m": piv.rms_m,
        "look_spread": np.round(piv.spread, 4).tolist(),
        "shape_components": k,
        "evaluations": info.nfev,
        "floor_prior_m": options.floor_prior_m,
    }
    meta = {
        **_stamp(f"{capture.source} session {capture.session}"),
        "measured": _rounded(measured),
        "model": _rounded({f"{key}_m": v for key, v in m.items()}),
        "fit": _rounded(fit, 5),
        "warnings": warnings,
    }
    if given:
        meta["given"] = given
    return Profile(sm.full_betas(b), T, f, sm.fingerprint, meta)
