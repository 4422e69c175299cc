"""``trainer eval`` end to end on tiny procedural clips with small untrained fitters, plus the
streaming / per-frame paths, the GMM prior and the L-BFGS baseline."""

import json

import numpy as np
import pytest
import torch
from synthetic_models import write_open_style_npz

from engines.registry import make_engine
from tracker.body import load_body_model
from tracker.fitter.checkpoint import save_checkpoint
from tracker.fitter.data_term import data_term
from tracker.fitter.fitter import FitterConfig, NeuralFitter
from tracker.fitter.motion import motion_states
from tracker.motion.procedural import generate_motion, write_amass_npz
from tracker.signals.headset import head_to_hmd
from trainer.baselines.gmm import MaxMixturePrior, fit_gmm
from trainer.baselines.lbfgs import LBFGSConfig, fit_lbfgs, gravity_term, rest_under_headset
from trainer.cli import main
from trainer.eval import METHODS, EvalConfig, load_motions, per_frame, prepare_sequence, stream
from trainer.metrics import METRIC_UNITS

SMALL = dict(hidden=32, layers=1, init_hidden=32, lg_hidden=16, iterations=2)


@pytest.fixture(scope="module")
def body():
    return load_body_model()


@pytest.fixture(scope="module")
def setup(body, tmp_path_factory):
    """Two clips of different lengths, eq1 and lgd checkpoints, a GMM prior."""
    root = tmp_path_factory.mktemp("eval")
    for seed, sec in ((1, 0.3), (2, 0.2)):
        m = generate_motion(["walk"], seconds=sec, fps=30, seed=seed, body=body)
        write_amass_npz(root / "data" / f"clip{seed}.npz", m)
    torch.manual_seed(0)
    ckpt = save_checkpoint(root / "eq1.pt", NeuralFitter(body, FitterConfig(**SMALL)).eval())
    lgd = save_checkpoint(root / "lgd.pt", NeuralFitter(
        body, FitterConfig(**SMALL, update_rule="lgd")).eval())
    assert main(["fit-gmm", "--data", str(root / "data"), "--out", str(root / "gmm.npz"),
                 "--components", "2", "--fps", "30"]) == 0
    return root, ckpt, lgd


