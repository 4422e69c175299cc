"""Evaluation metrics for fitted SMPL+H bodies (posed by ``tracker.body.skinning``).

All inputs are in the tracker's stage frame (Y up, metres, floor at y = 0); nothing is aligned
(no Procrustes, no root or head alignment) before measuring. ``T`` frames, ``J`` joints, ``V``
vertices. The per-frame functions return ``(T,)`` (or ``(T, J)``) values in SI units; the
evaluation (``trainer/eval.py``) averages them over *all frames of all sequences* and converts
to the reported units (:data:`METRIC_UNITS`).

Paper metrics (Choutas et al., ECCV 2022, Sec. 4.1 and Tab. 2):

* ``v2v_fb_mm`` / ``v2v_head_mm`` / ``v2v_lhand_mm`` / ``v2v_rhand_mm``: vertex-to-vertex error,
  the mean Euclidean distance between corresponding predicted and ground-truth vertices, over
  the full mesh (FB) or one part (:func:`part_vertex_ids`), millimetres.
* ``jnt_err_mm``: mean Euclidean distance over all 52 SMPL+H joints, millimetres.
* ``grpe_mm``: ground penetration, the mean depth below the floor of the *predicted* vertices
  that are below it (``y < 0``); a frame with no such vertex counts 0; millimetres. (The paper's
  Fig. 4 also plots it for joints: ``grpe_joints_mm``, plot only.)

Community metrics (AvatarPoser, Jiang et al., ECCV 2022; AGRoL, Du et al., CVPR 2023, whose
``utils/metrics.py`` defines them on the 22 SMPL body joints ``0..21``):

* ``mpjpe_cm``: mean per-joint position error over the 22 body joints, centimetres.
* ``mpjre_deg``: mean per-joint rotation error, degrees: the geodesic angle of
  ``R_gt^T R_pred`` between the *local* (parent-relative) rotations of the 22 body joints (the
  root's local rotation is its stage-frame orientation). Note: AGRoL's code averages the
  absolute differences of the axis-angle *components* of the 21 non-root joints (wrapped to
  ±π) instead, which is not a rotation distance; our numbers are comparable in spirit only.
* ``mpjve_cms``: mean per-joint velocity error of the 22 body joints, velocities by forward
  differences ``(x[t+1] - x[t]) * fps``, centimetres per second.
* ``jitter``: mean jerk magnitude of the *predicted* 22 body joints, third differences
  ``(x[t+3] - 3x[t+2] + 3x[t+1] - x[t]) * fps³``, in **km/s³ (10³ m/s³)**. AGRoL's code computes
  m/s³; its tables (ground truth ≈ 4.0 on AMASS) read like units of 10² m/s³, i.e. multiply our
  value by 10 to compare.
* ``hand_pe_cm``: mean position error of the two wrists (joints 20, 21), centimetres.
* ``upper_pe_cm``: mean position error of :data:`UPPER_BODY` = spine1-3, neck, collars, head,
  shoulders, elbows, wrists (3, 6, 9, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21), centimetres.
* ``lower_pe_cm``: mean position error of :data:`LOWER_BODY` = pelvis, hips, knees, ankles,
  feet (0, 1, 2, 4, 5, 7, 8, 10, 11), centimetres. (Both lists as in AGRoL.)

AGRoL averages each metric per sequence and then over sequences; we weight every frame (every
velocity / jerk sample) equally, as the paper's "averaged across the test set".
"""

from __future__ import annotations

import torch
from torch import Tensor

from tracker.body.joints import JOINT_NAMES, LEFT_WRIST, NUM_BODY_JOINTS, RIGHT_WRIST
from tracker.body.skinning import PosedBodies

BODY_JOINTS = tuple(range(NUM_BODY_JOINTS))
WRIST_JOINTS = (LEFT_WRIST, RIGHT_WRIST)
UPPER_BODY = (3, 6, 9, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21)
LOWER_BODY = (0, 1, 2, 4, 5, 7, 8, 10, 11)

