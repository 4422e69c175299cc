"""What a session knows about the recent past: the motion state the fitter carries.

The headset alone tells where the head and hands are *now*; how the legs move is mostly told
by how the head and hands have been moving (gait shows in the head's speed, bob and sway).
Each frame the fitter updates a small state per session and reads motion features from it:

* velocities from the previous frame (finite differences over ``dt``): head linear and
  angular velocity, and each wrist's where that hand was visible in both frames;
* exponential moving averages of those velocities with time constants ``TAUS`` (seconds),
  ``α = 1 - exp(-dt / τ)``, so the history has the same meaning at 60, 72 or 90 Hz and with
  uneven frame times;
* moving averages of the head position with the same time constants, read as the head's
  displacement from its recent average (crouching, stepping, swaying);
* a short trajectory: the head and wrist positions sampled every ``HISTORY_STEP`` seconds
  over the last ``HISTORY_SLOTS`` samples (0.67 s, the span of AvatarPoser's 41-frame input
  window at 60 Hz, Jiang et al. 2022), read relative to the current head; it carries the
  phase of a gait, which smooth averages lose.

Averages start empty on a reset and are bias-corrected by their accumulated weight (as Adam's
moments are), so they are unbiased from the second frame on; the weights are features too, so
the networks know how much history there is. The state is kept in the stage frame (the
canonical frame turns with the head every frame); the features are rotated into the current
canonical heading frame, so they share the fitter's yaw and floor-position invariance.

Everything is tensor arithmetic without data-dependent branching: the update traces into the
one per-frame graph of the engines. Shapes: state ``(B, MOTION_STATE_DIM)``, features
``(B, MOTION_FEATURE_DIM)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tracker.signals.headset import HeadsetSignals

TAUS: tuple[float, ...] = (0.05, 0.25, 1.0)
"""Time constants (s) of the moving averages: one step, a stride, a gait cycle or two."""
NT = len(TAUS)
DT_RANGE = (1e-3, 0.2)
"""``dt`` is clamped to this range (s): a longer gap is a reset in the session's policy."""
MAX_SPEED = 10.0  # m/s; a finite difference beyond this is a tracking jump, not motion
MAX_SPIN = 30.0  # rad/s

# State layout (stage frame): previous frame, then per group [ema (NT * d), weights (NT)].
_PREV = 3 + 9 + 2 * 3 + 2 * 9 + 2  # head p, R; wrists p; wrists R; visible
_GROUPS = (("head_vel", 6), ("lwrist_vel", 6), ("rwrist_vel", 6), ("head_pos", 3))
HISTORY_STEP = 1.0 / 15.0
"""Seconds between two samples of the trajectory history."""
HISTORY_SLOTS = 10
_SLOT = 3 + 6 + 2 + 1  # head p, wrists p, wrists visible, slot valid
_HISTORY = 1 + HISTORY_SLOTS * _SLOT  # time since the last sample, then the slots
MOTION_STATE_DIM = _PREV + sum(NT * (d + 1) for _, d in _GROUPS) + _HISTORY
MOTION_FEATURE_DIM = 3 * NT * 6 + NT * 3 + NT + 1 + HISTORY_SLOTS * 10
"""Head and wrist velocity averages, head displacement from its averages, history weights,
then the trajectory: the age of its newest sample (in steps) and per sample the head and
wrist positions relative to the current head (wrists zero where hidden) and its validity."""


def _split_state(state: Tensor) -> tuple[dict[str, Tensor], dict[str, tuple[Tensor, Tensor]]]:
    B = state.shape[0]
    i = 0

    def take(n: int) -> Tensor:
        nonlocal i
        out = state[:, i:i + n]
        i += n
        return out

    prev = {"head_p": take(3), "head_R": take(9).reshape(B, 3, 3), "wrist_p": take(6)
            .reshape(B, 2, 3), "wrist_R": take(18).reshape(B, 2, 3, 3), "vis": take(2)}
    groups = {name: (take(NT * d).reshape(B, NT, d), take(NT)) for name, d in _GROUPS}
    prev["history_age"] = take(1)[:, 0]
    prev["history"] = take(HISTORY_SLOTS * _SLOT).reshape(B, HISTORY_SLOTS, _SLOT)
    return prev, groups


