"""A real ``tracker serve`` process on loopback, driven with pyzmq + msgpack clients.

One server serves the whole module (start-up loads torch and the fitter); tests use their
own session ids. The session-cap test fills the cap, so it runs after the others, and the
SIGTERM test stops the server, so it runs last.
"""

import itertools
import os
import random
import signal
import time

import msgpack
import numpy as np
import pytest
from server_harness import ServerProc, collect, last_status

from tracker.protocol import POSE_KEYS, REJECT_REASONS
from tracker.recording import read_recording
from tracker.server.faults import PARSER_REASONS, bad_payload, good_message

MAX_SESSIONS = 8


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    rec = tmp_path_factory.mktemp("rec") / "live.mcap"
    s = ServerProc("--record", str(rec), "--max-sessions", str(MAX_SESSIONS))
    s.recording = rec
    yield s
    s.stop()


def frame(session, seq):
    return msgpack.packb(good_message(session, seq, time.monotonic_ns()))


def send(dev, session, seqs, rate=None):
    for q in seqs:
        dev.send(frame(session, q))
        if rate:
            time.sleep(1.0 / rate)


def poses_of(msgs, session):
    return [m for t, m in msgs if t == f"pose/{session}".encode()]


def test_poses_follow_the_contract(server):
    sub = server.subscriber(b"pose/contract", b"frame/contract")
    dev = server.device()
    sent = {}
    for q in range(1, 11):
        sent[q] = frame("contract", q)
        dev.send(sent[q])
        time.sleep(0.05)
    msgs = collect(sub, 20, until=lambda m: len(poses_of(m, "contract")) >= 3)
    poses = poses_of(msgs, "contract")
    assert len(poses) >= 3
    for p in poses:
        assert set(p) == set(POSE_KEYS)
        assert p["v"] == 1 and p["session"] == "contract" and p["seq"] in sent
        assert len(p["transl"]) == 3 and len(p["pose"]) == 156 and len(p["joints"]) == 156
        assert len(p["betas"]) == 16 and len(p["visible"]) == 2
        assert all(isinstance(v, bool) for v in p["visible"])
        assert p["t_recv"] <= p["t_pub"] and p["state"] in ("ok", "reset")
        assert np.isfinite(p["pose"] + p["joints"] + p["transl"] + [p["residual"]]).all()
        assert p["t"] == msgpack.unpackb(sent[p["seq"]])["t"]
    assert poses[0]["state"] == "reset" and poses[1]["state"] == "ok"
    echoes = [m for t, m in msgs if t == b"frame/contract"]
    assert echoes and echoes[0]["seq"] == poses[0]["seq"]  # the ingest payload, echoed


def test_frame_echo_follows_subscriptions(server):
    """Echoes are built only while a subscription covers them: one that comes while poses
    already flow (to a pose-only subscriber) gets them at once, each right before its pose,
    and again after every earlier echo subscriber has gone."""
    poses_only = server.subscriber(b"pose/echoes")
    dev = server.device()
    seq = iter(range(1, 10_000))

    def stream_until(sub, done):
        msgs = []
        for _ in range(200):
            send(dev, "echoes", [next(seq)])
            msgs += collect(sub, 0.05)
            if done(msgs):
                return msgs
        raise AssertionError(f"not seen in 200 frames: {[t for t, _ in msgs][:10]}")

    stream_until(poses_only, lambda m: len(poses_of(m, "echoes")) >= 3)
    for _ in range(2):  # the second round: after the first echo subscriber closed
        viewer = server.subscriber(b"frame/echoes", b"pose/echoes")
        msgs = stream_until(viewer, lambda m: sum(t == b"frame/echoes" for t, _ in m) >= 3)
        viewer.close(0)
        pairs = [(a, b) for a, b in itertools.pairwise(msgs) if a[0] == b"frame/echoes"]
        assert pairs and all(b[0] == b"pose/echoes" and a[1]["seq"] == b[1]["seq"]
                             for a, b in pairs)
        time.sleep(0.3)  # the server reads the unsubscription
    assert not any(t.startswith(b"frame/") for t, _ in collect(poses_only, 0.2))


def test_latest_frame_wins_and_dropped_counted(server):
    sub = server.subscriber(b"pose/burst")
    dev = server.device()
    send(dev, "burst", range(1, 61))  # far faster than a fit
    st = last_status(sub, 30, where=lambda s: s["sessions"].get("burst", {}).get(
        "last_fitted_seq") == 60)["sessions"]["burst"]
    assert st["received"] == 60
    assert st["fitted"] + st["dropped"] == 60 and st["fitted"] < 60
    seqs = [m["seq"] for m in poses_of(collect(sub, 0.5), "burst")]
    assert seqs == sorted(seqs)


