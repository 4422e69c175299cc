"""The fast kinematics path: pose, shape and translation -> joint transforms and fingertips.

Frames: everything is in the *model/world frame* of the caller (the stage frame at run
time: Y up, metres). At zero pose the body stands in its rest pose facing +Z.

This follows SMPL's linear blend skinning (Loper et al. 2015; smplx ``lbs.py``) exactly, so
that it matches ``smplx.SMPLH`` to float precision, but it never touches the full mesh
unless vertices are asked for:

* rest joints are linear in the betas, ``J(β) = J_template + J_dirs · β`` (precomputed);
* global transforms are chained by *pointer doubling* over 4x4 transforms (4 gathers and 4
  batched matmuls for the 11 tree levels instead of 52 sequential products), with static
  indices only, so it traces into one small graph for Inductor / ONNX / TensorRT;
* the 10 fingertips are skinned as 10 vertices (their shape, pose-corrective and skinning
  rows precomputed).
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from tracker.body.joints import FOOT_JOINTS, HEAD, NUM_JOINTS, WRISTS, depth_levels
from tracker.body.model_file import BodyModelData, read_model_file, to_smplx
from tracker.geometry.rotations import axis_angle_to_matrix, rotation_6d_to_matrix
from tracker.geometry.transforms import make_transform

# The form of small_matmul while tracing; a context variable, so a build in one thread (or
# task) never changes how another traces or runs.
_SMALL_MATMUL: contextvars.ContextVar[str] = contextvars.ContextVar("small_matmul",
                                                                     default="auto")


@contextlib.contextmanager
def small_matmul_mode(mode: str):
    """Within the block, :func:`small_matmul` uses ``mode``: ``"auto"``, ``"matmul"`` or
    ``"broadcast"`` (engines pick the form their backend runs fastest while tracing)."""
    if mode not in ("auto", "matmul", "broadcast"):
        raise ValueError(f"unknown small_matmul mode {mode!r}")
    token = _SMALL_MATMUL.set(mode)
    try:
        yield
    finally:
        _SMALL_MATMUL.reset(token)


def small_matmul(a: Tensor, b: Tensor) -> Tensor:
    """``a (..., n, k) @ b (..., k, m)`` for tiny matrices (3x3, 4x4, matrix-vector).

    Eager: ``torch.matmul``. While compiling (``"auto"`` mode): a broadcast multiply and sum,
    which Inductor runs as one vectorised loop over the whole batch (as batched GEMMs, the
    52 x B tiny matrices cost a library call each: 7x slower at batch 256 on the CPU). ONNX
    Runtime is the other way round (its MatMul beats Mul + ReduceSum), see
    :func:`small_matmul_mode`.
    """
    mode = _SMALL_MATMUL.get()
    if mode == "broadcast" or (mode == "auto" and torch.compiler.is_compiling()):
        return (a.unsqueeze(-1) * b.unsqueeze(-3)).sum(-2)
    return a @ b

@dataclass
class BodyState:
    """The posed body, batch ``B``, world frame, metres.

    Attributes:
        rotations: ``(B, 52, 3, 3)`` global joint orientations.
        joints: ``(B, 52, 3)`` joint positions.
        tips: ``(B, 2, 5, 3)`` fingertip positions; rows left/right, thumb..little.
        vertices: ``(B, V, 3)`` mesh vertices, or ``None`` unless asked for.
    """

    rotations: Tensor
    joints: Tensor
    tips: Tensor
    vertices: Tensor | None = None

    def transforms(self) -> Tensor:
        """Joint world transforms ``(B, 52, 4, 4)`` (orientation and joint position)."""
        return make_transform(self.rotations, self.joints)

    @property
    def head(self) -> Tensor:
        """Head joint world transform ``(B, 4, 4)``."""
        return make_transform(self.rotations[:, HEAD], self.joints[:, HEAD])

    @property
    def wrists(self) -> Tensor:
        """Left and right wrist joint world transforms ``(B, 2, 4, 4)`` (SMPL joint frames)."""
        idx = list(WRISTS)
        return make_transform(self.rotations[:, idx], self.joints[:, idx])


class BodyModel(nn.Module):
    """Batched SMPL+H forward kinematics; ``float32`` or ``float64`` (use ``.to(dtype)``).

    Build it with :func:`load_body_model`. Call it with rotation matrices; see
    :meth:`forward_6d` and :meth:`forward_axis_angle` for the other parametrisations.
    """

    def __init__(self, data: BodyModelData):
        super().__init__()
        self.data = data
        self.parents = tuple(int(p) for p in data.parents)
        self.num_betas = data.num_betas
        f64 = dict(dtype=torch.float64)
        J_reg = torch.tensor(data.J_regressor, **f64)
        v_t = torch.tensor(data.v_template, **f64)
        sd = torch.tensor(data.shapedirs, **f64)
        self.register_buffer("j_template", J_reg @ v_t)  # (52, 3)
        self.register_buffer("j_dirs", torch.einsum("jv,vck->jck", J_reg, sd))  # (52, 3, K)

        tips = torch.as_tensor(data.tip_vids.reshape(-1))  # (10,)
        self.register_buffer("tip_template", v_t[tips])  # (10, 3)
        self.register_buffer("tip_dirs", sd[tips])  # (10, 3, K)
        self.register_buffer("tip_weights", torch.tensor(data.weights, **f64)[tips])  # (10, 52)
        # (V, 3, 459); all zeros in the open model: only the tips' rows are copied then
        self.has_posedirs = bool(np.any(data.posedirs))
        self.register_buffer("tip_posedirs", torch.tensor(data.posedirs[tips.numpy()], **f64))

        # Static level schedule: for each tree level, its joints and, for each joint, the
        # position of its parent inside the previous level's tensor.
        levels = depth_levels(self.parents)
        # Plain lists: they index tensors on any device and trace as constants.
        self._levels = levels
        self._level_parents = [[self.parents[j] for j in lv] for lv in levels]
        self._parent_pos = [[0]] + [
            [levels[d - 1].index(self.parents[j]) for j in levels[d]]
            for d in range(1, len(levels))
        ]
        order = [j for lv in levels for j in lv]
        self._unpermute = np.argsort(order).tolist()

        # The chain by pointer doubling (see ``_chain``): transforms live in a (B, 53, 4, 4)
        # tensor whose row 52 is the identity (the root's "parent"); step s multiplies every
        # joint by the product of the 2^s joints above it, so 4 gathers + 4 batched matmuls
        # chain the 11 levels. Index buffers are non-persistent: checkpoints never see them.
        P = len(self.parents)
        anc = [p if p >= 0 else P for p in self.parents] + [P]
        steps = []
        while any(a != P for a in anc):
            steps.append(anc)
            anc = [anc[a] for a in anc]
        self.register_buffer("_double_idx", torch.tensor(steps, dtype=torch.long),
                             persistent=False)  # (S, 53)
        # Bone offsets J_j - J_parent (root: J_0) are linear in the betas too.
        sel = torch.zeros(P, P, **f64)
        for j, p in enumerate(self.parents):
            if p >= 0:
                sel[j, p] = 1.0
        bone = torch.eye(P, **f64) - sel
        self.register_buffer("off_template", bone @ self.j_template)  # (52, 3)
        self.register_buffer("off_dirs", torch.einsum("jk,kcb->jcb", bone, self.j_dirs))
        # desc[j, k] = 1 where k is j or below it: subtree sums in one matmul (kinematics_vjp)
        desc = torch.eye(P, **f64)
        for j in range(P):
            a = self.parents[j]
            while a >= 0:
                desc[a, j] = 1.0
                a = self.parents[a]
        self.register_buffer("descendants", desc, persistent=False)
        # one-hot columns of the joints a headset observes: head, left wrist, right wrist
        obs = torch.zeros(P, 3, **f64)
        for n, j in enumerate((HEAD, *WRISTS)):
            obs[j, n] = 1.0
        self.register_buffer("observed_select", obs, persistent=False)
        # the foot joints (ankles, feet) and their heights above the sole standing at rest
        # (mean shape): where they are when a foot is on the floor (the fitter's floor term)
        feet = torch.zeros(P, 4, **f64)
        for n, j in enumerate(FOOT_JOINTS):
            feet[j, n] = 1.0
        self.register_buffer("foot_select", feet, persistent=False)
        sole = v_t[:, 1].min()
        self.register_buffer("foot_heights", self.j_template[list(FOOT_JOINTS), 1] - sole,
                             persistent=False)
        pad = torch.zeros(P + 1, 4, 4, **f64)
        pad[:P, 3, 3] = 1.0
        pad[P] = torch.eye(4, **f64)
        self.register_buffer("_chain_pad", pad, persistent=False)

        # The full mesh, used only when vertices are asked for.
        self.register_buffer("v_template", v_t)
        self.register_buffer("shapedirs", sd)
        # (459, V*3) like smplx; empty when the model has no pose correctives (the open one),
        # which saves 74 MB per copy of the model.
        pd_full = (torch.tensor(data.posedirs, **f64).reshape(-1, data.posedirs.shape[-1]).T
                   .contiguous() if self.has_posedirs else torch.zeros(0, **f64))
        self.register_buffer("posedirs", pd_full)
        self.register_buffer("weights", torch.tensor(data.weights, **f64))
        self.register_buffer("faces", torch.as_tensor(data.faces))

    # ------------------------------------------------------------------ properties
    @property
    def fingerprint(self) -> str:
        return self.data.fingerprint

    @property
    def dtype(self) -> torch.dtype:
        return self.j_template.dtype

    # ------------------------------------------------------------------ kinematics
    def rest_joints(self, betas: Tensor) -> Tensor:
        """Rest-pose joint positions ``(B, 52, 3)`` for betas ``(B, K')``, ``K' <= K``."""
        k = betas.shape[-1]
        return self.j_template + torch.einsum("jck,bk->bjc", self.j_dirs[..., :k], betas)

    def bone_offsets(self, betas: Tensor) -> Tensor:
        """Rest-pose bone vectors ``J_j - J_parent(j)`` ``(B, 52, 3)`` (root: ``J_0``)."""
        k = betas.shape[-1]
        return self.off_template + torch.einsum("jck,bk->bjc", self.off_dirs[..., :k], betas)

    def _chain(self, rotmats: Tensor, betas: Tensor) -> tuple[Tensor, Tensor]:
        """Global rotations ``(B, 52, 3, 3)`` and joint positions ``(B, 52, 3)`` (no transl).

        ``G_j = G_parent(j) @ [Rl_j | J_j - J_parent(j)]`` for every joint, computed by pointer
        doubling over 4x4 transforms: ``G <- G[anc] @ G; anc <- anc[anc]`` until every
        ancestor is folded in (log2 of the tree depth steps, static indices only).
        """
        P = rotmats.shape[1]
        top = torch.cat([rotmats, self.bone_offsets(betas)[..., None]], -1)  # (B, 52, 3, 4)
        G = nn.functional.pad(top, (0, 0, 0, 1, 0, 1)) + self._chain_pad  # (B, 53, 4, 4)
        for s in range(self._double_idx.shape[0]):
            G = small_matmul(torch.index_select(G, 1, self._double_idx[s]), G)
        return G[:, :P, :3, :3], G[:, :P, :3, 3]

    def posed_joints(self, rotmats: Tensor, betas: Tensor, transl: Tensor) -> Tensor:
        """Joint positions ``(B, 52, 3)`` only (what :meth:`forward` returns as ``joints``,
        without its skinning work) for ``rotmats (B, 52, 3, 3)``, ``betas (B, K')``,
        ``transl (B, 3)``."""
        return self._chain(rotmats, betas)[1] + transl[:, None]

    def forward(
        self,
        rotmats: Tensor,
        betas: Tensor | None = None,
        transl: Tensor | None = None,
        vertices: bool | Tensor = False,
    ) -> BodyState:
        """Pose the body.

        Args:
            rotmats: ``(B, 52, 3, 3)`` joint rotations relative to the parent (root: global).
            betas: ``(B, K')`` shape coefficients, ``K' <= num_betas``; ``None`` = mean shape.
            transl: ``(B, 3)`` SMPL translation (added to every joint and vertex).
            vertices: also compute the ``(B, V, 3)`` mesh; or a ``(M,)`` index tensor to skin
                only those vertices (``(B, M, 3)``; training losses on a vertex subset).

        Returns:
            :class:`BodyState` in the world frame.
        """
        B = rotmats.shape[0]
        dt, dev = rotmats.dtype, rotmats.device
        if betas is None:
            betas = torch.zeros(B, 1, dtype=dt, device=dev)
        if transl is None:
            transl = torch.zeros(B, 3, dtype=dt, device=dev)
        J = self.rest_joints(betas)  # (B, 52, 3)

        R_glob, J_posed = self._chain(rotmats, betas)

        # Skinning transforms A_j = [R_j | t_j - R_j J_j]: p -> R_j p + (t_j - R_j J_j).
        A_t = J_posed - small_matmul(R_glob, J[..., None])[..., 0]  # (B, 52, 3)
        want_verts = isinstance(vertices, Tensor) or bool(vertices)
        pose_feature = None
        if self.has_posedirs or want_verts:
            eye = torch.eye(3, dtype=dt, device=dev)
            pose_feature = (rotmats[:, 1:] - eye).reshape(B, -1)  # (B, 459)

        k = betas.shape[-1]
        tip_rest = self.tip_template + torch.einsum("ick,bk->bic", self.tip_dirs[..., :k], betas)
        if self.has_posedirs:
            tip_rest = tip_rest + torch.einsum("icp,bp->bic", self.tip_posedirs, pose_feature)
        tips = self._skin(self.tip_weights, R_glob, A_t, tip_rest) + transl[:, None]

        verts = None
        if want_verts:
            ids = vertices if isinstance(vertices, Tensor) else slice(None)
            v_rest = self.v_template[ids] + torch.einsum(
                "vck,bk->bvc", self.shapedirs[ids][..., :k], betas)
            if self.has_posedirs:
                pd = self.posedirs.reshape(-1, self.v_template.shape[0], 3)[:, ids]
                v_rest = v_rest + torch.einsum("pvc,bp->bvc", pd, pose_feature)
            verts = self._skin(self.weights[ids], R_glob, A_t, v_rest) + transl[:, None]
        return BodyState(
            rotations=R_glob,
            joints=J_posed + transl[:, None],
            tips=tips.reshape(B, 2, 5, 3),
            vertices=verts,
        )

    @staticmethod
    def _skin(w: Tensor, R: Tensor, t: Tensor, p: Tensor) -> Tensor:
        """LBS of rest points ``p (B, N, 3)`` with weights ``w (N, 52)``, ``R (B, 52, 3, 3)``,
        ``t (B, 52, 3)`` -> ``(B, N, 3)``."""
        R_blend = torch.einsum("nj,bjrc->bnrc", w, R)
        t_blend = torch.einsum("nj,bjc->bnc", w, t)
        return small_matmul(R_blend, p[..., None])[..., 0] + t_blend

    def forward_6d(self, rot6d: Tensor, betas=None, transl=None, vertices=False) -> BodyState:
        """Like :meth:`forward` with ``rot6d (B, 52, 6)`` (see ``tracker.geometry``)."""
        return self.forward(rotation_6d_to_matrix(rot6d), betas, transl, vertices)

    def forward_axis_angle(self, poses: Tensor, betas=None, transl=None, vertices=False):
        """Like :meth:`forward` with AMASS-layout ``poses (B, 156)`` axis-angle."""
        R = axis_angle_to_matrix(poses.reshape(poses.shape[0], NUM_JOINTS, 3))
        return self.forward(R, betas, transl, vertices)

    def smplx_layer(self, num_betas: int | None = None):
        """The reference ``smplx.SMPLH`` layer for the same file (tests, tooling)."""
        return to_smplx(self.data, num_betas, dtype=self.dtype).to(self.j_template.device)


def load_body_model(
    path: str | Path | None = None,
    gender: str = "neutral",
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> BodyModel:
    """Load an SMPL+H-layout body model for the fast kinematics path.

    Args:
        path: ``None`` for the bundled open model; else a real SMPL+H ``.pkl`` (MANO site),
            an AMASS ``model.npz``, our ``.npz``, or a folder holding one (smplx layout).
        gender: picks the file inside a folder.
        dtype: ``torch.float32`` or ``torch.float64``.
    """
    return BodyModel(read_model_file(path, gender)).to(device=device, dtype=dtype)
