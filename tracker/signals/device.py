"""A seeded model of a headset's tracking errors, applied to clean :class:`HeadsetSignals`.

Used to make training data and simulated streams look like a consumer inside-out headset with
optical hand tracking: jitter on every pose, hands lost in bursts, fingertips dropped while the
wrist is still tracked, and hand tracks that lag the head.

Conventions (stage frame, metres; see ``tracker.signals.headset``):

* position noise: white Gaussian, ``std`` per axis, every frame;
* rotation noise: composed on the *right*, ``R_noisy = R @ exp(eps)``, i.e. in the tracked
  frame's own axes, with ``eps`` white Gaussian, ``std`` per axis-angle component; the result
  is a product of rotation matrices, so it stays orthonormal to float precision;
* dropouts: a two-state Markov chain per hand and sequence (tracked -> lost with probability
  ``rate`` per frame, lost -> tracked with ``1 / mean_frames``), sampled without a frame loop
  as alternating runs of geometric lengths, starting in the chain's stationary distribution;
* latency: the hand track (wrists, tips, ``tracked``, ``tips_valid``) at frame ``t`` is the one
  of frame ``t - L``; the first ``L`` frames repeat frame 0 (a device that was already tracking).
  Latency is applied first, then noise and dropouts (which happen at output time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from tracker.geometry.rotations import axis_angle_to_matrix
from tracker.geometry.transforms import make_transform
from tracker.signals.headset import HeadsetSignals, VisibilityMode, hand_visibility


@dataclass(frozen=True)
class DeviceModel:
    """Error model of a headset; defaults: a consumer inside-out headset with hand tracking."""

    head_pos_std: float = 0.001
    """Headset position noise, metres (std per axis)."""
    head_rot_std: float = 0.2
    """Headset orientation noise, degrees (std per axis-angle component)."""
    wrist_pos_std: float = 0.005
    """Wrist position noise, metres (std per axis)."""
    wrist_rot_std: float = 3.0
    """Wrist orientation noise, degrees (std per axis-angle component)."""
    tip_pos_std: float = 0.004
    """Fingertip position noise, metres (std per axis), on top of the wrist's error if
    ``tips_follow_wrist``."""
    tips_follow_wrist: bool = True
    """Fingertips move rigidly with their wrist's error (the device fits one hand model)."""
    hand_loss_rate: float = 0.003
    """Probability per frame that a tracked hand is lost (a dropout burst starts)."""
    hand_loss_frames: float = 20.0
    """Mean length of a hand dropout burst, frames (geometric; at least 1)."""
    tip_loss_rate: float = 0.005
    """Probability per frame that fingertips stop being reported (wrist still tracked)."""
    tip_loss_frames: float = 10.0
    """Mean length of a fingertip dropout burst, frames."""
    hand_latency_frames: int = 0
    """Delay of the hand observations behind the head, frames."""
    hand_latency_range: tuple[int, int] | None = None
    """If set, the delay is drawn per sequence uniformly from ``[lo, hi]`` (inclusive) instead."""

    @classmethod
    def clean(cls) -> DeviceModel:
        """No noise, no dropouts, no latency: :meth:`apply` returns its input's values."""
        return cls(head_pos_std=0.0, head_rot_std=0.0, wrist_pos_std=0.0, wrist_rot_std=0.0,
                   tip_pos_std=0.0, hand_loss_rate=0.0, tip_loss_rate=0.0)

    @classmethod
    def presets(cls) -> dict[str, DeviceModel]:
        """Named models: ``clean``, ``consumer`` (the defaults) and ``degraded`` (poor light)."""
        return {
            "clean": cls.clean(),
            "consumer": cls(),
            "degraded": cls(head_pos_std=0.002, head_rot_std=0.4, wrist_pos_std=0.01,
                            wrist_rot_std=6.0, tip_pos_std=0.008, hand_loss_rate=0.01,
                            hand_loss_frames=30.0, tip_loss_rate=0.02, tip_loss_frames=15.0,
                            hand_latency_range=(0, 3)),
        }

    @staticmethod
    def loss_fraction(rate: float, mean_frames: float) -> float:
        """Stationary fraction of lost frames of the dropout chain, ``p / (p + 1/L)``."""
        return rate / (rate + 1.0 / max(mean_frames, 1.0)) if rate > 0 else 0.0

    def apply(
        self, sig: HeadsetSignals, seed: int | torch.Generator, mode: VisibilityMode = "device"
    ) -> HeadsetSignals:
        """Noisy, gappy, delayed copy of ``sig``; deterministic for a given seed.

        Args:
            sig: clean signals with batch shape ``(T,)`` (one sequence of ``T`` frames) or
                ``(B, T)``; stage frame. Its ``tracked`` / ``tips_valid`` masks are kept (and
                shifted by the latency); dropouts only remove more.
            seed: an ``int`` (a CPU generator is seeded with it) or a ``torch.Generator``;
                random numbers are drawn on the generator's device in a fixed order, so every
                stream stays the same when other settings change.
            mode: visibility mode for the recomputed ``visible`` (see ``hand_visibility``).

        Returns:
            :class:`HeadsetSignals` of the same batch shape: ``head (..., 4, 4)``,
            ``wrists (..., 2, 4, 4)``, ``tips (..., 2, 5, 3)`` with noise; ``tracked``,
            ``tips_valid`` (implies ``tracked``), ``visible`` ``(..., 2)``. Where a hand is
            not tracked its poses are noisy values that callers must ignore (use the masks).
        """
        single = len(sig.batch_shape) == 1
        s = sig.map(lambda x: x[None]) if single else sig
        if len(s.batch_shape) != 2:
            raise ValueError(f"expected batch shape (T,) or (B, T), got {tuple(sig.batch_shape)}")
        g = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
        B, T = s.batch_shape
        dt, dev = s.head.dtype, s.head.device

        def normal(*shape):
            return torch.randn(*shape, generator=g, device=g.device, dtype=dt).to(dev)

        # Latency: per-sequence delay, then gather the hand track at clamp(t - L, 0).
        u = torch.rand(B, generator=g, device=g.device, dtype=torch.float64).to(dev)
        lo, hi = self.hand_latency_range or (self.hand_latency_frames,) * 2
        lat = (lo + torch.floor(u * (hi - lo + 1))).long().clamp(lo, hi)
        src = (torch.arange(T, device=dev)[None] - lat[:, None]).clamp_min(0)  # (B, T)
        wrists, tips, tracked, tips_valid = (
            _take(x, src) for x in (s.wrists, s.tips, s.tracked, s.tips_valid))

        head = _perturb(s.head, normal(B, T, 3), normal(B, T, 3), self.head_pos_std,
                        self.head_rot_std)
        noisy_wrists = _perturb(wrists, normal(B, T, 2, 3), normal(B, T, 2, 3),
                                self.wrist_pos_std, self.wrist_rot_std)
        tip_noise = normal(B, T, 2, 5, 3)
        if self.tips_follow_wrist and (self.wrist_pos_std > 0 or self.wrist_rot_std > 0):
            # Carry the tips with the wrist's error, D = W_noisy W^-1.
            R, Rn = wrists[..., :3, :3], noisy_wrists[..., :3, :3]
            p, pn = wrists[..., None, :3, 3], noisy_wrists[..., None, :3, 3]
            tips = (tips - p) @ (Rn @ R.transpose(-1, -2)).transpose(-1, -2) + pn
        if self.tip_pos_std > 0:
            tips = tips + self.tip_pos_std * tip_noise

        hand_lost = sample_bursts((B, 2), T, self.hand_loss_rate, self.hand_loss_frames, g)
        tip_lost = sample_bursts((B, 2), T, self.tip_loss_rate, self.tip_loss_frames, g)
        tracked = tracked.bool() & ~hand_lost.to(dev).permute(0, 2, 1)
        tips_valid = tips_valid.bool() & tracked & ~tip_lost.to(dev).permute(0, 2, 1)
        visible = hand_visibility(head, noisy_wrists[..., :3, 3], tracked, mode).clone()
        out = replace(s, head=head, wrists=noisy_wrists, tips=tips, tracked=tracked,
                      tips_valid=tips_valid, visible=visible)
        return out.map(lambda x: x[0]) if single else out


