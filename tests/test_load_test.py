"""``tools/load_test.py``, the serving benchmark, run as users run it (short, eager engine)."""

import json
import subprocess
import sys

from server_harness import ROOT

TOOL = [sys.executable, str(ROOT / "tools" / "load_test.py")]


def _run(tmp_path, scenario: str, seconds: str):
    """The tool as users run it, one scenario beside one busy process on the eager engine:
    ``(completed process, the scenario's figures)``."""
    out = tmp_path / f"{scenario}.json"
    r = subprocess.run([*TOOL, "--only", scenario, "--seconds", seconds, "--busy", "1",
                        "--engine", "eager", "--json", str(out)],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    return r, json.loads(out.read_text())[scenario]


def test_busy_scenario_reports_the_answered_share(tmp_path):
    r, busy = _run(tmp_path, "busy", "2")
    assert busy["busy_processes"] == 1 and busy["rc"] == 0
    assert busy["sent"] == busy["fitted"] + busy["dropped"] > 0
    assert 0 < busy["answered"] <= 1 and busy["latency_ms"]["p99"] > 0
    assert isinstance(busy["target_answered_ge_99pct"], bool)
    assert "== busy" in r.stdout


def test_recover_scenario_reports_the_way_back_to_the_full_fit(tmp_path):
    """Busy, then quiet: the figures are there and consistent (whether this machine's eager
    fit goes light under one busy process, and comes back in 3 s, is not for a test)."""
    r, rec = _run(tmp_path, "recover", "3")
    assert rec["busy_processes"] == 1 and rec["busy_seconds"] == 3 and rec["rc"] == 0
    assert rec["sent"] == rec["fitted"] + rec["dropped"] > 0
    assert rec["level_when_load_ended"] in (0, 1, 2)
    assert rec["seconds_to_full"] is None or 0 <= rec["seconds_to_full"] <= 3.5
    if rec["level_when_load_ended"] == 0:
        assert rec["seconds_to_full"] is None  # nothing to come back from
    assert "== recover" in r.stdout


def test_unknown_scenario_is_one_line():
    r = subprocess.run([*TOOL, "--only", "single,nope"], capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].endswith(
        "unknown scenario 'nope': choose from single, busy, overload, malformed, eight, recover")
