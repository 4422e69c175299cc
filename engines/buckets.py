"""Batch buckets: compiled engines run at a few fixed batch sizes, ``1, 2, 4, ..., 256``.

A tick with ``B`` sessions runs at the smallest bucket ``>= B``; the extra rows repeat the
last real session (valid numbers, so no NaN or denormal paths) and are cut from the result.
More than 256 sessions run as consecutive chunks of 256 (then the rest).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

BUCKETS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
MAX_BUCKET = BUCKETS[-1]


def bucket_for(B: int, buckets: Sequence[int] = BUCKETS) -> int:
    """The smallest bucket holding ``B >= 1`` sessions (``buckets[-1]`` when none does)."""
    if B < 1:
        raise ValueError(f"batch must be >= 1, got {B}")
    for b in buckets:
        if b >= B:
            return b
    return buckets[-1]


def chunks(B: int, max_bucket: int = MAX_BUCKET) -> list[slice]:
    """Row ranges of at most ``max_bucket`` sessions covering ``range(B)``."""
    return [slice(i, min(i + max_bucket, B)) for i in range(0, B, max_bucket)]


def pad_rows(tensors: Sequence[Tensor], bucket: int) -> tuple[Tensor, ...]:
    """Pad every ``(B, ...)`` tensor to ``(bucket, ...)`` by repeating its last row."""
    B = tensors[0].shape[0]
    if B == bucket:
        return tuple(tensors)
    idx = torch.arange(bucket, device=tensors[0].device).clamp_max(B - 1)
    return tuple(t.index_select(0, idx) for t in tensors)