def _angular_velocity(R_prev: Tensor, R: Tensor, dt: Tensor) -> Tensor:
    """World-frame angular velocity ``(..., 3)`` rad/s from ``R_prev, R (..., 3, 3)`` and
    ``dt (...,)`` s: ``vee(ΔR - ΔRᵀ) / 2 / dt`` with ``ΔR = R R_prevᵀ`` (``sin`` of the angle,
    exact to 1 % below 14°, i.e. up to 21 rad/s at 90 Hz)."""
    dR = R @ R_prev.transpose(-1, -2)
    w = torch.stack([dR[..., 2, 1] - dR[..., 1, 2], dR[..., 0, 2] - dR[..., 2, 0],
                     dR[..., 1, 0] - dR[..., 0, 1]], -1)
    return 0.5 * w / dt[..., None]


def _ema(group: tuple[Tensor, Tensor], x: Tensor, alpha: Tensor, valid: Tensor
         ) -> tuple[Tensor, Tensor]:
    """One update of ``(ema (B, NT, d), weight (B, NT))`` with sample ``x (B, d)`` where
    ``valid (B,)``; ``alpha (B, NT)``."""
    ema, w = group
    a = alpha * valid.to(alpha.dtype)[:, None]
    return ema + a[..., None] * (x[:, None] - ema), w + a * (1.0 - w)


def _corrected(group: tuple[Tensor, Tensor]) -> Tensor:
    """Bias-corrected averages ``(B, NT, d)`` (zero while a group has no history)."""
    ema, w = group
    return ema / w.clamp_min(1e-3)[..., None]


