"""Issue #14, findings 1, 4 and 6 (receiver): a real ``tracker serve`` under a multipart and
garbage flood, killed with ``kill -9`` while recording, and with its receiver thread gone.

Figures (memory, recording size, frames of the valid session) are printed with ``-s``.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import msgpack
import pytest
from mcap.reader import make_reader
from server_harness import ROOT, ServerProc, last_status

from tracker.protocol import MAX_MESSAGE_PARTS
from tracker.recording import read_recording
from tracker.server.faults import FAULTS_ENV, good_message

FLOOD = textwrap.dedent("""
    import os, sys, threading, time
    import zmq
    sys.path.insert(0, {root!r})
    from tracker.server.faults import multipart_flood

    addr, seconds = sys.argv[1], float(sys.argv[2])
    ctx = zmq.Context()

    def device():
        s = ctx.socket(zmq.XPUB)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(addr)
        assert s.poll(20000), "no subscription"
        s.recv()
        return s

    big, junk = device(), device()
    parts = multipart_flood()  # 200 frames of 60 KiB: each under ZeroMQ's per-frame limit
    garbage = [os.urandom(60 * 1024) for _ in range(8)]  # reaches the parser: malformed
    sent = {{"multipart": 0, "garbage": 0}}
    end = time.monotonic() + seconds

    def flood(sock, kind, msgs, multipart):
        i = 0
        while time.monotonic() < end:
            m = msgs if multipart else msgs[i % len(msgs)]
            (sock.send_multipart if multipart else sock.send)(m, copy=False)
            sent[kind] += 1
            i += 1

    threads = [threading.Thread(target=flood, args=(big, "multipart", parts, True)),
               threading.Thread(target=flood, args=(junk, "garbage", garbage, False))]
    print("ready", flush=True)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(sent, flush=True)
""").format(root=str(ROOT))


def memory_mb(pid: int) -> dict:
    """``VmRSS`` (now) and ``VmHWM`` (peak since start) of a process, MB (proc(5))."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    return out


def stream(dev, session, seconds, rate=90.0, seq0=1):
    """Valid frames at ``rate`` for ``seconds``; returns ``{seq: send time (monotonic s)}``."""
    sent = {}
    t0 = time.monotonic()
    q = seq0
    while time.monotonic() - t0 < seconds:
        sent[q] = time.monotonic()
        dev.send(msgpack.packb(good_message(session, q, time.monotonic_ns())))
        q += 1
        time.sleep(max(0.0, t0 + (q - seq0) / rate - time.monotonic()))
    return sent


def fresh_status(sub, where, timeout=30.0):
    """A status satisfying ``where``, read after draining what queued up."""
    while sub.poll(0):
        sub.recv_multipart()
    return last_status(sub, timeout, where)


@pytest.fixture(scope="module")
def flooded(tmp_path_factory):
    rec = tmp_path_factory.mktemp("flood") / "flood.mcap"
    s = ServerProc("--record", str(rec), "--log-period", "2",
                   env={FAULTS_ENV: "ingest-stop=ingest-killer"})
    s.recording = rec
    yield s
    s.stop()


def test_whole_message_limits(flooded):
    sub = flooded.subscriber()
    dev = flooded.device()
    before = fresh_status(sub, None)["rejected"]["oversize"]
    dev.send_multipart([b"x"] * (MAX_MESSAGE_PARTS + 1))  # tiny frames, too many of them
    dev.send_multipart([b"x" * 40_000, b"y" * 30_000])  # each frame fine, 70 kB in all
    dev.send_multipart([b"topic", msgpack.packb(good_message("two-part", 1, 1))])  # accepted
    st = fresh_status(sub, lambda s: s["rejected"]["oversize"] >= before + 2
                      and "two-part" in s["sessions"])
    assert st["rejected"]["oversize"] == before + 2


def test_a_flood_neither_starves_a_session_nor_grows_memory_or_the_recording(flooded):
    """Finding 1: 200 x 60 KiB multipart messages and 60 KiB garbage, both as fast as a
    process can send, for 6 s, beside a valid 90 Hz session."""
    sub = flooded.subscriber(b"pose/valid")
    dev = flooded.device()
    pid = flooded.proc.pid
    base = memory_mb(pid)["VmRSS"]
    size0 = flooded.recording.stat().st_size
    fl = subprocess.Popen([sys.executable, "-c", FLOOD, flooded.ingest, "6"],
                          stdout=subprocess.PIPE, text=True)
    try:
        assert fl.stdout.readline().strip() == "ready"
        sent = stream(dev, "valid", 6.0)
        flood_sent = fl.stdout.read().strip()
    finally:
        fl.kill()
        fl.wait()
    last = max(sent)
    st = fresh_status(sub, lambda s: s["sessions"].get("valid", {}).get("last_fitted_seq")
                      == last)
    v = st["sessions"]["valid"]
    peak = memory_mb(pid)["VmHWM"]
    time.sleep(1.2)  # a recording chunk is written every 0.5 s
    grown = (flooded.recording.stat().st_size - size0) / 1e6
    answered = v["received"] / len(sent)  # fitted, or superseded by a fitted newer frame
    print(f"\nflood {flood_sent}; valid: sent {len(sent)}, received {v['received']}, fitted "
          f"{v['fitted']}, dropped {v['dropped']}, p99 {v['latency_ms']['p99']:.0f} ms; "
          f"rejected {st['rejected']['malformed']} malformed, {st['rejected']['oversize']} "
          f"oversize; memory {base:.0f} MB -> peak {peak:.0f} MB; recording +{grown:.2f} MB; "
          f"recorder {st['recorder']}")
    assert answered >= 0.9 and v["fitted"] > 0 and v["rejected"] == 0
    assert st["rejected"]["oversize"] > 0 and st["rejected"]["malformed"] > 0
    assert peak - base < 150
    assert grown < 5
    rec = st["recorder"]
    assert rec["dropped"] == 0 and rec["write_errors"] == 0
    assert rec["rejected_not_recorded"] >= st["rejected"]["malformed"]


