"""The fitter's frames, shapes, streaming/reset semantics and divergence guard."""

import math

import pytest
import torch
from synthetic_models import RunsCode, write_open_style_npz

from tracker.body import load_body_model
from tracker.fitter.canonical import heading_frame, signals_to_frame, theta_to_frame
from tracker.fitter.fitter import FitterConfig, NeuralFitter
from tracker.geometry import axis_angle_to_matrix, make_transform, matrix_to_rotation_6d
from tracker.signals.headset import head_to_hmd, signals_from_state


@pytest.fixture(scope="module")
def body(tmp_path_factory):
    return load_body_model(write_open_style_npz(tmp_path_factory.mktemp("m") / "o.npz"))


@pytest.fixture(scope="module")
def fitter(body):
    torch.manual_seed(0)
    return NeuralFitter(body, FitterConfig(hidden=32, layers=2, init_hidden=32, lg_hidden=16,
                                           iterations=3)).eval()


def frame(body, B=2, yaw=0.7, seed=0):
    g = torch.Generator().manual_seed(seed)
    poses = 0.2 * torch.randn(B, 156, generator=g)
    poses[:, :3] = torch.tensor([0.0, yaw, 0.0])
    transl = torch.tensor([1.5, 0.9, -2.0]) + 0.1 * torch.randn(B, 3, generator=g)
    betas = torch.randn(B, 16, generator=g)
    st = body.forward_axis_angle(poses, betas, transl)
    return signals_from_state(st, mode="half-space"), betas, poses, transl


@pytest.mark.parametrize("pitch", [0.0, 1.2, -math.pi / 2, math.pi / 2])
def test_heading_frame_is_level_and_under_the_headset(pitch):
    R = axis_angle_to_matrix(torch.tensor([[0.0, 0.4, 0.0]])) @ axis_angle_to_matrix(
        torch.tensor([[pitch, 0.0, 0.0]]))
    head = make_transform(R, torch.tensor([[0.3, 1.7, -0.2]]))
    C = heading_frame(head)
    assert torch.allclose(C[0, :3, 1], torch.tensor([0.0, 1.0, 0.0]))  # level
    assert torch.allclose(C[0, :3, 3], torch.tensor([0.3, 0.0, -0.2]))  # on the floor below
    # the heading is the yaw of the head (0.4 rad about +Y from the stage's -Z view)
    f = C[0, :3, 2]
    assert abs(math.atan2(-f[0].item(), -f[2].item()) - 0.4) < 1e-5 or pitch != 0.0
    assert torch.isfinite(C).all()


def test_theta_frame_round_trip_and_joint_equivariance(body):
    sig, betas, poses, transl = frame(body)
    d6 = matrix_to_rotation_6d(axis_angle_to_matrix(poses.reshape(2, 52, 3))).reshape(2, -1)
    theta = torch.cat([d6, transl], -1)
    C = heading_frame(sig.head)
    pelvis = body.rest_joints(betas)[:, 0]
    tc = theta_to_frame(theta, C, pelvis)
    assert torch.allclose(theta_to_frame(tc, C, pelvis, inverse=True), theta, atol=1e-5)
    # joints posed from canonical Θ equal the stage joints moved into the frame
    from tracker.fitter.data_term import data_term

    out_c = data_term(body, tc, betas, signals_to_frame(sig, C), head_to_hmd(), with_grad=False)
    assert out_c.residual_m.max() < 1e-4


def test_shapes_and_per_frame_mode(fitter, body):
    sig, betas, *_ = frame(body)
    with torch.no_grad():
        out = fitter(sig, betas, head_to_hmd(), return_iterates=True)
    assert out.theta.shape == (2, 315) and out.hidden.shape == (2, 2, 32)
    assert out.iterates.shape == (4, 2, 315) and out.ok.all()
    assert torch.allclose(out.iterates[-1], out.theta)
    with torch.no_grad():
        reg = fitter(sig, betas, head_to_hmd(), iterations=0)
    assert torch.allclose(reg.theta, out.iterates[0], atol=1e-5)


def test_streaming_reset_mask_selects_per_session(fitter, body):
    sig, betas, *_ = frame(body)
    with torch.no_grad():
        first = fitter(sig, betas, head_to_hmd())
        fresh = fitter(sig, betas, head_to_hmd(), first.theta, first.hidden,
                       reset=torch.tensor([True, True]))
        mixed = fitter(sig, betas, head_to_hmd(), first.theta, first.hidden,
                       reset=torch.tensor([True, False]))
    assert torch.allclose(mixed.theta[0], fresh.theta[0], atol=1e-5)
    assert not torch.allclose(mixed.theta[1], fresh.theta[1], atol=1e-5)


