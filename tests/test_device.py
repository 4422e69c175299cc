"""Device noise model: statistics, dropout bursts, latency, masks, determinism."""

from __future__ import annotations

import math

import pytest
import torch

from tracker.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from tracker.geometry.transforms import invert_transform, make_transform
from tracker.signals.device import DeviceModel, sample_bursts
from tracker.signals.headset import HeadsetSignals, hand_visibility

QUIET = dict(hand_loss_rate=0.0, tip_loss_rate=0.0)


def _signals(B=4, T=50, seed=0, dtype=torch.float64, mode="device") -> HeadsetSignals:
    """Clean random signals, batch ``(B, T)``: a head at ~1.6 m, hands around it."""
    g = torch.Generator().manual_seed(seed)

    def pose(*shape, centre, spread):
        R = axis_angle_to_matrix(torch.randn(*shape, 3, generator=g, dtype=dtype))
        p = torch.tensor(centre, dtype=dtype) + spread * torch.randn(*shape, 3, generator=g,
                                                                     dtype=dtype)
        return make_transform(R, p)

    head = pose(B, T, centre=(0.0, 1.6, 0.0), spread=0.05)
    wrists = pose(B, T, 2, centre=(0.0, 1.2, 0.0), spread=0.4)
    tips = wrists[..., None, :3, 3] + 0.1 * torch.randn(B, T, 2, 5, 3, generator=g, dtype=dtype)
    ones = torch.ones(B, T, 2, dtype=torch.bool)
    vis = hand_visibility(head, wrists[..., :3, 3], ones, mode)
    return HeadsetSignals(head, wrists, tips, ones, ones.clone(), vis)


def _rot_error(R, Rn):
    """Right-composed error axis-angles ``(..., 3)``: ``Rn = R @ exp(e)``."""
    return matrix_to_axis_angle(R.transpose(-1, -2) @ Rn)


@pytest.mark.parametrize("mode", ["device", "half-space"])
def test_clean_returns_the_input(mode):
    sig = _signals(mode=mode, dtype=torch.float32)
    out = DeviceModel.clean().apply(sig, seed=0, mode=mode)
    for name in ("head", "wrists", "tips", "tracked", "tips_valid", "visible"):
        assert torch.equal(getattr(out, name), getattr(sig, name)), name


