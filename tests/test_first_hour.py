"""A new user's first commands: defaults that work as written, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tracker.cli import SUBCOMMANDS, build_parser


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    code = "import sys; from tracker.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=timeout)


def test_simulate_without_motion_uses_the_procedural_generator():
    args = build_parser("tracker", SUBCOMMANDS, ["simulate"]).parse_args(["simulate",
                                                                           "--sessions", "2"])
    assert args.motion == ["procedural"] and args.sessions == 2


def test_simulate_help_gives_the_real_headset_offset():
    from tracker.signals.headset import DEFAULT_HMD_OFFSET

    out = " ".join(run("simulate", "--help").stdout.split())
    assert "default: the library default " + " ".join(f"{v:g}" for v in DEFAULT_HMD_OFFSET) in out


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_demo_with_an_engine_that_cannot_run_here_is_one_line():
    r = run("demo", "--engine", "tensorrt", "--seconds", "1")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tracker demo: error: engine 'tensorrt'")
    assert "Traceback" not in r.stderr


def test_demo_takes_threads():
    r = run("demo", "--engine", "eager", "--seconds", "0.3", "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert "mean body joint error" in r.stdout


def test_replay_of_a_file_that_is_not_a_recording_is_refused_at_once(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# not a recording\n")
    r = run("replay", str(readme), timeout=60)  # at once: nothing is built for it
    assert r.returncode == 2 and "not a recording" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_simulate_with_no_tracker_listening_fails():
    import socket

    with socket.socket() as s:  # a free port that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run("simulate", "--duration", "0.3", "--seconds", "1", "--connect",
            f"tcp://127.0.0.1:{port}")
    assert r.returncode == 1 and "no tracker was listening" in r.stderr
    assert "Traceback" not in r.stderr
