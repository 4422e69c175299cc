"""The fast kinematics path against smplx's own forward, on every supported file layout."""

import numpy as np
import pytest
import torch
from synthetic_models import RunsCode, write_amass_npz, write_mano_pkl, write_open_style_npz

from tracker.body import (
    DEFAULT_MODEL_PATH,
    NUM_JOINTS,
    PARENTS,
    BodyModelError,
    load_body_model,
    read_model_file,
)
from tracker.body.joints import depth_levels
from tracker.geometry import matrix_to_rotation_6d


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {
        "amass-npz": write_amass_npz(d / "amass" / "male" / "model.npz", num_vertices=6890),
        "mano-pkl": write_mano_pkl(d / "mano" / "SMPLH_FEMALE.pkl"),
        "open-style": write_open_style_npz(d / "open" / "SMPLH_NEUTRAL.npz", num_vertices=500),
        "bundled": DEFAULT_MODEL_PATH,
    }


def smplx_forward(layer, poses, betas, transl):
    return layer(
        global_orient=poses[:, :3], body_pose=poses[:, 3:66], left_hand_pose=poses[:, 66:111],
        right_hand_pose=poses[:, 111:], betas=betas, transl=transl, return_verts=True,
    )


@pytest.mark.parametrize("kind", ["amass-npz", "mano-pkl", "open-style", "bundled"])
@pytest.mark.parametrize("batch", [1, 5])
def test_matches_smplx(model_files, kind, batch, dtype):
    body = load_body_model(model_files[kind], dtype=dtype)
    layer = body.smplx_layer()
    g = torch.Generator().manual_seed(batch)
    poses = 0.4 * torch.randn(batch, 156, generator=g, dtype=dtype)
    betas = torch.randn(batch, body.num_betas, generator=g, dtype=dtype)
    transl = torch.randn(batch, 3, generator=g, dtype=dtype)
    ours = body.forward_axis_angle(poses, betas, transl, vertices=True)
    ref = smplx_forward(layer, poses, betas, transl)
    tol = 1e-5  # metres; smplx adds 1e-8 inside its Rodrigues, which bounds float64 agreement
    assert (ours.joints - ref.joints[:, :NUM_JOINTS]).abs().max() < tol
    assert (ours.vertices - ref.vertices).abs().max() < tol
    # smplx appends the 10 fingertip vertices (left then right, thumb..pinky) last
    assert (ours.tips.reshape(batch, 10, 3) - ref.joints[:, -10:]).abs().max() < tol
    assert ours.joints.dtype == dtype


def test_all_sixteen_betas_are_used(model_files):
    body = load_body_model(model_files["amass-npz"], dtype=torch.float64)
    assert body.num_betas == 16
    layer = body.smplx_layer()
    assert layer.shapedirs.shape[-1] == 16
    betas = torch.zeros(1, 16, dtype=torch.float64)
    betas[0, 15] = 3.0
    rest = body.rest_joints(betas)
    assert not torch.allclose(rest, body.rest_joints(torch.zeros(1, 16, dtype=torch.float64)))


def test_forward_6d_equals_matrices(model_files):
    body = load_body_model(model_files["open-style"], dtype=torch.float64)
    poses = 0.3 * torch.randn(3, 156, dtype=torch.float64)
    a = body.forward_axis_angle(poses)
    from tracker.geometry import axis_angle_to_matrix

    d6 = matrix_to_rotation_6d(axis_angle_to_matrix(poses.reshape(3, 52, 3)))
    b = body.forward_6d(d6)
    assert torch.allclose(a.joints, b.joints) and torch.allclose(a.tips, b.tips)
    assert b.vertices is None


def test_transforms_and_accessors(model_files):
    body = load_body_model(model_files["open-style"], dtype=torch.float64)
    st = body.forward_axis_angle(0.3 * torch.randn(2, 156, dtype=torch.float64))
    T = st.transforms()
    assert T.shape == (2, 52, 4, 4)
    assert torch.equal(st.head, T[:, 15]) and torch.equal(st.wrists, T[:, [20, 21]])


def test_gradients_flow_float64(model_files):
    body = load_body_model(model_files["open-style"], dtype=torch.float64)
    d6 = matrix_to_rotation_6d(torch.eye(3, dtype=torch.float64).expand(1, 52, 3, 3)).clone()
    d6 = (d6 + 0.1 * torch.randn_like(d6)).requires_grad_(True)
    betas = torch.randn(1, 4, dtype=torch.float64, requires_grad=True)

    def fn(d6, betas):
        st = body.forward_6d(d6, betas)
        return st.joints, st.tips

    assert torch.autograd.gradcheck(fn, (d6, betas), eps=1e-6, atol=1e-5)


def test_mano_pickle_reads_without_chumpy(model_files):
    import sys

    data = read_model_file(model_files["mano-pkl"])
    assert "chumpy" not in sys.modules
    assert data.num_betas == 10 and data.num_vertices == 6890
    left, right = [2746, 2319, 2445, 2556, 2673], [6191, 5782, 5905, 6016, 6133]
    assert data.tip_vids.tolist() == [left, right]


def test_folder_layouts_and_fingerprints(model_files):
    root = model_files["amass-npz"].parent.parent
    a = read_model_file(root, gender="male")
    b = read_model_file(model_files["amass-npz"])
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint != read_model_file(model_files["open-style"]).fingerprint
    assert read_model_file(None).fingerprint == read_model_file(DEFAULT_MODEL_PATH).fingerprint


def test_clear_errors(tmp_path):
    with pytest.raises(BodyModelError, match="not found"):
        read_model_file(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, v_template=np.zeros((3, 3)))
    with pytest.raises(BodyModelError, match="missing keys"):
        read_model_file(bad)
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(BodyModelError, match="cannot read"):
        read_model_file(corrupt)
    with pytest.raises(BodyModelError, match="no SMPL\\+H model file"):
        read_model_file(tmp_path, gender="female")


def test_depth_levels_cover_tree():
    levels = depth_levels(PARENTS)
    flat = sorted(j for lv in levels for j in lv)
    assert flat == list(range(52))
    for d, lv in enumerate(levels[1:], start=1):
        assert all(PARENTS[j] in levels[d - 1] for j in lv)


def test_a_pkl_body_model_that_would_run_code_is_refused(tmp_path):
    import pickle

    from tracker.body import BodyModelError

    marker = tmp_path / "ran"
    path = tmp_path / "SMPLH_MALE.pkl"
    path.write_bytes(pickle.dumps({"v_template": RunsCode(str(marker))}, protocol=2))
    with pytest.raises(BodyModelError, match="refusing to build"):
        read_model_file(path)
    assert not marker.exists()