def test_a_failed_reader_stops_the_server_with_exit_1(flooded):
    """Finding 6: the worker reading the ingest socket fails (injected); the server stops,
    says why, finalises the recording and exits 1 (not a server that silently fits nothing)."""
    dev = flooded.device()
    dev.send(msgpack.packb(good_message("ingest-killer", 1, time.monotonic_ns())))
    assert flooded.proc.wait(30) == 1
    time.sleep(0.2)
    err = "".join(flooded.lines)
    assert "error: ingest failed (" in err and "InjectedFault" in err and "Traceback" not in err
    assert "recording" in err and "finalised" in err and "totals:" in err
    info = {}
    msgs = list(read_recording(flooded.recording, info))
    assert info["finalised"] and any(m.topic == "pose/valid" for m in msgs)
    ingest = [msgpack.unpackb(m.data) for m in msgs if m.topic == "ingest"]
    assert {m["session"] for m in ingest} <= {"valid", "two-part"}  # accepted frames only


def test_a_recording_cut_by_kill_9_opens_in_mcap_readers(tmp_path):
    """Finding 4: ``kill -9`` while recording; ``mcap.reader.make_reader`` reads the file as
    it is, with >= 90 % of the frames received more than 1.5 s before the kill; ``tracker
    recover`` makes it a finalised file."""
    rec = tmp_path / "killed.mcap"
    s = ServerProc("--record", str(rec))
    try:
        sub = s.subscriber(b"pose/k9")
        dev = s.device()
        sent = stream(dev, "k9", 4.0)
        last_status(sub, 10, lambda st: st["sessions"].get("k9", {}).get("last_seq")
                    == max(sent))
        t_kill = time.monotonic()
        os.kill(s.proc.pid, signal.SIGKILL)
        s.proc.wait(10)
    finally:
        s.stop()
    early = {q for q, t in sent.items() if t < t_kill - 1.5}
    with open(rec, "rb") as f:
        got = [msgpack.unpackb(m.data)["seq"] for _, c, m in make_reader(f).iter_messages()
               if c.topic == "ingest"]
    kept = len(early & set(got)) / len(early)
    print(f"\nkill -9: {len(sent)} frames sent, {len(early)} more than 1.5 s before the kill, "
          f"{kept:.1%} of those in the file ({len(got)} ingest messages in all)")
    assert kept >= 0.9
    fixed = tmp_path / "fixed.mcap"
    out = subprocess.run([sys.executable, "-m", "tracker.cli", "recover", str(rec), str(fixed)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    info = {}
    assert len([m for m in read_recording(fixed, info) if m.topic == "ingest"]) == len(got)
    assert info["finalised"]


def test_a_full_disk_ends_the_recording_not_the_server(tmp_path):
    """Finding 1: the recorder hits a full disk (a file size limit, RLIMIT_FSIZE, set for
    the server process: writes fail with EFBIG as they would with ENOSPC). The server logs
    it once, shows it in ``status.recorder``, keeps fitting, exits 0; the file reads up to
    the last good write."""
    import resource

    rec = tmp_path / "full.mcap"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, hard))  # inherited by the server
    try:
        s = ServerProc("--record", str(rec), wait=False)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    try:
        s.wait_ready()
        sub = s.subscriber(b"pose/full")
        dev = s.device()
        seq = 1
        st = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            sent = stream(dev, "full", 1.0, seq0=seq)
            seq = max(sent) + 1
            st = fresh_status(sub, None)
            if st["recorder"]["error"] is not None:
                break
        assert st["recorder"]["write_errors"] == 1 and "File too large" in st["recorder"]["error"]
        sent = stream(dev, "full", 1.0, seq0=seq)  # serving goes on
        st = fresh_status(sub, lambda x: x["sessions"]["full"]["last_fitted_seq"] == max(sent))
        assert st["recorder"]["dropped"] > 0
    finally:
        assert s.stop() == 0
    text = "".join(s.lines)
    assert text.count(f"error: recording {rec} stopped: OSError") == 1
    assert "stopped early" in text and "Traceback" not in text
    with open(rec, "rb") as f:
        n = sum(1 for _ in make_reader(f).iter_messages())
    assert n > 0 and rec.stat().st_size <= 150_000
