"""Reading ingest messages off the server's SUB socket, with whole-message limits.

ZeroMQ's ``ZMQ_MAXMSGSIZE`` (64 KiB) applies to each *frame*: a multipart message of 200
frames of 60 KiB passes it and reaches the socket whole (ZeroMQ delivers a multipart message
atomically, all frames or none). :func:`read_message` reads one message frame by frame
without copying (``copy=False``), adds up frames and bytes, and drops the whole message when
it holds more than :data:`~tracker.protocol.MAX_MESSAGE_PARTS` frames or more than
:data:`~tracker.protocol.MAX_MESSAGE_BYTES` in all (the caller counts it as ``oversize``):
frames are released as they are read, only the last one (the payload) is ever copied.

Memory: what ZeroMQ holds for the server is bounded by the receive high-water mark,
:data:`RCVHWM` messages *per connected peer*. A SUB loses nothing at its high-water mark: it
stops reading that peer's connection until the reader catches up, and the peer's PUB drops
at its own send high-water mark (measured: a SUB with a mark of 4 that read nothing for 1 s
still received all of 20,000 messages sent meanwhile), so a small mark costs a well-behaved
device nothing. A flooding peer holds at most ``RCVHWM`` messages; only while the reader
is stalled can those be oversize multipart messages (12 MB each for 200 x 60 KiB), so the
reader drops them frame by frame without parsing (``tests/test_ingest_limits.py``
measures the server's peak memory under such a flood).
"""

from __future__ import annotations

import zmq

from tracker.protocol import MAX_MESSAGE_BYTES, MAX_MESSAGE_PARTS

RCVHWM = 16
"""Ingest receive high-water mark, messages per connected peer (ZeroMQ's default: 1000)."""


def configure(sock: zmq.Socket) -> None:
    """Ingest socket options (before bind): per-frame size limit, high-water mark, linger."""
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
    sock.setsockopt(zmq.RCVHWM, RCVHWM)
    sock.setsockopt(zmq.LINGER, 0)


def read_message(sock: zmq.Socket, user_id: bool = False) -> tuple[bytes | None, str | None]:
    """One ingest message: ``(payload, owner)``; ``payload`` is the last frame, or ``None``
    when the message is over the limits (then every frame was read and dropped); ``owner``
    the message's ``User-Id`` property (CURVE: the client key, z85) when ``user_id``.
    Raises ``zmq.Again`` when no message is waiting."""
    part = sock.recv(zmq.NOBLOCK, copy=False)
    parts, size = 1, len(part)
    while part.more:  # the rest of the message is already here (atomic delivery)
        part = sock.recv(copy=False)
        parts += 1
        size += len(part)
    if parts > MAX_MESSAGE_PARTS or size > MAX_MESSAGE_BYTES:
        return None, None
    owner = part.get("User-Id") if user_id else None
    return part.bytes, owner
