"""Issue #14, findings 2, 3, 4 (signals) and 6 (ticks), and issue #17's server log: a real
``tracker serve`` that commits faults on purpose (``TRACKER_SERVE_FAULTS``).

One server serves the module (tests use their own session ids); the SIGHUP test stops it,
so it runs last.
"""

import math
import signal
import time

import msgpack
import pytest
import zmq
from server_harness import ServerProc, last_status

from tracker.recording import read_recording
from tracker.server.faults import FAULTS_ENV, good_message
from tracker.server.serve_log import ServeLog
from tracker.server.sessions import SessionRules, SessionTable

ECHO_KEYS = {"v", "session", "seq", "t", "head", "left", "right", "gt"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    rec = tmp_path_factory.mktemp("faults") / "faults.mcap"
    s = ServerProc("--record", str(rec), "--log-period", "1",
                   env={FAULTS_ENV: "tick=boom,receive=poison"})
    s.recording = rec
    yield s
    s.stop()


def frame(session, seq, t=None, extra=None):
    return msgpack.packb({**good_message(session, seq, time.monotonic_ns() if t is None else t),
                          **(extra or {})})


def poses(sub, seconds, until=None):
    """``[(topic, msg)]`` decoded with a *default* ``msgpack.unpackb`` (as clients do)."""
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if sub.poll(50):
            topic, data = sub.recv_multipart()
            if topic != b"status":
                out.append((topic, msgpack.unpackb(data)))
                if until is not None and until(out):
                    break
    return out


def send_stream(dev, session, seqs, t0=None, rate=90.0):
    """Frames ``seqs`` at ``rate``; device time ``t0 + k / rate`` (default: the clock)."""
    start = time.monotonic()
    for k, q in enumerate(seqs):
        t = None if t0 is None else t0 + int(k * 1e9 / rate)
        dev.send(frame(session, q, t))
        time.sleep(max(0.0, start + (k + 1) / rate - time.monotonic()))


def first_fitted(msgs, session, t_from, t_to=2**63):
    """(seq, state) of the first pose of ``session`` answering a frame with ``t_from <= t <
    t_to``."""
    for topic, m in msgs:
        if topic == f"pose/{session}".encode() and t_from <= m["t"] < t_to:
            return m["seq"], m["state"]
    return None


def test_a_restarted_device_is_fitted_again_within_10_frames(server):
    """Finding 2: the same session id, seq from 1 again: an app restart (device clock runs
    on) and a reboot (device clock starts again). Each time the device sends 10 frames and
    stops: one of them is fitted (the newest always is, latest frame wins), state ``reset``,
    and none is rejected. (Before: every frame ``stale_seq`` for 60 s.)"""
    sub = server.subscriber(b"pose/dev")
    dev = server.device()
    send_stream(dev, "dev", range(1, 31))
    assert poses(sub, 20, lambda m: any(p["seq"] == 30 for _, p in m))
    t_restart = time.monotonic_ns()
    send_stream(dev, "dev", range(1, 11))  # restarted app: seq from 1, t keeps running
    got = first_fitted(poses(sub, 20, lambda m: first_fitted(m, "dev", t_restart)), "dev",
                       t_restart)
    assert got is not None and got[0] <= 10 and got[1] == "reset", got
    time.sleep(0.2)
    t0 = 5_000_000_000
    send_stream(dev, "dev", range(1, 11), t0=t0)  # rebooted: t from 5 s again
    got = first_fitted(poses(sub, 20, lambda m: first_fitted(m, "dev", t0, t_restart)), "dev",
                       t0, t_restart)
    assert got is not None and got[0] <= 10 and got[1] == "reset", got
    st = last_status(sub, 10, lambda s: s["sessions"]["dev"]["received"] == 50)
    assert st["sessions"]["dev"]["rejected"] == 0
    # a late duplicate (seq behind, t not ahead, less than 1 s behind) is still stale
    dev.send(frame("dev", 5, t0 + int(5 * 1e9 / 90)))
    st = last_status(sub, 10, lambda s: s["sessions"]["dev"]["rejected"] >= 1)["sessions"]["dev"]
    assert st["restarts"] == 2 and st["rejected"] == 1 and st["received"] == 50
    assert any("session dev reset (restart)" in line for line in server.lines)


@pytest.mark.parametrize("t_spoof", ["now", "far-future", "half-a-second-ahead"])
def test_one_spoofed_huge_seq_cannot_lock_a_session(server, t_spoof):
    """Finding 2: one frame with seq = 2**64 - 1 (and a device time now, far in the future,
    or 0.5 s ahead); the real device goes on with its seq and is fitted again: within the
    10 frames it sends next, or (a spoofed time ahead holds it off until its own time passes
    it, never beyond 1 s) within 1.2 s."""
    sid = f"victim-{t_spoof}"
    sub = server.subscriber(f"pose/{sid}".encode())
    dev, spoofer = server.device(), server.device()
    send_stream(dev, sid, range(1, 21))
    assert poses(sub, 20, lambda m: any(p["seq"] == 20 for _, p in m))
    now = time.monotonic_ns()
    t = {"now": now, "far-future": 2**63 - 1, "half-a-second-ahead": now + 500_000_000}[t_spoof]
    spoofer.send(frame(sid, 2**64 - 1, t))
    time.sleep(0.05)
    t_after = time.monotonic_ns()
    n = 10 if t_spoof != "half-a-second-ahead" else 108  # 10 frames / 1.2 s at 90 Hz
    send_stream(dev, sid, range(21, 21 + n))
    last = 20 + n
    msgs = poses(sub, 20, lambda m: any(p["seq"] == last for _, p in m))
    real = [p for _, p in msgs if p["t"] >= t_after and p["seq"] < 2**63]
    assert real and real[-1]["seq"] == last and real[0]["state"] == "reset", real[:1]
    st = last_status(sub, 10, lambda s: s["sessions"][sid]["last_seq"] == last)["sessions"][sid]
    stale = st["rejected"]
    assert stale == 0 if t_spoof != "half-a-second-ahead" else stale <= 60  # <= 0.5 s + slack


def test_the_frame_echo_is_the_validated_frame_re_encoded(server):
    """Finding 3: extra keys holding NaN, integer keys, nested junk pass validation (unknown
    keys are ignored); the frame/<session> echo carries none of it: every echo decodes with a
    default ``msgpack.unpackb``, holds only frame keys and finite numbers; a simulator's
    checked ``gt`` is kept, a ``gt`` holding NaN is not."""
    sub = server.subscriber(b"frame/echo", b"pose/echo")
    dev = server.device()
    gt_ok = {"transl": [0.0, 0.9, 0.0], "pose": [0.0] * 156, "betas": [0.0] * 16}
    junk = [{"junk": math.nan}, {7: "integer key"}, {"deep": {1: [math.nan, b"\x00"]}},
            {"gt": dict(gt_ok, pose=[math.nan] * 156)}, {"gt": gt_ok}]
    for q in range(1, 26):
        dev.send(frame("echo", q, extra=junk[q % len(junk)]))
        time.sleep(0.05)
    got = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any(
            t == b"pose/echo" and msgpack.unpackb(d)["seq"] == 25 for t, d in got):
        if sub.poll(50):
            topic, data = sub.recv_multipart()
            if topic != b"status":
                got.append((topic, data))
    echoes = [msgpack.unpackb(d) for t, d in got if t == b"frame/echo"]  # default: raises on
    assert len(echoes) >= 3                                               # integer keys

    def numbers(x):
        if isinstance(x, dict):
            return [n for v in x.values() for n in numbers(v)]
        if isinstance(x, list):
            return [n for v in x for n in numbers(v)]
        return [x] if isinstance(x, float) else []

    for e in echoes:
        assert set(e) <= ECHO_KEYS and e["session"] == "echo"
        assert all(math.isfinite(n) for n in numbers(e))
        sent = good_message("echo", e["seq"])
        assert e["head"] == sent["head"] and e["left"]["tips"] == sent["left"]["tips"]
        assert ("gt" in e) == (e["seq"] % len(junk) == 4)


def test_a_failing_tick_resets_its_sessions_and_the_server_goes_on(server):
    """Finding 6: every tick holding session ``boom`` raises (injected). ``calm`` keeps being
    fitted: at most one reset when it shared the failing tick, then ``boom`` is fitted
    apart; ``boom`` gets no pose; faults are counted and logged. A message that raises in the
    receiver (``poison``) is dropped and counted."""
    sub = server.subscriber(b"pose/calm", b"pose/boom")
    dev, bad = server.device(), server.device()
    t_boom = None
    start = time.monotonic()
    for k in range(1, 181):  # 2 s at 90 Hz; boom from 0.5 s to 1.5 s
        dev.send(frame("calm", k))
        if 45 <= k < 135:
            t_boom = t_boom or time.monotonic_ns()
            bad.send(frame("boom", k))
        if k % 30 == 0:
            bad.send(frame("poison", k))
        time.sleep(max(0.0, start + k / 90 - time.monotonic()))
    msgs = poses(sub, 20, lambda m: any(t == b"pose/calm" and p["seq"] == 180 for t, p in m))
    calm = [p for t, p in msgs if t == b"pose/calm"]
    assert not [p for t, p in msgs if t == b"pose/boom"]
    during = [p for p in calm if p["t"] >= t_boom]
    assert calm[-1]["seq"] == 180 and len(during) >= 5
    assert sum(p["state"] == "reset" for p in during) <= 2  # not reset at every tick
    st = last_status(sub, 10, lambda s: s["faults"] > 0 and s["ingest_errors"] >= 6)
    assert "poison" not in st["sessions"] and st["sessions"]["calm"]["diverged"] == 0
    err = "".join(server.lines)
    print("".join(x for x in server.lines if "error" in x))
    assert "error: tick failed" in err and "InjectedFault" in err and "boom" in err
    assert "session boom failed alone" in err
    assert "error: ingest: a message raised InjectedFault" in err
    assert "session boom reset (fault)" in err and "Traceback" not in err


def test_the_server_log(server):
    """Issue #17: session lines, periodic totals (every second here)."""
    sub = server.subscriber(b"pose/log")
    dev = server.device()
    send_stream(dev, "log", range(1, 10))
    poses(sub, 20, lambda m: any(p["seq"] == 9 for _, p in m))
    time.sleep(2.5)
    text = "".join(server.lines)
    assert "session log started" in text
    assert "session log silent (" in text
    assert " fitted/s, dropped " in text and "p99 latency" in text
    line = next(x for x in server.lines if " fitted/s, " in x)
    assert line.startswith("tracker serve: ") and line.count("\n") == 1


def test_sighup_finalises_the_recording_and_prints_totals(server):
    """Finding 4: SIGHUP (a closed terminal) stops the server cleanly, like SIGTERM."""
    assert server.stop(signal.SIGHUP) == 0
    text = "".join(server.lines)
    assert "finalised" in text and "totals: uptime" in text and "faults " in text
    info = {}
    msgs = list(read_recording(server.recording, info))
    assert info["finalised"] and any(m.topic == "pose/calm" for m in msgs)
    ingest = {msgpack.unpackb(m.data, strict_map_key=False)["session"]
              for m in msgs if m.topic == "ingest"}
    assert "poison" not in ingest  # lost to the injected fault, never accepted


def test_quiet_keeps_errors_and_totals_only(tmp_path):
    s = ServerProc("--quiet", "--log-period", "0.5", env={FAULTS_ENV: "tick=boom"})
    try:
        sub = s.subscriber(b"pose/q")
        dev = s.device()
        send_stream(dev, "q", range(1, 10))
        dev.send(frame("boom", 1))
        poses(sub, 20, lambda m: any(p["seq"] == 9 for _, p in m))
        time.sleep(1.5)
    finally:
        assert s.stop() == 0
    text = "".join(s.lines)
    assert not [x for x in s.lines if "session q" in x or " fitted/s" in x]
    assert "error: tick failed" in text and "totals: uptime" in text


def test_session_table_rules_and_events():
    """The rules behind the tests above, in-process: restart, jump, stale, forget events."""
    table = SessionTable(SessionRules(forget_s=1.0))
    table.events = []
    from tracker.protocol import parse_frame

    def accept(seq, t, t_recv, owner=None, session="s"):
        return table.accept(parse_frame(frame(session, seq, t)), t_recv, owner=owner)

    s = accept(10, 10**9, 0)
    s.need_reset = False
    accept(11, 10**9 + 10**7, 10**7)
    assert not s.need_reset
    with pytest.raises(ValueError, match="stale_seq"):
        accept(5, 10**9, 2 * 10**7)  # behind in seq and t (less than 1 s): a duplicate
    accept(1, 10**9 + 2 * 10**7, 3 * 10**7)  # behind in seq, ahead in t: restart
    assert (s.need_reset, s.reset_reason, s.last_seq) == (True, "restart", 1)
    s.need_reset = False
    accept(1 + (1 << 20) + 1, 10**9 + 3 * 10**7, 4 * 10**7)  # a jump beyond 2**20
    assert s.reset_reason == "restart" and s.restarts == 2
    table.expire(3 * 10**9)
    assert [e[0] for e in table.events] == ["started", "forgotten"]
    lines = []

    class Out:
        def write(self, x):
            lines.append(x)

        def flush(self):
            pass

    log = ServeLog(Out())
    for e in table.events:
        log.event(*e)
    assert "session s forgotten (silent 1 s)" in "".join(lines)


def test_zmq_user_id_is_absent_without_curve():
    """Without CURVE a message has no ``User-Id`` (the server only reads it with keys)."""
    ctx = zmq.Context.instance()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    try:
        a.bind("inproc://uid")
        b.connect("inproc://uid")
        b.send(b"x")
        f = a.recv(copy=False)
        with pytest.raises(zmq.ZMQError):
            f.get("User-Id")
    finally:
        a.close(0)
        b.close(0)
