"""The pacer: the ladder of light fits for ticks the full fit would make late, and how the core
uses it."""

import msgpack
import pytest
import torch

from tracker.server.pacing import Pacer, default_light_iterations

MS = 1_000_000
PERIOD = 11 * MS  # about 90 Hz


def test_light_when_the_full_fit_would_be_late_and_back_when_it_fits():
    p = Pacer(high=0.85, low=0.65, probe_s=10.0, window=1)  # window 1: the last sample
    assert not p.choose(0, 1, PERIOD)  # nothing measured yet: the full fit
    p.observe(0, 1, 10 * MS)  # 10 ms > 0.85 * 11
    assert p.choose(1, 1, PERIOD) == 1
    p.observe(1, 1, 6 * MS)
    p.observe(0, 1, 8 * MS)  # between low and high: the choice stays
    assert p.choose(2, 1, PERIOD) == 1
    p.observe(0, 1, 7 * MS)  # < 0.65 * 11
    assert p.choose(3, 1, PERIOD) == 0
    p.observe(0, 1, 8 * MS)  # in the band again: stays full
    assert p.choose(4, 1, PERIOD) == 0
    p.observe(0, 1, 10 * MS)
    assert p.choose(5, 1, PERIOD) == 1
    p.forget()  # another engine: nothing known, the full fit until measured
    assert p.choose(6, 1, PERIOD) == 0 and not p.samples


def test_the_ladder_goes_down_and_up_one_rung_at_a_time():
    """Three rungs: down to the second light fit only while the first is late too, back up
    one rung at a time as each heavier one fits again (measured by the probes)."""
    p = Pacer(high=0.9, low=0.7, probe_s=10.0, window=1)
    p.observe(0, 1, 12 * MS)  # full: late
    assert p.choose(1, 1, PERIOD, levels=3) == 1
    p.observe(1, 1, 9 * MS)  # the light fit: in the band, so it stays
    assert p.choose(2, 1, PERIOD, levels=3) == 1
    p.observe(1, 1, 10.5 * MS)  # late as well: one rung further down
    assert p.choose(3, 1, PERIOD, levels=3) == 2
    p.observe(2, 1, 5 * MS)
    assert p.choose(4, 1, PERIOD, levels=3) == 2  # the lightest: nowhere further down
    p.observe(1, 1, 7 * MS)  # the first light fit fits again (< 0.7 * 11)
    assert p.choose(6, 1, PERIOD, levels=3) == 1  # up one rung: not straight to full
    assert p.choose(7, 1, PERIOD, levels=3) == 1
    p.observe(0, 1, 7 * MS)
    assert p.choose(8, 1, PERIOD, levels=3) == 0
    assert p.report(3)["fit_ms"] == [7.0, 7.0, 5.0]
    assert p.report(4)["fit_ms"] == [7.0, 7.0, 5.0, None]  # a rung not run yet
    fresh = Pacer(window=1)  # an engine with two rungs runs its lightest for a deeper level
    fresh.observe(0, 1, 20 * MS)
    fresh.observe(1, 1, 20 * MS)
    assert [fresh.choose(t, 1, PERIOD, levels=2) for t in (1, 2)] == [1, 1]


def test_the_time_beside_the_fit_counts():
    """A fit that fits the period alone is late when the rest of the tick (waiting, messages,
    sending) pushes the pose past the next frame."""
    p = Pacer(window=1)
    p.observe(0, 1, 8 * MS)
    assert not p.choose(0, 1, PERIOD)
    p.observe_rest(1, 1, 1 * MS)  # beside a light fit: used only while none beside the full
    assert not p.choose(1, 1, PERIOD)
    p.observe_rest(0, 1, 3 * MS)  # 11 ms > 0.95 * 11
    assert p.choose(2, 1, PERIOD) == 1
    assert p.report() == {"light": True, "level": 1, "batch": 1, "period_ms": 11.0,
                          "fit_ms": [8.0, None], "rest_ms": 1.0}


def test_batch_buckets_and_unknown_periods_are_their_own_case():
    p = Pacer(window=1)
    p.observe(0, 8, 20 * MS)
    assert not p.choose(0, 1, PERIOD)  # batch 1 not measured
    assert p.choose(0, 7, PERIOD)  # 7 runs in the bucket of 8
    p.forget()
    p.observe(0, 8, 20 * MS)
    assert not p.choose(0, 8, 0)  # no frame period known yet


def test_while_light_the_full_fit_is_measured_again_once_per_probe_period():
    p = Pacer(probe_s=1.0, window=1)
    p.observe(0, 1, 20 * MS)
    t, choices = 0, []
    for _ in range(300):  # 3 s of ticks, 10 ms apart
        choices.append(p.choose(t, 1, PERIOD))
        t += 10 * MS
    assert [i for i, c in enumerate(choices) if not c] == [100, 200]


def test_one_slow_fit_does_not_make_an_on_time_server_light():
    """The median of the last fits: a stall (a fit three times as long) changes nothing, a
    lasting slowdown does, after about half the window."""
    p = Pacer(window=9)
    for _ in range(9):
        p.observe(0, 1, 6 * MS)  # 55 % of the period
    p.observe(0, 1, 20 * MS)
    assert not p.choose(0, 1, PERIOD)
    slow = 0
    while not p.choose(slow + 1, 1, PERIOD):
        p.observe(0, 1, 12 * MS)
        slow += 1
    assert slow == 4


def test_default_light_iterations_keep_the_parity():
    assert default_light_iterations(6) == (4, 2)
    assert default_light_iterations(5) == (3,)
    assert default_light_iterations(4) == (2,)
    assert default_light_iterations(3) == ()
    with pytest.raises(ValueError):
        Pacer(high=0.5, low=0.6)


