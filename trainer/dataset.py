"""Training data: motion clips -> windows of ground-truth SMPL+H and observed headset signals.

    clips, problems = load_clips(["data/motion-open"], fps=60)     # AMASS layout, Z up
    train, val = split_clips(clips, val_fraction=0.1)
    ds = WindowDataset(train, body, window=16, cache_dir=Path("data/cache"))
    loader = DataLoader(ds, batch_size=32, shuffle=True)      # batches (B, K, ...)
    for epoch in range(E):
        ds.set_epoch(epoch)                                   # new noise, visibility, hands
        for batch in loader: ...

Frames: every tensor a window yields is in the stage frame (Y up, metres; see
``tracker.signals.stage``). Clean signals come from ``tracker.signals.motion`` (the one path
from a motion to what the fitter sees); the device noise model is applied per window.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from tracker.motion.amass import MotionClip, clip_has_hands, load_amass
from tracker.signals.device import DeviceModel
from tracker.signals.headset import HeadsetSignals, with_visibility

__all__ = ["MotionClip", "WindowDataset", "load_clips", "split_clips"]
_CACHE_VERSION = 1


def load_clips(
    paths: Sequence[str | Path],
    fps: float = 60.0,
    datasets: Sequence[str] | None = None,
    split_file: str | Path | None = None,
) -> tuple[list[MotionClip], list[str]]:
    """Read AMASS-layout ``.npz`` motions (AMASS releases, ``trainer import-bvh`` output).

    Args:
        paths: files or folders (searched recursively).
        fps: every clip is resampled to this rate (slerp).
        datasets: keep only files below folders of these names (e.g. ``["CMU", "KIT"]``).
        split_file: keep only the files a split file lists (e.g.
            ``../shared/data/splits/amass-protocol1/CMU/train_split.txt``).

    Returns:
        ``(clips, problems)``: clips in the AMASS world (Z up), one message per skipped file.
    """
    return load_amass(paths, fps, datasets, split_file)


def _unit_hash(*parts) -> float:
    h = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2.0**64


def split_clips(
    clips: Sequence[MotionClip], val_fraction: float = 0.1, seed: int = 0
) -> tuple[list[MotionClip], list[MotionClip]]:
    """Train/validation split by clip, stable: a clip's side depends only on its name and
    ``seed`` (adding or removing other clips never moves it). The parts of one take
    (``<name>_part<k>``, from ``trainer import-bvh``) stay on the same side."""
    train, val = [], []
    for c in clips:
        take = re.sub(r"_part\d+$", "", c.name)
        (val if _unit_hash(seed, take) < val_fraction else train).append(c)
    return train, val


def _seed(*parts) -> int:
    return int(np.random.SeedSequence([abs(int(p)) for p in parts]).generate_state(1,
                                                                                   np.uint64)[0]
               >> np.uint64(1))


class WindowDataset(Dataset):
    """Windows of ``window`` consecutive frames with their observed signals.

    Args:
        clips: motions (AMASS layout, Z up, all at the same fps).
        body: ``tracker.body.BodyModel`` for the ground truth and the signals (a CPU copy is
            used if it lives on a GPU; items are CPU tensors, move batches yourself).
        window: frames per sample ``K`` (1: per-frame samples, still with a ``K`` axis).
        stride: frames between window starts (default ``window``: no overlap).
        modes: visibility modes; each window draws one (seeded by ``seed, epoch, index``).
        device_model: noise/dropout model applied per window; ``None``: clean signals.
        seed: base seed. cache_dir: per-clip cache of stage parameters and clean signals.
        hands: synthesize finger motion for clips without any (``tracker.motion.hands``).
        augment: kinds of clip augmentation (``trainer.augment``: mirror, speed, shape);
            each clip adds ``variants`` augmented copies of itself.
        hands_lost: probability that a window has a hand untracked throughout (half of
            those: both hands), as with controllers in hand or hands down at the sides.

    Items are dicts of tensors, float32 unless noted, stage frame: ``poses (K, 156)``
    axis-angle, ``trans (K, 3)``, ``betas (16,)``, ``head (K, 4, 4)``, ``wrists (K, 2, 4, 4)``
    (OpenXR wrist convention), ``tips (K, 2, 5, 3)``, ``tracked``/``tips_valid``/``visible``
    ``(K, 2)`` bool, ``mode`` int64 scalar (index into ``modes``), ``fps`` scalar.
    """

    def __init__(self, clips: Sequence[MotionClip], body, window: int = 16,
                 stride: int | None = None, modes: Sequence[str] = ("device", "half-space"),
                 device_model: DeviceModel | None = DeviceModel(), seed: int = 0,  # noqa: B008
                 cache_dir: Path | None = None, hands: bool = True,
                 augment: Sequence[str] = (), variants: int = 0, hands_lost: float = 0.0):
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if body.j_template.device.type != "cpu":  # data is made on the CPU (and in workers)
            body = copy.deepcopy(body).cpu()
        self.body, self.window, self.stride = body, window, stride or window
        self.modes, self.device_model = tuple(modes), device_model
        self.seed, self.hands, self.hands_lost = seed, hands, hands_lost
        self.epoch = 0
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        from trainer.augment import clip_variants

        self.clips = list(clips)
        self.clips += [v for c in clips for v in clip_variants(c, body, augment, variants, seed)]
        self.data = [self._prepare(c) for c in self.clips]
        self.index = [(ci, s) for ci, d in enumerate(self.data)
                      for s in range(0, d["poses"].shape[0] - window + 1, self.stride)]

    # ------------------------------------------------------------------ preparation
    def _cache_path(self, clip: MotionClip) -> Path | None:
        if self.cache_dir is None:
            return None
        digest = clip.digest or hashlib.blake2b(
            clip.poses.tobytes() + clip.trans.tobytes() + clip.betas.tobytes(),
            digest_size=8).hexdigest()
        key = f"{digest}-{self.body.fingerprint}-{clip.fps:g}-v{_CACHE_VERSION}"
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", clip.name)[-80:]
        return self.cache_dir / f"{safe}-{key}.npz"

    def _prepare(self, clip: MotionClip) -> dict:
        """Stage-frame parameters ``poses (N, 156)``, ``trans (N, 3)``, ``betas (16,)`` and
        clean ``head (N, 4, 4)``, ``wrists (N, 2, 4, 4)``, ``tips (N, 2, 5, 3)`` (float32)."""
        path = self._cache_path(clip)
        if path is not None and path.is_file():
            try:
                with np.load(path) as z:
                    d = {k: z[k] for k in z.files}
                d["has_hands"] = bool(d["has_hands"])
                return d
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache entry is rebuilt
        from tracker.signals.motion import motion_signals, stage_params

        with torch.no_grad():
            sig, _, _ = motion_signals(self.body, clip.poses, clip.trans, clip.betas)
            poses, trans, _ = stage_params(self.body, clip.poses, clip.trans, clip.betas)
        betas = np.zeros(16, np.float32)
        betas[: min(16, len(clip.betas))] = clip.betas[:16]
        d = dict(poses=poses.float().numpy(), trans=trans.float().numpy(), betas=betas,
                 head=sig.head.float().numpy(), wrists=sig.wrists.float().numpy(),
                 tips=sig.tips.float().numpy(), fps=np.float32(clip.fps),
                 has_hands=np.bool_(clip_has_hands(clip.poses)))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")  # ranks may write it at once
            np.savez(tmp, **d)
            tmp.replace(path)
        d["has_hands"] = bool(d["has_hands"])
        return d

    # ------------------------------------------------------------------ sampling
    def set_epoch(self, epoch: int) -> None:
        """Reseed noise, visibility modes and hand synthesis (call before each epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ci, s = self.index[i]
        d, K = self.data[ci], self.window
        rng = np.random.default_rng(_seed(self.seed, self.epoch, i))
        mode = int(rng.integers(len(self.modes)))
        poses = torch.from_numpy(d["poses"][s:s + K].copy())
        trans = torch.from_numpy(d["trans"][s:s + K].copy())
        betas = torch.from_numpy(d["betas"].copy())
        tips = torch.from_numpy(d["tips"][s:s + K].copy())
        if self.hands and not d["has_hands"]:
            from tracker.motion.hands import synthesize_hands

            poses[:, 66:] = torch.from_numpy(synthesize_hands(K, float(d["fps"]), rng)).float()
            dt = self.body.dtype
            with torch.no_grad():
                st = self.body.forward_axis_angle(poses.to(dt), betas.to(dt).expand(K, -1),
                                                  trans.to(dt))
            tips = st.tips.float()
        ones = torch.ones(K, 2, dtype=torch.bool)
        tracked = ones.clone()
        lost = rng.random()
        if lost < self.hands_lost:
            tracked[:, [0, 1] if lost < self.hands_lost / 2 else [int(rng.integers(2))]] = False
        sig = HeadsetSignals(head=torch.from_numpy(d["head"][s:s + K].copy()),
                             wrists=torch.from_numpy(d["wrists"][s:s + K].copy()), tips=tips,
                             tracked=tracked, tips_valid=tracked, visible=tracked)
        if self.device_model is not None:
            sig = self.device_model.apply(sig, int(rng.integers(2**62)), self.modes[mode])
        else:
            sig = with_visibility(sig, self.modes[mode])
        return dict(poses=poses, trans=trans, betas=betas, head=sig.head.float(),
                    wrists=sig.wrists.float(), tips=sig.tips.float(), tracked=sig.tracked,
                    tips_valid=sig.tips_valid, visible=sig.visible,
                    mode=torch.tensor(mode, dtype=torch.int64),
                    fps=torch.tensor(float(d["fps"])))

    def clip_of(self, i: int) -> MotionClip:
        """The clip window ``i`` comes from."""
        return self.clips[self.index[i][0]]
