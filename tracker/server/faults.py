"""Bad ingest messages of every rejection kind (tests, ``tools/load_test.py``, client authors).

:func:`bad_payload` builds one message that the server must reject with a given reason.
``stale_seq`` needs a live session and a seq it has passed; ``session_limit`` a fresh session
id while the server is at its cap; ``oversize`` is larger than 64 KiB, so ZeroMQ drops it
(and the sender's connection) before the parser.
"""

from __future__ import annotations

import math
import random

import msgpack

from tracker.protocol import MAX_MESSAGE_BYTES, REJECT_REASONS

PARSER_REASONS = tuple(r for r in REJECT_REASONS
                       if r not in ("stale_seq", "session_limit", "oversize"))


def good_message(session: str = "s", seq: int = 1, t: int = 0) -> dict:
    """A valid frame as a map (both hands with tips)."""
    hand = {"wrist": [0.2, 1.2, 0.3, 0.0, 0.0, 0.0, 1.0], "tips": [0.25, 1.2, 0.4] * 5,
            "tracked": True}
    return {"v": 1, "session": session, "seq": seq, "t": t,
            "head": [0.0, 1.6, 0.0, 0.0, 0.0, 0.0, 1.0], "left": hand,
            "right": dict(hand, wrist=[-0.2, 1.2, 0.3, 0.0, 0.0, 0.0, 1.0])}


def _variants(reason: str, session: str, seq: int):
    g = good_message(session, seq)
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
                seq: int = 1) -> bytes:
    """One payload rejected with ``reason`` (for ``stale_seq``: a frame of ``session`` with
    ``seq``, to send after a higher seq; for ``session_limit``: a valid frame of ``session``,
    a new id sent while the server is full)."""
    rng = rng or random.Random(0)
    return rng.choice(_variants(reason, session, seq))
