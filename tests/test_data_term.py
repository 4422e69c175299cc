"""The closed-form data-term gradient against autograd (float64), on models with and
without pose correctives, in both visibility modes."""

import pytest
import torch
from synthetic_models import write_amass_npz, write_open_style_npz
from vjp_reference import kinematics_vjp, rotation_6d_vjp

from tracker.body import load_body_model
from tracker.body.kinematics_vjp import kinematics_vjp_tangent
from tracker.fitter.data_term import THETA_DIM, DataTermConfig, data_term, split_theta
from tracker.geometry import axis_angle_to_matrix, matrix_to_rotation_6d, rotation_6d_to_matrix
from tracker.signals.headset import head_to_hmd, signals_from_state

F64 = torch.float64


@pytest.fixture(scope="module", params=["open-style", "with-posedirs"])
def body(request, tmp_path_factory):
    d = tmp_path_factory.mktemp("m")
    if request.param == "open-style":
        return load_body_model(write_open_style_npz(d / "a.npz"), dtype=F64)
    return load_body_model(write_amass_npz(d / "model.npz", num_vertices=6890), dtype=F64)


def random_theta(B, g, scale=0.3):
    R = axis_angle_to_matrix(scale * torch.randn(B, 52, 3, generator=g, dtype=F64))
    d6 = matrix_to_rotation_6d(R) + 0.05 * torch.randn(B, 52, 6, generator=g, dtype=F64)
    return torch.cat([d6.reshape(B, -1), 0.2 * torch.randn(B, 3, generator=g, dtype=F64)], -1)


def make_problem(body, mode, B=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    target = random_theta(B, g)
    d6, tr = split_theta(target)
    betas = torch.randn(B, 8, generator=g, dtype=F64)
    st = body(rotation_6d_to_matrix(d6), betas, tr)
    tracked = torch.tensor([[True, True], [True, False], [False, True]])[:B]
    tips_valid = torch.tensor([[True, False], [True, True], [True, True]])[:B]
    sig = signals_from_state(st, head_to_hmd(dtype=F64), mode, tracked, tips_valid)
    theta = random_theta(B, g, scale=0.5)
    return theta, betas, sig


@pytest.mark.parametrize("mode", ["device", "half-space"])
def test_gradient_matches_autograd(body, mode):
    theta, betas, sig = make_problem(body, mode)
    T = head_to_hmd(dtype=F64)
    out = data_term(body, theta, betas, sig, T)
    x = theta.clone().requires_grad_(True)
    ref = torch.autograd.grad(data_term(body, x, betas, sig, T, with_grad=False).loss.sum(), x)[0]
    assert out.grad.shape == (3, THETA_DIM)
    assert torch.allclose(out.grad, ref, rtol=1e-8, atol=1e-10)


def test_gradcheck_of_the_loss(body):
    theta, betas, sig = make_problem(body, "device", B=2)
    T = head_to_hmd(dtype=F64)

    def loss(x):
        return data_term(body, x, betas, sig, T, with_grad=False).loss

    assert torch.autograd.gradcheck(loss, (theta.clone().requires_grad_(True),), eps=1e-6,
                                    atol=1e-6)


def test_zero_at_the_truth(body):
    g = torch.Generator().manual_seed(1)
    target = random_theta(2, g)
    d6, tr = split_theta(target)
    betas = torch.zeros(2, 4, dtype=F64)
    sig = signals_from_state(body(rotation_6d_to_matrix(d6), betas, tr))
    no_floor = DataTermConfig(floor=0.0)  # a random pose's feet are not on the floor
    out = data_term(body, target, betas, sig, head_to_hmd(dtype=F64), no_floor)
    assert out.loss.abs().max() < 1e-20 and out.grad.abs().max() < 1e-9
    assert out.residual_m.max() < 1e-10


def test_floor_term_holds_a_standing_body_and_pulls_a_floating_one_down(body):
    from tracker.geometry.rotations import matrix_to_rotation_6d

    rest = matrix_to_rotation_6d(torch.eye(3, dtype=F64).expand(2, 52, 3, 3)).reshape(2, -1)
    betas = torch.zeros(2, 4, dtype=F64)
    sole = body.v_template[:, 1].min()  # rest pose, mean shape: stand the body on the floor
    tr = torch.tensor([[0.0, -float(sole), 0.0], [0.0, 0.1 - float(sole), 0.0]], dtype=F64)
    theta = torch.cat([rest, tr], -1)
    sig = signals_from_state(body(rotation_6d_to_matrix(rest.reshape(2, 52, 6)), betas, tr))
    out = data_term(body, theta, betas, sig, head_to_hmd(dtype=F64))
    # standing on both feet: the floor residual is the soft minimum's offset, 3.5 mm at most
    assert out.loss[0] < (0.5 * 0.0035) ** 2
    assert out.grad[1, -2] > 0 and out.grad[1, -2] > 10 * out.grad[0, -2].abs()  # down


def test_invisible_hands_do_not_pull(body):
    theta, betas, sig = make_problem(body, "device")
    sig.visible[:] = False
    out = data_term(body, theta, betas, sig, head_to_hmd(dtype=F64))
    assert (out.residuals[:, 12:] == 0).all()


def test_rotation_6d_vjp_matches_autograd():
    d6 = torch.randn(5, 6, dtype=F64, requires_grad=True)
    gR = torch.randn(5, 3, 3, dtype=F64)
    R = rotation_6d_to_matrix(d6)
    ref = torch.autograd.grad((R * gR).sum(), d6)[0]
    assert torch.allclose(rotation_6d_vjp(d6.detach(), R.detach(), gR), ref, atol=1e-12)


def test_tangent_vjp_matches_the_reference_reverse_pass(body):
    """The fitter's tangent-space pull-back equals the level-by-level reference."""
    g = torch.Generator().manual_seed(3)
    theta = random_theta(2, g)
    d6, tr = split_theta(theta)
    R = rotation_6d_to_matrix(d6)
    betas = torch.randn(2, 8, generator=g, dtype=F64)
    st = body(R, betas, tr)
    g_R = torch.randn(2, 52, 3, 3, generator=g, dtype=F64)
    g_t = torch.randn(2, 52, 3, generator=g, dtype=F64)
    g_tips = torch.randn(2, 2, 5, 3, generator=g, dtype=F64)
    g_rot, g_tr = kinematics_vjp(body, R, betas, st.rotations, g_R, g_t, g_tips)
    g_w, g_tr2 = kinematics_vjp_tangent(body, R, betas, st.rotations, st.joints, g_R, g_t,
                                        g_tips)
    M = R.transpose(-1, -2) @ g_rot  # dL/dw for R -> R exp([w]x): the axial part of RᵀG
    w = torch.stack([M[..., 2, 1] - M[..., 1, 2], M[..., 0, 2] - M[..., 2, 0],
                     M[..., 1, 0] - M[..., 0, 1]], -1)
    assert torch.allclose(g_w, w, atol=1e-9) and torch.allclose(g_tr, g_tr2, atol=1e-9)
