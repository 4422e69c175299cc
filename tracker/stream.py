"""A stream's state from frame to frame, and one tick of fits for a batch of streams.

Live serving, replay, evaluation, the demo and ``tracker bench`` all fit streams the same way:
each stream (session) carries a :class:`~engines.base.FitState` (Θ, the GRU state, the motion
state) and the device time of its last fitted frame; a tick stacks the streams that have a
frame, fits them with one ``engine.fit`` call, and writes each stream's new state back::

    streams = [StreamState() for _ in sessions]
    res = fit_tick(engine, streams, signals, betas, T_hmd, t_ns=[...])   # once per tick

Frames from the wire (``tracker.protocol``, no torch) become fitter inputs here
(:func:`frames_to_signals`).

Reset policy (what :func:`fit_tick` decides; the server adds gaps and profile changes through
``reset``): a stream starts afresh on its first frame, when asked to, and on the frame after a
fit that diverged (``ok`` false). ``dt`` is the device time since the stream's last fitted
frame, so a frame that superseded others sees the whole interval.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from engines.base import Engine, FitBatch, FitResult, FitState
from tracker.geometry.arrays import pose7_rows, pose7_to_transform
from tracker.protocol import Frame, stack_frames
from tracker.signals.headset import HeadsetSignals, VisibilityMode, hand_visibility

NS_PER_S = 1_000_000_000
DEFAULT_DT_S = 1.0 / 90.0  # a reset frame's dt (unused by the fit, kept finite)


@dataclass
class StreamState:
    """What one stream carries between its frames.

    Attributes:
        fit: the state after its last fitted frame (batch 1), ``None`` before the first.
        t_ns: device time of that frame, nanoseconds.
        diverged: the last fit diverged; the next frame starts afresh.
    """

    fit: FitState | None = None
    t_ns: int | None = None
    diverged: bool = False

    def dt_seconds(self, t_ns: int) -> float:
        """Seconds from the last fitted frame to a frame at ``t_ns`` (``DEFAULT_DT_S`` when
        there is none or the clock went backwards)."""
        if self.t_ns is None or t_ns <= self.t_ns:
            return DEFAULT_DT_S
        return (t_ns - self.t_ns) / NS_PER_S


def fit_tick(engine: Engine, streams: Sequence[StreamState], signals: HeadsetSignals,
             betas: Tensor, T_hmd: Tensor, t_ns: Sequence[int],
             reset: Sequence[bool] | None = None,
             floor: Tensor | None = None) -> tuple[FitResult, list[bool], int]:
    """Fit one frame of each stream in one engine call and carry their states.

    Args:
        streams: ``B`` streams, updated in place.
        signals: stage-frame observations with batch ``(B,)``. betas: ``(B, K)``.
        T_hmd: ``(B, 4, 4)``. t_ns: each frame's device time (ns).
        reset: extra resets asked by the caller (gap, profile change).
        floor: ``(B,)`` profile floor offsets, metres, taken off the y of the result's wire
            outputs (``None``: 0; ``tracker.fitter.outputs``).

    Returns:
        ``(result, resets, fit_ns)``: the engine's result (on its device), which streams
        started afresh at this frame, and how long the engine call took (ns; on a GPU until
        its kernels finished).
    """
    B = len(streams)
    asked = [False] * B if reset is None else list(reset)
    resets = [a or s.fit is None or s.diverged for a, s in zip(asked, streams, strict=True)]
    blank = None
    rows = []
    for s in streams:
        if s.fit is None:
            blank = blank if blank is not None else engine.initial_state(1)
            rows.append(blank)
        else:
            rows.append(s.fit)
    state = rows[0] if B == 1 else FitState.cat(rows)  # a batch of one is its own row
    dt = torch.tensor([DEFAULT_DT_S if r else s.dt_seconds(t)
                       for s, t, r in zip(streams, t_ns, resets, strict=True)])
    batch = FitBatch(signals, betas, T_hmd, state, torch.tensor(resets), dt, floor)
    device = engine.device
    cuda = device.type == "cuda"
    if device.type != "cpu":
        batch = batch.to(device)
    if cuda:  # the copies above are not the fit's time ...
        torch.cuda.synchronize(device)
    t0 = time.perf_counter_ns()
    res = engine.fit(batch)
    if cuda:  # ... and the kernels it queued are (the ``ok`` read below would wait anyway)
        torch.cuda.synchronize(device)
    fit_ns = time.perf_counter_ns() - t0
    ok = res.ok.tolist()
    for i, s in enumerate(streams):
        # engines return fresh tensors (TensorRT copies its CUDA-graph buffers), so a batch
        # of one is kept as it is; rows of a larger batch are copied out of it
        s.fit = res.state if B == 1 else res.state.row(i)
        s.t_ns = int(t_ns[i])
        s.diverged = not ok[i]
    return res, resets, fit_ns


def frames_to_signals(
    frames: list[Frame], mode: VisibilityMode, dtype=torch.float32, floor=None
) -> HeadsetSignals:
    """Stack validated frames into fitter inputs with batch ``(len(frames),)``.

    A nil hand or ``tracked: false`` -> not tracked; missing tips -> ``tips_valid`` false.
    ``floor (B,)`` metres, if given, is added to every y (device stage frame -> the corrected
    frame of the session profiles, ``tracker.server.publish``).

    Up to :data:`SMALL_BATCH` frames (a live tick) go through plain Python floats and one
    array per output: NumPy's per-call overhead would be most of the cost, and it runs between
    a frame's receipt and its pose. The arithmetic is the whole-array path's, operation for
    operation in float64, so both give the same bits (``tests/test_stream_inputs.py``).
    """
    B = len(frames)
    np_dtype = _NUMPY_DTYPES.get(dtype)
    f = [0.0] * B if floor is None else np.asarray(floor, dtype=np.float64).reshape(B).tolist()
    if B <= SMALL_BATCH and np_dtype is not None:
        T_head, T_wr, tips_t, tracked, tips_valid = _small_batch(frames, f, np_dtype)
    else:
        T_head, T_wr, tips_t, tracked, tips_valid = _whole_arrays(frames, f, dtype, np_dtype)
    tr = torch.from_numpy(tracked)
    visible = (torch.from_numpy(tracked.copy()) if mode == "device"  # = hand_visibility's
               else hand_visibility(T_head, T_wr[..., :3, 3], tr, mode))
    return HeadsetSignals(
        head=T_head, wrists=T_wr, tips=tips_t, tracked=tr,
        tips_valid=torch.from_numpy(tips_valid & tracked), visible=visible,
    )


SMALL_BATCH = 16
"""Frames per call up to which :func:`frames_to_signals` works on Python floats."""


def _whole_arrays(frames, floor: list[float], dtype, np_dtype):
    B = len(frames)
    head, wrists, tips, tracked, tips_valid = stack_frames(frames)
    T = pose7_to_transform(np.concatenate([head[:, None], wrists], 1))  # (B, 3, 4, 4)
    f = np.asarray(floor, dtype=np.float64).reshape(B)
    T[:, :, 1, 3] += f[:, None]
    tips[..., 1] += f[:, None, None]
    if np_dtype is None:  # a dtype NumPy lacks: through torch
        return (torch.as_tensor(T[:, 0], dtype=dtype), torch.as_tensor(T[:, 1:], dtype=dtype),
                torch.as_tensor(tips, dtype=dtype), tracked, tips_valid)
    # the same rounding as torch's, one conversion per array
    return (torch.from_numpy(T[:, 0].astype(np_dtype)), torch.from_numpy(T[:, 1:].astype(np_dtype)),
            torch.from_numpy(tips.astype(np_dtype, copy=False)), tracked, tips_valid)


_IDENTITY_POSE = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
_NO_TIPS = ((0.0, 0.0, 0.0),) * 5


def _small_batch(frames, floor: list[float], np_dtype):
    heads, wrists, tips, tracked, valid = [], [], [], [], []
    for fr, y0 in zip(frames, floor, strict=True):
        heads.append(pose7_rows(fr.head.tolist(), y0))
        w_rows, t_rows, tr_row, v_row = [], [], [], []
        for h in (fr.left, fr.right):
            if h is None:  # as stack_frames: identity at the origin, tips at 0
                w_rows.append(pose7_rows(_IDENTITY_POSE, y0))
                t_rows.append([(x, y + y0, z) for x, y, z in _NO_TIPS])
                tr_row.append(False)
                v_row.append(False)
                continue
            w_rows.append(pose7_rows(h.wrist.tolist(), y0))
            t_rows.append([(x, y + y0, z) for x, y, z in
                           (_NO_TIPS if h.tips is None else h.tips.tolist())])
            tr_row.append(bool(h.tracked))
            v_row.append(h.tips is not None)
        wrists.append(w_rows)
        tips.append(t_rows)
        tracked.append(tr_row)
        valid.append(v_row)
    return (torch.from_numpy(np.array(heads, dtype=np_dtype)),
            torch.from_numpy(np.array(wrists, dtype=np_dtype)),
            torch.from_numpy(np.array(tips, dtype=np_dtype)),
            np.array(tracked, dtype=bool), np.array(valid, dtype=bool))


_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}
