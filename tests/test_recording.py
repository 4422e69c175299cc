"""MCAP recordings: round trip, truncated files, a writer killed with SIGKILL."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tracker.recording import RecordingWriter, read_recording, recording_metadata

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
    assert not info["truncated"]
    assert recording_metadata(path) == {"engine": "eager", "threads": "1"}


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
    assert info["truncated"]
    assert len(got) >= 2000  # all but roughly the last 0.2 s chunk
    assert [m.log_time for m in got] == list(range(len(got)))
    assert all(m.data == m.log_time.to_bytes(8, "little") * 10 for m in got)
