"""Pose messages (topic ``pose/<session>``) from one tick's fit.

Frames: the fitter works in the *corrected* stage frame (the device's stage frame with the
session profile's ``floor_offset`` added to every y, so that the real floor is y = 0).
Messages are published back in the *device's* stage frame: ``floor_offset`` is subtracted
from the y of ``transl`` and ``joints`` (rotations do not change), so a client can draw the
body directly over what its own runtime reports.

Θ -> axis-angle and the joint positions are computed with NumPy (``tracker.geometry.arrays``,
``tracker.server.fastpose``: for a handful of rows torch's per-operation overhead would
dominate). Numbers are packed as float32 (see :func:`tracker.protocol.encode_pose`);
``t_pub`` is added by the I/O layer right before sending (:func:`finish_pose`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from tracker.body.kinematics import BodyModel
from tracker.geometry.arrays import matrix_to_axis_angle, rot6d_to_matrix
from tracker.protocol import VERSION, encode_pose
from tracker.server.fastpose import JointChain

_CHAINS: dict[int, JointChain] = {}


def pose_messages(
    body: BodyModel,
    theta: Tensor,
    betas: Tensor,
    floor_offset: Tensor,
    visible: Tensor,
    residual: Tensor,
    heads: list[dict],
) -> list[dict | None]:
    """One message per row; ``None`` for a row holding a non-finite number (never sent).

    Args:
        theta: ``(B, 315)`` fitted Θ, corrected stage frame. betas: ``(B, K)``.
        floor_offset: ``(B,)`` metres, subtracted from output y.
        visible: ``(B, 2)`` bool, hands the fit used. residual: ``(B,)`` metres.
        heads: per row ``{"session", "seq", "t", "t_recv", "state"}``.
    """
    chain = _CHAINS.get(id(body))
    if chain is None:
        chain = _CHAINS[id(body)] = JointChain(body.parents)
    th = theta.detach().cpu().double().numpy()
    B = th.shape[0]
    R = rot6d_to_matrix(th[:, :312].reshape(B, 52, 6))  # (B, 52, 3, 3)
    poses = matrix_to_axis_angle(R).reshape(B, 156)
    J_rest = _rest_joints(body, betas)  # (B, 52, 3)
    down = np.zeros((B, 3))
    down[:, 1] = floor_offset.cpu().double().numpy()
    transl = th[:, 312:] - down
    joints = chain.joints(R, J_rest, transl).reshape(B, 156)
    f32 = np.float32  # what goes on the wire: keep in-process messages equal to it
    poses, transl, joints = poses.astype(f32), transl.astype(f32), joints.astype(f32)
    be, res = betas.detach().cpu().float().numpy(), residual.detach().cpu().float().numpy()
    finite = (np.isfinite(poses).all(-1) & np.isfinite(transl).all(-1)
              & np.isfinite(joints).all(-1) & np.isfinite(be).all(-1) & np.isfinite(res))
    rows = zip(finite.tolist(), poses.tolist(), transl.tolist(), joints.tolist(), be.tolist(),
               visible.cpu().tolist(), res.tolist(), heads, strict=True)
    out: list[dict | None] = []
    for ok, pose, tr, jo, b, vis, r, head in rows:
        out.append({
            "v": VERSION, "session": head["session"], "seq": head["seq"], "t": head["t"],
            "t_recv": head["t_recv"], "transl": tr, "pose": pose, "betas": b, "joints": jo,
            "visible": [bool(v) for v in vis], "residual": r, "state": head["state"],
        } if ok else None)
    return out


_REST: dict[tuple, np.ndarray] = {}


def _rest_joints(body: BodyModel, betas: Tensor) -> np.ndarray:
    """``(B, 52, 3)`` rest joints, cached by body and betas (profiles rarely change)."""
    b = betas.detach().cpu()
    key = (id(body), tuple(b.shape), b.numpy().tobytes())
    hit = _REST.get(key)
    if hit is None:
        if len(_REST) > 256:
            _REST.clear()
        with torch.inference_mode():
            hit = _REST[key] = body.rest_joints(b.to(body.dtype)).double().numpy()
    return hit


def finish_pose(msg: dict, t_pub: int) -> bytes:
    """Stamp ``t_pub`` (server monotonic ns) and pack the message."""
    msg["t_pub"] = int(t_pub)
    return encode_pose(msg)
