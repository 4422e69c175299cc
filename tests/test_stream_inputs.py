"""Frames -> fitter inputs: the small-batch path (Python floats, a live tick) gives the bits
of the whole-array path (NumPy), for every kind of frame the parser accepts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tracker.protocol import Frame, HandObservation
from tracker.stream import _small_batch, _whole_arrays, frames_to_signals


def _pose(rng: np.random.Generator) -> np.ndarray:
    p = np.concatenate([rng.normal(0, 1.5, 3), rng.normal(size=4)])
    p[3:] *= rng.uniform(0.6, 1.8) / np.linalg.norm(p[3:])  # as sent: not quite unit
    p[3:] /= np.linalg.norm(p[3:])  # as the parser leaves it
    return p


def _frames(rng: np.random.Generator, B: int) -> list[Frame]:
    frames = []
    for i in range(B):
        hands = []
        for _ in range(2):
            kind = rng.integers(4)
            if kind == 0:
                hands.append(None)
                continue
            tips = None if kind == 1 else rng.normal(0, 1, (5, 3))
            hands.append(HandObservation(_pose(rng), tips, bool(kind != 3)))
        frames.append(Frame(f"s{i}", i, i * 11_111_111, _pose(rng), *hands))
    return frames


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("B", [1, 3, 16])
def test_small_batch_path_matches_whole_arrays_bit_for_bit(dtype, B):
    rng = np.random.default_rng(B)
    for trial in range(20):
        frames = _frames(rng, B)
        floor = (rng.normal(0, 0.05, B) if trial % 2 else np.zeros(B)).tolist()
        small = _small_batch(frames, floor, dtype)
        whole = _whole_arrays(frames, floor, {np.float32: torch.float32,
                                              np.float64: torch.float64}[dtype], dtype)
        for a, b in zip(small, whole, strict=True):
            a, b = (torch.as_tensor(x) for x in (a, b))
            assert a.dtype == b.dtype and a.shape == b.shape
            assert torch.equal(a, b)


def test_dispatch_and_visibility():
    rng = np.random.default_rng(7)
    for B in (2, 40):  # small and whole-array paths
        frames = _frames(rng, B)
        sig = frames_to_signals(frames, "device", floor=np.full(B, 0.02))
        assert sig.head.shape == (B, 4, 4) and sig.wrists.shape == (B, 2, 4, 4)
        assert sig.tips.shape == (B, 2, 5, 3) and sig.head.dtype == torch.float32
        tracked = [[h is not None and h.tracked for h in (f.left, f.right)] for f in frames]
        assert sig.tracked.tolist() == tracked == sig.visible.tolist()
        assert not (sig.tips_valid & ~sig.tracked).any()
        assert torch.allclose(sig.head[:, 1, 3].double(),
                              torch.tensor([f.head[1] + 0.02 for f in frames]), atol=1e-6)