def test_deterministic_and_batch_shapes():
    sig, dm = _signals(), DeviceModel(hand_loss_rate=0.05, tip_loss_rate=0.05)
    a, b = dm.apply(sig, seed=3), dm.apply(sig, seed=torch.Generator().manual_seed(3))
    c = dm.apply(sig, seed=4)
    for name in ("head", "wrists", "tips", "tracked", "tips_valid", "visible"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(a.wrists, c.wrists)
    one = dm.apply(sig.map(lambda x: x[0]), seed=3)  # batch shape (T,)
    assert one.batch_shape == (50,) and one.tips.shape == (50, 2, 5, 3)
    ref = dm.apply(sig.map(lambda x: x[:1]), seed=3)
    assert torch.equal(one.wrists, ref.wrists[0]) and torch.equal(one.tracked, ref.tracked[0])


def test_noise_statistics():
    dm = DeviceModel(**QUIET)
    sig = _signals(B=40, T=500)
    out = dm.apply(sig, seed=1)
    rad = math.pi / 180
    checks = [
        (out.head[..., :3, 3] - sig.head[..., :3, 3], dm.head_pos_std),
        (_rot_error(sig.head[..., :3, :3], out.head[..., :3, :3]), dm.head_rot_std * rad),
        (out.wrists[..., :3, 3] - sig.wrists[..., :3, 3], dm.wrist_pos_std),
        (_rot_error(sig.wrists[..., :3, :3], out.wrists[..., :3, :3]), dm.wrist_rot_std * rad),
    ]
    for err, std in checks:
        assert err.mean().abs() < 0.05 * std
        assert torch.allclose(err.reshape(-1, 3).std(0), torch.full((3,), std, dtype=err.dtype),
                              rtol=0.05)
    # Tips: their own noise on top of the wrist's rigid error (seen in the wrist frame) ...
    local = invert_transform(out.wrists)[..., None, :3, :3] @ (
        out.tips - out.wrists[..., None, :3, 3])[..., None]
    clean = invert_transform(sig.wrists)[..., None, :3, :3] @ (
        sig.tips - sig.wrists[..., None, :3, 3])[..., None]
    assert torch.allclose((local - clean).std(), torch.tensor(dm.tip_pos_std).double(), rtol=0.05)
    # ... or alone, in the stage frame.
    alone = DeviceModel(tips_follow_wrist=False, **QUIET).apply(sig, seed=1)
    err = alone.tips - sig.tips
    assert torch.allclose(err.std(), torch.tensor(dm.tip_pos_std).double(), rtol=0.05)


def test_rotations_stay_orthonormal():
    sig = _signals(B=8, T=200, dtype=torch.float32)
    out = DeviceModel.presets()["degraded"].apply(sig, seed=2)
    for T in (out.head, out.wrists):
        R = T[..., :3, :3]
        eye = torch.eye(3).expand_as(R)
        assert torch.allclose(R.transpose(-1, -2) @ R, eye, atol=1e-5)
        assert torch.allclose(torch.linalg.det(R), torch.ones(R.shape[:-2]), atol=1e-5)
        assert torch.equal(T[..., 3, :], torch.tensor([0.0, 0, 0, 1]).expand_as(T[..., 3, :]))


def _bursts(lost):
    """(fraction lost, mean burst length) of masks ``(..., T)``."""
    starts = (lost[..., 1:] & ~lost[..., :-1]).sum() + lost[..., 0].sum()
    return lost.float().mean().item(), (lost.sum() / starts).item()


@pytest.mark.parametrize("rate,frames", [(0.01, 20.0), (0.05, 4.0)])
def test_dropout_bursts_match_the_chain(rate, frames):
    frac, mean = _bursts(sample_bursts((400,), 2000, rate, frames, torch.Generator()))
    assert frac == pytest.approx(DeviceModel.loss_fraction(rate, frames), rel=0.1)
    assert mean == pytest.approx(frames, rel=0.1)


def test_dropouts_in_signals():
    dm = DeviceModel(hand_loss_rate=0.01, hand_loss_frames=20, tip_loss_rate=0.02,
                     tip_loss_frames=8)
    sig = _signals(B=100, T=1000, dtype=torch.float32)
    sig.tracked[:, :10, 0] = False  # the input's own gaps are kept
    out = dm.apply(sig, seed=5)
    assert not out.tracked[:, :10, 0].any()
    frac, mean = _bursts(~out.tracked[:, 10:].permute(0, 2, 1))
    assert frac == pytest.approx(dm.loss_fraction(0.01, 20), rel=0.15)
    assert mean == pytest.approx(20, rel=0.15)
    assert not (out.tips_valid & ~out.tracked).any()  # tips_valid implies tracked
    tip_gaps = (~out.tips_valid)[out.tracked].float().mean().item()
    assert tip_gaps == pytest.approx(dm.loss_fraction(0.02, 8), rel=0.15)
    assert torch.equal(out.visible, out.tracked)  # device mode: visible = tracked


@pytest.mark.parametrize("L", [1, 3])
def test_latency_shifts_the_hand_track(L):
    sig = _signals(B=2, T=30)
    sig.tracked[:, 5, 1] = sig.tips_valid[:, 5, 1] = False
    sig.tips_valid[:, 8, 0] = False
    dm = DeviceModel(**{**DeviceModel.clean().__dict__, "hand_latency_frames": L})
    out = dm.apply(sig, seed=0)
    assert torch.equal(out.head, sig.head)
    for name in ("wrists", "tips", "tracked", "tips_valid"):
        a, b = getattr(out, name), getattr(sig, name)
        assert torch.equal(a[:, L:], b[:, :-L]), name
        assert torch.equal(a[:, :L], b[:, :1].expand_as(a[:, :L])), name  # frame 0 repeated


def test_latency_range_is_per_sequence():
    sig = _signals(B=16, T=20)
    dm = DeviceModel(**{**DeviceModel.clean().__dict__, "hand_latency_range": (0, 3)})
    out = dm.apply(sig, seed=0)
    seen = set()
    for b in range(16):
        lag = [k for k in range(4) if torch.equal(out.wrists[b, k:], sig.wrists[b, :20 - k])]
        assert len(lag) == 1
        seen.add(lag[0])
    assert len(seen) > 1


def test_visibility_recomputed_in_half_space():
    sig = _signals(B=4, T=100)
    sig.visible[:] = True  # stale on purpose
    out = DeviceModel(hand_loss_rate=0.05).apply(sig, seed=0, mode="half-space")
    want = hand_visibility(out.head, out.wrists[..., :3, 3], out.tracked, "half-space")
    assert torch.equal(out.visible, want)
    assert not out.visible.all() and out.visible.any()
