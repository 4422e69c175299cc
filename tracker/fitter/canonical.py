"""The fitter's canonical frame: the stage frame moved under the headset and turned to its heading.

The fitter sees and predicts everything in a frame with its origin on the floor below the
headset and its +Z along the headset's horizontal viewing direction. The learned parts then
never see where in the room the user stands or which way they face (yaw and floor position
are symmetries of the problem), which matters with little training data.

The heading is taken from the horizontal part of the view direction (-Z of the VIEW frame);
when looking straight up or down the headset's +Y axis takes over smoothly, so there is no
singularity and no branching.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tracker.geometry.rotations import rotation_6d_to_matrix
from tracker.geometry.transforms import invert_transform, make_transform, transform_points
from tracker.signals.headset import HeadsetSignals


def heading_frame(head: Tensor) -> Tensor:
    """Canonical frames ``(B, 4, 4)`` (canonical -> stage) for headset poses ``(B, 4, 4)``."""
    R = head[..., :3, :3]
    fwd = -R[..., :, 2]  # view direction
    up = R[..., :, 1]
    f = fwd - up * fwd[..., 1:2]  # looking down: the headset's up points forward
    f = torch.stack([f[..., 0], torch.zeros_like(f[..., 0]), f[..., 2]], -1)
    f = f / f.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    y = torch.zeros_like(f)
    y[..., 1] = 1.0
    x = torch.linalg.cross(y, f, dim=-1)  # columns: x = y × z, z = f
    Rc = torch.stack([x, y, f], -1)
    origin = torch.stack([head[..., 0, 3], torch.zeros_like(head[..., 0, 3]), head[..., 2, 3]], -1)
    return make_transform(Rc, origin)


def signals_to_frame(sig: HeadsetSignals, C: Tensor) -> HeadsetSignals:
    """Express stage-frame observations in frames ``C (B, 4, 4)`` (frame -> stage)."""
    Ci = invert_transform(C)
    return HeadsetSignals(
        head=Ci @ sig.head,
        wrists=Ci[:, None] @ sig.wrists,
        tips=transform_points(Ci[:, None], sig.tips),
        tracked=sig.tracked,
        tips_valid=sig.tips_valid,
        visible=sig.visible,
    )


def theta_to_frame(theta: Tensor, C: Tensor, pelvis: Tensor, inverse: bool = False) -> Tensor:
    """Move Θ ``(B, 315)`` (6D root orientation first, translation last) into frame ``C``.

    SMPL rotates about the rest pelvis ``pelvis (B, 3)`` before translating, so the
    translation becomes ``Rc^T (pelvis + t - o) - pelvis``. With ``inverse=True`` it maps from
    the frame back to the stage.
    """
    Rc, o = C[:, :3, :3], C[:, :3, 3]  # x_stage = Rc x_frame + o
    if inverse:  # the same formula with the inverse frame: Rc -> Rc^T, o -> -Rc^T o
        Rc, o = Rc.transpose(-1, -2), -(Rc.transpose(-1, -2) @ o[..., None])[..., 0]
    R0 = rotation_6d_to_matrix(theta[:, :6])
    R0c = Rc.transpose(-1, -2) @ R0
    t = theta[:, -3:]
    tc = (Rc.transpose(-1, -2) @ (pelvis + t - o)[..., None])[..., 0] - pelvis
    return torch.cat([R0c[..., :, 0], R0c[..., :, 1], theta[:, 6:-3], tc], -1)
