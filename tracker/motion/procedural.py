"""Seeded procedural human motion in the AMASS SMPL+H layout, for tests and demos without mocap.

Frames: the AMASS world, Z up, metres, floor at z = 0. At ``global_orient = Rx(+90°)`` an SMPL
body stands upright facing -Y; a heading ``psi`` turns it about world Z on the left:
``global_orient = Rz(psi) Rx(90°) R_pelvis``. ``tracker.signals.stage.amass_to_stage`` maps it to
the stage frame (Y up, facing +Z at ``psi = 0``).

How a sequence is made:

1. a plan: segments of actions (each a few seconds), crossfaded over ``BLEND_SECONDS``;
2. each action writes *channels* (anatomical angles in degrees, yaw rate in deg/s, finger curls
   in [0, 1]) as smooth functions of time; the sequence's channels are the crossfade;
3. channels -> joint axis-angles, in the model frame (Y up, facing +Z, left at +X): the left
   side is built and the right side mirrored (``(x, y, z) -> (x, -y, -z)`` on axis-angles);
   legs undo the pelvis' roll and yaw, ankles keep each foot at its commanded pitch;
4. forward kinematics with vertices: the horizontal translation keeps the standing foot's
   lowest vertex in place (rolling contact; which foot stands comes from the gait phase), so
   walking does not slide, and the vertical one puts the lowest vertex on the floor.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from scipy.interpolate import CubicSpline
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation

from tracker.body.kinematics import BodyModel, load_body_model

ACTIONS: tuple[str, ...] = ("walk", "turn", "reach", "crouch", "wave", "idle")
BLEND_SECONDS = 0.5
_MIX = np.array([0.25, 0.15, 0.15, 0.15, 0.15, 0.15])  # random-mix probabilities of ACTIONS
_SIDE = ("hip_flex", "hip_abd", "knee", "foot_pitch", "arm_down", "arm_fwd", "arm_twist",
         "elbow", "wrist_flex", "curl")
_TRUNK = ("yaw_rate", "contact", "pelvis_pitch", "pelvis_roll", "pelvis_yaw", "spine_pitch",
          "spine_roll", "spine_yaw", "head_pitch", "head_yaw")
_NEUTRAL = dict(contact=0.5, hip_flex=2, knee=4, arm_down=78, arm_fwd=5, elbow=15, wrist_flex=5)
# Human joint limits (degrees) applied to the per-side channels and the derived ankle angle.
_LIMITS = dict(hip_flex=(-25, 120), hip_abd=(-30, 45), knee=(0, 140), arm_down=(-60, 95),
               arm_fwd=(-60, 165), arm_twist=(-95, 95), elbow=(0, 140), wrist_flex=(-60, 70),
               curl=(0, 1), ankle=(-40, 35))
# A gait cycle from the left heel strike (Winter's normal walking curves, simplified): thigh
# swing (x amplitude), knee flexion and foot pitch (positive = toes down), in degrees.
_GAIT_HIP = CubicSpline([0, .1, .3, .5, .6, .7, .85, 1], [1, .92, .15, -1, -.55, .4, .95, 1],
                        bc_type="periodic")
_GAIT_KNEE = CubicSpline([0, .15, .4, .6, .72, .85, .95, 1], [0, 12, 2, 32, 52, 26, 2, 0],
                         bc_type="periodic")
_GAIT_FOOT = CubicSpline([0, .1, .45, .6, .68, .8, .9, 1], [-12, 0, 0, 25, 30, 5, -10, -12],
                         bc_type="periodic")
_JOINTS = dict(l=dict(hip=1, knee=4, ankle=7, shoulder=16, elbow=18, wrist=20, hand=22),
               r=dict(hip=2, knee=5, ankle=8, shoulder=17, elbow=19, wrist=21, hand=37))
_MIRROR = np.array([1.0, -1.0, -1.0])


def _smooth(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _lerp(a, b, e):
    return a + (b - a) * e


def _env(tau, dur, ramp=0.8):
    """Smooth 0 -> 1 -> 0 envelope over a segment of ``dur`` seconds (local time ``tau``)."""
    r = min(ramp, dur / 3)
    return _smooth(tau / r) * (1 - _smooth((tau - dur + r) / r))


def _gait(ch, phase, amp, in_place=False):
    """Leg, arm and trunk channels of a walk cycle (heel strike of the left leg at phase 0)."""
    for s, off in (("l", 0.0), ("r", np.pi)):
        psi = phase + off
        if in_place:  # marching: lift and put the foot down where it was
            lift = np.exp((np.cos(psi - 1.5 * np.pi) - 1) / 0.36)
            ch[f"hip_flex_{s}"] = 2 + 30 * amp * lift
            ch[f"knee_{s}"] = 4 + 50 * amp * lift
        else:
            u = (psi / (2 * np.pi)) % 1.0
            ch[f"hip_flex_{s}"] = 7 + 22 * amp * _GAIT_HIP(u)
            ch[f"knee_{s}"] = 4 + amp * _GAIT_KNEE(u)
            ch[f"foot_pitch_{s}"] = amp * _GAIT_FOOT(u)
        ch[f"arm_fwd_{s}"] = 5 - 16 * amp * np.cos(psi)  # arms swing against the legs
        ch[f"elbow_{s}"] = 18 - 8 * amp * np.cos(psi)
    # Share of the left foot in the ground contact: its stance is phase 0.05-0.55 (soft).
    ch["contact"] = 1 / (1 + np.exp(-8 * np.cos(phase - 0.6 * np.pi)))
    if not in_place:
        ch["pelvis_pitch"] = 7 * amp
        ch["spine_pitch"] = -4 * amp
    ch["pelvis_yaw"] = -4 * amp * np.cos(phase)
    ch["spine_yaw"] = 6 * amp * np.cos(phase)
    ch["pelvis_roll"] = 2 * amp * np.sin(2 * phase)


# ----------------------------------------------------------------- actions
# Each writes its channels ``ch`` (neutral on entry) over local time ``tau`` of a segment of
# ``dur`` seconds, drawing its parameters from ``rng``; ``ctx`` holds the shared gait phase.

def _walk(ch, tau, dur, rng, ctx):
    _gait(ch, ctx["phase"], rng.uniform(0.9, 1.1))
    ch["yaw_rate"] = np.full_like(tau, rng.uniform(-6, 6))  # a slight curve


def _turn(ch, tau, dur, rng, ctx):
    angle, walking = rng.choice([-1, 1]) * rng.uniform(60, 180), rng.random() < 0.5
    env = np.sin(np.pi * np.clip(tau / dur, 0, 1)) ** 2
    ch["yaw_rate"] = angle * env / (dur / 2)
    _gait(ch, ctx["phase"], 0.9 if walking else 0.8 * env, in_place=not walking)
    ch["head_yaw"] = 20 * np.sign(angle) * env  # the head leads


# Reach targets: (arm_down range, arm_fwd range) in degrees.
_REACH = dict(forward=((90, 90), (75, 100)), up=((90, 90), (130, 155)),
              side=((0, 20), (0, 25)), low=((90, 90), (45, 60)))


def _reach(ch, tau, dur, rng, ctx):
    kind, arms = str(rng.choice(list(_REACH))), str(rng.choice(["l", "r", "lr"]))
    (d0, d1), (f0, f1) = _REACH[kind]
    down, fwd, elbow = rng.uniform(d0, d1, 2), rng.uniform(f0, f1, 2), rng.uniform(5, 25, 2)
    curl, e = rng.choice([0.05, 0.65]), _env(tau, dur, 1.0)  # open hand or a grasp
    for i, s in enumerate("lr"):
        if s in arms:  # the elbow bends on the way and straightens at the target
            ch[f"arm_down_{s}"] = _lerp(ch[f"arm_down_{s}"], down[i], e)
            ch[f"arm_fwd_{s}"] = _lerp(ch[f"arm_fwd_{s}"], fwd[i], e)
            ch[f"elbow_{s}"] = _lerp(ch[f"elbow_{s}"], elbow[i], e) + 140 * e * (1 - e)
            ch[f"curl_{s}"] = _lerp(ch[f"curl_{s}"], curl, e)
    if kind in ("forward", "low"):
        ch["spine_pitch"] = (8 if kind == "forward" else 15) * e
        if len(arms) == 1:  # the trunk turns to bring the shoulder forward
            ch["spine_yaw"] = (-8 if arms == "l" else 8) * e


def _crouch(ch, tau, dur, rng, ctx):
    e = rng.uniform(0.6, 1.0) * _env(tau, dur, 1.0)
    ch["pelvis_pitch"], ch["spine_pitch"], ch["head_pitch"] = 20 * e, 10 * e, -15 * e
    for s in "lr":  # feet stay flat: the ankle takes pelvis_pitch - hip_flex + knee
        ch[f"hip_flex_{s}"], ch[f"knee_{s}"] = 2 + 68 * e, 4 + 76 * e
        ch[f"arm_fwd_{s}"], ch[f"elbow_{s}"] = 5 + 40 * e, 15 + 25 * e


def _wave(ch, tau, dur, rng, ctx):
    s, freq, amp, elev = str(rng.choice(["l", "r"])), *rng.uniform([1.2, 15, 20], [2.0, 25, 40])
    e, swing = _env(tau, dur, 1.0), amp * np.sin(2 * np.pi * freq * tau)
    ch[f"arm_down_{s}"] = _lerp(ch[f"arm_down_{s}"], -elev, e)  # upper arm raised
    ch[f"arm_fwd_{s}"] = _lerp(ch[f"arm_fwd_{s}"], 15, e)
    ch[f"arm_twist_{s}"] = -90 * e  # turns the elbow hinge so the forearm swings upright
    ch[f"elbow_{s}"] = _lerp(ch[f"elbow_{s}"], 90 - elev + swing, e)
    ch[f"wrist_flex_{s}"] = _lerp(ch[f"wrist_flex_{s}"], -10, e)
    ch[f"curl_{s}"] = _lerp(ch[f"curl_{s}"], 0.02, e)


def _idle(ch, tau, dur, rng, ctx):
    sway, f_sway, f_breath, look, f_look = rng.uniform([1, .1, .2, 5, .05], [3, .3, .33, 15, .15])
    ph, w = rng.uniform(0, 2 * np.pi, 3), 2 * np.pi
    ch["pelvis_roll"] = sway * np.sin(w * f_sway * tau + ph[0])  # weight shift
    ch["spine_pitch"] = -1.0 * np.sin(w * f_breath * tau)  # breathing
    ch["head_yaw"] = look * np.sin(w * f_look * tau + ph[1])
    ch["head_pitch"] = 5 * np.sin(w * 0.7 * f_look * tau + ph[2])
    for s in "lr":
        ch[f"arm_fwd_{s}"] = 5 + 3 * np.sin(w * f_sway * tau + ph[0] + 1)


_ACTION_FNS = dict(walk=_walk, turn=_turn, reach=_reach, crouch=_crouch, wave=_wave, idle=_idle)


# ----------------------------------------------------------------- channels -> poses
def finger_curl_pose(curl: np.ndarray, side: str = "left") -> np.ndarray:
    """Axis-angles ``(N, 45)`` of one hand's 15 finger joints for curls ``(N,)`` in [0, 1].

    0 is an open hand (fingers spread a little), about 0.3 relaxed, 1 a fist. At rest the left
    fingers point along +X with the palm towards -Y, so flexion is about the joints' -Z axis
    (index, middle, pinky, ring); the thumb folds under the palm about +X and the axis
    ``(1, 0, -1)/√2`` across its base. The right hand is the mirror image.
    """
    c = np.clip(np.asarray(curl, dtype=np.float64), 0.0, 1.0)[:, None]
    spread = 8.0 * _smooth((0.3 - c) / 0.3)
    out = np.zeros((c.shape[0], 5, 3, 3))
    for f, (gain, s) in enumerate(((0.9, -1.0), (1.0, 0.0), (1.1, 1.2), (1.05, 0.6))):
        cf = np.clip(c * gain, 0, 1)
        out[:, f, 0, 1], out[:, f, 0, 2] = (s * spread)[:, 0], -85 * cf[:, 0]
        out[:, f, 1, 2], out[:, f, 2, 2] = -95 * cf[:, 0], -70 * cf[:, 0]
    n = np.array([1.0, 0.0, -1.0]) / np.sqrt(2)
    out[:, 4, 0] = c * (35 * np.array([1.0, 0, 0]) + 20 * n)
    out[:, 4, 1], out[:, 4, 2] = c * 30 * n, c * 45 * n
    out = np.deg2rad(out).reshape(-1, 45)
    return out if side == "left" else out * np.tile(_MIRROR, 15)


def _rv(seq: str, *deg) -> np.ndarray:
    """Axis-angle ``(N, 3)`` of intrinsic rotations ``seq`` by angles in degrees."""
    return Rotation.from_euler(seq, np.stack(deg, -1), degrees=True).as_rotvec()


def _continuous_rotvec(rot: Rotation) -> np.ndarray:
    """Axis-angles ``(N, 3)`` continuous in time (angles may exceed pi; no flips at pi)."""
    q = rot.as_quat()  # x y z w
    flip = np.sign(np.sum(q[1:] * q[:-1], -1))
    q = q * np.concatenate([[1.0], np.cumprod(np.where(flip == 0, 1.0, flip))])[:, None]
    n = np.linalg.norm(q[:, :3], axis=-1, keepdims=True)
    return q[:, :3] * 2 * np.arctan2(n, q[:, 3:]) / np.maximum(n, 1e-12)


def _poses_from_channels(ch: dict, heading: np.ndarray) -> np.ndarray:
    """AMASS ``poses (N, 156)`` (float64) from channels and heading ``(N,)`` degrees about Z."""
    N = heading.shape[0]
    P = np.zeros((N, 52, 3))
    pelvis = Rotation.from_euler("YXZ", np.stack(
        [ch["pelvis_yaw"], ch["pelvis_pitch"], ch["pelvis_roll"]], -1), degrees=True)
    upright = Rotation.from_euler("x", 90, degrees=True)
    P[:, 0] = _continuous_rotvec(Rotation.from_euler("z", heading[:, None], degrees=True)
                                 * upright * pelvis)
    for j, w in ((3, 0.4), (6, 0.3), (9, 0.3)):
        P[:, j] = _rv("XZY", w * ch["spine_pitch"], w * ch["spine_roll"], w * ch["spine_yaw"])
    P[:, 12] = P[:, 15] = _rv("XY", 0.5 * ch["head_pitch"], 0.5 * ch["head_yaw"])
    for s, sign in (("l", -1), ("r", 1)):
        J = _JOINTS[s]
        g = {k: np.clip(ch[f"{k}_{s}"], *_LIMITS.get(k, (-np.inf, np.inf))) for k in _SIDE}
        # Built for the left side; the legs undo the pelvis' roll and yaw (mirrored signs).
        ankle = np.clip(ch["pelvis_pitch"] - g["hip_flex"] + g["knee"] - g["foot_pitch"],
                        *_LIMITS["ankle"])
        side = {
            "hip": _rv("XZY", -g["hip_flex"], g["hip_abd"] + sign * ch["pelvis_roll"],
                       sign * ch["pelvis_yaw"]),
            "knee": _rv("X", g["knee"]),
            "ankle": _rv("X", -ankle),
            "shoulder": _rv("XZX", -g["arm_fwd"], -g["arm_down"], g["arm_twist"]),
            "elbow": _rv("Y", -g["elbow"]),
            "wrist": _rv("Z", -g["wrist_flex"]),
        }
        for k, rv in side.items():
            P[:, J[k]] = rv if s == "l" else rv * _MIRROR
        hand = finger_curl_pose(g["curl"], "left" if s == "l" else "right")
        P[:, J["hand"]:J["hand"] + 15] = hand.reshape(N, 15, 3)
    return P.reshape(N, 156)


def _channels(plan, t, rng, ctx) -> dict:
    """Crossfade of every segment's channels, each ``(N,)``; times ``t (N,)`` in seconds."""
    names = [*_TRUNK, *(f"{k}_{s}" for k in _SIDE for s in "lr")]
    total = {k: np.zeros_like(t) for k in names}
    weights = []
    for i, (_, a, b) in enumerate(plan):
        up = 1.0 if i == 0 else _smooth((t - a) / BLEND_SECONDS + 0.5)
        down = 1.0 if i == len(plan) - 1 else 1 - _smooth((t - b) / BLEND_SECONDS + 0.5)
        weights.append(up * down * np.ones_like(t))
    weights = np.stack(weights) / np.clip(np.sum(weights, 0), 1e-9, None)
    for (name, a, b), w in zip(plan, weights, strict=True):
        ch = {k: np.full_like(t, _NEUTRAL.get(k if k in _TRUNK else k[:-2], 0.0)) for k in names}
        ch["curl_l"], ch["curl_r"] = ctx["curl"][0].copy(), ctx["curl"][1].copy()
        _ACTION_FNS[name](ch, t - a, b - a, rng, ctx)
        for k in names:
            total[k] += w * ch[k]
    return total


