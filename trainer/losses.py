"""Training losses of the fitter (Choutas et al. 2022, Sup. Mat. 6.2, Eq. 13-18).

Applied to the output of every iteration n = 0..N and summed::

    L_n = λ_M ||M̂ - M||_1 + λ_E Σ_edges ||(M̂_i - M̂_j) - (M_i - M_j)||_1
        + λ_T Σ_j ||T̂_j - T_j||_1 + λ_θ ||R̂_θ - R_θ||_1 + λ_t ||t̂ - t||_1

with λ_M = 1000, λ_E = 1000, λ_T = 100, λ_θ = 1, λ_t = 100 (Sup. Mat. 6.2). For streaming
windows we add a velocity term on the final iterate (not in the paper, whose fits are per
frame): ``λ_V ||(Ĵ_k - Ĵ_k-1) - (J_k - J_k-1)||_1`` over the joint positions of consecutive
frames, λ_V = 10,000 (joint displacements per frame are millimetres), against jitter
(``velocity_loss``), and foot terms (``foot_losses``): where the ground truth's foot is in
contact (slow and low), the fitted foot should not slide (skating, λ_S on per-frame
displacements) and should be at the ground truth's height (floor, λ_F), and no joint should
be below the floor. Both are off by default (see ``LossWeights``). The norms are
means over elements here (the paper does not say; means keep the weights meaningful across
mesh resolutions). The mesh terms run on a fixed random subset of vertices and the mesh
edges incident to it (``MeshSample``): on a CPU, skinning all 13k vertices of every
iteration of every frame would dominate training time; on a GPU use the full mesh.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from tracker.body.joints import FOOT_JOINTS
from tracker.body.kinematics import BodyModel
from tracker.fitter.theta import split_theta
from tracker.geometry.rotations import rotation_6d_to_matrix


@dataclass(frozen=True)
class LossWeights:
    """Weights of the training losses (see the module docstring).

    Attributes:
        mesh: λ_M, vertex L1 (Sup. Mat. 6.2: 1000).
        edges: λ_E, mesh-edge L1 (1000).
        transforms: λ_T, joint rotations and positions L1 (100).
        rotations: λ_θ, parameter rotation matrices L1 (1).
        translation: λ_t, root translation L1 (100).
        velocity: λ_V, joint displacement per frame L1 (streaming windows; ours).
        skating: λ_S, slide of fitted feet where the ground truth's are in contact (ours; off
            by default: at 10,000 it cost 2 cm of MPJPE in the model card's ablation).
        floor: λ_F, height error of feet in contact plus depth below the floor (ours; off by
            default, as skating; 1,000 with it in the ablation).
    """

    mesh: float = 1000.0
    edges: float = 1000.0
    transforms: float = 100.0
    rotations: float = 1.0
    translation: float = 100.0
    velocity: float = 10000.0
    skating: float = 0.0
    floor: float = 0.0


@dataclass
class MeshSample:
    """Vertices ``ids (M,)`` to skin, and edges ``(E, 2)`` as positions into ``ids``."""

    ids: Tensor
    edges: Tensor

    @classmethod
    def build(cls, body: BodyModel, num_vertices: int | None, seed: int = 0) -> MeshSample:
        """A seeded subset of ``num_vertices`` vertices (``None`` or >= V: the whole mesh)."""
        faces = body.data.faces
        V = body.data.num_vertices
        edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
        edges = np.unique(np.sort(edges, 1), axis=0)
        if num_vertices is None or num_vertices >= V:
            return cls(torch.arange(V), torch.as_tensor(edges))
        rng = np.random.default_rng(seed)
        seeds = rng.choice(V, num_vertices // 2, replace=False)
        # one incident edge per seed vertex, so both ends are skinned
        first = {}
        for a, b in edges:
            first.setdefault(a, b)
            first.setdefault(b, a)
        pairs = np.array([[s, first[s]] for s in seeds if s in first])
        ids, inv = np.unique(pairs.reshape(-1), return_inverse=True)
        return cls(torch.as_tensor(ids), torch.as_tensor(inv.reshape(-1, 2)))


def fit_losses(
    body: BodyModel,
    iterates: Tensor,
    target: Tensor,
    betas: Tensor,
    sample: MeshSample,
    w: LossWeights = LossWeights(),
    joints_out: list | None = None,
) -> dict[str, Tensor]:
    """Sum over iterations of the Sup. Mat. losses.

    Args:
        iterates: ``(N+1, B, 315)`` Θ0..ΘN in the stage frame.
        target: ``(B, 315)`` ground truth Θ, stage frame. betas: ``(B, K)``.
        joints_out: if given, ``(Ĵ_N, J)`` is appended: final-iterate and ground-truth joint
            positions ``(B, 52, 3)`` (for :func:`velocity_loss`).

    Returns:
        ``{"total", "mesh", "edges", "transforms", "rotations", "translation"}`` scalars
        (the parts are unweighted, summed over iterations, for logging).
    """
    n1, B = iterates.shape[:2]
    ids = sample.ids.to(target.device)
    gt_d6, gt_t = split_theta(target)
    gt_R = rotation_6d_to_matrix(gt_d6)
    gt = body(gt_R, betas, gt_t, vertices=ids)
    flat = iterates.reshape(n1 * B, -1)
    d6, t = split_theta(flat)
    R = rotation_6d_to_matrix(d6)
    rep = betas.repeat(n1, 1)
    st = body(R, rep, t, vertices=ids)

    def rep_gt(x: Tensor) -> Tensor:
        return x.unsqueeze(0).expand(n1, *x.shape).reshape(n1 * B, *x.shape[1:])

    M, M_gt = st.vertices, rep_gt(gt.vertices)
    e = sample.edges.to(target.device)
    parts = {
        "mesh": (M - M_gt).abs().mean() * n1,
        "edges": ((M[:, e[:, 0]] - M[:, e[:, 1]]) - (M_gt[:, e[:, 0]] - M_gt[:, e[:, 1]]))
        .abs().mean() * n1,
        "transforms": ((st.rotations - rep_gt(gt.rotations)).abs().mean()
                       + (st.joints - rep_gt(gt.joints)).abs().mean()) * n1,
        "rotations": (R - rep_gt(gt_R)).abs().mean() * n1,
        "translation": (t - rep_gt(gt_t)).abs().mean() * n1,
    }
    if joints_out is not None:
        joints_out.append((st.joints[(n1 - 1) * B:], gt.joints))
    total = (w.mesh * parts["mesh"] + w.edges * parts["edges"]
             + w.transforms * parts["transforms"] + w.rotations * parts["rotations"]
             + w.translation * parts["translation"])
    return {"total": total, **{k: v.detach() for k, v in parts.items()}}


def velocity_loss(joints: list[tuple[Tensor, Tensor]]) -> Tensor:
    """Mean L1 error of frame-to-frame joint displacements over consecutive frames.

    Args:
        joints: per frame ``(Ĵ, J)``, each ``(B, 52, 3)`` metres (from ``fit_losses``).
    """
    errs = [((p1 - p0) - (g1 - g0)).abs().mean()
            for (p0, g0), (p1, g1) in zip(joints[:-1], joints[1:], strict=True)]
    return torch.stack(errs).mean()


CONTACT_SPEED = 0.3  # m/s: a foot joint slower than this ...
CONTACT_HEIGHT = 0.15  # m: ... and lower than this is in contact


def foot_contact(gt: Tensor, fps: Tensor | float) -> Tensor:
    """Contact labels ``(K-1, B, 4)`` bool from ground-truth joints ``gt (K, B, 52, 3)``
    (stage frame, Y up): foot joints slower than ``CONTACT_SPEED`` between consecutive frames
    and below ``CONTACT_HEIGHT`` at the later one. ``fps`` scalar or ``(B,)``."""
    f = gt[:, :, FOOT_JOINTS]
    fps = torch.as_tensor(fps, dtype=gt.dtype, device=gt.device).reshape(-1, 1)
    speed = (f[1:] - f[:-1]).norm(dim=-1) * fps
    return (speed < CONTACT_SPEED) & (f[1:, ..., 1] < CONTACT_HEIGHT)


def foot_losses(joints: list[tuple[Tensor, Tensor]], fps: Tensor | float) -> dict[str, Tensor]:
    """Foot skating, floor-contact height and floor penetration over a window.

    Args:
        joints: per frame ``(Ĵ, J)``, each ``(B, 52, 3)`` metres, stage frame (Y up, floor at
            y = 0), from ``fit_losses``. fps: frame rate, scalar or ``(B,)``.

    Returns:
        ``{"skating", "floor", "penetration"}``: mean L1 slide per frame (m) and height error
        (m) of fitted foot joints where the ground truth is in contact, and the mean depth of
        fitted joints below the floor (m).
    """
    pred = torch.stack([p for p, _ in joints])
    gt = torch.stack([g for _, g in joints])
    contact = foot_contact(gt, fps).to(pred.dtype)  # (K-1, B, 4)
    n = contact.sum().clamp_min(1.0)
    fp = pred[:, :, FOOT_JOINTS]
    slide = (fp[1:] - fp[:-1]).abs().sum(-1)
    height = (fp[1:, ..., 1] - gt[1:, :, FOOT_JOINTS, 1]).abs()
    return {"skating": (slide * contact).sum() / n, "floor": (height * contact).sum() / n,
            "penetration": torch.relu(-pred[..., 1]).mean()}
