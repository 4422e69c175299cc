"""Bad ingest messages of every rejection kind (tests, ``tools/load_test.py``, client authors),
and the server's fault-injection switch (tests of its fault isolation).

:func:`bad_payload` builds one message that the server must reject with a given reason.
``stale_seq`` needs a live session, a seq it has passed and a device time ``t`` no later than
its last frame's and less than 1 s before it (otherwise it reads as a restarted device,
``tracker.server.sessions``); ``session_limit`` a fresh session id while the server is at its
cap; ``oversize`` is larger than 64 KiB, so ZeroMQ drops it (and the sender's connection)
before the parser (:func:`multipart_flood` builds the other kind of oversize: many frames
that are each small enough). ``session_taken`` and ``client_quota`` need CURVE
(:data:`CURVE_REASONS`).

:class:`FaultInjection` (environment variable ``TRACKER_SERVE_FAULTS``, read by ``tracker
serve``; for tests only) makes a running server fail on purpose, triggered by a frame whose
payload holds the text ``ID`` (a session id): ``tick=ID`` raises in every tick that fits
session ``ID``; ``receive=ID`` raises while the reader handles such a frame (that message
is lost); ``ingest-stop=ID`` raises out of the worker reading such a frame (the server
stops: exit 1); ``zap-stop=ID`` ends the CURVE
authenticator thread when a tick fits session ``ID``. Items are separated by commas.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import msgpack

from tracker.protocol import MAX_MESSAGE_BYTES, REJECT_REASONS

CURVE_REASONS = ("session_taken", "client_quota")
SERVER_REASONS = ("stale_seq", "session_limit", "oversize", *CURVE_REASONS)
PARSER_REASONS = tuple(r for r in REJECT_REASONS if r not in SERVER_REASONS)
FAULTS_ENV = "TRACKER_SERVE_FAULTS"


def good_message(session: str = "s", seq: int = 1, t: int = 0) -> dict:
    """A valid frame as a map (both hands with tips)."""
    hand = {"wrist": [0.2, 1.2, 0.3, 0.0, 0.0, 0.0, 1.0], "tips": [0.25, 1.2, 0.4] * 5,
            "tracked": True}
    return {"v": 1, "session": session, "seq": seq, "t": t,
            "head": [0.0, 1.6, 0.0, 0.0, 0.0, 0.0, 1.0], "left": hand,
            "right": dict(hand, wrist=[-0.2, 1.2, 0.3, 0.0, 0.0, 0.0, 1.0])}


def _variants(reason: str, session: str, seq: int, t: int = 0):
    g = good_message(session, seq, t)
    pack = msgpack.packb
    if reason == "malformed":
        return [b"\xc1", b"", b"\x93\x01\x02\x03", pack([1, 2]), pack("frame"),
                pack(g) + b"\x00", pack(g)[:-3]]
    if reason == "version":
        return [pack({**g, "v": 2}), pack({k: v for k, v in g.items() if k != "v"}),
                pack({**g, "v": "1"}), pack({**g, "v": 1.0}), pack({**g, "v": True})]
    if reason == "missing_key":
        return [pack({k: v for k, v in g.items() if k != key}) for key in
                ("session", "seq", "t", "head")] + [pack({**g, "left": {"tracked": True}})]
    if reason == "bad_type":
        return [pack({**g, "session": 7}), pack({**g, "seq": 1.5}), pack({**g, "t": "now"}),
                pack({**g, "head": [0.0] * 6}), pack({**g, "head": "up"}),
                pack({**g, "left": 5}), pack({**g, "right": {**g["right"], "tracked": "yes"}}),
                pack({**g, "left": {**g["left"], "tips": [0.0] * 14}}),
                pack({**g, "head": [0, 1.6, 0, 0, 0, 0, True]})]
    if reason == "bad_session":
        return [pack({**g, "session": s}) for s in ("", "a" * 65, "bad id", "ü", "a/b", "x\n")]
    if reason == "non_finite":
        return [pack({**g, "head": [math.nan, 1.6, 0, 0, 0, 0, 1]}),
                pack({**g, "left": {**g["left"], "tips": [math.inf] + [0.0] * 14}}),
                pack({**g, "right": {**g["right"], "wrist": [0, 1, 0, 0, 0, 0, -math.inf]}})]
    if reason == "bad_quaternion":
        return [pack({**g, "head": [0, 1.6, 0, 0, 0, 0, 0]}),
                pack({**g, "head": [0, 1.6, 0, 0, 0, 0, 3.0]}),
                pack({**g, "left": {**g["left"], "wrist": [0, 1, 0, .1, .1, .1, .1]}})]
    if reason == "out_of_range":
        return [pack({**g, "head": [101.0, 1.6, 0, 0, 0, 0, 1]}),
                pack({**g, "right": {**g["right"], "tips": [0.0] * 14 + [-1e3]}}),
                pack({**g, "left": {**g["left"], "wrist": [0, -250, 0, 0, 0, 0, 1]}})]
    if reason == "oversize":
        return [pack({**g, "pad": b"x" * (MAX_MESSAGE_BYTES + 1)})]
    if reason == "stale_seq":
        return [pack(g)]
    if reason == "session_limit":
        return [pack(g)]
    raise ValueError(reason)


def bad_payload(reason: str, rng: random.Random | None = None, session: str = "bad-target",
                seq: int = 1, t: int = 0) -> bytes:
    """One payload rejected with ``reason`` (for ``stale_seq``: a frame of ``session`` with
    ``seq`` and device time ``t``, to send after a higher seq and a later ``t`` less than 1 s
    ahead; for ``session_limit``: a valid frame of ``session``, a new id sent while the server
    is full)."""
    rng = rng or random.Random(0)
    return rng.choice(_variants(reason, session, seq, t))


def multipart_flood(parts: int = 200, part_bytes: int = 60 * 1024) -> list[bytes]:
    """A multipart message whose frames are each under ZeroMQ's per-frame 64 KiB limit but
    whose whole is far over the server's (``parts * part_bytes``); rejected ``oversize``."""
    return [bytes([k % 251]) * part_bytes for k in range(parts)]


@dataclass(frozen=True)
class FaultInjection:
    """Faults a test asks a live server to commit (see the module docstring)."""

    tick: str | None = None
    receive: str | None = None
    ingest_stop: str | None = None
    zap_stop: str | None = None

    @classmethod
    def parse(cls, text: str | None) -> FaultInjection:
        """From ``TRACKER_SERVE_FAULTS`` (``key=value`` items separated by commas)."""
        kw: dict = {}
        for item in (text or "").split(","):
            if not item.strip():
                continue
            key, _, value = item.strip().partition("=")
            field = key.replace("-", "_")
            if field not in ("tick", "receive", "ingest_stop", "zap_stop") or not value:
                raise ValueError(f"{FAULTS_ENV}: unknown item {item!r} "
                                 "(tick=ID, receive=ID, ingest-stop=ID, zap-stop=ID)")
            kw[field] = value
        return cls(**kw)


class InjectedFault(RuntimeError):
    """Raised by a server on purpose (:class:`FaultInjection`)."""