def _plan(actions, seconds, rng) -> list[tuple[str, float, float]]:
    """Segments ``(action, start, end)`` in seconds covering ``[0, seconds]``."""
    if actions is None:
        names, durs = [], []
        while sum(durs) < seconds:
            p = _MIX * np.array([a != (names[-1] if names else None) for a in ACTIONS])
            names.append(str(rng.choice(ACTIONS, p=p / p.sum())))
            durs.append(rng.uniform(2.0, 4.0))
        durs[-1] -= sum(durs) - seconds
        if len(durs) > 1 and durs[-1] < 1.0:
            last = durs.pop()
            durs[-1] += last
            names.pop()
    else:
        names = list(actions)
        bad = [a for a in names if a not in ACTIONS]
        if bad or not names:
            raise ValueError(f"unknown or no actions {bad}; expected some of {ACTIONS}")
        durs = rng.uniform(2.0, 4.0, len(names))
        durs = list(durs * seconds / durs.sum())
    ends = np.cumsum(durs)
    return [(n, float(e - d), float(e)) for n, d, e in zip(names, durs, ends, strict=True)]


def _curl_process(rng, t) -> np.ndarray:
    """Per-hand finger curls ``(2, N)`` moving smoothly between open, relaxed and fist."""
    out = []
    for _ in range(2):
        keys = [t[0] - rng.uniform(0, 1)]
        while keys[-1] <= t[-1]:
            keys.append(keys[-1] + rng.uniform(0.6, 1.6))
        k = np.array(keys)
        lv = rng.choice([0.0, 0.3, 1.0], p=[0.25, 0.5, 0.25], size=len(k))
        lv = np.clip(lv + rng.normal(0, 0.05, len(k)), 0, 1)
        i = np.searchsorted(k, t, side="right") - 1
        out.append(_lerp(lv[i], lv[i + 1], _smooth((t - k[i]) / (k[i + 1] - k[i]))))
    return np.stack(out)


