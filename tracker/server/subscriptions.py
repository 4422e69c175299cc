"""What the subscribers of the output XPUB hold: read from its subscription messages.

The output socket is an XPUB with ``ZMQ_XPUB_VERBOSE``: it hands the server every
subscription message (``b"\\x01" + prefix``), repeated ones included, and an unsubscription
(``b"\\x00" + prefix``) only when the *last* subscriber holding that prefix drops it or
disconnects (libzmq's ``ZMQ_XPUB_VERBOSE`` / ``ZMQ_XPUB_VERBOSER`` options, `zmq_setsockopt(3)
<https://libzmq.readthedocs.io/en/latest/zmq_setsockopt.html>`_; checked by
``tests/test_subscriptions.py``). So a set updated in message order is exactly the prefixes
someone holds now, and the server can leave out work for topics nobody receives (the
``frame/<session>`` echo: re-encoding it costs about as much as packing the pose, and a
PUB-side filter would drop it anyway). Each subscription is also a request: a new one that
covers ``skeleton/<session>`` is answered with the current skeleton
(``tracker.server.skeleton``).
"""

from __future__ import annotations

import zmq

MAX_SUBSCRIPTIONS_PER_CALL = 256
"""Subscription messages read per :meth:`Subscriptions.read` call (bounds a tick's work)."""


def covered(prefixes, topic: bytes) -> bool:
    """Whether a subscription to any of ``prefixes`` receives ``topic`` (ZeroMQ filters by
    prefix)."""
    return any(topic.startswith(p) for p in prefixes)


class Subscriptions:
    """The topic prefixes held on one XPUB socket (read by the thread that owns it)."""

    def __init__(self) -> None:
        self.prefixes: set[bytes] = set()

    def read(self, sock: zmq.Socket, limit: int = MAX_SUBSCRIPTIONS_PER_CALL) -> list[bytes]:
        """Apply the subscription messages waiting on ``sock`` (never blocks); returns the
        prefixes subscribed by them, in order (the requests)."""
        new = []
        for _ in range(limit):
            if not sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                break
            msg = sock.recv(zmq.NOBLOCK)
            kind, prefix = msg[:1], bytes(msg[1:])
            if kind == b"\x01":
                new.append(prefix)
                self.prefixes.add(prefix)
            elif kind == b"\x00":
                self.prefixes.discard(prefix)
        return new

    def covers(self, topic: bytes) -> bool:
        """Whether some subscriber receives ``topic`` now (one of its prefixes starts it)."""
        return covered(self.prefixes, topic)