def test_eval_writes_the_exact_schema_for_all_methods_and_a_plot(setup, capsys):
    root, ckpt, lgd = setup
    out, png = root / "m.json", root / "it.png"
    rc = main(["eval", "--data", str(root / "data"), "--json", str(out), "--checkpoint",
               str(ckpt), "--lgd-checkpoint", str(lgd), "--prior", str(root / "gmm.npz"),
               "--fps", "30", "--lbfgs-iterations", "2", "--lbfgs-stride", "2",
               "--plot", str(png)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert set(res) == {"methods", "frames", "sequences"}
    assert res["frames"] == 15 and res["sequences"] == 2
    assert set(res["methods"]) == set(METHODS)
    for per_vis in res["methods"].values():
        assert set(per_vis) == {"full", "half-space"}
        for vals in per_vis.values():
            assert set(vals) == set(METRIC_UNITS)
            assert all(v is None or np.isfinite(v) for v in vals.values())
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = capsys.readouterr().out
    assert "fitter-per-frame" in table and "MPJPE" in table


def test_eval_skips_unavailable_baselines_with_a_note(setup, capsys, monkeypatch, tmp_path):
    import tracker.fitter.checkpoint as checkpoint

    # as on a install without the bundled lgd.pt
    monkeypatch.setattr(checkpoint, "DEFAULT_CHECKPOINT", tmp_path / "models" / "default.pt")
    root, ckpt, _ = setup
    out = root / "skip.json"
    rc = main(["eval", "--data", str(root / "data" / "clip2.npz"), "--json", str(out),
               "--checkpoint", str(ckpt), "--visibility", "half-space", "--fps", "30",
               "--methods", "regressor", "lgd", "lbfgs"])
    assert rc == 0
    res = json.loads(out.read_text())
    assert list(res["methods"]) == ["regressor"] and list(res["methods"]["regressor"]) == [
        "half-space"]
    text = capsys.readouterr().out
    assert "lgd skipped" in text and "lbfgs skipped" in text


@pytest.mark.parametrize("case", ["missing", "empty", "mismatch", "not-lgd"])
def test_eval_user_errors(case, setup, tmp_path, capsys):
    root, ckpt, _ = setup
    args = ["eval", "--data", str(root / "data"), "--json", str(tmp_path / "o.json"),
            "--checkpoint", str(ckpt), "--methods", "regressor"]
    if case == "missing":
        args[2] = str(tmp_path / "nope")
    elif case == "empty":
        (tmp_path / "empty").mkdir()
        args[2] = str(tmp_path / "empty")
    elif case == "mismatch":  # a checkpoint trained for another body model
        other = load_body_model(write_open_style_npz(tmp_path / "other.npz"))
        args[6] = str(save_checkpoint(tmp_path / "o.pt", NeuralFitter(other, FitterConfig(
            **SMALL))))
    else:
        args += ["--methods", "lgd", "--lgd-checkpoint", str(ckpt)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
    assert {"missing": "not found", "empty": "no usable motion", "mismatch": "trained for body",
            "not-lgd": "update_rule"}[case] in err


def test_streaming_carries_state_and_per_frame_is_the_engine_with_reset(setup, body):
    root, *_ = setup
    torch.manual_seed(0)
    fitter = NeuralFitter(body, FitterConfig(**SMALL)).eval()
    clips, _ = load_motions([root / "data"], fps=30)
    cfg = EvalConfig(visibility=("full",))
    T_hmd = head_to_hmd()
    seqs = sorted((prepare_sequence(fitter, c, cfg, T_hmd) for c in clips),
                  key=lambda s: -s.frames)
    out = stream(make_engine("eager", fitter), seqs, "full", T_hmd)
    assert [o.shape[0] for o in out] == [s.frames for s in seqs] == [9, 6]
    # the second sequence alone, frame by frame with carried state, gives the same fit (alone:
    # an untrained network amplifies the float32 differences of another batch size)
    s = seqs[1]
    (alone,) = stream(make_engine("eager", fitter), [s], "full", T_hmd)
    theta = hidden = motion = None
    dt = torch.tensor([1.0 / s.fps])
    with torch.no_grad():
        for t in range(s.frames):
            o = fitter(s.signals["full"].map(lambda x, t=t: x[t : t + 1]), s.betas[None], T_hmd,
                       theta, hidden, torch.tensor([t == 0]), motion_prev=motion, dt=dt)
            theta, hidden, motion = o.theta, o.hidden, o.motion
            assert torch.allclose(o.theta[0], alone[t], atol=5e-4)
    # per-frame fits: every frame from Φ, Φh, with the motion history the stream has
    theta_pf, its = per_frame(fitter, s.signals["full"], s.betas, T_hmd, chunk=4, iterates=True,
                              fps=s.fps)
    n = s.frames
    assert torch.allclose(theta_pf[0], out[1][0], atol=1e-4)  # a stream's first frame is reset
    states, _ = motion_states(s.signals["full"], 1.0 / s.fps)
    with torch.no_grad():
        o = fitter(s.signals["full"].map(lambda x: x[3:4]), s.betas[None], T_hmd,
                   reset=torch.tensor([False]), motion_prev=states[3:4], dt=dt)
    assert torch.allclose(o.theta[0], theta_pf[3], atol=1e-4)
    assert its.shape == (SMALL["iterations"] + 1, n, 315)


def test_gmm_recovers_separated_clusters_and_prior_is_the_best_component():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-1.0, 0.1, (300, 63)), rng.normal(1.0, 0.2, (100, 63))])
    gmm = fit_gmm(x, components=2, seed=0)
    order = np.argsort(gmm.means[:, 0])
    assert np.allclose(gmm.weights[order], [0.75, 0.25], atol=0.01)
    assert np.allclose(gmm.means[order, 0], [-1.0, 1.0], atol=0.05)
    prior = MaxMixturePrior(gmm)
    q = x[:5]
    ref = -gmm.log_prob_components(q).max(1)
    assert np.allclose(prior(torch.tensor(q)).numpy(), ref, rtol=1e-6)


def test_lbfgs_starts_under_the_headset_and_lowers_the_data_term(setup, body):
    root, *_ = setup
    fitter = NeuralFitter(body, FitterConfig(**SMALL)).eval()
    clips, _ = load_motions([root / "data" / "clip2.npz"], fps=30)
    seq = prepare_sequence(fitter, clips[0], EvalConfig(noise="clean", visibility=("full",)),
                           head_to_hmd())
    sig, n = seq.signals["full"].map(lambda x: x[:3]), 3
    betas, T_hmd = seq.betas.expand(n, -1), head_to_hmd()
    x0 = rest_under_headset(body, sig.head, betas, T_hmd)
    assert torch.allclose(gravity_term(x0[:, :3]), torch.zeros(n), atol=1e-6)  # upright
    from tracker.fitter.theta import axis_angle_to_theta

    th0 = axis_angle_to_theta(x0[:, :156], x0[:, 156:])
    d0 = data_term(body, th0, betas, sig, T_hmd, with_grad=False)
    assert (d0.residuals[:, :3].abs() < 1e-4).all()  # the headset point sits on the headset
    theta = fit_lbfgs(body, sig, betas, T_hmd, None, LBFGSConfig(iterations=10))
    d1 = data_term(body, theta, betas, sig, T_hmd, with_grad=False)
    assert d1.loss.sum() < 0.5 * d0.loss.sum()
