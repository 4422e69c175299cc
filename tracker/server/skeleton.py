"""The ``skeleton/<session>`` topic: joint names, the joint tree and a session's rest joints.

A client that drives a rig (Unity, VMC, a retargeter) needs what the pose message leaves
implicit: which joint is which, its parent, and where the joints are at rest for this
session's body shape. One message per session (:data:`tracker.protocol.SKELETON_KEYS`):

* ``joints``: the 52 names of :data:`tracker.body.joints.JOINT_NAMES`, in ``pose`` order;
* ``parents``: the parent index of each joint, ``-1`` for the root (the pelvis);
* ``rest``: the 52 joint positions (x y z each, metres) at zero pose and zero translation
  for the session's ``betas``, in the body model frame (+Y up, the body faces +Z);
* ``betas``, ``units`` (``"m"``), ``frame`` and ``pose_layout`` (descriptions).

A pose's ``joints`` are the forward kinematics of its ``pose`` over ``rest``, plus
``transl``: with ``R_j`` the rotation of ``pose[3j:3j+3]``, ``G_root = [R_0 | rest_0]`` and
``G_j = G_parent(j) [R_j | rest_j - rest_parent(j)]``; joint ``j`` is at the translation of
``G_j`` plus ``transl`` (``BodyModel.forward``, which the pose message's joints come from).

When it is sent (``tracker.server.loop``): before the first pose of a session, again when
the session's profile (shape) changes, and whenever a subscription arrives whose prefix
covers ``skeleton/<session>`` (``b""``, ``b"skeleton/"``, ``b"skeleton/<session>"``...): the
output socket is an XPUB with ``ZMQ_XPUB_VERBOSE``, so the server sees every subscription,
repeated ones included, and subscribing *is* the request
(``tracker.server.subscriptions``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from tracker.body.joints import JOINT_NAMES, PARENTS
from tracker.protocol import SKELETON_TOPIC_PREFIX, VERSION, encode_pose
from tracker.server.subscriptions import covered

FRAME = "right-handed, +Y up, metres; at zero pose the body faces +Z (OpenXR stage axes)"
POSE_LAYOUT = ("axis-angle per joint, local to parent, AMASS order: pose[3j:3j+3] rotates "
               "joints[j] (global orient, 21 body, 15 left hand, 15 right hand)")


_REST: dict[tuple, np.ndarray] = {}


def skeleton_message(body, session: str, betas: Tensor) -> dict:
    """The skeleton map of ``session`` for ``betas`` ``(K,)`` (the pose messages' betas).

    Numbers are packed as float32 like the pose message (:func:`encode_skeleton`)."""
    b = betas.detach().cpu().float().reshape(1, -1)
    key = (body.fingerprint, b.numpy().tobytes())
    rest = _REST.get(key)
    if rest is None:  # once per shape: sessions share profiles, and profiles rarely change
        if len(_REST) > 256:
            _REST.clear()
        with torch.inference_mode():
            rest = body.rest_joints(b.to(body.dtype))[0].float().numpy().reshape(-1)
        _REST[key] = rest
    return {
        "v": VERSION, "session": session, "joints": list(JOINT_NAMES),
        "parents": [int(p) for p in PARENTS], "rest": rest.tolist(),
        "betas": b[0].numpy().tolist(), "units": "m", "frame": FRAME, "pose_layout": POSE_LAYOUT,
    }


def encode_skeleton(msg: dict) -> bytes:
    """Pack a skeleton map (floats as float32, like poses)."""
    return encode_pose(msg)


def wanted(prefixes, session: str) -> bool:
    """Whether a subscription to any of ``prefixes`` receives ``skeleton/<session>``."""
    return covered(prefixes, SKELETON_TOPIC_PREFIX + session.encode())
