"""Training: a short smoke run, resume, DDP with two gloo processes, and clear errors."""

import os
import socket
import subprocess
import sys

import pytest
import torch

from tracker.fitter.checkpoint import load_fitter, read_checkpoint
from tracker.motion.procedural import generate_motion, write_amass_npz
from trainer.cli import main as trainer_main

TINY = ["--hidden", "32", "--layers", "1", "--init-hidden", "32", "--iterations", "2",
        "--window", "3", "--batch", "2", "--mesh-vertices", "64", "--warmup-steps", "1",
        "--val-fraction", "0.34", "--fps", "30"]


@pytest.fixture(scope="module")
def motions(tmp_path_factory):
    d = tmp_path_factory.mktemp("motion")
    for seed in range(3):
        write_amass_npz(d / f"clip{seed}.npz", generate_motion(None, 1.5, 30.0, seed))
    return d


def test_two_step_smoke_run_then_resume(motions, tmp_path):
    run = tmp_path / "run"
    args = ["fit-amass", "--amass-root", str(motions), "--out", str(run), "--max-steps", "2",
            *TINY]
    assert trainer_main(args) == 0
    blob = read_checkpoint(run / "last.pt")
    assert blob["meta"]["step"] == 2 and "optimizer" in blob
    fitter = load_fitter(run / "final.pt")
    assert fitter.cfg.hidden == 32 and not fitter.training
    before = {k: v.clone() for k, v in fitter.state_dict().items()}
    # resume continues from step 2 to step 3 and changes the weights
    assert trainer_main([*args[:-len(TINY)], *TINY, "--resume", "--max-steps", "3"][:]) == 0
    blob = read_checkpoint(run / "last.pt")
    assert blob["meta"]["step"] == 3
    after = load_fitter(run / "final.pt").state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("gru"))
    assert (run / "tb").is_dir()


def test_help_shows_every_config_field_with_its_default(capsys):
    import dataclasses

    from tracker.fitter.data_term import DataTermConfig
    from tracker.fitter.fitter import FitterConfig
    from trainer.train import TrainConfig

    with pytest.raises(SystemExit):
        trainer_main(["fit-amass", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    from trainer.losses import LossWeights

    names = [f.name for f in dataclasses.fields(TrainConfig)
             if f.name not in ("data", "fitter", "losses")]
    names += [f.name for f in dataclasses.fields(FitterConfig) if f.name != "data_term"]
    names += ["data_term_" + f.name for f in dataclasses.fields(DataTermConfig)]
    names += ["losses_" + f.name for f in dataclasses.fields(LossWeights)]
    for n in names:
        assert f"--{n.replace('_', '-')} " in text, n
    assert "--amass-root" in text and "(default: 0.9)" in text and "(default: 256)" in text


def test_regressor_stage_with_augmentation_then_full_stage_from_an_old_checkpoint(
        motions, tmp_path):
    """Stage 1 trains Φ alone on augmented clips; a checkpoint from before the motion
    features fine-tunes with them added (zero-initialised input columns)."""
    old = tmp_path / "old"
    assert trainer_main(["fit-amass", "--amass-root", str(motions), "--out", str(old),
                         "--max-steps", "1", "--no-motion", "--augment", *TINY]) == 0
    assert not load_fitter(old / "final.pt").cfg.motion
    phi = tmp_path / "phi"
    assert trainer_main(["fit-amass", "--amass-root", str(motions), "--out", str(phi),
                         "--max-steps", "2", "--stage", "regressor", "--init",
                         str(old / "final.pt"), "--variants", "1", *TINY]) == 0
    a, b = load_fitter(old / "final.pt"), load_fitter(phi / "final.pt")
    assert b.cfg.motion
    assert not torch.equal(a.phi[0].weight, b.phi[0].weight[:, : a.phi[0].weight.shape[1]])
    assert torch.equal(a.gru.cells[0].W.weight, b.gru.cells[0].W.weight[:, :a.gru.cells[0]
                                                                        .W.weight.shape[1]])
    full = tmp_path / "full"
    assert trainer_main(["fit-amass", "--amass-root", str(motions), "--out", str(full),
                         "--max-steps", "1", "--init", str(phi / "final.pt"), "--burn-in", "2",
                         "--augment", *TINY]) == 0


def test_fine_tune_with_burn_in_and_velocity_loss(motions, tmp_path):
    """--init starts from a checkpoint's weights; burn-in frames stream without gradient."""
    base = tmp_path / "base"
    assert trainer_main(["fit-amass", "--amass-root", str(motions), "--out", str(base),
                         "--max-steps", "1", *TINY]) == 0
    tuned = tmp_path / "tuned"
    assert trainer_main(["fit-amass", "--amass-root", str(motions), "--out", str(tuned),
                         "--max-steps", "2", "--init", str(base / "final.pt"), "--burn-in", "2",
                         "--per-frame-fraction", "0", *TINY]) == 0
    a, b = load_fitter(base / "final.pt"), load_fitter(tuned / "final.pt")
    assert b.cfg == a.cfg  # the architecture comes from the --init checkpoint
    assert any(not torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict()
               if k.startswith("gru"))


def test_clear_errors(tmp_path, capsys):
    assert trainer_main(["fit-amass", "--amass-root", str(tmp_path / "nope"), "--out",
                         str(tmp_path / "r")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert trainer_main(["fit-amass", "--amass-root", str(tmp_path / "empty"), "--out",
                         str(tmp_path / "r"), *TINY]) == 2
    assert "no usable motion clips" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_gloo_processes(motions, tmp_path):
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(free_port()), "-m", "trainer.cli", "fit-amass",
           "--amass-root", str(motions), "--out", str(run), "--max-steps", "2",
           "--device", "cpu", *TINY]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    blob = read_checkpoint(run / "final.pt")
    assert blob["meta"]["world_size"] == 2 and blob["meta"]["step"] == 2


def test_a_step_with_a_non_finite_gradient_is_skipped(motions, tmp_path, monkeypatch, capsys):
    """A window whose fit diverges must not poison the weights."""
    import trainer.train as train_mod

    real = train_mod.WindowObjective.forward

    def poisoned(self, batch, per_frame):
        out = real(self, batch, per_frame)
        return {**out, "total": out["total"] * float("nan")}

    monkeypatch.setattr(train_mod.WindowObjective, "forward", poisoned)
    run = tmp_path / "run"
    assert trainer_main(["fit-amass", "--amass-root", str(motions), "--out", str(run),
                         "--max-steps", "2", *TINY]) == 0
    fitter = load_fitter(run / "final.pt")
    assert all(torch.isfinite(v).all() for v in fitter.state_dict().values()
               if v.is_floating_point())
    assert "non-finite gradient, skipped (2 so far)" in capsys.readouterr().out
