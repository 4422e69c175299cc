import math

import pytest
import torch

from tracker.geometry import (
    axis_angle_to_matrix,
    axis_angle_to_quaternion,
    invert_transform,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_to_rotation_6d,
    pose7_to_transform,
    quaternion_multiply,
    quaternion_slerp,
    quaternion_to_axis_angle,
    quaternion_to_matrix,
    rotation_6d_to_matrix,
    transform_to_pose7,
)


def random_aa(n, dtype, max_angle=math.pi * 0.999, seed=0):
    g = torch.Generator().manual_seed(seed)
    axis = torch.randn(n, 3, generator=g, dtype=dtype)
    axis = axis / axis.norm(dim=-1, keepdim=True)
    angle = torch.rand(n, 1, generator=g, dtype=dtype) * max_angle
    return axis * angle


def assert_rotation(R, tol):
    eye = torch.eye(3, dtype=R.dtype).expand_as(R)
    assert torch.allclose(R @ R.transpose(-1, -2), eye, atol=tol)
    assert torch.allclose(torch.linalg.det(R), torch.ones_like(R[..., 0, 0]), atol=tol)


@pytest.mark.parametrize("shape", [(5,), (2, 3), ()])
def test_round_trips_any_batch_shape(shape, dtype):
    tol = 1e-4 if dtype == torch.float32 else 1e-9
    aa = random_aa(max(1, math.prod(shape)), dtype).reshape(*shape, 3)
    R = axis_angle_to_matrix(aa)
    assert R.shape == (*shape, 3, 3)
    assert_rotation(R, tol)
    assert torch.allclose(matrix_to_axis_angle(R), aa, atol=tol)
    assert torch.allclose(rotation_6d_to_matrix(matrix_to_rotation_6d(R)), R, atol=tol)
    q = matrix_to_quaternion(R)
    assert torch.allclose(quaternion_to_matrix(q), R, atol=tol)
    assert torch.allclose(axis_angle_to_quaternion(aa), q, atol=tol)
    assert torch.allclose(quaternion_to_axis_angle(q), aa, atol=tol)


@pytest.mark.parametrize("angle", [0.0, 1e-9, 1e-4, math.pi - 1e-6])
def test_edge_angles(angle, dtype):
    tol = 1e-5 if dtype == torch.float32 else 1e-9
    aa = torch.tensor([[0.3, -0.5, 0.8]], dtype=dtype)
    aa = aa / aa.norm() * angle
    R = axis_angle_to_matrix(aa)
    assert_rotation(R, tol)
    R2 = axis_angle_to_matrix(matrix_to_axis_angle(R))
    assert torch.allclose(R2, R, atol=tol * 10)
    assert torch.isfinite(matrix_to_quaternion(R)).all()


def test_six_d_is_first_two_columns():
    R = axis_angle_to_matrix(random_aa(4, torch.float64))
    d6 = matrix_to_rotation_6d(R)
    assert torch.equal(d6[:, :3], R[:, :, 0]) and torch.equal(d6[:, 3:], R[:, :, 1])
    # Gram-Schmidt accepts any non-degenerate 6D vector.
    noisy = d6 + 0.1 * torch.randn_like(d6)
    assert_rotation(rotation_6d_to_matrix(noisy), 1e-9)


def test_quaternion_is_xyzw_and_product_composes():
    q = torch.tensor([0.0, 0.0, math.sin(math.pi / 4), math.cos(math.pi / 4)])  # 90° about z
    R = quaternion_to_matrix(q)
    assert torch.allclose(R @ torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 1, 0]), atol=1e-6)
    a, b = axis_angle_to_quaternion(random_aa(6, torch.float64, seed=1)).chunk(2)
    Rab = quaternion_to_matrix(quaternion_multiply(a, b))
    assert torch.allclose(Rab, quaternion_to_matrix(a) @ quaternion_to_matrix(b), atol=1e-9)


def test_slerp_endpoints_and_midpoint():
    q0 = axis_angle_to_quaternion(torch.tensor([0.0, 0.0, 0.0], dtype=torch.float64))
    q1 = axis_angle_to_quaternion(torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    assert torch.allclose(quaternion_slerp(q0, q1, 0.0), q0)
    assert torch.allclose(quaternion_slerp(q0, q1, 1.0), q1)
    mid = quaternion_to_axis_angle(quaternion_slerp(q0, q1, 0.5))
    assert torch.allclose(mid, torch.tensor([0.0, 0.5, 0.0], dtype=torch.float64))
    # short way round: -q1 is the same rotation
    assert torch.allclose(quaternion_slerp(q0, -q1, 0.5), quaternion_slerp(q0, q1, 0.5))


def test_pose7_transform_round_trip():
    aa = random_aa(3, torch.float64, seed=2)
    x = torch.cat([torch.randn(3, 3, dtype=torch.float64), axis_angle_to_quaternion(aa)], -1)
    T = pose7_to_transform(x)
    assert torch.allclose(transform_to_pose7(T), x, atol=1e-12)
    eye = torch.eye(4, dtype=torch.float64).expand(3, 4, 4)
    assert torch.allclose(T @ invert_transform(T), eye, atol=1e-12)


@pytest.mark.parametrize(
    "fn,make",
    [
        (axis_angle_to_matrix, lambda: random_aa(3, torch.float64)),
        (axis_angle_to_matrix, lambda: torch.zeros(2, 3, dtype=torch.float64)),
        (rotation_6d_to_matrix, lambda: torch.randn(3, 6, dtype=torch.float64)),
        (matrix_to_quaternion, lambda: axis_angle_to_matrix(random_aa(3, torch.float64))),
        (quaternion_to_matrix, lambda: torch.randn(3, 4, dtype=torch.float64)),
        (quaternion_to_axis_angle, lambda: axis_angle_to_quaternion(random_aa(3, torch.float64))),
    ],
    ids=["aa", "aa-at-zero", "6d", "mat2quat", "quat2mat", "quat2aa"],
)
def test_gradcheck_float64(fn, make):
    x = make().requires_grad_(True)
    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-6)


def test_numpy_vector_helpers_against_scipy():
    """``tracker.geometry.arrays``' IK helpers: SciPy's ``align_vectors`` is the oracle."""
    import numpy as np
    from scipy.spatial.transform import Rotation

    from tracker.geometry.arrays import kabsch, min_rotation, unit

    rng = np.random.default_rng(0)
    a, b = unit(rng.normal(size=(6, 3))), unit(rng.normal(size=(6, 3)))
    b[0] = -a[0]  # opposite vectors: a half turn
    R = min_rotation(a, b)
    assert np.allclose(np.einsum("nij,nj->ni", R, a), b, atol=1e-9)
    assert np.allclose(np.linalg.det(R), 1.0)
    for k in range(1, 6):  # the smallest rotation: its angle is the one between a and b
        angle = np.linalg.norm(Rotation.from_matrix(R[k]).as_rotvec())
        assert np.isclose(angle, np.arccos(np.clip(a[k] @ b[k], -1, 1)), atol=1e-9)
    u = rng.normal(size=(5, 3))
    w = rng.uniform(0.5, 2.0, size=5)
    v = Rotation.random(random_state=1).apply(u) + 0.01 * rng.normal(size=(5, 3))
    want, _ = Rotation.align_vectors(v, u, weights=w)
    assert np.allclose(kabsch(u, v[None], w)[0], want.as_matrix(), atol=1e-9)
    assert np.allclose(unit(np.zeros((2, 3))), 0.0)
