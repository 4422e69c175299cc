"""The output XPUB's subscription set, on real ZeroMQ sockets (tracker.server.subscriptions)."""

import time

import zmq

from tracker.server.subscriptions import Subscriptions


def _settle(subs, xpub, until, timeout=5.0):
    end = time.monotonic() + timeout
    new = []
    while time.monotonic() < end:
        xpub.poll(50)
        new += subs.read(xpub)
        if until(subs):
            return new
    raise AssertionError(f"subscriptions never settled: {subs.prefixes}")


def test_set_follows_subscribers_and_covers_topics():
    ctx = zmq.Context()
    xpub = ctx.socket(zmq.XPUB)
    xpub.setsockopt(zmq.XPUB_VERBOSE, 1)
    port = xpub.bind_to_random_port("tcp://127.0.0.1")
    socks = []
    try:
        subs = Subscriptions()
        assert subs.read(xpub) == [] and not subs.covers(b"frame/a")
        a, b = (ctx.socket(zmq.SUB) for _ in range(2))
        socks += [a, b]
        for s in (a, b):
            s.setsockopt(zmq.LINGER, 0)
            s.connect(f"tcp://127.0.0.1:{port}")
        a.subscribe(b"pose/")
        b.subscribe(b"pose/")  # a repeated prefix comes again (VERBOSE): a request each time
        b.subscribe(b"frame/me")
        new = _settle(subs, xpub, lambda s: s.prefixes == {b"pose/", b"frame/me"})
        assert sorted(new) == [b"frame/me", b"pose/", b"pose/"]
        assert subs.covers(b"pose/x") and subs.covers(b"frame/me2")
        assert not subs.covers(b"frame/you") and not subs.covers(b"skeleton/me")

        a.unsubscribe(b"pose/")  # b still holds it: no message, still covered
        time.sleep(0.2)
        assert subs.read(xpub) == [] and subs.covers(b"pose/x")
        b.close()  # the last holder of both prefixes goes away
        _settle(subs, xpub, lambda s: not s.prefixes)
        assert not subs.covers(b"pose/x") and not subs.covers(b"frame/me")

        a.subscribe(b"")  # everything
        _settle(subs, xpub, lambda s: s.prefixes == {b""})
        assert subs.covers(b"frame/you")
    finally:
        for s in socks:
            s.close(0)
        xpub.close(0)
        ctx.term()
