"""A new user's first commands: defaults that work as written, one-line errors."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from tracker.cli import SUBCOMMANDS, build_parser


def run(*args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    code = "import sys; from tracker.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


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


def _shown(value) -> list[str]:
    """The ways a help text may write an option's default."""
    if isinstance(value, list | tuple):
        return [" ".join(map(str, value))]
    if isinstance(value, float):
        return [str(value), f"{value:g}"]
    return [str(value)]


def test_every_option_with_a_default_shows_it_in_help():
    """Each optional argument of every ``tracker`` and ``trainer`` subcommand whose default
    is not None/False names it in ``--help`` (as the help formatter renders it)."""
    import argparse

    from trainer.cli import SUBCOMMANDS as TRAINER

    missing, checked = [], 0
    for prog, subs in (("tracker", SUBCOMMANDS), ("trainer", TRAINER)):
        for name in subs:
            parser = build_parser(prog, subs, [name])
            sub = next(a for a in parser._actions
                       if isinstance(a, argparse._SubParsersAction)).choices[name]
            fmt = sub._get_formatter()
            for a in sub._actions:
                if (not a.option_strings or a.default in (None, False, argparse.SUPPRESS)
                        or a.help == argparse.SUPPRESS):
                    continue
                checked += 1
                text = " ".join(fmt._expand_help(a).split())
                if "default" not in text.lower() or not any(v in text for v in
                                                            _shown(a.default)):
                    missing.append(f"{prog} {name} {a.option_strings[0]}: {text!r} "
                                   f"(default {a.default!r})")
    assert checked > 50  # the walk reached the subcommands
    assert not missing, "\n".join(missing)


def trainer(*args: str, timeout: float = 180, cwd=None) -> subprocess.CompletedProcess:
    code = "import sys; from trainer.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def one_line_error(r: subprocess.CompletedProcess, *words: str) -> str:
    """The last stderr line: the error, with no traceback; ``words`` are in it."""
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    for w in words:
        assert w in line, line
    for internal in ("allow_pickle", "inline_container", "PytorchStreamReader", "miniz"):
        assert internal not in r.stderr + r.stdout
    return line


def test_a_cut_bvh_is_refused_by_name_with_the_line_and_nothing_is_written(tmp_path):
    """A BVH cut inside its motion data (a truncated copy): ``trainer import-bvh`` names the
    file and the line and frame where the data stops, writes nothing for it (and removes what an
    earlier import wrote), and exits 1."""
    import json

    src = tmp_path / "mocap"
    src.mkdir()
    head = ("HIERARCHY\nROOT hips\n{\n OFFSET 0 90 0\n CHANNELS 6 Xposition Yposition Zposition "
            "Zrotation Xrotation Yrotation\n End Site\n {\n  OFFSET 0 10 0\n }\n}\nMOTION\n"
            "Frames: 120\nFrame Time: 0.0333333\n")
    frames = "".join(f"{k * 0.5:.1f} 90 0 0 0 0\n" for k in range(120))
    cut = head + frames[: len(frames) // 2 + 3]  # ends in the middle of a frame's line
    (src / "take.bvh").write_text(cut)
    out = tmp_path / "set"
    out.mkdir()
    (out / "take.npz").write_bytes(b"from an earlier import of the whole file")
    (out / "summary.json").write_text(json.dumps({"clips": {"take": {
        "name": "take", "source": "x", "files": ["take.npz"], "key": "old"}}}))
    r = trainer("import-bvh", str(src), "--out", str(out))
    assert r.returncode == 1, r.stdout + r.stderr
    lines = [x for x in r.stdout.splitlines() if x.startswith("refused:")]
    assert len(lines) == 1 and "take.bvh" in lines[0], r.stdout
    first_cut = 14 + cut.count("\n") - head.count("\n")  # the line of the incomplete frame
    assert f"truncated at line {first_cut}, in frame 61 of 120 declared frames" in lines[0]
    assert "refused as cut short: 1" in r.stdout
    assert "take.bvh" in r.stderr.strip().splitlines()[-1] and "Traceback" not in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]
    entry = json.loads((out / "summary.json").read_text())["clips"]["take"]
    assert entry["cut"] and "files" not in entry
    r = trainer("import-bvh", str(src), "--out", str(out))  # again: still said, still 1
    assert r.returncode == 1 and "take.bvh" in r.stderr


