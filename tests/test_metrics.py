"""Evaluation metrics on hand-checkable cases (zeros, known offsets, units) and the mesh path."""

import math
from pathlib import Path

import pytest
import torch
from synthetic_models import write_open_style_npz

from tracker.body import load_body_model
from tracker.body.skinning import MeshPoser, PosedBodies
from tracker.geometry import axis_angle_to_matrix
from trainer.metrics import (
    METRIC_UNITS,
    MetricSums,
    frame_metrics,
    ground_penetration,
    jerk,
    part_vertex_ids,
    rotation_error,
    temporal_metrics,
    velocity_error,
)


@pytest.fixture(scope="module")
def body():
    return load_body_model()


def posed(body, T=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    poses = 0.3 * torch.randn(T, 156, generator=g, dtype=torch.float64).float()
    transl = torch.tensor([0.2, 0.9, -0.4]) + 0.05 * torch.randn(T, 3, generator=g)
    betas = torch.randn(16, generator=g)
    poser = MeshPoser(body, betas)
    return poser, axis_angle_to_matrix(poses.reshape(T, 52, 3)), transl


def scores(pred: PosedBodies, gt: PosedBodies, parts, fps=60.0):
    sums = MetricSums()
    frame_metrics(pred, gt, parts, sums)
    temporal_metrics(pred.joints, gt.joints, fps, sums)
    return sums.result()


def test_identical_bodies_score_zero(body):
    poser, R, t = posed(body)
    gt = poser(R, t)
    res = scores(gt, gt, part_vertex_ids(body.weights))
    assert set(METRIC_UNITS) <= set(res)
    for k, v in res.items():
        if k not in ("jitter", "grpe_mm", "grpe_joints_mm"):  # properties of the prediction
            assert v == pytest.approx(0.0, abs=1e-3), k


def test_known_offset_reads_in_the_reported_units(body):
    poser, R, t = posed(body)
    gt = poser(R, t)
    pred = poser(R, t + torch.tensor([0.0, 0.0, 0.01]))  # 1 cm along z, every frame
    res = scores(pred, gt, part_vertex_ids(body.weights))
    for k in ("v2v_fb_mm", "v2v_head_mm", "v2v_lhand_mm", "v2v_rhand_mm", "jnt_err_mm"):
        assert res[k] == pytest.approx(10.0, rel=1e-3), k
    for k in ("mpjpe_cm", "hand_pe_cm", "upper_pe_cm", "lower_pe_cm"):
        assert res[k] == pytest.approx(1.0, rel=1e-3), k
    assert res["mpjre_deg"] == pytest.approx(0.0, abs=1e-2)
    assert res["mpjve_cms"] == pytest.approx(0.0, abs=1e-2)  # a constant offset has no velocity


def test_rotation_error_is_the_geodesic_angle_in_degrees():
    a = axis_angle_to_matrix(torch.tensor([[0.0, 0.0, math.radians(30)]], dtype=torch.float64))
    b = axis_angle_to_matrix(torch.tensor([[0.0, 0.0, 0.0]], dtype=torch.float64))
    assert math.degrees(rotation_error(a, b).item()) == pytest.approx(30.0, abs=1e-6)
    c = axis_angle_to_matrix(torch.tensor([[math.pi - 1e-4, 0.0, 0.0]], dtype=torch.float64))
    assert rotation_error(c, b).item() == pytest.approx(math.pi - 1e-4, abs=1e-6)
    # MPJRE: 22 body joints, one of them off by 22 degrees -> mean 1 degree
    T = 2
    gt = PosedBodies(torch.zeros(T, 52, 3), torch.eye(3).expand(T, 52, 3, 3).clone())
    local = gt.local.clone()
    local[:, 5] = axis_angle_to_matrix(torch.tensor([0.0, math.radians(22), 0.0]))
    sums = MetricSums()
    frame_metrics(PosedBodies(gt.joints, local), gt, {}, sums)
    assert sums.result()["mpjre_deg"] == pytest.approx(1.0, rel=1e-4)


def test_ground_penetration_counts_only_points_below_the_floor():
    pts = torch.tensor([[[0.0, -0.01, 0.0], [0.0, -0.03, 0.0], [0.0, 1.0, 0.0]],
                        [[0.0, 0.5, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    assert torch.allclose(ground_penetration(pts), torch.tensor([0.02, 0.0]))


def test_velocity_error_and_jitter_units():
    fps = 60.0
    t = torch.arange(10, dtype=torch.float64) / fps
    still = torch.zeros(10, 22, 3, dtype=torch.float64)
    moving = still.clone()
    moving[..., 0] = t[:, None]  # 1 m/s along x
    assert torch.allclose(velocity_error(moving, still, fps), torch.ones(9, dtype=torch.float64))
    assert torch.allclose(jerk(moving, fps), torch.zeros(7, dtype=torch.float64), atol=1e-9)
    cubic = still.clone()
    cubic[..., 1] = (t**3)[:, None]  # x = t³ -> jerk 6 m/s³ exactly
    assert torch.allclose(jerk(cubic, fps), torch.full((7,), 6.0, dtype=torch.float64))
    sums = MetricSums()
    temporal_metrics(cubic.expand(10, 22, 3).float(), still.float(), fps, sums)
    res = sums.result()
    assert res["jitter"] == pytest.approx(6e-3, rel=1e-4)  # km/s³
    assert res["mpjve_cms"] > 0


def test_metric_sums_weight_every_frame_and_report_missing_as_none():
    sums = MetricSums()
    sums.add("mpjpe_cm", torch.tensor([0.01, 0.03]))
    sums.add("mpjpe_cm", torch.tensor([0.05]))
    sums.add("jitter", torch.zeros(0))  # a sequence shorter than 4 frames
    res = sums.result()
    assert res["mpjpe_cm"] == pytest.approx(3.0)
    assert res["jitter"] is None


def test_part_vertices_of_the_open_model(body):
    parts = part_vertex_ids(body.weights)
    v = body.v_template
    assert all(len(ids) > 100 for ids in parts.values())
    assert not set(parts["lhand"].tolist()) & set(parts["rhand"].tolist())
    assert (v[parts["lhand"], 0] > 0.5).all() and (v[parts["rhand"], 0] < -0.5).all()  # T-pose
    assert v[parts["head"], 1].min() > v[:, 1].max() - 0.4  # the top of the body


@pytest.mark.parametrize("which", ["open", "synthetic"])
def test_mesh_poser_matches_the_body_model(which, body, tmp_path):
    if which == "synthetic":  # random SMPL+H layout with pose correctives
        body = load_body_model(write_open_style_npz(Path(tmp_path) / "m.npz"))
    poser, R, t = posed(body, T=3)
    ref = body(R, poser.betas.expand(3, -1), t, vertices=True)
    out = poser(R, t)
    assert torch.allclose(out.vertices, ref.vertices, atol=1e-5)
    assert torch.allclose(out.joints, ref.joints, atol=1e-6)