def motion_step(sig: HeadsetSignals, state: Tensor | None, dt: Tensor | None,
                reset: Tensor | None, C: Tensor) -> tuple[Tensor, Tensor]:
    """Update the motion state with one frame and read its features.

    Args:
        sig: stage-frame observations of this frame, batch ``(B,)``.
        state: ``(B, MOTION_STATE_DIM)`` the previous state, or ``None`` (all reset).
        dt: ``(B,)`` seconds since the previous frame (``None``: 1/60 s).
        reset: ``(B,)`` bool: start this session's history afresh at this frame.
        C: ``(B, 4, 4)`` the frame's canonical heading frame (canonical -> stage).

    Returns:
        ``(features (B, MOTION_FEATURE_DIM), state (B, MOTION_STATE_DIM))``: features in the
        canonical frame (m/s, rad/s, m; see the module docstring), the updated state.
    """
    head, wrists = sig.head, sig.wrists
    B, dtype = head.shape[0], head.dtype
    if state is None:
        state = head.new_zeros(B, MOTION_STATE_DIM)
        reset = torch.ones(B, dtype=torch.bool, device=head.device)
    elif reset is None:
        reset = torch.zeros(B, dtype=torch.bool, device=head.device)
    if dt is None:
        dt = head.new_full((B,), 1.0 / 60.0)
    dt = dt.to(dtype).clamp(*DT_RANGE)
    keep = (~reset).to(dtype)
    state = state * keep[:, None]  # a reset forgets everything
    prev, groups = _split_state(state)
    vis = sig.visible.to(dtype)
    head_p, head_R = head[:, :3, 3], head[:, :3, :3]
    wrist_p, wrist_R = wrists[..., :3, 3], wrists[..., :3, :3]
    # The previous frame of a reset row is this frame (zero velocity, marked invalid below).
    r = reset.to(dtype)
    p_head_p = prev["head_p"] * keep[:, None] + head_p * r[:, None]
    p_head_R = prev["head_R"] * keep[:, None, None] + head_R * r[:, None, None]
    p_wrist_p = prev["wrist_p"]
    p_wrist_R = prev["wrist_R"]

    tau = torch.tensor(TAUS, dtype=dtype, device=head.device)
    alpha = 1.0 - torch.exp(-dt[:, None] / tau)  # (B, NT)
    v_head = ((head_p - p_head_p) / dt[:, None]).clamp(-MAX_SPEED, MAX_SPEED)
    w_head = _angular_velocity(p_head_R, head_R, dt).clamp(-MAX_SPIN, MAX_SPIN)
    v_wr = ((wrist_p - p_wrist_p) / dt[:, None, None]).clamp(-MAX_SPEED, MAX_SPEED)
    w_wr = _angular_velocity(p_wrist_R, wrist_R, dt[:, None]).clamp(-MAX_SPIN, MAX_SPIN)
    wrist_ok = vis * prev["vis"] * keep[:, None]  # visible in both frames
    new = {
        "head_vel": _ema(groups["head_vel"], torch.cat([v_head, w_head], -1), alpha, ~reset),
        "lwrist_vel": _ema(groups["lwrist_vel"], torch.cat([v_wr[:, 0], w_wr[:, 0]], -1),
                           alpha, wrist_ok[:, 0] > 0),
        "rwrist_vel": _ema(groups["rwrist_vel"], torch.cat([v_wr[:, 1], w_wr[:, 1]], -1),
                           alpha, wrist_ok[:, 1] > 0),
        "head_pos": _ema(groups["head_pos"], head_p, alpha, torch.ones_like(reset)),
    }
    # A hand's previous pose is its last visible one.
    v4 = vis[..., None, None]
    n_wrist_p = wrist_p * vis[..., None] + p_wrist_p * (1 - vis[..., None])
    n_wrist_R = wrist_R * v4 + p_wrist_R * (1 - v4)
    parts = [head_p, head_R.reshape(B, 9), n_wrist_p.reshape(B, 6), n_wrist_R.reshape(B, 18),
             vis]
    for name, _ in _GROUPS:
        ema, w = new[name]
        parts += [ema.reshape(B, -1), w]
    # Trajectory: push a sample when HISTORY_STEP has passed (at once after a reset).
    age = (prev["history_age"] + dt) * keep + r * HISTORY_STEP
    # (1 ms early: frame rates that divide the step, 30/60/90 Hz, push on a fixed frame
    # whatever the rounding of their frame times)
    push = (age >= HISTORY_STEP - 1e-3).to(dtype)[:, None, None]
    sample = torch.cat([head_p, n_wrist_p.reshape(B, 6), vis, head_p.new_ones(B, 1)], -1)
    shifted = torch.cat([sample[:, None], prev["history"][:, :-1]], 1)
    history = push * shifted + (1 - push) * prev["history"]
    age = (age - push[:, 0, 0] * HISTORY_STEP).clamp(0.0, HISTORY_STEP)
    parts += [age[:, None], history.reshape(B, -1)]
    new_state = torch.cat(parts, -1)

    Rc = C[:, :3, :3]  # canonical -> stage; features use Rcᵀ x

    def to_canonical(x: Tensor) -> Tensor:  # (B, NT, 3k) stage -> canonical, flattened
        k = x.shape[-1] // 3
        xc = (x.reshape(B, NT * k, 3) @ Rc)  # row vectors: (Rcᵀ x)ᵀ = xᵀ Rc
        return xc.reshape(B, -1)

    valid = history[..., -1:]  # (B, S, 1)
    head_rel = (history[..., :3] - head_p[:, None]) @ Rc * valid
    wr_rel = ((history[..., 3:9].reshape(B, HISTORY_SLOTS, 2, 3) - head_p[:, None, None])
              @ Rc[:, None]) * (history[..., 9:11, None] * valid[..., None])
    traj = torch.cat([head_rel, wr_rel.reshape(B, HISTORY_SLOTS, 6), valid], -1)
    feats = [to_canonical(_corrected(new["head_vel"])),
             to_canonical(_corrected(new["lwrist_vel"])) * vis[:, :1],
             to_canonical(_corrected(new["rwrist_vel"])) * vis[:, 1:],
             to_canonical(_corrected(new["head_pos"]) - head_p[:, None]),
             new["head_vel"][1], age[:, None] / HISTORY_STEP, traj.reshape(B, -1)]
    return torch.cat(feats, -1), new_state


def motion_states(sig: HeadsetSignals, dt: float | Tensor, C: Tensor | None = None
                  ) -> tuple[Tensor, Tensor]:
    """Scan a whole stream ``sig (T,)`` (one session, stage frame) from a reset.

    Returns ``(states_before (T, MOTION_STATE_DIM), features (T, MOTION_FEATURE_DIM))``:
    the state each frame starts from (row 0: zeros, a reset) and the features it yields, so
    that per-frame fits of any frame can be run with the history a stream would have.
    """
    from tracker.fitter.canonical import heading_frame

    T = sig.head.shape[0]
    C = heading_frame(sig.head) if C is None else C
    dts = torch.as_tensor(dt, dtype=sig.head.dtype).expand(T).reshape(T, 1)
    state = sig.head.new_zeros(1, MOTION_STATE_DIM)
    befores, feats = [], []
    for t in range(T):
        befores.append(state)
        f, state = motion_step(sig.map(lambda x, t=t: x[t:t + 1]), state, dts[t],
                               torch.tensor([t == 0]), C[t:t + 1])
        feats.append(f)
    return torch.cat(befores), torch.cat(feats)