def test_import_bvh_of_a_file_that_is_not_bvh(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# notes\n")
    r = trainer("import-bvh", str(readme), "--out", str(tmp_path / "out"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"failed: {readme}: not a BVH file" in r.stdout


@pytest.fixture(scope="module")
def wrong_files(tmp_path_factory):
    """Files of the wrong kind under the names a user might give."""
    import numpy as np

    d = tmp_path_factory.mktemp("wrong")
    (d / "README.md").write_text("# fitstream\n\nA tracker.\n")
    (d / "text.npz").write_text("# fitstream\n\nA tracker.\n")
    np.savez(d / "arrays.npz", a=np.zeros(3))
    from tracker.body.model_file import DEFAULT_MODEL_PATH
    from tracker.fitter.checkpoint import DEFAULT_CHECKPOINT

    (d / "cut.pt").write_bytes(DEFAULT_CHECKPOINT.read_bytes()[:20000])
    (d / "cut.npz").write_bytes(DEFAULT_MODEL_PATH.read_bytes()[:20000])
    return d


@pytest.mark.parametrize("name, kind", [("README.md", "a text file"),
                                        ("arrays.npz", "a NumPy .npz archive"),
                                        ("cut.pt", "a damaged or truncated zip archive")])
def test_a_wrong_checkpoint_is_one_line(wrong_files, name, kind):
    r = run("serve", "--checkpoint", str(wrong_files / name), timeout=60)
    line = one_line_error(r, f"{wrong_files / name}: cannot read checkpoint ({kind}; expected "
                             "a .pt file written by trainer fit-amass)")
    assert r.returncode == 2 and line.startswith("tracker serve: error:")


@pytest.mark.parametrize("name, why", [
    ("README.md", "unsupported body model file type (expected .npz or .pkl)"),
    ("text.npz", "cannot read body model file (a text file; expected an SMPL+H model"),
    ("cut.npz", "cannot read body model file (a damaged or truncated zip archive; expected")])
def test_a_wrong_body_model_is_one_line(wrong_files, name, why):
    r = run("serve", "--body-model", str(wrong_files / name), timeout=60)
    one_line_error(r, f"{wrong_files / name}: {why}")
    assert r.returncode == 2


def test_a_wrong_motion_file_is_one_line(wrong_files):
    readme = wrong_files / "README.md"
    r = trainer("eval", "--data", str(readme), "--json", str(wrong_files / "e.json"))
    one_line_error(r, f"trainer eval: error: {readme}: not a readable .npz (a text file; "
                      "expected an AMASS-layout .npz motion)")
    r = run("simulate", str(wrong_files / "cut.npz"), "--duration", "0.3", timeout=60)
    one_line_error(r, "cut.npz: not a readable .npz (a damaged or truncated zip archive")
    r = trainer("eval", "--data", str(readme), "--json", str(wrong_files / "e.json"),
                "--prior", str(wrong_files / "arrays.npz"))
    one_line_error(r, "arrays.npz: not a pose GMM file (an .npz without weights, means and "
                      "covariances; expected one written by trainer fit-gmm)")


def test_fit_amass_with_its_only_clip_in_validation_says_so(tmp_path):
    """The one clip went to validation: the error says that, not "shorter than the window"."""
    import types

    import numpy as np

    from trainer.dataset import split_clips

    root = tmp_path / "clips"  # a clip's name: the path below the root, the root's name first
    root.mkdir()
    name = next(n for n in (f"take{k}" for k in range(1000))  # default split: 10 %, seed 0
                if split_clips([types.SimpleNamespace(name=f"clips/{n}")], 0.1, 0)[1])
    np.savez(root / f"{name}.npz", poses=np.zeros((200, 156)), trans=np.zeros((200, 3)),
             betas=np.zeros(16), gender="neutral", mocap_framerate=60.0)
    r = trainer("fit-amass", "--amass-root", str(root), "--out", str(tmp_path / "run"),
                "--max-steps", "1")
    line = one_line_error(r, "all 1 clips went to validation", "--val-fraction 0")
    assert "shorter than" not in r.stdout + r.stderr and r.returncode == 2, line


def test_fit_amass_defaults_to_the_bundled_width():
    import re

    from tracker.fitter.checkpoint import DEFAULT_CHECKPOINT, read_checkpoint

    text = " ".join(trainer("fit-amass", "--help").stdout.split())
    hidden = read_checkpoint(DEFAULT_CHECKPOINT)["config"]["hidden"]
    entry = re.search(r"--hidden N (GRU width[^\[]*?) --layers", text).group(1)
    assert hidden == 256 and entry.endswith(f"(default: {hidden})"), entry
    assert "default: 1024" not in entry and "1024 by default" not in entry


def test_eval_plot_error_axes_start_at_zero(tmp_path, monkeypatch):
    """``trainer eval --plot``: errors are never negative, so every panel's y axis runs from 0
    (no negative ticks) to at least the largest value, in round steps."""
    from trainer.commands import eval as ev

    y_ticks, axes = ev.y_ticks, []

    def spy(values, *a, **k):
        axes.append((list(values), y_ticks(values, *a, **k)))
        return axes[-1][1]

    monkeypatch.setattr(ev, "y_ticks", spy)
    its = [{key: (3.0 - i) * (j + 1) for _, series in ev.PANELS
            for j, (key, _) in enumerate(series)} for i in range(3)]
    png = ev.plot_iterations({"full": its, "half-space": its}, tmp_path / "it.png")
    assert png.is_file() and len(axes) == 2 * len(ev.PANELS)
    for values, ticks in axes:
        assert ticks[0] == 0 and ticks == sorted(set(ticks)) and ticks[-1] >= max(values)
    assert y_ticks([3.2, 10.7]) == [0, 3, 6, 9, 12]
    assert y_ticks([])[0] == 0 and y_ticks([0.0, 0.0])[-1] > 0


# ------------------------------------------------------------------------------ the viewer
SAMPLE = Path(__file__).resolve().parents[1] / "tracker" / "data" / "sample.mcap"


@pytest.mark.parametrize("display", [None, ":97"])
@pytest.mark.parametrize("command", [["view"], ["replay", str(SAMPLE), "--view"]])
def test_the_viewer_without_a_display_refuses_at_once(command, display):
    """No display: one line and exit 2 within seconds, not a window rendered off-screen that
    nobody sees until the process is killed (``--screenshot`` alone may render off-screen)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    if display:  # set, but no X server answers there
        env["DISPLAY"] = display
    t0 = time.monotonic()
    r = run(*command, timeout=60, env=env)
    assert time.monotonic() - t0 < 30
    line = one_line_error(r, "display", "xvfb-run", "--screenshot")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) <= 2, r.stderr
    assert line.startswith(f"tracker {command[0]}: error: ")
    assert (display or "DISPLAY and WAYLAND_DISPLAY are not set") in line


def test_the_viewer_counts_every_pose_received_and_draws_the_newest():
    """The overlay's pose rate is the rate poses arrive (a sliding window on the receive
    side), however few of them are drawn; and it falls to 0 when they stop."""
    import msgpack

    from tracker.body import load_body_model
    from tracker.recording import read_recording
    from tracker.viewer.source import LatestScene

    pose = next(msgpack.unpackb(m.data) for m in read_recording(SAMPLE)
                if m.topic.startswith("pose/"))
    sink = LatestScene(load_body_model())
    now = [100.0]
    sink.clock = lambda: now[0]
    for k in range(270):  # 3 s at 90 Hz; nothing drawn meanwhile
        now[0] = 100.0 + k / 90
        sink(dict(pose, seq=k), None)
    sink(dict(pose, session="other"), None)  # another session: not counted
    assert abs(sink.pose_rate() - 90) <= 1
    st = sink.take()
    assert st.seq == 269 and abs(st.pose_rate - 90) <= 1 and sink.take() is None
    assert sink.pose_rate(now[0] + 0.5) == pytest.approx(45, abs=1)
    assert sink.pose_rate(now[0] + 2.0) == 0


def test_the_legend_explains_the_colours_and_toggles():
    import numpy as np

    from tracker.viewer import scene as S
    from tracker.viewer.app import Legend, camera_frame

    text = " ".join(t for t, _ in S.LEGEND)
    for words in ("orange", "green", "red dots: left", "blue dots: right", "grey",
                  "poses/s", "L: hide"):
        assert words in text
    colours = dict(S.LEGEND)
    assert colours["red dots: left fingertips"] == S.HAND_COLORS[0]
    assert colours["green lines: ground truth (simulated data)"] == S.GT_COLOR
    # a hand without tips is shrunk, not collapsed: zero normals had Open3D draw all tips black
    tips = S.tip_markers(np.zeros((2, 5, 3)), np.array([False, True]), np.array([False, True]))
    np.testing.assert_allclose(np.linalg.norm(np.asarray(tips.vertex_normals), axis=1), 1)

    class Vis:  # records what the legend asks of the window
        def __init__(self):
            self.shown = []

        def add_geometry(self, g, reset_bounding_box=True):
            self.shown.append(g)

        def remove_geometry(self, g, reset_bounding_box=True):
            self.shown.remove(g)

        def update_geometry(self, g):
            pass

        def get_view_control(self):
            raise AssertionError("placed with the given camera")

    vis = Vis()
    legend = Legend(vis, shown=False)
    assert vis.shown == []
    params = types.SimpleNamespace(intrinsic=types.SimpleNamespace(
        intrinsic_matrix=np.array([[692.8, 0, 639.5], [0, 692.8, 399.5], [0, 0, 1]]),
        width=1280, height=800), extrinsic=np.eye(4))
    legend.place = functools.partial(Legend.place, legend, params)
    assert legend.toggle() and vis.shown == [legend.mesh]  # key L: shown
    v = np.asarray(legend.mesh.vertices)
    uv = v[:, :2] / v[:, 2:] * 692.8 + [639.5, 399.5]  # the identity camera: pixels
    assert (uv[:, 0] >= 0).all() and uv[:, 0].max() < 640 and uv[:, 1].max() <= 800
    assert uv[:, 1].min() > 400  # the bottom-left corner
    assert legend.toggle() and vis.shown == []  # and hidden again

    # Open3D's extrinsic as built from a front and an up that are not square to each other
    front, up = np.array([0.5, 0.3, 0.8]), np.array([0.0, 1.0, 0.0])
    f = front / np.linalg.norm(front)
    right = np.cross(up, f) / np.linalg.norm(np.cross(up, f))
    E = np.eye(4)
    E[:3, :3] = np.stack([-right, -up, -f])
    E[:3, 3] = -E[:3, :3] @ np.array([1.0, 2.0, 3.0])
    R, eye = camera_frame(E)
    np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(R[:, 2], -f, atol=1e-12)
    np.testing.assert_allclose(eye, [1.0, 2.0, 3.0], atol=1e-12)
