"""Wire protocol v1 (``docs/protocol.md``): MessagePack frames in, poses out.

One module for every side of the wire: the server validates with :func:`parse_frame`,
simulators and the OpenXR source build payloads with :func:`encode_frame`, subscribers read
poses with :func:`decode_pose`. Validation never touches session state: a rejected message
raises :class:`Rejected` with one of :data:`REJECT_REASONS`, which the server counts.

Output topics (server XPUB, sending like a PUB; two frames ``[topic, payload]``):

* ``pose/<session>``: one fitted pose (:data:`POSE_KEYS`), numbers as float32/int;
* ``status``: about once a second (see ``tracker.server.core``);
* ``skeleton/<session>``: the session's skeleton (:data:`SKELETON_KEYS`, built by
  ``tracker.server.skeleton``): when the session starts or its profile changes, and again
  whenever a subscription that covers it arrives (subscribing is the request);
* ``frame/<session>``: an extension of the contract: the frame that the next ``pose/<session>``
  answers, as validated and re-encoded (``tracker.server.publish.echo_payload``: the frame
  keys, plus a simulator's checked ``gt``; nothing else of the ingest payload), so viewers draw
  the headset and hands from it. Subscribers that filter on ``pose/`` never receive it
  (ZeroMQ filters on the publisher side).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import msgpack
import numpy as np

VERSION = 1
DEFAULT_INGEST = "tcp://127.0.0.1:5555"
DEFAULT_PUBLISH = "tcp://127.0.0.1:5556"
MAX_MESSAGE_BYTES = 64 * 1024  # a whole ingest message, all its frames together
MAX_MESSAGE_PARTS = 4  # frames of one ingest message (the payload is the last)
POSE_TOPIC_PREFIX = b"pose/"
FRAME_TOPIC_PREFIX = b"frame/"
SKELETON_TOPIC_PREFIX = b"skeleton/"
STATUS_TOPIC = b"status"
POSE_KEYS = ("v", "session", "seq", "t", "t_recv", "t_pub", "transl", "pose", "betas", "joints",
             "visible", "residual", "state")
SKELETON_KEYS = ("v", "session", "joints", "parents", "rest", "betas", "units", "frame",
                 "pose_layout")
MAX_ABS_POSITION_M = 100.0
MAX_FLOAT_INTEGER = 2**53  # seq / t sent as float64: integral and within ±2**53 (exact)
QUAT_NORM_RANGE = (0.5, 2.0)
SESSION_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")  # \Z: "$" would accept a final "\n"

REJECT_REASONS = (
    "malformed",        # not MessagePack, or not a map
    "version",          # v missing or not 1
    "missing_key",      # session, seq, t or head absent
    "bad_type",         # wrong type or array length (seq/t: a float not integral or > 2**53)
    "bad_session",      # session id not 1-64 chars of [A-Za-z0-9._-]
    "non_finite",       # NaN or infinity anywhere
    "bad_quaternion",   # quaternion norm outside [0.5, 2]
    "out_of_range",     # a position beyond ±100 m
    "stale_seq",        # seq not increasing, device time not ahead: a late duplicate (server)
    "oversize",         # over 64 KiB in all or over MAX_MESSAGE_PARTS frames (never parsed)
    "session_limit",    # a new session while the live-session cap is reached (server-side)
    "session_taken",    # CURVE: the session belongs to another client key (server-side)
    "client_quota",     # CURVE: a new session beyond the client key's quota (server-side)
)


class Rejected(ValueError):
    """A message that fails validation; ``reason`` is one of :data:`REJECT_REASONS`."""

    def __init__(self, reason: str, detail: str, session: str | None = None):
        assert reason in REJECT_REASONS
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.session = session  # the message's session id when it was valid, else None


@dataclass(frozen=True)
class HandObservation:
    """One hand: ``wrist`` (7,) pose, ``tips`` (5, 3) or ``None``, ``tracked`` flag."""

    wrist: np.ndarray
    tips: np.ndarray | None
    tracked: bool


@dataclass(frozen=True)
class Frame:
    """A validated device frame; poses are ``px py pz qx qy qz qw`` (quaternion normalised)."""

    session: str
    seq: int
    t: int
    head: np.ndarray
    left: HandObservation | None
    right: HandObservation | None


_PLAIN_NUMBERS = frozenset((int, float))


def _floats(msg: dict, key: str, n: int, where: str) -> list[float]:
    # Plain Python throughout (one array is made per pose, at the end): a frame has a few
    # short arrays, where NumPy's per-call overhead would be most of the parse (and the parse
    # is on every frame's way to its pose).
    v = msg.get(key)
    if not isinstance(v, list | tuple) or len(v) != n:
        raise Rejected("bad_type", f"{where}{key} must be an array of {n} numbers")
    if not _PLAIN_NUMBERS.issuperset(map(type, v)) and not all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in v):
        raise Rejected("bad_type", f"{where}{key} must hold numbers only")
    a = list(map(float, v))
    if not math.isfinite(sum(a)) and not all(map(math.isfinite, a)):  # sum: inf/NaN, or huge
        raise Rejected("non_finite", f"{where}{key} holds NaN or infinity")
    return a


def _pose(msg: dict, key: str, where: str = "") -> np.ndarray:
    x, y, z, qx, qy, qz, qw = _floats(msg, key, 7, where)
    if max(abs(x), abs(y), abs(z)) > MAX_ABS_POSITION_M:
        raise Rejected("out_of_range", f"{where}{key} position beyond ±{MAX_ABS_POSITION_M:g} m")
    # the sequential sum of squares: what np.linalg.norm computes for 4 numbers, bit for bit
    n = math.sqrt(qx * qx + qy * qy + qz * qz + qw * qw)
    if not QUAT_NORM_RANGE[0] <= n <= QUAT_NORM_RANGE[1]:
        raise Rejected("bad_quaternion", f"{where}{key} quaternion norm {n:.3g} outside [0.5, 2]")
    return np.array((x, y, z, qx / n, qy / n, qz / n, qw / n))


def _hand(msg: dict, side: str) -> HandObservation | None:
    h = msg.get(side)
    if h is None:
        return None
    if not isinstance(h, dict):
        raise Rejected("bad_type", f"{side} must be a map or nil")
    tracked = h.get("tracked", True)
    if not isinstance(tracked, bool):
        raise Rejected("bad_type", f"{side}.tracked must be a bool")
    if "wrist" not in h:
        raise Rejected("missing_key", f"{side}.wrist")
    wrist = _pose(h, "wrist", f"{side}.")
    tips = None
    if h.get("tips") is not None:
        tips = _floats(h, "tips", 15, f"{side}.")
        if max(map(abs, tips)) > MAX_ABS_POSITION_M:
            raise Rejected("out_of_range", f"{side}.tips beyond ±{MAX_ABS_POSITION_M:g} m")
        tips = np.array(tips).reshape(5, 3)
    return HandObservation(wrist, tips, tracked)


def _integer(msg: dict, key: str) -> int:
    """``seq`` / ``t``: a MessagePack integer, or an integral float within ±2**53.

    Several encoders write integers as float64 (msgpackr's default ``pack()`` writes every
    integer beyond 32 bits so, and so do encoders of languages whose numbers are doubles); a
    float64 holds every integer up to 2**53 exactly, so those are taken as the integer they
    hold. Non-integral floats and floats beyond 2**53 (which no longer hold every integer) are
    rejected (``bad_type``), NaN and infinity too (``non_finite``); booleans and everything
    else as before (``bad_type``).
    """
    v = msg[key]
    if type(v) is int:
        return v
    if type(v) is float:
        if not math.isfinite(v):
            raise Rejected("non_finite", f"{key} is NaN or infinity")
        if v.is_integer() and abs(v) <= MAX_FLOAT_INTEGER:
            return int(v)
        raise Rejected("bad_type", f"{key} must be an integer (a float is accepted only when "
                                   f"integral and within ±2**53), got {v!r}")
    raise Rejected("bad_type", f"{key} must be an integer")


def parse_frame(payload: bytes) -> Frame:
    """Decode and validate one ingest payload (raises :class:`Rejected`).

    Checks run in a fixed order (size, MessagePack, ``v``, required keys, session id, types,
    finiteness, quaternion norms, ranges); the first failure names the reason. Once the
    session id is known to be valid it is attached to the :class:`Rejected` for per-session
    counts.
    """
    if len(payload) > MAX_MESSAGE_BYTES:
        raise Rejected("oversize", f"{len(payload)} bytes > {MAX_MESSAGE_BYTES}")
    try:
        msg = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise Rejected("malformed", f"not MessagePack ({type(exc).__name__})") from None
    if not isinstance(msg, dict):
        raise Rejected("malformed", "payload is not a map")
    v = msg.get("v")
    if type(v) is not int or v != VERSION:
        raise Rejected("version", f"v must be {VERSION}, got {v!r}")
    for key in ("session", "seq", "t", "head"):
        if key not in msg:
            raise Rejected("missing_key", key)
    session = msg["session"]
    if not isinstance(session, str):
        raise Rejected("bad_type", "session must be a string")
    if not SESSION_RE.fullmatch(session):
        raise Rejected("bad_session", "session must be 1-64 chars of [A-Za-z0-9._-]")
    try:
        seq, t = _integer(msg, "seq"), _integer(msg, "t")
        return Frame(session, seq, t, _pose(msg, "head"), _hand(msg, "left"), _hand(msg, "right"))
    except Rejected as exc:
        exc.session = session
        raise


def ingest_payload(parts: list[bytes]) -> bytes:
    """The payload of a (possibly multipart) ingest message: its last frame."""
    return parts[-1]


def pose_topic(session: str) -> bytes:
    """``pose/<session>`` as bytes (the first frame of a pose message)."""
    return POSE_TOPIC_PREFIX + session.encode()


def skeleton_topic(session: str) -> bytes:
    """``skeleton/<session>`` as bytes (the session's joint names, tree and rest joints)."""
    return SKELETON_TOPIC_PREFIX + session.encode()


def frame_topic(session: str) -> bytes:
    """``frame/<session>`` as bytes (the echo of the fitted ingest payload)."""
    return FRAME_TOPIC_PREFIX + session.encode()


def _float_list(v, n: int) -> list[float]:
    """``n`` numbers as a list of Python floats (one conversion, no per-element calls)."""
    return np.asarray(v, dtype=np.float64).reshape(n).tolist()


def _hand_dict(wrist, tips, tracked: bool) -> dict:
    d = {"wrist": _float_list(wrist, 7), "tracked": bool(tracked)}
    if tips is not None:
        d["tips"] = _float_list(tips, 15)
    return d


def encode_frame(
    session: str, seq: int, t_ns: int, head, left=None, right=None,
    left_tips=None, right_tips=None, left_tracked: bool = True, right_tracked: bool = True,
    extra: dict | None = None, single_float: bool = False,
) -> bytes:
    """Build an ingest payload. Poses ``(7,)``; tips ``(5, 3)`` or ``None``; a hand whose
    wrist is ``None`` is sent as nil (not tracked). ``extra`` keys are added as they are
    (the server ignores unknown keys; the simulator puts its ground truth under ``gt``).
    ``single_float`` packs numbers as float32 (as most headset runtimes produce them)."""
    msg = {"v": VERSION, "session": session, "seq": int(seq), "t": int(t_ns),
           "head": _float_list(head, 7)}
    msg["left"] = None if left is None else _hand_dict(left, left_tips, left_tracked)
    msg["right"] = None if right is None else _hand_dict(right, right_tips, right_tracked)
    if extra:
        msg.update(extra)
    return msgpack.packb(msg, use_single_float=single_float)


def ground_truth(payload: bytes) -> dict | None:
    """The simulator's ``gt`` map of an ingest payload (``transl`` 3, ``pose`` 156, ``betas``,
    stage frame of the device), or ``None`` for real devices and unreadable payloads."""
    if b"gt" not in payload:  # however the key is encoded, its bytes are there
        return None
    try:
        gt = msgpack.unpackb(payload, raw=False).get("gt")
    except Exception:
        return None
    if not isinstance(gt, dict) or len(gt.get("pose", ())) != 156 or len(gt.get("transl", ())) != 3:
        return None
    return gt


def stack_frames(frames: list[Frame], missing_tip: float = 0.0):
    """Validated frames as NumPy arrays, batch ``B = len(frames)``, device stage frame.

    Returns:
        ``head (B, 7)`` and ``wrists (B, 2, 7)`` as ``px py pz qx qy qz qw`` (an absent hand:
        identity at the origin), ``tips (B, 2, 5, 3)`` (``missing_tip`` where absent),
        ``tracked (B, 2)`` and ``tips_valid (B, 2)`` bool (rows left, right).
    """
    B = len(frames)
    head = np.stack([f.head for f in frames])
    wrists = np.zeros((B, 2, 7))
    wrists[..., 6] = 1.0
    tips = np.full((B, 2, 5, 3), missing_tip)
    tracked = np.zeros((B, 2), bool)
    tips_valid = np.zeros((B, 2), bool)
    for i, f in enumerate(frames):
        for s, h in enumerate((f.left, f.right)):
            if h is None:
                continue
            wrists[i, s] = h.wrist
            tracked[i, s] = h.tracked
            if h.tips is not None:
                tips[i, s] = h.tips
                tips_valid[i, s] = True
    return head, wrists, tips, tracked, tips_valid


def encode_pose(msg: dict) -> bytes:
    """Pack a pose/status map; floats as float32 (the fitter computes in float32, so this is
    exact and halves the size), integers as integers."""
    return msgpack.packb(msg, use_single_float=True)


def decode_pose(payload: bytes) -> dict:
    """Unpack a ``pose/<session>`` or ``status`` payload."""
    return msgpack.unpackb(payload, raw=False)


def is_finite_pose(msg: dict) -> bool:
    """True when every number of a pose message is finite (the server never sends others)."""
    for key in ("transl", "pose", "joints", "betas"):
        if not all(math.isfinite(x) for x in msg.get(key, ())):
            return False
    return math.isfinite(msg.get("residual", 0.0))
