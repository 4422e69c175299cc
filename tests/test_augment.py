"""Clip augmentation (mirror, speed, shape) and the foot losses of training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tracker.body import load_body_model
from tracker.motion.amass import MotionClip
from tracker.motion.procedural import generate_motion
from trainer.augment import MIRROR_PERM, _foot_floor, clip_variants, mirror_motion
from trainer.losses import foot_contact, foot_losses


@pytest.fixture(scope="module")
def body():
    return load_body_model()


@pytest.fixture(scope="module")
def clip(body):
    m = generate_motion(None, 2.0, 30.0, 4, body=body)
    return MotionClip("walk", m["poses"].astype(np.float32), m["trans"].astype(np.float32),
                      np.asarray(m["betas"], np.float32)[:16], 30.0, "procedural")


def joints(body, poses, trans, betas):
    with torch.no_grad():
        b = torch.as_tensor(betas[: body.num_betas], dtype=body.dtype)[None].expand(len(poses), -1)
        return body.forward_axis_angle(torch.as_tensor(poses, dtype=body.dtype), b,
                                       torch.as_tensor(trans, dtype=body.dtype)).joints.numpy()


def test_mirror_is_the_mirror_image_and_an_involution(body, clip):
    pelvis = body.rest_joints(torch.as_tensor(clip.betas[None, :body.num_betas],
                                              dtype=body.dtype))[0, 0].numpy()
    p, t = mirror_motion(clip.poses, clip.trans, pelvis)
    p2, t2 = mirror_motion(p, t, pelvis)
    assert np.allclose(p2, clip.poses, atol=1e-6) and np.allclose(t2, clip.trans, atol=1e-5)
    j = joints(body, clip.poses, clip.trans, clip.betas)
    jm = joints(body, p, t, clip.betas)
    expected = j[:, MIRROR_PERM] * np.array([-1.0, 1.0, 1.0])
    # the open body model is left-right symmetric to about a millimetre
    assert np.abs(jm - expected).max() < 0.01


def test_variants_speed_shape_and_floor(body, clip):
    vs = clip_variants(clip, body, ["mirror", "speed", "shape"], 2, seed=0)
    assert len(vs) == 2 and len({v.name for v in vs}) == 2 and "mirror" in vs[0].name
    for v in vs:
        speed = float(v.name.split("@x")[1].split("+")[0])
        assert 0.8 <= speed <= 1.25
        assert abs(len(v.poses) - (len(clip.poses) - 1) / speed - 1) <= 1
        assert not np.allclose(v.betas, clip.betas)
    (shaped,) = clip_variants(clip, body, ["shape"], 1, seed=3)
    assert np.array_equal(shaped.poses, clip.poses)
    # another body, lifted or lowered so that its feet meet the floor where the clip's did
    assert _foot_floor(body, shaped.poses, shaped.trans, shaped.betas) == pytest.approx(
        _foot_floor(body, clip.poses, clip.trans, clip.betas), abs=0.005)
    assert clip_variants(clip, body, [], 2) == []
    with pytest.raises(ValueError, match="unknown augmentation"):
        clip_variants(clip, body, ["flip"], 1)


def test_foot_contact_and_losses():
    K, B = 6, 2
    gt = torch.zeros(K, B, 52, 3)
    gt[..., 1] = 1.0  # everything high ...
    gt[:, 0, [7, 8, 10, 11], 1] = 0.05  # ... but batch 0's feet stand on the floor
    gt[:, 1, [7, 8, 10, 11], 1] = 0.05
    gt[:, 1, [7, 8, 10, 11], 2] = torch.arange(K)[:, None] * 0.05  # batch 1's feet walk (3 m/s)
    c = foot_contact(gt, 60.0)
    assert c.shape == (K - 1, B, 4) and c[:, 0].all() and not c[:, 1].any()
    pred = gt.clone()
    pred[:, 0, [7, 8, 10, 11], 2] += torch.arange(K)[:, None] * 0.01  # batch 0 slides 1 cm
    pred[:, 0, [7, 8, 10, 11], 1] += 0.03  # and floats 3 cm
    pred[:, 0, 0, 1] = -0.02  # the pelvis 2 cm under the floor
    losses = foot_losses(list(zip(pred, gt, strict=True)), 60.0)
    assert float(losses["skating"]) == pytest.approx(0.01, abs=1e-6)
    assert float(losses["floor"]) == pytest.approx(0.03, abs=1e-6)
    assert float(losses["penetration"]) == pytest.approx(0.02 / (B * 52), rel=1e-4)  # K of K·B·52
