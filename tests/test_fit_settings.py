"""tools/fit_settings.py sets carry gates by region, the joints left to Φ, N and data-term
weights, and nothing else."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from tracker.body import load_body_model
from tracker.body.joints import JOINT_NAMES
from tracker.fitter.checkpoint import load_fitter, save_checkpoint
from tracker.fitter.fitter import FitterConfig, NeuralFitter

TOOL = Path(__file__).resolve().parents[1] / "tools" / "fit_settings.py"


def run_tool(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def small_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    fitter = NeuralFitter(load_body_model(), FitterConfig(hidden=16, layers=1, init_hidden=12,
                                                          lg_hidden=8, iterations=1,
                                                          carry=0.9))
    save_checkpoint(path, fitter, meta={"step": 7})
    return path


def test_gates_and_regressor_joints_are_written_and_nothing_else(tmp_path):
    src, dst = small_checkpoint(tmp_path / "a.pt"), tmp_path / "b.pt"
    res = run_tool(src, dst, "--gate", "translation=0", "legs=0.25", "left_wrist=1",
                   "--regressor-joints", "pelvis", "legs")
    assert res.returncode == 0, res.stderr
    a, b = load_fitter(src), load_fitter(dst)
    gate = torch.sigmoid(b.carry_logit)
    legs = [6 * j + k for j in (1, 2, 4, 5, 7, 8, 10, 11) for k in range(6)]
    assert torch.all(gate[312:] <= 1.01e-4)
    assert torch.allclose(gate[legs], torch.full((48,), 0.25))
    wrist = 6 * JOINT_NAMES.index("left_wrist")
    assert torch.all(gate[wrist:wrist + 6] > 1 - 1e-6)
    untouched = [i for i in range(312) if i not in legs and not wrist <= i < wrist + 6]
    assert torch.equal(b.carry_logit[untouched], a.carry_logit[untouched])
    assert b.cfg.regressor_joints[0] == "pelvis" and len(b.cfg.regressor_joints) == 9
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa if k != "carry_logit")
    meta = torch.load(dst, weights_only=True)["meta"]
    assert meta["step"] == 7 and meta["gates"]["set"]["translation"] == 0.0
    assert "translation  0.000" in res.stdout


def test_iterations_and_data_term_are_written_with_the_same_weights(tmp_path):
    src, dst = small_checkpoint(tmp_path / "a.pt"), tmp_path / "b.pt"
    res = run_tool(src, dst, "--iterations", "3", "--data-term", "wrist=1.5", "head=0")
    assert res.returncode == 0, res.stderr
    a, b = load_fitter(src), load_fitter(dst)
    assert a.cfg.iterations == 1 and b.cfg.iterations == 3
    assert (b.cfg.data_term.wrist, b.cfg.data_term.head) == (1.5, 0.0)
    assert b.cfg.data_term.tips == a.cfg.data_term.tips
    assert b.cfg.regressor_joints == a.cfg.regressor_joints
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert "iterations: 3" in res.stdout and "wrist 1.5" in res.stdout
    meta = torch.load(dst, weights_only=True)["meta"]["gates"]
    assert meta["iterations"] == 3 and meta["data_term"] == {"wrist": 1.5, "head": 0.0}


def test_bad_region_or_value_is_one_line_and_writes_nothing(tmp_path):
    src, dst = small_checkpoint(tmp_path / "a.pt"), tmp_path / "b.pt"
    for args in (["--gate", "tail=0.5"], ["--gate", "legs=1.5"], ["--gate", "legs=x"],
                 ["--regressor-joints", "left_kne"], ["--iterations", "0"],
                 ["--data-term", "elbow=1"], ["--data-term", "wrist=-1"],
                 ["--data-term", "robust_scale=0"], ["--data-term", "tips=nan"]):
        res = run_tool(src, dst, *args)
        assert res.returncode == 2, (args, res.stderr)
        assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1, res.stderr
        assert "Traceback" not in res.stderr
        assert not dst.exists()
    res = run_tool(src)  # print only
    assert res.returncode == 0 and "legs" in res.stdout and not dst.exists()
