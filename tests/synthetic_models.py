"""Small random SMPL+H-layout model files in the real formats (for loader and parity tests).

The geometry is random but has the exact layout of real files: 52 joints with SMPL+H's
tree, 16 shape components, non-zero pose correctives, sparse-ish skinning weights.
"""

from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path

import numpy as np

from tracker.body.joints import NUM_JOINTS, PARENTS

SMPLX_VERTEX_KEYS = (
    "nose", "reye", "leye", "rear", "lear", "LBigToe", "LSmallToe", "LHeel", "RBigToe",
    "RSmallToe", "RHeel", "lthumb", "lindex", "lmiddle", "lring", "lpinky", "rthumb",
    "rindex", "rmiddle", "rring", "rpinky",
)


def random_smplh_arrays(num_vertices: int = 400, num_betas: int = 16, seed: int = 0) -> dict:
    """Arrays of a random SMPL+H-layout model, as in AMASS's ``model.npz`` (no hands keys)."""
    rng = np.random.default_rng(seed)
    V = num_vertices
    v = rng.normal(scale=0.3, size=(V, 3))
    J_reg = rng.random((NUM_JOINTS, V)) ** 8
    J_reg /= J_reg.sum(1, keepdims=True)
    w = rng.random((V, NUM_JOINTS)) ** 6
    w /= w.sum(1, keepdims=True)
    kin = np.stack([np.array(PARENTS), np.arange(NUM_JOINTS)]).astype(np.int64)
    kin[0, 0] = 4294967295
    return {
        "v_template": v,
        "f": rng.integers(0, V, size=(2 * V, 3)).astype(np.uint32),
        "shapedirs": rng.normal(scale=0.01, size=(V, 3, num_betas)),
        "posedirs": rng.normal(scale=0.01, size=(V, 3, (NUM_JOINTS - 1) * 9)),
        "J_regressor": J_reg,
        "weights": w,
        "kintree_table": kin,
    }


def write_amass_npz(path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **random_smplh_arrays(**kw))
    return path


def write_open_style_npz(path: Path, **kw) -> Path:
    """Our own layout: hands keys, tip ids and vertex ids included."""
    a = random_smplh_arrays(**kw)
    V = a["v_template"].shape[0]
    a.update(
        hands_componentsl=np.eye(45), hands_componentsr=np.eye(45),
        hands_meanl=np.zeros(45), hands_meanr=np.zeros(45),
        tip_vids_left=np.arange(5), tip_vids_right=np.arange(5, 10),
        vertex_ids_names=np.array(SMPLX_VERTEX_KEYS),
        vertex_ids_values=np.arange(len(SMPLX_VERTEX_KEYS)) % V,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **a)
    return path


class _Ch:
    """Pickles like a chumpy ``Ch`` leaf (class ``chumpy.ch.Ch``, state ``{'x': array}``)."""

    def __init__(self, x):
        self.x = x

    def __reduce__(self):
        return (_Ch, (), {"x": self.x})


def write_mano_pkl(path: Path, **kw) -> Path:
    """A MANO-site style pickle: chumpy ``Ch`` arrays, a scipy sparse J_regressor."""
    import scipy.sparse

    a = random_smplh_arrays(num_vertices=6890, **kw)
    a["shapedirs"] = _Ch(a["shapedirs"][:, :, :10])
    a["J_regressor"] = scipy.sparse.csc_matrix(a["J_regressor"])
    a["hands_componentsl"] = np.eye(45)
    a["hands_componentsr"] = np.eye(45)
    a["hands_meanl"] = np.zeros(45)
    a["hands_meanr"] = np.zeros(45)
    fake = types.ModuleType("chumpy.ch")
    fake.Ch = _Ch
    old_mod, old_qual = _Ch.__module__, _Ch.__qualname__
    _Ch.__module__, _Ch.__qualname__ = "chumpy.ch", "Ch"
    sys.modules["chumpy"] = types.ModuleType("chumpy")
    sys.modules["chumpy.ch"] = fake
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            pickle.dump(a, fh, protocol=2)
    finally:
        del sys.modules["chumpy.ch"], sys.modules["chumpy"]
        _Ch.__module__, _Ch.__qualname__ = old_mod, old_qual
    return path


class RunsCode:
    """Pickles to a call that creates ``marker``: a file that would run code when loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))