def _take(x: Tensor, src: Tensor) -> Tensor:
    """``x (B, T, ...)`` gathered along time at ``src (B, T)`` long."""
    idx = src.reshape(*src.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return torch.gather(x, 1, idx)


def _perturb(T: Tensor, n_pos: Tensor, n_rot: Tensor, pos_std: float, rot_std_deg: float):
    """Poses ``T (..., 4, 4)`` with position noise ``pos_std * n_pos (..., 3)`` and rotation
    noise ``exp(rad(rot_std_deg) * n_rot)`` composed on the right (local frame)."""
    R, p = T[..., :3, :3], T[..., :3, 3]
    if rot_std_deg > 0:
        R = R @ axis_angle_to_matrix(n_rot * (rot_std_deg * torch.pi / 180.0))
    if pos_std > 0:
        p = p + pos_std * n_pos
    return make_transform(R, p)


def sample_bursts(
    shape: tuple[int, ...], T: int, rate: float, mean_frames: float, generator: torch.Generator
) -> Tensor:
    """Dropout masks ``(*shape, T)`` bool (True = lost) of a two-state Markov chain.

    Per frame a good state turns lost with probability ``rate`` and a lost one recovers with
    probability ``1 / mean_frames``; the chain starts in its stationary distribution. Sampled
    as alternating runs with geometric lengths (no loop over frames), on ``generator``'s device.
    Always draws the same amount of random numbers for a given ``shape`` and ``T``.
    """
    dev = generator.device
    u = torch.rand(*shape, T + 1, generator=generator, device=dev, dtype=torch.float64)
    if rate <= 0 or T == 0:
        return torch.zeros(*shape, T, dtype=torch.bool, device=dev)
    p, q = min(rate, 1.0), 1.0 / max(mean_frames, 1.0)
    start_lost = u[..., 0] < p / (p + q)
    k = torch.arange(T, device=dev)
    lost_run = (k % 2 == 0) == start_lost[..., None]  # run k lost?
    log_stay = [-math.inf if x >= 1 else min(math.log1p(-x), -1e-300) for x in (q, p)]
    log_stay = torch.tensor(log_stay, dtype=torch.float64, device=dev)[(~lost_run).long()]
    # Geometric lengths >= 1: floor(log(U) / log(stay)) + 1 with U = 1 - u in (0, 1].
    lengths = torch.floor(torch.log1p(-u[..., 1:]) / log_stay) + 1
    ends = torch.cumsum(lengths, -1)  # run k covers frames [ends[k-1], ends[k])
    t = torch.arange(T, device=dev, dtype=torch.float64).expand(*shape, T).contiguous()
    run = torch.searchsorted(ends, t, right=True).clamp(max=T - 1)
    return torch.gather(lost_run.expand(*shape, T), -1, run)