# ----------------------------------------------------------------- floor and translation
@functools.lru_cache(maxsize=1)
def _default_body() -> BodyModel:
    return load_body_model()


@torch.no_grad()
def _ground(body: BodyModel, poses: np.ndarray, betas: np.ndarray, contact: np.ndarray,
            fps: float, chunk: int = 128) -> np.ndarray:
    """``trans (N, 3)``, AMASS frame: the lowest vertex on z = 0, the feet's contacts locked.

    ``poses (N, 156)`` axis-angle in the AMASS frame; ``betas (K,)``; ``contact (N,)`` the left
    foot's share of the ground contact. Each foot's contact point is its lowest vertex, so a
    rolling foot does not slide.
    """
    N = poses.shape[0]
    dt, dev = body.dtype, body.j_template.device
    P = torch.as_tensor(poses, dtype=dt, device=dev)
    k = min(len(betas), body.num_betas)
    b = torch.as_tensor(betas[:k], dtype=dt, device=dev)[None]
    owner = body.weights.argmax(1)
    feet = [torch.nonzero((owner == j0) | (owner == j1))[:, 0] for j0, j1 in ((7, 10), (8, 11))]
    zmin, step = np.zeros(N), np.zeros((N, 2, 2))
    for s in range(0, N, chunk):
        e = min(N, s + chunk + 1)  # one frame of overlap for the contact displacement
        n = e - s
        v = body.forward_axis_angle(P[s:e], b.expand(n, -1), torch.zeros(n, 3, dtype=dt,
                                    device=dev), vertices=True).vertices.double().cpu()
        zmin[s:e] = v[..., 2].amin(1).numpy()
        for f, ids in enumerate(feet):
            vf = v[:, ids.cpu()] if len(ids) else v
            i = vf[..., 2].argmin(1)
            r = torch.arange(n - 1)
            step[s:e - 1, f] = (vf[r + 1, i[:-1], :2] - vf[r, i[:-1], :2]).numpy()
    vel = -(contact[:, None] * step[:, 0] + (1 - contact[:, None]) * step[:, 1])
    xy = np.concatenate([np.zeros((1, 2)), np.cumsum(vel[:-1], 0)])
    z = -gaussian_filter1d(zmin, sigma=max(0.015 * fps, 1e-3), mode="nearest")
    return np.concatenate([xy, z[:, None]], 1)


