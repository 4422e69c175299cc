"""``tools/load_test.py``, the serving benchmark, run as users run it (short, eager engine)."""

import json
import subprocess
import sys

from server_harness import ROOT

TOOL = [sys.executable, str(ROOT / "tools" / "load_test.py")]


def test_busy_scenario_reports_the_answered_share(tmp_path):
    out = tmp_path / "busy.json"
    r = subprocess.run([*TOOL, "--only", "busy", "--seconds", "2", "--busy", "1",
                        "--engine", "eager", "--json", str(out)],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    busy = json.loads(out.read_text())["busy"]
    assert busy["busy_processes"] == 1 and busy["rc"] == 0
    assert busy["sent"] == busy["fitted"] + busy["dropped"] > 0
    assert 0 < busy["answered"] <= 1 and busy["latency_ms"]["p99"] > 0
    assert isinstance(busy["target_answered_ge_99pct"], bool)
    assert "== busy" in r.stdout


def test_unknown_scenario_is_one_line():
    r = subprocess.run([*TOOL, "--only", "single,nope"], capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].endswith(
        "unknown scenario 'nope': choose from single, busy, overload, malformed, eight")
