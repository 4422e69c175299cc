"""Issue #14, finding 6 (CURVE): sessions bound to the client key that started them, a
per-key session quota, and a server that stops when its ZAP authenticator is gone.

One real ``tracker serve --curve-keys`` for the module; the ZAP test stops it, so it runs
last.
"""

import time

import msgpack
import pytest
import zmq.auth
from server_harness import ServerProc, last_status

from tracker.server.faults import FAULTS_ENV, good_message
from tracker.server.security import create_keys, set_curve_client


@pytest.fixture(scope="module")
def curve(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    keys = create_keys(d / "keys", ["alice", "mallory"])
    server_public, _ = zmq.auth.load_certificate(keys / "server.key")

    def client(name):
        return lambda s: set_curve_client(s, server_public, keys / "clients" /
                                          f"{name}.key_secret")

    s = ServerProc("--curve-keys", str(keys), "--max-sessions-per-client", "3",
                   env={FAULTS_ENV: "zap-stop=zap-trigger"})
    s.client = client
    yield s
    s.stop()


def frame(session, seq):
    return msgpack.packb(good_message(session, seq, time.monotonic_ns()))


def pose_seqs(sub, session, seconds, last):
    seqs = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and last not in seqs:
        if sub.poll(50):
            topic, data = sub.recv_multipart()
            if topic == f"pose/{session}".encode():
                seqs.append(msgpack.unpackb(data)["seq"])
    return seqs


def test_a_session_belongs_to_the_key_that_started_it(curve):
    alice, mallory = curve.client("alice"), curve.client("mallory")
    sub = curve.subscriber(b"pose/alice-1", curve=alice)
    a, m = curve.device(curve=alice), curve.device(curve=mallory)
    for q in range(1, 31):
        a.send(frame("alice-1", q))
        m.send(frame("alice-1", 1000 + q))  # ahead in seq and time: would win without keys
        time.sleep(1 / 90)
    seqs = pose_seqs(sub, "alice-1", 20, 30)
    assert seqs and seqs[-1] == 30 and all(q <= 30 for q in seqs)
    st = last_status(sub, 10, lambda s: s["rejected"]["session_taken"] >= 30)
    assert st["rejected"]["session_taken"] == 30
    assert st["sessions"]["alice-1"]["received"] == 30


def test_one_key_cannot_squat_the_session_slots(curve):
    alice, mallory = curve.client("alice"), curve.client("mallory")
    sub = curve.subscriber(b"pose/alice-2", curve=alice)
    a, m = curve.device(curve=alice), curve.device(curve=mallory)
    for k in range(10):
        m.send(frame(f"mallory-{k}", 1))
    time.sleep(0.3)
    a.send(frame("alice-2", 1))
    assert pose_seqs(sub, "alice-2", 20, 1) == [1]
    st = last_status(sub, 10, lambda s: s["rejected"]["client_quota"] >= 7)
    assert st["rejected"]["client_quota"] == 7
    assert sorted(k for k in st["sessions"] if k.startswith("mallory")) == [
        "mallory-0", "mallory-1", "mallory-2"]


def test_a_dead_zap_thread_stops_the_server(curve):
    """With its ZAP handler gone libzmq's CURVE would admit any key: the sockets fail closed
    (ZMQ_ZAP_ENFORCE_DOMAIN) and the watchdog stops the server with exit 1 and a reason."""
    a = curve.device(curve=curve.client("alice"))
    a.send(frame("zap-trigger", 1))  # alice's 3rd session; its tick ends the ZAP thread
    assert curve.proc.wait(30) == 1
    time.sleep(0.2)
    text = "".join(curve.lines)
    assert "error: CURVE authenticator (ZAP) thread stopped" in text
    assert "Traceback" not in text
