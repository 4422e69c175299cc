"""The fitter's motion state: velocities, rate independence, resets, canonical invariance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tracker.fitter.canonical import heading_frame
from tracker.fitter.motion import (
    HISTORY_SLOTS,
    HISTORY_STEP,
    MOTION_FEATURE_DIM,
    MOTION_STATE_DIM,
    motion_states,
    motion_step,
)
from tracker.geometry.rotations import axis_angle_to_matrix
from tracker.geometry.transforms import make_transform
from tracker.signals.headset import HeadsetSignals, head_to_hmd


def walking_head(T: int, rate: float, speed=0.0, yaw_rate=0.0, heading=0.0, offset=(0, 0, 0)):
    """Headset poses ``(T,)`` moving at ``speed`` m/s along its view direction while turning
    at ``yaw_rate`` rad/s, hands visible and moving with it."""
    t = torch.arange(T, dtype=torch.float64) / rate
    yaw = heading + yaw_rate * t
    R = axis_angle_to_matrix(torch.stack([torch.zeros_like(yaw), yaw, torch.zeros_like(yaw)],
                                         -1))
    fwd = -R[:, :, 2]  # the view direction
    p = torch.tensor(offset, dtype=torch.float64) + torch.tensor([0, 1.6, 0.0]) \
        + fwd * (speed * t)[:, None]
    head = make_transform(R, p)
    wrists = head[:, None].expand(T, 2, 4, 4).clone()
    wrists[:, 0, :3, 3] += torch.tensor([0.2, -0.4, 0.0])
    wrists[:, 1, :3, 3] += torch.tensor([-0.2, -0.4, 0.0])
    on = torch.ones(T, 2, dtype=torch.bool)
    return HeadsetSignals(head, wrists, torch.zeros(T, 2, 5, 3, dtype=torch.float64), on, on, on)


def head_velocity_features(feats: torch.Tensor) -> torch.Tensor:
    """``(T, 3, 6)``: the head's [v, ω] averages per time constant (canonical frame)."""
    return feats[:, :18].reshape(-1, 3, 6)


def test_shapes_and_first_frame():
    sig = walking_head(5, 90.0, speed=1.0)
    C = heading_frame(sig.head)
    f, s = motion_step(sig.map(lambda x: x[:2]), None, None, None, C[:2])
    assert f.shape == (2, MOTION_FEATURE_DIM) and s.shape == (2, MOTION_STATE_DIM)
    assert torch.all(f[:, :18] == 0)  # no velocity on a first frame
    assert torch.all(f[:, 63:66] == 0)  # no history yet


@pytest.mark.parametrize("rate", [60.0, 72.0, 90.0])
def test_velocity_is_rate_independent_and_in_the_heading_frame(rate):
    """1.2 m/s forward: +Z (the canonical forward) whatever the frame rate and heading."""
    sig = walking_head(int(2.5 * rate), rate, speed=1.2, heading=0.7, offset=(3, 0, -2))
    _, feats = motion_states(sig, 1.0 / rate)
    v = head_velocity_features(feats)[-1]
    for k in range(3):  # every time constant has converged after 2.5 s
        assert v[k, :3].tolist() == pytest.approx([0.0, 0.0, 1.2], abs=0.02)
        assert v[k, 3:].abs().max() < 1e-3
    assert feats[-1, 63:66].tolist() == pytest.approx([1.0, 1.0, 1.0], abs=0.1)
    # the trajectory: earlier head positions lie behind (-Z), one sample per 1/15 s
    traj = feats[-1, 67:].reshape(HISTORY_SLOTS, 10)
    age = float(feats[-1, 66]) * HISTORY_STEP
    assert torch.all(traj[:, 9] == 1)
    for k in range(HISTORY_SLOTS):
        behind = 1.2 * (age + k * HISTORY_STEP)
        assert traj[k, :3].tolist() == pytest.approx([0.0, 0.0, -behind], abs=1e-6 + 0.02)


def test_angular_velocity_of_a_turn():
    rate = 90.0
    sig = walking_head(180, rate, yaw_rate=1.5)
    _, feats = motion_states(sig, 1.0 / rate)
    w = head_velocity_features(feats)[-1, 0, 3:]
    assert w.tolist() == pytest.approx([0.0, 1.5, 0.0], abs=0.01)


def test_reset_forgets_history_and_dt_is_used():
    rate = 90.0
    sig = walking_head(60, rate, speed=1.0)
    C = heading_frame(sig.head)
    state = None
    for t in range(59):
        _, state = motion_step(sig.map(lambda x, t=t: x[t:t + 1]), state,
                               torch.tensor([1 / rate]), torch.tensor([t == 0]), C[t:t + 1])
    last = sig.map(lambda x: x[59:60])
    f_reset, _ = motion_step(last, state, torch.tensor([1 / rate]), torch.tensor([True]),
                             C[59:60])
    assert torch.all(f_reset[:, :18] == 0)
    # the same step said to take twice as long reads half the speed (one-step average)
    f2, _ = motion_step(last, state, torch.tensor([2 / rate]), torch.tensor([False]), C[59:60])
    f1, _ = motion_step(last, state, torch.tensor([1 / rate]), torch.tensor([False]), C[59:60])
    assert float(f2[0, 2]) < float(f1[0, 2])


def test_hidden_hand_keeps_no_velocity():
    rate = 90.0
    sig = walking_head(90, rate, speed=1.0)
    sig.visible[:, 1] = False
    _, feats = motion_states(sig, 1.0 / rate)
    assert torch.all(feats[:, 36:54] == 0)  # right wrist group
    assert feats[-1, 18:21].abs().max() > 0.5  # the left hand moves with the head


def test_fitter_uses_motion_and_old_configs_do_not():
    from tracker.body import load_body_model
    from tracker.fitter.fitter import FitterConfig, NeuralFitter

    body = load_body_model()
    small = dict(hidden=16, layers=1, init_hidden=16, lg_hidden=8, iterations=1)
    torch.manual_seed(0)
    f = NeuralFitter(body, FitterConfig(**small)).eval()
    assert FitterConfig.from_dict({**FitterConfig(**small).to_dict(), "motion": True}).motion
    old = {k: v for k, v in FitterConfig(**small).to_dict().items() if k != "motion"}
    assert not FitterConfig.from_dict(old).motion
    sig = walking_head(30, 60.0, speed=1.5).map(lambda x: x if x.dtype == torch.bool
                                                else x.float())
    T_hmd = head_to_hmd()
    betas = torch.zeros(1, 16)
    states, _ = motion_states(sig, 1 / 60)
    with torch.no_grad():
        still = f(sig.map(lambda x: x[-1:]), betas, T_hmd, reset=torch.tensor([True]))
        moving = f(sig.map(lambda x: x[-1:]), betas, T_hmd, reset=torch.tensor([False]),
                   motion_prev=states[-1:], dt=torch.tensor([1 / 60]))
    assert not torch.allclose(still.theta, moving.theta)
    assert math.isfinite(float(moving.theta.abs().max()))
    assert np.isfinite(moving.motion.numpy()).all()
