"""MCAP recordings: round trip, truncated files, a writer killed with SIGKILL, a full disk,
``tracker recover``."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from mcap.reader import make_reader

from tracker.recording import RecordingWriter, read_recording, recording_metadata, recover

ROOT = Path(__file__).resolve().parents[1]


def _write(path, n=600, **kw):
    w = RecordingWriter(path, {"engine": "eager", "threads": 1}, **kw)
    sent = []
    for i in range(n):
        topic = ("ingest", "pose/a", "tracker/tick", "status")[i % 4]
        data = bytes([i % 251]) * (50 + i % 97)
        w.write(topic, 1000 + i, data)
        sent.append((topic, 1000 + i, data))
    w.close()
    return sent


def test_round_trip(tmp_path):
    path = tmp_path / "r.mcap"
    sent = _write(path, chunk_bytes=2048)
    info = {}
    got = [(m.topic, m.log_time, m.data) for m in read_recording(path, info)]
    assert got == sent
    assert not info["truncated"] and info["finalised"]
    assert recording_metadata(path) == {"engine": "eager", "threads": "1"}
    with open(path, "rb") as f:  # the standard reader, through the summary's chunk index
        assert [m.log_time for _, _, m in make_reader(f).iter_messages()] == [
            t for _, t, _ in sent]


def test_truncated_file_reads_up_to_its_last_complete_chunk(tmp_path):
    path = tmp_path / "r.mcap"
    sent = _write(path, chunk_bytes=4096)
    data = path.read_bytes()
    cut = tmp_path / "cut.mcap"
    counts = []
    for frac in (0.3, 0.6, 0.95):
        cut.write_bytes(data[: int(len(data) * frac)])
        info = {}
        got = [(m.topic, m.log_time, m.data) for m in read_recording(cut, info)]
        assert info["truncated"] and got == sent[: len(got)]
        counts.append(len(got))
    assert 0 < counts[0] < counts[1] <= counts[2] <= len(sent)  # 95 %: only the summary lost


def test_kill_9_loses_at_most_the_last_chunk(tmp_path):
    path = tmp_path / "killed.mcap"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from tracker.recording import RecordingWriter
        w = RecordingWriter({str(path)!r}, {{"engine": "eager"}}, chunk_seconds=0.2)
        i = 0
        while True:
            w.write("ingest", i, i.to_bytes(8, "little") * 10)
            i += 1
            if i % 100 == 0:
                print(i, flush=True)
                time.sleep(0.01)
    """)
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    written = 0
    while written < 3000 and time.monotonic() < deadline:
        written = int(p.stdout.readline())
    time.sleep(0.5)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    info = {}
    got = list(read_recording(path, info))
    assert not info["truncated"] and not info["finalised"]  # ends with the bare trailer
    assert len(got) >= 2000  # all but roughly the last 0.2 s chunk
    assert [m.log_time for m in got] == list(range(len(got)))
    assert all(m.data == m.log_time.to_bytes(8, "little") * 10 for m in got)
    with open(path, "rb") as f:  # any MCAP reader opens it as it is
        std = [m.log_time for _, _, m in make_reader(f).iter_messages(log_time_order=False)]
    assert std == [m.log_time for m in got]


def test_recover_rewrites_a_cut_file_into_a_finalised_one(tmp_path, capsys):
    from tracker.cli import main

    path = tmp_path / "r.mcap"
    sent = _write(path, chunk_bytes=4096)
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.6)])
    with open(cut, "rb") as f:  # cut mid-record: the standard reader gives up
        try:
            n_std = sum(1 for _ in make_reader(f).iter_messages())
        except Exception:
            n_std = 0
    assert n_std == 0
    fixed = tmp_path / "fixed.mcap"
    assert main(["recover", str(cut), str(fixed)]) == 0
    assert "recovered" in capsys.readouterr().err
    with open(fixed, "rb") as f:
        got = [(c.topic, m.log_time, m.data) for _, c, m in make_reader(f).iter_messages()]
    assert 0 < len(got) < len(sent) and got == sent[: len(got)]
    info = {}
    assert len(list(read_recording(fixed, info))) == len(got) and info["finalised"]
    assert recording_metadata(fixed) == {"engine": "eager", "threads": "1"}
    assert recover(path, tmp_path / "again.mcap")["messages"] == len(sent)
    assert main(["recover", str(tmp_path / "missing.mcap"), str(fixed)]) == 2
    assert "error" in capsys.readouterr().err


def test_a_full_disk_ends_the_recording_but_keeps_it_readable(tmp_path):
    """The writer in a process whose file size limit (RLIMIT_FSIZE) stands for a full disk:
    writes fail with EFBIG; ``write`` keeps returning (counted as dropped), ``stats`` says
    why, and the file reads up to the last good write."""
    path = tmp_path / "full.mcap"
    script = textwrap.dedent(f"""
        import json, os, resource, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from tracker.recording import RecordingWriter
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        w = RecordingWriter({str(path)!r}, {{"engine": "eager"}}, chunk_seconds=0.05)
        for i in range(4000):
            w.write("ingest", i, os.urandom(1024))  # incompressible: the limit is reached
            if i % 200 == 0:
                time.sleep(0.06)
        w.close()
        print(json.dumps(w.stats()))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    import json

    st = json.loads(out.stdout)
    assert st["write_errors"] == 1 and "File too large" in st["error"]
    assert st["dropped"] > 0 and st["written"] + st["dropped"] == 4000
    info = {}
    got = list(read_recording(path, info))
    assert not info["truncated"] and 0 < len(got) < 4000
    assert [m.log_time for m in got] == list(range(len(got)))
    with open(path, "rb") as f:
        assert sum(1 for _ in make_reader(f).iter_messages()) == len(got)
