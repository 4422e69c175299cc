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
from tracker.geometry.arrays import pose7_to_transform
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
    state = FitState.cat(rows)
    dt = torch.tensor([DEFAULT_DT_S if r else s.dt_seconds(t)
                       for s, t, r in zip(streams, t_ns, resets, strict=True)])
    batch = FitBatch(signals, betas, T_hmd, state, torch.tensor(resets), dt, floor)
    cuda = engine.device.type == "cuda"
    if engine.device.type != "cpu":
        batch = batch.to(engine.device)
    if cuda:  # the copies above are not the fit's time ...
        torch.cuda.synchronize(engine.device)
    t0 = time.perf_counter_ns()
    res = engine.fit(batch)
    if cuda:  # ... and the kernels it queued are (the ``ok`` read below would wait anyway)
        torch.cuda.synchronize(engine.device)
    fit_ns = time.perf_counter_ns() - t0
    ok = res.ok.tolist()
    for i, s in enumerate(streams):
        s.fit = res.state.row(i)
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
    """
    B = len(frames)
    head, wrists, tips, tracked, tips_valid = stack_frames(frames)
    # NumPy for the small per-tick batches (torch's per-op overhead dominates at B ~ 1-16):
    # a live tick runs this between a frame's receipt and its pose, so every call counts.
    T = pose7_to_transform(np.concatenate([head[:, None], wrists], 1))  # (B, 3, 4, 4)
    if floor is not None:
        f = np.asarray(floor, dtype=np.float64).reshape(B)
        T[:, :, 1, 3] += f[:, None]
        tips[..., 1] += f[:, None, None]
    np_dtype = _NUMPY_DTYPES.get(dtype)
    if np_dtype is None:  # a dtype NumPy lacks: through torch
        T_head = torch.as_tensor(T[:, 0], dtype=dtype)
        T_wr = torch.as_tensor(T[:, 1:], dtype=dtype)
        tips_t = torch.as_tensor(tips, dtype=dtype)
    else:  # the same rounding as torch's, one conversion per array
        T_head = torch.from_numpy(T[:, 0].astype(np_dtype))
        T_wr = torch.from_numpy(T[:, 1:].astype(np_dtype))
        tips_t = torch.from_numpy(tips.astype(np_dtype, copy=False))
    tr = torch.from_numpy(tracked)
    visible = (torch.from_numpy(tracked.copy()) if mode == "device"  # = hand_visibility's
               else hand_visibility(T_head, T_wr[..., :3, 3], tr, mode))
    return HeadsetSignals(
        head=T_head, wrists=T_wr, tips=tips_t, tracked=tr,
        tips_valid=torch.from_numpy(tips_valid & tracked), visible=visible,
    )


_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}
