"""Ground-truth bodies and headset signals for whole motions in the AMASS layout.

This is the one path from a motion (AMASS file, imported BVH, procedural generator) to what
the fitter sees: training, evaluation and ``tracker simulate`` all call it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from tracker.body.kinematics import BodyModel, BodyState
from tracker.signals.headset import HeadsetSignals, VisibilityMode, signals_from_state
from tracker.signals.stage import amass_to_stage


def _as_tensor(x, dtype) -> Tensor:
    return torch.as_tensor(np.asarray(x), dtype=dtype)


def stage_params(body: BodyModel, poses, trans, betas) -> tuple[Tensor, Tensor, Tensor]:
    """AMASS-layout motion (Z up) -> stage-frame SMPL+H parameters.

    Args:
        poses: ``(N, 156)`` axis-angle. trans: ``(N, 3)``. betas: ``(K,)`` or ``(N, K)``;
            only the first ``body.num_betas`` are used.

    Returns:
        ``poses (N, 156)``, ``trans (N, 3)``, ``betas (N, K')`` in the body's dtype.
    """
    dt = body.dtype
    poses, trans, betas = (_as_tensor(x, dt) for x in (poses, trans, betas))
    betas = betas[..., : body.num_betas]
    if betas.dim() == 1:
        betas = betas.expand(poses.shape[0], -1)
    pelvis = body.rest_joints(betas[:1])[0, 0]
    poses, trans = amass_to_stage(poses, trans, pelvis)
    return poses, trans, betas


def motion_signals(
    body: BodyModel,
    poses,
    trans,
    betas,
    T_hmd: Tensor | None = None,
    mode: VisibilityMode = "device",
    vertices: bool = False,
    chunk: int = 4096,
) -> tuple[HeadsetSignals, BodyState, Tensor]:
    """Pose a whole AMASS-layout motion on the stage and derive its headset signals.

    Returns:
        ``(signals, state, stage_poses)`` with batch shape ``(N,)``: the clean signals
        (no device noise; see ``tracker.signals.device``), the posed bodies, and the
        stage-frame ``(N, 156)`` axis-angle poses.
    """
    poses, trans, betas = stage_params(body, poses, trans, betas)
    states = [
        body.forward_axis_angle(poses[i : i + chunk], betas[i : i + chunk],
                                trans[i : i + chunk], vertices=vertices)
        for i in range(0, poses.shape[0], chunk)
    ]
    state = BodyState(
        rotations=torch.cat([s.rotations for s in states]),
        joints=torch.cat([s.joints for s in states]),
        tips=torch.cat([s.tips for s in states]),
        vertices=torch.cat([s.vertices for s in states]) if vertices else None,
    )
    return signals_from_state(state, T_hmd, mode), state, poses
