"""NumPy forward kinematics of the joints, float64: an independent reference for tests.

:class:`JointChain` computes what ``BodyModel.forward`` does (joints only) by walking the
parent chain; tests check the engines' wire outputs (``tracker.fitter.outputs``, computed in
the compiled fit) against it. (It was the publish path until the engines returned what the
wire needs.)
"""

from __future__ import annotations

import numpy as np

from tracker.body.joints import depth_levels


class JointChain:
    """Forward kinematics of the joint positions only, by pointer jumping.

    Every joint starts with its local transform ``[R_local | bone offset]`` and a pointer to
    its parent (the roots to a virtual identity joint); each round composes a joint with the
    transform of the joint its pointer names and doubles the pointer. After
    ``ceil(log2(depth + 1))`` rounds (4 for SMPL+H's depth of 11) every joint holds its
    global transform: 4 batched matmuls instead of one per tree level.
    """

    def __init__(self, parents):
        self.parents = np.asarray(parents)
        J = len(self.parents)
        self.pointers = np.where(self.parents < 0, J, self.parents)
        depth = len(depth_levels(tuple(int(p) for p in parents)))
        self.rounds = int(np.ceil(np.log2(depth + 1)))

    def joints(self, R_local: np.ndarray, J_rest: np.ndarray, transl: np.ndarray) -> np.ndarray:
        """``R_local (B, J, 3, 3)`` parent-relative rotations, ``J_rest (B, J, 3)`` rest joints,
        ``transl (B, 3)`` -> posed joints ``(B, J, 3)``."""
        B, J = R_local.shape[:2]
        G = np.zeros((B, J + 1, 4, 4))
        G[:, :J, :3, :3] = R_local
        roots = self.parents < 0
        G[:, :J, :3, 3] = J_rest - np.where(roots[:, None], 0.0, J_rest[:, self.pointers % J])
        G[:, :, 3, 3] = 1.0
        G[:, J, :3, :3] = np.eye(3)
        ptr = np.append(self.pointers, J)
        for _ in range(self.rounds):
            G = G[:, ptr] @ G
            ptr = ptr[ptr]
        return G[:, :J, :3, 3] + transl[:, None]
