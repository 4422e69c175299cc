"""SMPL+H-layout body models: loading (open default or a user's real SMPL+H) and kinematics.

Public API::

    from tracker.body import load_body_model
    body = load_body_model()                 # the bundled open model (CC0)
    body = load_body_model("~/smplh/SMPLH_MALE.pkl", dtype=torch.float64)
    state = body(rotmats, betas, transl)     # (B,52,3,3), (B,K), (B,3) -> BodyState
    state.joints, state.rotations, state.tips, state.head, state.wrists
"""

from tracker.body.joints import (
    HEAD,
    JOINT_NAMES,
    LEFT_WRIST,
    NUM_JOINTS,
    PARENTS,
    RIGHT_WRIST,
    TIP_NAMES,
)
from tracker.body.kinematics import BodyModel, BodyState, load_body_model
from tracker.body.model_file import (
    DEFAULT_MODEL_DIR,
    DEFAULT_MODEL_PATH,
    BodyModelData,
    BodyModelError,
    read_model_file,
)

__all__ = [
    "BodyModel", "BodyModelData", "BodyModelError", "BodyState", "DEFAULT_MODEL_DIR",
    "DEFAULT_MODEL_PATH", "HEAD", "JOINT_NAMES", "LEFT_WRIST", "NUM_JOINTS", "PARENTS",
    "RIGHT_WRIST", "TIP_NAMES", "load_body_model", "read_model_file",
]