# Reported metrics (JSON keys) and the factor from SI units (m, rad, m/s, m/s³).
METRIC_UNITS: dict[str, float] = {
    "v2v_fb_mm": 1e3, "v2v_head_mm": 1e3, "v2v_lhand_mm": 1e3, "v2v_rhand_mm": 1e3,
    "jnt_err_mm": 1e3, "grpe_mm": 1e3,
    "mpjpe_cm": 1e2, "mpjre_deg": 180.0 / torch.pi, "mpjve_cms": 1e2, "jitter": 1e-3,
    "hand_pe_cm": 1e2, "upper_pe_cm": 1e2, "lower_pe_cm": 1e2,
}
EXTRA_UNITS: dict[str, float] = {"grpe_joints_mm": 1e3}  # plot only (paper Fig. 4)


# ----------------------------------------------------------------------------- parts
def part_vertex_ids(weights: Tensor) -> dict[str, Tensor]:
    """Head and hand vertex sets of any SMPL+H-layout mesh from its skinning weights ``(V, 52)``.

    A vertex belongs to a part when its *dominant* skinning weight is one of the part's joints:
    ``head`` = neck or head; ``lhand`` / ``rhand`` = that wrist or any of its 15 finger joints.
    (On SMPL the forearm is skinned to the elbow, so the wrist-dominated vertices are the palm.)
    An empty set (tiny synthetic meshes) falls back to the vertex with the largest total weight
    on the part's joints. Returns ``{"head", "lhand", "rhand"}`` -> ``(M,)`` long indices.
    """
    parts = {
        "head": [JOINT_NAMES.index("neck"), JOINT_NAMES.index("head")],
        "lhand": [LEFT_WRIST] + [i for i, n in enumerate(JOINT_NAMES) if n.startswith("left_")
                                 and i >= NUM_BODY_JOINTS],
        "rhand": [RIGHT_WRIST] + [i for i, n in enumerate(JOINT_NAMES) if n.startswith("right_")
                                  and i >= NUM_BODY_JOINTS],
    }
    owner = weights.argmax(1)
    out = {}
    for name, joints in parts.items():
        js = torch.tensor(joints, device=weights.device)
        ids = torch.nonzero(torch.isin(owner, js))[:, 0]
        if ids.numel() == 0:
            ids = weights[:, js].sum(1).argmax().reshape(1)
        out[name] = ids
    return out


# ----------------------------------------------------------------------------- per-frame
def vertex_error(pred: Tensor, gt: Tensor, ids: Tensor | None = None) -> Tensor:
    """Mean vertex-to-vertex distance ``(T,)`` of ``(T, V, 3)`` meshes (optionally a subset)."""
    if ids is not None:
        pred, gt = pred[:, ids], gt[:, ids]
    return torch.linalg.vector_norm(pred - gt, dim=-1).mean(-1)


def joint_error(pred: Tensor, gt: Tensor, joints=None) -> Tensor:
    """Mean joint distance ``(T,)`` of ``(T, J, 3)`` joints, over ``joints`` (default all)."""
    if joints is not None:
        idx = list(joints)
        pred, gt = pred[:, idx], gt[:, idx]
    return (pred - gt).norm(dim=-1).mean(-1)


def ground_penetration(points: Tensor, up: int = 1) -> Tensor:
    """Mean depth below the floor ``(T,)`` of the points ``(T, P, 3)`` with ``p[up] < 0``.

    A frame with no point below the floor counts 0 (Choutas et al. 2022, Sec. 4.1).
    """
    h = points[..., up]
    below = h < 0
    n = below.sum(-1)
    depth = torch.where(below, -h, torch.zeros_like(h)).sum(-1)
    return torch.where(n > 0, depth / n.clamp_min(1), torch.zeros_like(depth))


