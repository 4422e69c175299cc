"""Pose messages (topic ``pose/<session>``) from one tick's fit.

Frames: the fitter works in the *corrected* stage frame (the device's stage frame with the
session profile's ``floor_offset`` added to every y, so that the real floor is y = 0).
Messages are published back in the *device's* stage frame, so a client can draw the body
directly over what its own runtime reports.

The numbers come ready from the engine (``FitResult.pose``, ``transl``, ``joints``: float32,
floor offset already removed, computed inside the compiled fit by
``tracker.fitter.outputs.wire_outputs``); this module only checks they are finite, takes
rows and builds the maps. ``t_pub`` is added by the I/O layer right before sending
(:func:`finish_pose`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from engines.base import FitResult
from tracker.protocol import VERSION, Frame, encode_frame, encode_pose, ground_truth


def pose_messages(res: FitResult, betas: Tensor, visible: Tensor,
                  heads: list[dict]) -> list[dict | None]:
    """One message per row of a tick's result; ``None`` for a row holding a non-finite
    number (never sent).

    Args:
        res: the engine's result for ``B`` sessions (any device).
        betas: ``(B, K)`` shapes used. visible: ``(B, 2)`` bool, hands the fit used.
        heads: per row ``{"session", "seq", "t", "t_recv", "state"}``.
    """
    # Each output straight to Python floats (float32 values, as before), finiteness by a sum
    # (float64: NaN or infinity anywhere makes it non-finite, and 300 float32 numbers cannot
    # overflow it): at a live tick's batch size the per-call cost of tensor and NumPy
    # operations is the whole cost, and this runs between a frame's fit and its pose.
    def rows(t: Tensor) -> list:
        return t.to("cpu", torch.float32).tolist()

    pose, transl, joints, residual, beta = (rows(t) for t in (res.pose, res.transl, res.joints,
                                                                res.residual, betas))
    msgs: list[dict | None] = []
    for p, tr, j, r, be, vis, head in zip(pose, transl, joints, residual, beta,
                                           visible.tolist(), heads, strict=True):
        ok = math.isfinite(sum(p) + sum(tr) + sum(j) + r + sum(be))
        msgs.append({
            "v": VERSION, "session": head["session"], "seq": head["seq"], "t": head["t"],
            "t_recv": head["t_recv"], "transl": tr, "pose": p, "betas": be,
            "joints": j, "visible": [bool(v) for v in vis], "residual": r,
            "state": head["state"],
        } if ok else None)
    return msgs


def finish_pose(msg: dict, t_pub: int) -> bytes:
    """Stamp ``t_pub`` (server monotonic ns) and pack the message."""
    msg["t_pub"] = int(t_pub)
    return encode_pose(msg)


def echo_payload(frame: Frame, payload: bytes) -> bytes:
    """The ``frame/<session>`` echo of a fitted frame: what the parser validated, re-encoded.

    Keys: ``v``, ``session``, ``seq``, ``t``, ``head`` (quaternion as normalised by the
    parser), ``left`` / ``right`` (nil or ``{wrist, tips (if sent), tracked}``), numbers as
    float64; plus ``gt`` when the ingest ``payload`` carries a simulator's ground truth that
    checks out (``transl`` 3, ``pose`` 156, ``betas`` 1-300 finite numbers). Nothing else of
    the payload is echoed (extra keys, NaN, integer keys), so every echo decodes with a
    default ``msgpack.unpackb``.
    """
    def hand(h, key):
        return None if h is None else getattr(h, key)

    l, r = frame.left, frame.right
    gt = _checked_gt(payload)
    return encode_frame(frame.session, frame.seq, frame.t, frame.head,
                        hand(l, "wrist"), hand(r, "wrist"), hand(l, "tips"), hand(r, "tips"),
                        l.tracked if l is not None else True,
                        r.tracked if r is not None else True,
                        extra={"gt": gt} if gt is not None else None)


def _checked_gt(payload: bytes) -> dict | None:
    gt = ground_truth(payload)
    if gt is None:
        return None
    out = {}
    for key, lo, hi in (("transl", 3, 3), ("pose", 156, 156), ("betas", 1, 300)):
        v = gt.get(key)
        if not isinstance(v, list) or not lo <= len(v) <= hi or not all(
                type(x) in (int, float) for x in v):
            return None
        a = np.asarray(v, dtype=np.float64)
        if not np.isfinite(a).all():
            return None
        out[key] = a.tolist()
    return out