def test_reset_after_a_gap(server):
    sub = server.subscriber(b"pose/gap")
    dev = server.device()
    send(dev, "gap", range(1, 4), rate=10)
    first = poses_of(collect(sub, 20, until=lambda m: any(
        p["seq"] == 3 for p in poses_of(m, "gap"))), "gap")
    assert first[0]["state"] == "reset" and first[-1]["seq"] == 3
    time.sleep(1.3)
    send(dev, "gap", [4])
    after = poses_of(collect(sub, 20, until=lambda m: poses_of(m, "gap")), "gap")
    assert after[0]["seq"] == 4 and after[0]["state"] == "reset"


def test_status_topic(server):
    sub = server.subscriber()
    st = last_status(sub)
    for key in ("sessions", "rejected", "engine", "model", "fit_ms", "latency_ms", "dropped",
                "live_sessions", "received", "fitted", "connections"):
        assert key in st
    assert set(st["rejected"]) == set(REJECT_REASONS)
    assert st["engine"] == "eager" and st["model"]["body_fingerprint"]
    s = st["sessions"]["contract"]
    for key in ("rate_hz", "last_seq", "dropped", "rejected", "latency_ms"):
        assert key in s
    assert s["latency_ms"]["p99"] >= s["latency_ms"]["p50"] > 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (Linux ``/proc``)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_status_keeps_its_period_idle_and_while_fitting_without_spinning(server):
    """The two workers take turns at reading and ticking (``tracker.server.loop``): the
    status (every 0.25 s here) still comes while nothing arrives and while frames are fitted,
    every frame is answered, and an idle server sleeps (no polling loop eating a core)."""
    sub = server.subscriber(b"pose/turns")
    collect(sub, 0.3)  # what was queued before
    cpu0, t0 = cpu_seconds(server.proc.pid), time.monotonic()
    idle = collect(sub, 2.0)
    idle_cpu = (cpu_seconds(server.proc.pid) - cpu0) / (time.monotonic() - t0)
    assert sum(t == b"status" for t, _ in idle) >= 6
    assert idle_cpu < 0.25, f"an idle server used {idle_cpu:.0%} of a core"
    dev = server.device()
    got = []
    t_end = time.monotonic() + 2.0
    seq = 0
    while time.monotonic() < t_end:
        seq += 1
        dev.send(frame("turns", seq))
        got += collect(sub, 1.0 / 60)
    got += collect(sub, 2.0, until=lambda m: any(
        t == b"pose/turns" and x["seq"] == seq for t, x in m))
    dev.close()
    statuses = [m for t, m in got if t == b"status"]
    assert len(statuses) >= 6
    seqs = {m["seq"] for m in poses_of(got, "turns")}
    assert seq in seqs and len(seqs) >= 0.9 * seq  # latest wins: a few may be superseded


def test_malformed_input_counted_exactly_while_a_session_continues(server):
    sub = server.subscriber(b"pose/valid")
    dev, bad = server.device(), server.device()
    time.sleep(0.7)  # let earlier tests' closed clients age out of the oversize window
    before = last_status(sub)
    rng = random.Random(1)
    sent = dict.fromkeys(REJECT_REASONS, 0)
    send(dev, "valid", range(1000, 1003), rate=30)
    q = 1003
    kinds = [r for r in PARSER_REASONS for _ in range(15)] + ["stale_seq"] * 15
    rng.shuffle(kinds)
    for i, kind in enumerate(kinds):
        target = "valid" if i % 2 else "bad-target"
        # a stale frame: an old seq and a device time just before the session's last frame
        # (a time ahead, or more than 1 s back, would read as a restarted device)
        bad.send(bad_payload(kind, rng, session="valid" if kind == "stale_seq" else target,
                             seq=rng.randrange(0, 1000), t=time.monotonic_ns() - 500_000_000))
        sent[kind] += 1
        if i % 5 == 0:
            dev.send(frame("valid", q))
            q += 1
            time.sleep(0.01)
    # oversize: ZeroMQ drops the connection; wait for the XPUB to be re-subscribed each time
    for _ in range(3):
        bad.send(bad_payload("oversize"))
        sent["oversize"] += 1
        assert bad.poll(10000), "no reconnect after an oversize message"
        bad.recv()
    # the cap: fill it, then every new session id is rejected
    live = last_status(sub, where=lambda s: "valid" in s["sessions"])["live_sessions"]
    for k in range(MAX_SESSIONS - live):
        dev.send(frame(f"filler-{k}", 1))
    last_status(sub, 20, where=lambda s: s["live_sessions"] == MAX_SESSIONS)
    for k in range(10):
        bad.send(bad_payload("session_limit", session=f"newcomer-{k}"))
        sent["session_limit"] += 1
    send(dev, "valid", range(q, q + 3), rate=30)
    q += 3

    def done(st):
        return all(st["rejected"][r] - before["rejected"][r] >= n for r, n in sent.items())

    st = last_status(sub, 30, where=done)
    got = {r: st["rejected"][r] - before["rejected"][r] for r in REJECT_REASONS}
    assert got == sent
    v = last_status(sub, 20, where=lambda s: s["sessions"]["valid"]["last_fitted_seq"] == q - 1)
    v = v["sessions"]["valid"]
    assert v["received"] == q - 1000 and v["resets"] == 1 and v["diverged"] == 0
    assert all(f"newcomer-{k}" not in st["sessions"] for k in range(10))