def rotation_error(pred: Tensor, gt: Tensor) -> Tensor:
    """Geodesic angle ``(...)`` in radians between rotations ``(..., 3, 3)``."""
    rel = gt.transpose(-1, -2) @ pred
    cos = (rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0
    # atan2 of (|sin|, cos) is accurate near 0 and pi, unlike acos
    skew = torch.stack([rel[..., 2, 1] - rel[..., 1, 2], rel[..., 0, 2] - rel[..., 2, 0],
                        rel[..., 1, 0] - rel[..., 0, 1]], -1)
    return torch.atan2(0.5 * skew.norm(dim=-1), cos)


def velocity_error(pred: Tensor, gt: Tensor, fps: float) -> Tensor:
    """Mean per-joint velocity error ``(T-1,)`` of ``(T, J, 3)`` tracks, m/s (forward diffs)."""
    dv = (pred[1:] - pred[:-1]) - (gt[1:] - gt[:-1])
    return (dv * fps).norm(dim=-1).mean(-1)


def jerk(points: Tensor, fps: float) -> Tensor:
    """Mean jerk magnitude ``(T-3,)`` of ``(T, J, 3)`` tracks, m/s³ (third differences)."""
    d3 = points[3:] - 3 * points[2:-1] + 3 * points[1:-2] - points[:-3]
    return (d3 * fps**3).norm(dim=-1).mean(-1)


# ----------------------------------------------------------------------------- accumulation
class MetricSums:
    """Running sums and sample counts per metric (SI units); :meth:`result` averages them."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, name: str, values: Tensor) -> None:
        """Add every element of ``values`` as one sample of ``name``."""
        self.sums[name] = self.sums.get(name, 0.0) + float(values.double().sum())
        self.counts[name] = self.counts.get(name, 0) + values.numel()

    def merge(self, other: MetricSums) -> None:
        for k, v in other.sums.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + other.counts[k]

    def result(self, units: dict[str, float] | None = None) -> dict[str, float | None]:
        """Means in reported units (``METRIC_UNITS`` and ``EXTRA_UNITS``); ``None`` if no sample
        (e.g. jitter of sequences shorter than 4 frames)."""
        units = units or {**METRIC_UNITS, **EXTRA_UNITS}
        return {k: (self.sums[k] / self.counts[k] * f if self.counts.get(k) else None)
                for k, f in units.items() if k in self.sums}


def frame_metrics(pred: PosedBodies, gt: PosedBodies, parts: dict[str, Tensor],
                  sums: MetricSums) -> None:
    """Add the per-frame metrics (vertex, joint, rotation errors) of one chunk to ``sums``."""
    if pred.vertices is not None and gt.vertices is not None:
        dist = torch.linalg.vector_norm(pred.vertices - gt.vertices, dim=-1)  # (T, V), once
        sums.add("v2v_fb_mm", dist.mean(-1))
        for part in ("head", "lhand", "rhand"):
            sums.add(f"v2v_{part}_mm", dist[:, parts[part]].mean(-1))
        sums.add("grpe_mm", ground_penetration(pred.vertices))
    sums.add("jnt_err_mm", joint_error(pred.joints, gt.joints))
    sums.add("grpe_joints_mm", ground_penetration(pred.joints))
    sums.add("mpjpe_cm", joint_error(pred.joints, gt.joints, BODY_JOINTS))
    sums.add("mpjre_deg", rotation_error(pred.local[:, :NUM_BODY_JOINTS],
                                         gt.local[:, :NUM_BODY_JOINTS]).mean(-1))
    sums.add("hand_pe_cm", joint_error(pred.joints, gt.joints, WRIST_JOINTS))
    sums.add("upper_pe_cm", joint_error(pred.joints, gt.joints, UPPER_BODY))
    sums.add("lower_pe_cm", joint_error(pred.joints, gt.joints, LOWER_BODY))


def temporal_metrics(pred_joints: Tensor, gt_joints: Tensor, fps: float,
                     sums: MetricSums) -> None:
    """Add MPJVE and jitter of one *whole* sequence ``(T, 52, 3)`` (22 body joints) to ``sums``."""
    p, g = pred_joints[:, :NUM_BODY_JOINTS], gt_joints[:, :NUM_BODY_JOINTS]
    sums.add("mpjve_cms", velocity_error(p, g, fps))
    sums.add("jitter", jerk(p, fps))