# ----------------------------------------------------------------- public API
def generate_motion(
    actions: Sequence[str] | None = None,
    seconds: float = 10.0,
    fps: float = 60.0,
    seed: int = 0,
    body: BodyModel | None = None,
    shape_std: float = 0.0,
) -> dict:
    """A seeded motion sequence in the AMASS SMPL+H layout (Z-up world, metres).

    Args:
        actions: actions from :data:`ACTIONS` played in order, sharing ``seconds`` (each gets a
            seeded share); ``None``: a seeded random mix of all, 2-4 s each.
        seconds, fps: length and frame rate; ``N = round(seconds * fps)`` frames.
        seed: the same seed gives identical arrays (for the same body model).
        body: the body that is put on the floor; default :func:`load_body_model`.
        shape_std: standard deviation of the seeded random betas (0: mean shape).

    Returns:
        ``poses (N, 156)`` float32 axis-angle (global orient, 21 body, 15 left- and 15
        right-hand joints), ``trans (N, 3)`` float32, ``betas (16,)`` float32, ``gender``
        ``"neutral"``, ``mocap_framerate`` float, and ``labels (N,)`` the action of each frame
        (an extra key that AMASS readers ignore).
    """
    rng = np.random.default_rng(seed)
    n = max(2, int(round(seconds * fps)))
    t = np.arange(n) / fps
    plan = _plan(actions, seconds, rng)
    ctx = dict(curl=_curl_process(rng, t),
               phase=2 * np.pi * rng.uniform(0.9, 1.0) * t + rng.uniform(0, 2 * np.pi))
    heading0 = rng.uniform(-180, 180)
    betas = (rng.normal(0, shape_std, 16) if shape_std > 0 else np.zeros(16)).astype(np.float32)
    ch = _channels(plan, t, rng, ctx)
    heading = heading0 + np.concatenate([[0.0], np.cumsum(ch["yaw_rate"][:-1]) / fps])
    poses = _poses_from_channels(ch, heading).astype(np.float32)
    body = body if body is not None else _default_body()
    trans = _ground(body, poses, betas, ch["contact"], fps)
    seg = np.searchsorted([b for _, _, b in plan], t, side="right").clip(max=len(plan) - 1)
    labels = np.array([name for name, _, _ in plan])[seg]
    return dict(poses=poses, trans=trans.astype(np.float32), betas=betas, gender="neutral",
                mocap_framerate=float(fps), labels=labels)


def write_amass_npz(path: str | Path, motion: dict) -> Path:
    """Save ``motion`` (from :func:`generate_motion`) as an AMASS-style ``.npz`` with np.savez."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    np.savez(p, **{k: np.asarray(v) for k, v in motion.items()})
    return p