def test_sigterm_exits_0_and_finalises_the_recording(server):
    assert server.stop(signal.SIGTERM) == 0
    assert any("finalised" in line for line in server.lines)
    info = {}
    msgs = list(read_recording(server.recording, info))
    assert not info["truncated"] and info["metadata"]["engine"] == "eager"
    topics = {m.topic for m in msgs}
    assert {"ingest", "status", "tracker/tick", "pose/contract", "pose/valid"} <= topics


def test_curve_admits_only_authorised_keys(tmp_path):
    import zmq.auth

    from tracker.server.security import create_keys, set_curve_client

    keys = create_keys(tmp_path / "keys", ["good"])
    zmq.auth.create_certificates(tmp_path, "stranger")
    server_public, _ = zmq.auth.load_certificate(keys / "server.key")

    def as_client(secret_file):
        return lambda s: set_curve_client(s, server_public, secret_file)

    good = as_client(keys / "clients" / "good.key_secret")
    stranger = as_client(tmp_path / "stranger.key_secret")
    server = ServerProc("--curve-keys", str(keys))
    try:
        sub = server.subscriber(b"pose/", curve=good)
        dev = server.device(curve=good)
        evil = server.ctx.socket(zmq.PUB)
        evil.setsockopt(zmq.LINGER, 0)
        stranger(evil)
        evil.connect(server.ingest)
        evil_sub = server.ctx.socket(zmq.SUB)
        evil_sub.setsockopt(zmq.LINGER, 0)
        stranger(evil_sub)
        evil_sub.subscribe(b"")
        evil_sub.connect(server.publish)
        for q in range(1, 8):
            dev.send(frame("trusted", q))
            evil.send(frame("intruder", q))
            time.sleep(0.1)
        msgs = collect(sub, 20, until=lambda m: poses_of(m, "trusted"))
        assert poses_of(msgs, "trusted")
        st = last_status(sub, where=lambda s: s["auth_failures"] > 0)
        assert "intruder" not in st["sessions"] and st["curve"]
        assert not evil_sub.poll(500)  # an unknown subscriber hears nothing either
    finally:
        assert server.stop() == 0


def test_profiles_folder_applies_and_a_change_resets_the_session(tmp_path):
    """In-process: ``--profiles DIR`` semantics (the store is re-read when a file changes)."""
    from test_protocol import _EchoEngine

    from calibration.profile import Profile
    from tracker.body import load_body_model
    from tracker.server.core import TrackerCore
    from tracker.server.profiles import StoreProfiles

    body = load_body_model()
    d = Profile.default(body)
    Profile(d.betas, d.T_hmd, 0.05, d.body_fingerprint).save(tmp_path / "p.json")
    eng = _EchoEngine(body)
    core = TrackerCore(eng, profiles=StoreProfiles(tmp_path, body))
    core.receive(msgpack.packb(good_message("p", 1)), 0)
    tin = core.begin_tick(1)
    assert [s for s, _ in tin.profile_changes] == ["p"]
    out = core.run_tick(tin)
    assert float(eng.seen_head[0, 1, 3]) == pytest.approx(1.65)
    assert out.poses[0].msg["transl"][1] == pytest.approx(1.6, abs=1e-6)
    time.sleep(0.6)  # the store stats a file at most every 0.5 s
    Profile(d.betas, d.T_hmd, 0.02, d.body_fingerprint).save(tmp_path / "p.json")
    time.sleep(0.6)
    core.receive(msgpack.packb(good_message("p", 2)), 10**7)
    out = core.tick(2 * 10**7)
    assert float(eng.seen_head[0, 1, 3]) == pytest.approx(1.62)
    assert out.poses[0].msg["state"] == "reset"