@pytest.fixture(scope="module")
def ladder():
    """A small eager engine (4 iterations) with its light fits (2, 1), on the bundled body."""
    from engines.base import EagerEngine
    from tracker.body import load_body_model
    from tracker.fitter.fitter import FitterConfig, NeuralFitter

    torch.manual_seed(0)
    fitter = NeuralFitter(load_body_model(), FitterConfig(
        hidden=32, layers=2, init_hidden=32, lg_hidden=16, iterations=4)).eval()
    return (EagerEngine(fitter).with_rung(EagerEngine(fitter.with_iterations(2)))
            .with_rung(EagerEngine(fitter.with_iterations(1))))


def _frames(core, seq: int, sessions=("a",)):
    from tracker.server.faults import good_message

    for sid in sessions:
        msg = good_message(sid, seq)
        msg["t"] = seq * PERIOD
        core.receive(msgpack.packb(msg), seq * PERIOD + 1)


def test_the_core_runs_the_fits_the_pacer_chooses_and_counts_them(ladder):
    from tracker.server.core import TrackerCore

    assert ladder.iterations == (4, 2, 1) and ladder.light.fitter.phi is ladder.fitter.phi
    assert [e.fitter.cfg.iterations for e in ladder.light.rungs] == [2, 1]
    core = TrackerCore(ladder, pacer=Pacer(high=1e-9, low=1e-9))  # any measured fit is late
    levels = []
    for seq in range(1, 6):
        _frames(core, seq)
        tin = core.begin_tick(seq * PERIOD + 2)
        levels.append(tin.level)
        core.run_tick(tin)
    # the first tick measures the full fit (no period known yet either); from the second
    # frame on the period is known, and every fit is "late": one rung down per tick
    assert levels == [0, 1, 2, 2, 2]
    st = core.status(6 * PERIOD)
    assert st["light_ticks"] == 4 and st["iterations"] == {"full": 4, "light": [2, 1]}
    assert st["ticks_by_iterations"] == {"4": 1, "2": 1, "1": 3}
    assert st["pacing"]["level"] == 2 and len(st["pacing"]["fit_ms"]) == 3


def test_a_recorded_choice_is_what_runs(ladder):
    """Replay passes the recorded choice: the same frames give each rung's numbers; a level
    past an engine's lightest runs its lightest (an engine without light fits: the full fit),
    and ``true`` from a recording made before the ladder is the first light fit."""
    from tracker.server.core import TrackerCore

    out = {}
    cases = (("full", ladder, 0), ("light", ladder, 1), ("lighter", ladder, 2),
             ("bool", ladder, True), ("past", ladder.with_light(None).with_rung(ladder.light), 2),
             ("no-light", ladder.with_light(None), 2))
    for name, engine, level in cases:
        core = TrackerCore(engine, pacer=Pacer(high=1e-9, low=1e-9))
        _frames(core, 1)
        out[name] = torch.tensor(core.tick(PERIOD + 2, level).poses[0].msg["joints"])
        assert core.totals["light_ticks"] == (name not in ("full", "no-light"))
    assert torch.equal(out["full"], out["no-light"])
    assert torch.equal(out["light"], out["bool"]) and torch.equal(out["light"], out["past"])
    assert not torch.allclose(out["full"], out["light"])
    assert not torch.allclose(out["light"], out["lighter"])


@pytest.mark.parametrize("value, message", [
    ("9", "--light-iterations must be from 1 to 5 (the checkpoint runs 6), or 0 for none; got 9"),
    ("4,9", "--light-iterations must be from 1 to 5 (the checkpoint runs 6), or 0 for none; "
            "got 9"),
    ("x", "argument --light-iterations: expected 'auto', 0, or whole numbers separated by "
          "commas (e.g. 4,2), got 'x'"),
    ("4,0", "argument --light-iterations: expected 'auto', 0, or whole numbers separated by "
            "commas (e.g. 4,2), got '4,0'"),
])
def test_a_bad_light_iteration_count_is_a_one_line_error(value, message):
    import subprocess
    import sys

    from server_harness import ROOT

    out = subprocess.run([sys.executable, "-m", "tracker.cli", "serve", "--engine", "eager",
                          "--light-iterations", value, "--ingest", "tcp://127.0.0.1:0",
                          "--publish", "tcp://127.0.0.1:0"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines()[-1].endswith(message), out.stderr
    assert "Traceback" not in out.stderr


def test_light_iterations_through_the_python_api():
    """``build_engine`` takes what the option takes (text, a count, a list) and sorts the
    ladder; a bad value is a UserError, not a traceback."""
    from tracker.errors import UserError
    from tracker.server.build import build_engine

    for asked in ("2,4", [4, 2], (2, 4, 4)):
        engine, info = build_engine(engine="eager", light_iterations=asked)
        assert engine.iterations == (6, 4, 2) and info["light_iterations"] == [4, 2]
    with pytest.raises(UserError, match="got 'x'"):
        build_engine(engine="eager", light_iterations="x")


def test_replay_of_a_recording_without_a_light_fit(tmp_path):
    """A server without a light fit records ``light_iterations`` as nothing (metadata is
    text): a replay reads that as none, and says nothing differs."""
    from tracker.cli import main
    from tracker.recording import INGEST, RecordingWriter
    from tracker.server.faults import good_message

    path = tmp_path / "none.mcap"
    rec = RecordingWriter(path, {"engine": "eager", "light_iterations": None,
                                 "clock": "monotonic_ns", "visibility": "device"})
    rec.write(INGEST, 10, msgpack.packb(good_message("a", 1)))
    rec.close()
    assert main(["replay", str(path), "--threads", "1"]) == 0
