"""tools/widen_initialisers.py widens Φ, Φh without changing what they compute (Net2Net)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from tracker.body import load_body_model
from tracker.fitter.checkpoint import load_fitter, save_checkpoint
from tracker.fitter.fitter import FitterConfig, NeuralFitter

TOOL = Path(__file__).resolve().parents[1] / "tools" / "widen_initialisers.py"


def run_tool(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def test_widened_initialisers_compute_what_the_narrow_ones_did(tmp_path):
    torch.manual_seed(0)
    body = load_body_model()
    narrow = NeuralFitter(body, FitterConfig(hidden=16, layers=1, init_hidden=12, lg_hidden=8,
                                             iterations=1))
    for bn in (m for m in narrow.modules() if isinstance(m, torch.nn.BatchNorm1d)):
        with torch.no_grad():  # trained-looking statistics and affine parameters
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0, 0.1)
    src, dst = tmp_path / "narrow.pt", tmp_path / "wide.pt"
    save_checkpoint(src, narrow)
    res = run_tool(src, dst, "--width", 30, "--noise", 0)
    assert res.returncode == 0, res.stderr
    assert "12 -> 30" in res.stdout
    narrow, wide = load_fitter(src), load_fitter(dst)
    assert wide.cfg.init_hidden == 30 and wide.phi[0].out_features == 30
    x = torch.randn(64, narrow.phi[0].in_features)
    with torch.no_grad():
        for a, b in ((narrow.phi, wide.phi), (narrow.phi_h, wide.phi_h)):
            torch.testing.assert_close(b.eval()(x), a.eval()(x), atol=1e-4, rtol=1e-4)
            # batch statistics of a copied unit are its source's: training mode agrees too
            torch.testing.assert_close(b.train()(x), a.train()(x), atol=1e-4, rtol=1e-4)
    kept = [k for k in narrow.state_dict() if not k.startswith(("phi.", "phi_h.", "body."))]
    assert kept and all(torch.equal(narrow.state_dict()[k], wide.state_dict()[k]) for k in kept)


def test_a_width_that_is_not_wider_is_refused_in_one_line(tmp_path):
    body = load_body_model()
    src = tmp_path / "n.pt"
    save_checkpoint(src, NeuralFitter(body, FitterConfig(hidden=16, layers=1, init_hidden=12,
                                                         lg_hidden=8, iterations=1)))
    res = run_tool(src, tmp_path / "w.pt", "--width", 12)
    assert res.returncode != 0
    assert res.stderr.strip() == "error: --width 12 is not wider than 12"
    assert not (tmp_path / "w.pt").exists()
