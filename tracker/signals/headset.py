"""What a headset sees of a body: headset pose, OpenXR wrist poses, fingertips, visibility.

These are the fitter's inputs (Choutas et al. 2022, Sec. 3.1: the HMD pose, the wrist poses
and the fingertips, with per-hand visibility ``v_L, v_R``).

Frames (see ``docs/protocol.md``):

* stage frame: right-handed, +Y up, metres, floor at y = 0;
* headset frame: OpenXR VIEW, looking along its local -Z, +Y up, +X right;
* wrist frame: OpenXR ``XR_HAND_JOINT_WRIST``: -Z along the hand towards the fingertips,
  +Y out of the back of the hand, +X = Y x Z (towards the thumb side of the right hand,
  the little-finger side of the left hand).

The body model's joint frames coincide with the stage axes in the rest pose (the body
faces +Z, its left at +X, palms down with the arms out along ±X), which fixes the constant
rotations below.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Literal

import torch
from torch import Tensor

from tracker.body.kinematics import BodyState
from tracker.geometry.transforms import invert_transform, make_transform

VisibilityMode = Literal["device", "half-space"]
VISIBILITY_MODES: tuple[str, ...] = ("device", "half-space")

# Headset frame relative to the head joint frame (the paper's calibration constant T_HMD).
# Rotation: the headset looks along its -Z while the head faces +Z, i.e. a half turn about Y.
# Translation: the OpenXR VIEW pose sits between the eyes; on the bundled model the eye
# midpoint is 4 cm above and 9 cm in front of the head joint. ``tracker calibrate`` refines
# it per user (and per body model).
DEFAULT_HMD_OFFSET = (0.0, 0.04, 0.09)


def head_to_hmd(offset=DEFAULT_HMD_OFFSET, dtype=torch.float32) -> Tensor:
    """``T_HMD`` ``(4, 4)``: the headset (VIEW) frame expressed in the head joint frame."""
    R = torch.tensor([[-1.0, 0, 0], [0, 1, 0], [0, 0, -1]], dtype=dtype)
    return make_transform(R, torch.tensor(offset, dtype=dtype))


def _wrist_to_openxr(dtype=torch.float32) -> Tensor:
    """Rotations ``(2, 3, 3)`` whose columns are the OpenXR wrist axes in the SMPL wrist frame.

    Left hand at rest: fingers along +X, back of the hand +Y, so Z_xr = -X, Y_xr = +Y,
    X_xr = Y x Z = +Z. Right hand: fingers along -X, so Z_xr = +X, X_xr = -Z.
    """
    left = torch.tensor([[0.0, 0, -1], [0, 1, 0], [1, 0, 0]], dtype=dtype)
    right = torch.tensor([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]], dtype=dtype)
    return torch.stack([left, right])


WRIST_TO_OPENXR = _wrist_to_openxr(torch.float64)


@dataclass
class HeadsetSignals:
    """One frame of headset observations for a batch ``B``; stage frame, metres.

    Attributes:
        head: ``(B, 4, 4)`` headset pose (VIEW frame -> stage).
        wrists: ``(B, 2, 4, 4)`` left/right wrist poses, OpenXR wrist-joint convention.
        tips: ``(B, 2, 5, 3)`` fingertips, thumb..little (garbage where not valid).
        tracked: ``(B, 2)`` bool, the device's per-hand tracked flag.
        tips_valid: ``(B, 2)`` bool, fingertips were reported for that hand.
        visible: ``(B, 2)`` bool, the hand enters the data term (see :func:`hand_visibility`).
    """

    head: Tensor
    wrists: Tensor
    tips: Tensor
    tracked: Tensor
    tips_valid: Tensor
    visible: Tensor

    def map(self, fn) -> HeadsetSignals:
        """Apply ``fn`` to every tensor (e.g. ``lambda t: t[:, 3]`` or ``.to(device)``)."""
        return HeadsetSignals(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    @property
    def batch_shape(self) -> torch.Size:
        return self.head.shape[:-2]


def hand_visibility(
    head: Tensor, wrist_pos: Tensor, tracked: Tensor, mode: VisibilityMode
) -> Tensor:
    """Per-hand visibility ``(..., 2)`` bool.

    Args:
        head: ``(..., 4, 4)`` headset pose in the stage frame.
        wrist_pos: ``(..., 2, 3)`` wrist positions in the stage frame.
        tracked: ``(..., 2)`` bool device tracked flags.
        mode: ``"device"``: the tracked flag alone; ``"half-space"``: also require the wrist
            in front of the headset (z < 0 in the headset frame; the paper's FOV model).
    """
    if mode == "device":
        return tracked.bool().clone()  # never alias the caller's tracked flags
    if mode != "half-space":
        raise ValueError(f"unknown visibility mode {mode!r}; expected one of {VISIBILITY_MODES}")
    T_inv = invert_transform(head)
    z = (wrist_pos * T_inv[..., None, 2, :3]).sum(-1) + T_inv[..., None, 2, 3]  # headset z
    return tracked.bool() & (z < 0)


def signals_from_state(
    state: BodyState,
    T_hmd: Tensor | None = None,
    mode: VisibilityMode = "device",
    tracked: Tensor | None = None,
    tips_valid: Tensor | None = None,
) -> HeadsetSignals:
    """The headset signals of posed bodies (ground truth, before any device noise).

    Args:
        state: posed bodies, batch ``B``, stage frame.
        T_hmd: ``(4, 4)`` or ``(B, 4, 4)`` headset in the head joint frame; default
            :func:`head_to_hmd`.
        mode: visibility mode (see :func:`hand_visibility`).
        tracked, tips_valid: ``(B, 2)`` bool; default all true.
    """
    R = state.rotations
    B, dt, dev = R.shape[0], R.dtype, R.device
    if T_hmd is None:
        T_hmd = head_to_hmd(dtype=dt)
    head = state.head @ T_hmd.to(dt).to(dev)
    wrists = state.wrists
    conv = WRIST_TO_OPENXR.to(dtype=dt, device=dev)
    wrists = make_transform(wrists[..., :3, :3] @ conv, wrists[..., :3, 3])
    ones = torch.ones(B, 2, dtype=torch.bool, device=dev)
    tracked = ones if tracked is None else tracked.bool()
    tips_valid = ones if tips_valid is None else tips_valid.bool()
    visible = hand_visibility(head, wrists[..., :3, 3], tracked, mode)
    return HeadsetSignals(head, wrists, state.tips, tracked, tips_valid & tracked, visible)


def with_visibility(sig: HeadsetSignals, mode: VisibilityMode) -> HeadsetSignals:
    """The same observations with ``visible`` recomputed for another mode."""
    visible = hand_visibility(sig.head, sig.wrists[..., :3, 3], sig.tracked, mode)
    return replace(sig, visible=visible)
