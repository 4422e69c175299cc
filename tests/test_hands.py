"""Synthesized finger articulation: joint limits, shapes that look like hands, smooth, seeded,
and the left/right conventions of SMPL+H."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tracker.body import load_body_model
from tracker.motion.hands import (
    DIP_PIP_RATIO,
    HAND_LIMITS,
    SHAPES,
    hand_pose_from_angles,
    shape_angles,
    synthesize_hand_angles,
    synthesize_hands,
)


@pytest.fixture(scope="module")
def body():
    return load_body_model(dtype=torch.float64)


def _pose(body, left=None, right=None):
    """FK of hands only (body at rest); angles ``(N, 5, 4)`` per hand."""
    n = len(left if left is not None else right)
    P = np.zeros((n, 156))
    if left is not None:
        P[:, 66:111] = hand_pose_from_angles(left, "left")
    if right is not None:
        P[:, 111:] = hand_pose_from_angles(right, "right")
    return body.forward_axis_angle(torch.as_tensor(P), None, None)


def test_limits_and_dip_follows_pip():
    a = synthesize_hand_angles(3000, 60.0, rng=7)
    assert a.shape == (3000, 2, 5, 4)
    assert (a >= HAND_LIMITS[..., 0] - 1e-9).all() and (a <= HAND_LIMITS[..., 1] + 1e-9).all()
    assert HAND_LIMITS[0].tolist() == [[0, 90], [-20, 20], [0, 110], [0, 80]]  # MCP, abd, PIP
    dip, pip = a[..., :4, 3], a[..., :4, 2]
    assert np.abs(dip - DIP_PIP_RATIO * pip).max() < 12.0
    for name in SHAPES:
        s = shape_angles(name)
        assert (s >= HAND_LIMITS[..., 0]).all() and (s <= HAND_LIMITS[..., 1]).all(), name


def test_smooth_seeded_and_varied():
    a = synthesize_hand_angles(600, 60.0, rng=1)
    assert np.abs(np.diff(a, axis=0)).max() < 12.0  # degrees per frame at 60 fps
    np.testing.assert_array_equal(a, synthesize_hand_angles(600, 60.0, rng=1))
    assert not np.allclose(a, synthesize_hand_angles(600, 60.0, rng=2))
    assert not np.allclose(a[:, 0], a[:, 1])  # the hands move independently
    assert np.ptp(a[..., 0, 0]) > 40  # index MCP visits open and curled shapes
    h = synthesize_hands(50, 30.0, rng=3)
    assert h.shape == (50, 90) and np.isfinite(h).all()


def test_flexion_curls_towards_the_palm_both_hands(body):
    open_, fist = shape_angles("open")[None], shape_angles("fist")[None]
    for side in ("left", "right"):
        kw = {side: np.concatenate([open_, fist])}
        st = _pose(body, **kw)
        k = 0 if side == "left" else 1
        wrist = st.joints[:, 20 + k]
        tips = st.tips[:, k] - wrist[:, None]  # thumb, index, middle, ring, little
        out = 1.0 if side == "left" else -1.0  # fingers point along +X (left) or -X (right)
        reach = tips[..., 0] * out
        assert (reach[1, 1:] < reach[0, 1:] - 0.06).all()  # a fist is short
        assert (tips[1, 1:, 1] < 0.01).all()  # curled under, towards the palm (-Y), not up


def test_right_hand_is_the_mirror_of_the_left(body):
    a = synthesize_hand_angles(20, 30.0, rng=5)[:, 0]
    st = _pose(body, left=a, right=a)
    mirror = torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    np.testing.assert_allclose(st.tips[:, 1], st.tips[:, 0] * mirror, atol=1e-6)


def test_shapes_do_what_they_say(body):
    names = list(SHAPES)
    st = _pose(body, left=np.stack([shape_angles(n) for n in names]))
    tips = st.tips[:, 0]
    gap = {n: float((tips[i, 0] - tips[i, 1]).norm()) for i, n in enumerate(names)}
    assert gap["pinch"] < 0.025 < gap["open"]  # thumb and index tips meet in a pinch
    reach = tips[:, :, 0] - st.joints[:, 20, None, 0]
    i = names.index("point")
    assert reach[i, 1] > reach[i, 2] + 0.05  # the index points, the middle finger is curled
