"""``tracker vmc``: poses from the tracker's PUB socket out as the VMC protocol.

Subscribes to ``pose/`` (ZeroMQ), turns one session's poses into Unity humanoid bones
(:mod:`tracker.vmc.mapping`) and sends each as one VMC frame (:mod:`tracker.vmc.osc`).
"""

from __future__ import annotations

import socket
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from tracker.vmc.mapping import HUMANOID_BONES, rest_from_pose, unity_bones
from tracker.vmc.osc import Target, vmc_frame


class BridgeError(ValueError):
    """A ``--connect`` address that ZeroMQ refuses (one line for the command line)."""


def check_pose(msg) -> str | None:
    """Why a decoded ``pose/<session>`` map cannot drive bones, or ``None`` when it can."""
    if not isinstance(msg, dict):
        return "not a map"
    for key, n in (("pose", 156), ("joints", 156), ("transl", 3)):
        v = msg.get(key)
        if not isinstance(v, list | tuple) or len(v) != n:
            return f"{key} is not {n} numbers"
        if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in v):
            return f"{key} holds something other than numbers"
        if not np.isfinite(np.asarray(v, dtype=np.float64)).all():
            return f"{key} holds NaN or infinity"
    return None


@dataclass
class SessionBones:
    """Per-session rest pose (recovered from the poses, cached by betas) -> bone transforms."""

    _betas: bytes | None = None
    _rest: np.ndarray | None = field(default=None, repr=False)

    def bones(self, msg: dict) -> tuple[np.ndarray, np.ndarray]:
        """Unity local ``positions (52, 3)``, ``rotations (52, 4)`` of one checked pose map."""
        key = np.asarray(msg.get("betas", ()), np.float32).tobytes()
        if self._rest is None or key != self._betas:
            self._rest = rest_from_pose(msg["pose"], msg["transl"], msg["joints"])
            self._betas = key
        return unity_bones(np.asarray(msg["pose"]), np.asarray(msg["joints"]), self._rest)


def run_bridge(connect: str, target: Target, session: str | None, stop, log=None) -> dict:
    """Subscribe to ``pose/`` at ``connect`` and send each pose of one session as VMC.

    ``session``: the one to follow, or ``None`` for the first one seen (logged). Returns when
    ``stop()`` is true: counts ``frames`` sent, ``skipped`` (poses that cannot drive bones),
    and ``session``.
    """
    import zmq

    from tracker.protocol import decode_pose

    log = log or (lambda line: print(f"tracker vmc: {line}", file=sys.stderr, flush=True))
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"pose/" + (session or "").encode())
    udp = socket.socket(target.family, socket.SOCK_DGRAM)
    try:
        try:
            sub.connect(connect)
        except zmq.ZMQError as exc:
            raise BridgeError(f"--connect {connect!r}: {exc}") from None
        log(f"poses from {connect} -> VMC to {target.text} "
            f"({'session ' + session if session else 'the first session seen'})")
        counts = {"frames": 0, "skipped": 0, "session": session}
        state = SessionBones()
        start = time.monotonic()
        hinted = False
        while not stop():
            if not sub.poll(100):
                if not hinted and counts["frames"] == 0 and time.monotonic() - start > 5.0:
                    hinted = True
                    log(f"no pose yet from {connect}: is tracker serve running there, and a "
                        "device (tracker simulate, tracker openxr) sending to it?")
                continue
            parts = sub.recv_multipart()
            topic, payload = parts[0], parts[-1]
            name = topic[len(b"pose/"):].decode("utf-8", "replace")
            if session is None:
                session = counts["session"] = name
                log(f"following session {name!r} (the first seen; --session picks another)")
            if name != session:
                continue
            try:
                msg = decode_pose(payload)
            except Exception:  # msgpack raises several unrelated types
                msg = None
            why = check_pose(msg)
            if why is not None:
                counts["skipped"] += 1
                if counts["skipped"] == 1:
                    log(f"skipping a pose of {session!r} that cannot drive bones: {why}")
                continue
            pos, rot = state.bones(msg)
            try:
                for datagram in vmc_frame(HUMANOID_BONES, pos, rot,
                                          time.monotonic() - start):
                    udp.sendto(datagram, target.sockaddr)
            except OSError as exc:  # no route to the receiver (yet): keep trying, say it once
                counts["send_errors"] = counts.get("send_errors", 0) + 1
                if counts["send_errors"] == 1:
                    log(f"cannot send to {target.text}: {exc.strerror or exc} (still trying)")
                continue
            counts["frames"] += 1
            if counts["frames"] == 1:
                log(f"first frame sent to {target.text}")
        return counts
    finally:
        udp.close()
        sub.close()
        ctx.term()
