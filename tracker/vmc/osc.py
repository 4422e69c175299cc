"""The VMC protocol as OSC over UDP, for ``tracker vmc`` (NumPy only: no torch, no ZeroMQ).

VMC protocol (the "Performer" role; https://protocol.vmc.info/specification for the roles,
ports and OSC types, https://protocol.vmc.info/marionette-spec for the messages): OSC
messages over UDP to a "Marionette" (EVMC4U in Unity, VSeeFace, Warudo, VNyan), which
listens on port 39539 by default. Each fitted pose becomes one frame:

* ``/VMC/Ext/Root/Pos "root" px py pz qx qy qz qw``: the model root's pose; always the
  identity at the origin here (the spec names it ``"root"``; receivers treat it as local);
* ``/VMC/Ext/Bone/Pos <HumanBodyBones name> px py pz qx qy qz qw`` for all 52 bones the
  body drives (22 body bones and 30 finger bones): the bone's local pose as a normalised
  (VRM) avatar holds it, in Unity's frame (see :mod:`tracker.vmc.mapping`);
* ``/VMC/Ext/OK 1 3 0 1``: model loaded, calibrated, normal mode, tracking (V2.7 form);
* ``/VMC/Ext/T <seconds>``: the sender's relative time (seconds since the bridge started).

All numbers are OSC float32 (``f``) or int32 (``i``), strings UTF-8. The messages travel in
OSC bundles of at most :data:`MAX_DATAGRAM` bytes each (the bones fill four), ``T`` last.

Bone positions: the hips' is the tracked pelvis in the Unity image of the stage (root at the
origin); the others are the user's rest bone offsets. Receivers that apply every bone's
position (EVMC4U's "bone position synchronize") give the avatar the user's proportions;
with it off, an avatar keeps its own and takes only the rotations and the hips' position.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import numpy as np
from pythonosc.osc_message_builder import OscMessageBuilder

DEFAULT_TARGET = "127.0.0.1:39539"
MAX_DATAGRAM = 1400  # bytes per UDP datagram: under a 1500-byte Ethernet MTU, no fragments


class TargetError(ValueError):
    """A bad ``--to`` address (one line for the command line)."""


@dataclass(frozen=True)
class Target:
    """Where the OSC datagrams go: the socket family and address ``getaddrinfo`` gave."""

    text: str
    family: int
    sockaddr: tuple


def parse_target(text: str) -> Target:
    """``HOST:PORT`` or ``[IPv6]:PORT`` -> :class:`Target` (raises :class:`TargetError`)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise TargetError(f"--to {text!r}: expected HOST:PORT, e.g. {DEFAULT_TARGET}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise TargetError(f"--to {text!r}: port {port_text!r} is not a number") from None
    if not 1 <= port <= 65535:
        raise TargetError(f"--to {text!r}: port {port} outside 1-65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise TargetError(f"--to {text!r}: cannot resolve host {host!r} ({reason})") from None
    family, _, _, _, sockaddr = infos[0]
    return Target(text, family, sockaddr)


def _message(address: str, *args) -> bytes:
    """One OSC message: ``str`` as ``s``, ``int`` as ``i`` (int32), ``float`` as ``f``."""
    b = OscMessageBuilder(address=address)
    for a in args:
        b.add_arg(a, "s" if isinstance(a, str) else "i" if isinstance(a, int) else "f")
    return b.build().dgram


def _bundles(messages: list[bytes]) -> list[bytes]:
    """Pack OSC messages, in order, into as few bundles of <= MAX_DATAGRAM bytes as fit."""
    head = b"#bundle\x00" + (1).to_bytes(8, "big")  # time tag 1: "immediately"
    out, cur = [], b""
    for m in messages:
        item = len(m).to_bytes(4, "big") + m
        if cur and len(head) + len(cur) + len(item) > MAX_DATAGRAM:
            out.append(head + cur)
            cur = b""
        cur += item
    if cur:
        out.append(head + cur)
    return out


def vmc_frame(names, positions: np.ndarray, rotations: np.ndarray,
              t_seconds: float) -> list[bytes]:
    """One VMC frame as UDP datagrams (OSC bundles).

    Args:
        names: the ``HumanBodyBones`` name of each row (``tracker.vmc.mapping.HUMANOID_BONES``).
        positions: ``(N, 3)`` metres and rotations ``(N, 4)`` ``x y z w``: Unity local bone
            poses (:func:`tracker.vmc.mapping.unity_bones`).
        t_seconds: the ``/VMC/Ext/T`` value.
    """
    msgs = [_message("/VMC/Ext/Root/Pos", "root", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)]
    for name, p, q in zip(names, positions.tolist(), rotations.tolist(), strict=True):
        msgs.append(_message("/VMC/Ext/Bone/Pos", name, *p, *q))
    msgs.append(_message("/VMC/Ext/OK", 1, 3, 0, 1))
    msgs.append(_message("/VMC/Ext/T", float(t_seconds)))
    return _bundles(msgs)