def test_streaming_warm_start_is_the_carry_gate_blend(fitter, body):
    """A stream step starts from Φ(D) + a (Θ_prev - Φ(D)), a = sigmoid(carry_logit)."""
    sig, betas, *_ = frame(body)
    with torch.no_grad():
        prev = fitter(frame(body, seed=3)[0], betas, head_to_hmd())
        reg = fitter(sig, betas, head_to_hmd(), iterations=0).theta
        keep = torch.sigmoid(fitter.carry_logit).clone()
        fitter.carry_logit.fill_(1.2)
        out = fitter(sig, betas, head_to_hmd(), prev.theta, prev.hidden,
                     reset=torch.tensor([False, False]), return_iterates=True)
        fitter.carry_logit.copy_(torch.logit(keep))
    a = torch.sigmoid(torch.tensor(1.2))
    # joint rotations and translation: the move into the canonical frame is affine in them
    # (the root's 6D is re-orthonormalised by it, so it is not compared)
    assert torch.allclose(out.iterates[0][:, 6:], (reg + a * (prev.theta - reg))[:, 6:],
                          atol=1e-4)


def test_checkpoints_from_before_the_gate_carry_the_previous_frame():
    d = FitterConfig().to_dict()
    del d["carry"]
    assert FitterConfig.from_dict(d).carry == 1.0
    assert FitterConfig.from_dict(FitterConfig(carry=0.7).to_dict()).carry == 0.7


def test_the_iterations_leave_the_regressor_joints_alone(fitter, body):
    """Default: the root and the leg chain keep Φ's rotations; the other joints are refined."""
    from tracker.body.joints import JOINT_NAMES
    from tracker.fitter.fitter import REGRESSOR_JOINT_NAMES

    assert fitter.cfg.regressor_joints == REGRESSOR_JOINT_NAMES
    sig, betas, *_ = frame(body)
    with torch.no_grad():
        out = fitter(sig, betas, head_to_hmd(), return_iterates=True)
    rot = out.iterates[:, :, :312].reshape(4, 2, 52, 6)
    legs = [JOINT_NAMES.index(n) for n in REGRESSOR_JOINT_NAMES]
    others = [j for j in range(52) if j not in legs]
    assert torch.allclose(rot[-1][:, legs], rot[0][:, legs], atol=1e-6)
    assert not torch.allclose(rot[-1][:, others], rot[0][:, others], atol=1e-4)


def test_regressor_joints_config():
    d = FitterConfig().to_dict()
    assert FitterConfig.from_dict(d) == FitterConfig()
    del d["regressor_joints"]  # a checkpoint from before the option: everything refined
    assert FitterConfig.from_dict(d).regressor_joints == ()
    with pytest.raises(ValueError, match="left_kne"):
        FitterConfig(regressor_joints=("left_kne",))


def test_yaw_and_floor_position_do_not_change_the_fit(fitter, body):
    sig_a, betas, poses, transl = frame(body, yaw=0.0)
    sig_b, *_ = frame(body, yaw=2.0)
    with torch.no_grad():
        a = fitter(sig_a, betas, head_to_hmd())
        b = fitter(sig_b, betas, head_to_hmd())
    # same body, turned: the fitted local joint rotations agree
    assert torch.allclose(a.theta[:, 6:-3], b.theta[:, 6:-3], atol=1e-3)


def test_divergence_falls_back_to_the_regressor(fitter, body):
    sig, betas, *_ = frame(body)
    sig.head[0, 1, 3] = 1e4  # a headset 10 km up: no body reaches it
    with torch.no_grad():
        out = fitter(sig, betas, head_to_hmd())
    assert not out.ok[0] and out.ok[1]
    assert torch.isfinite(out.theta).all() and torch.isfinite(out.hidden).all()


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    from tracker.fitter.checkpoint import CheckpointError, read_checkpoint

    marker = tmp_path / "ran"
    path = tmp_path / "crafted.pt"
    torch.save({"format": 1, "config": {}, "weights": {}, "x": RunsCode(str(marker))}, path)
    with pytest.raises(CheckpointError, match="refused"):
        read_checkpoint(path)
    assert not marker.exists()
