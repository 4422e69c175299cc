"""BVH motion files: a parser for real-world files and a writer for the SMPL+H skeleton.

Parser (:func:`parse_bvh`, :func:`read_bvh`): any rotation order, any mix of position and
rotation channels on any joint (3, 6 or other counts; scale channels are ignored), end sites
(named ``<parent>_end``), tabs or spaces, CRLF, names with spaces, truncated motion data (the
complete frames are kept, :attr:`Bvh.truncated` is set and a warning names the line where the
data stops; ``trainer import-bvh`` refuses such a file). Units and the up axis are *not* changed
here: :class:`Bvh` holds the file's numbers; ``tracker.motion.retarget`` detects them.

BVH conventions used: a joint's local transform is ``[R | t]`` with ``t`` its ``OFFSET`` (any
position channels replace the matching components) and ``R = R_a1 @ R_a2 @ R_a3`` for its
rotation channels in file order (intrinsic Euler angles, degrees); world transforms chain from
the root, ``G_j = G_parent @ L_j``. At all-zero channels the skeleton stands in its rest pose.

Writer (:func:`smplh_to_bvh_text`, :func:`write_bvh`): an AMASS-layout SMPL+H motion as a BVH
whose joints carry the SMPL+H names, rest offsets from the body model (T-pose), so that
Blender/Unity users can look at fitted motion, and the importer gets an exact round trip::

    python -m tracker.motion.bvh motion.npz motion.bvh [--up y|z] [--unit cm|m]
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

END_SUFFIX = "_end"
_AXES = "XYZ"


class BvhError(ValueError):
    """A BVH file that cannot be read (the message says where and why)."""


@dataclass
class Bvh:
    """A parsed BVH file (file units and axes, untouched).

    Attributes:
        names: ``J`` joint names in file order (parents first); end sites are
            ``<parent>_end``.
        parents: ``(J,)`` int parent indices, ``-1`` for roots.
        offsets: ``(J, 3)`` float64 rest offsets from the parent, file units.
        channels: per joint, its channel names (``"Xposition"``, ``"Zrotation"``, ...).
        is_end: ``(J,)`` bool, end sites.
        frame_time: seconds per frame.
        motion: ``(N, C)`` float64 channel values, ``C = sum(len(c) for c in channels)``.
        warnings: problems that were tolerated (e.g. truncated motion data).
        truncated: the motion data stops before the declared frame count (the file was
            cut); ``warnings`` says at which line and frame.
    """

    names: list[str]
    parents: np.ndarray
    offsets: np.ndarray
    channels: list[tuple[str, ...]]
    is_end: np.ndarray
    frame_time: float
    motion: np.ndarray
    warnings: list[str] = field(default_factory=list)
    truncated: bool = False

    @property
    def num_frames(self) -> int:
        return int(self.motion.shape[0])

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time

    def index(self, name: str) -> int:
        return self.names.index(name)

    def local_transforms(self, joints=None) -> tuple[np.ndarray, np.ndarray]:
        """Local rotations ``(N, J', 3, 3)`` and translations ``(N, J', 3)`` (file units).

        ``joints``: indices to compute (default all), in that order.
        """
        joints = range(len(self.names)) if joints is None else joints
        starts = np.cumsum([0] + [len(c) for c in self.channels])
        N = self.num_frames
        Rs, ts = [], []
        for j in joints:
            chans, s = self.channels[j], starts[j]
            t = np.broadcast_to(self.offsets[j], (N, 3)).copy()
            order, cols = "", []
            for k, ch in enumerate(chans):
                kind = ch[1:].lower()
                if kind == "position":
                    t[:, _AXES.index(ch[0].upper())] = self.motion[:, s + k]
                elif kind == "rotation":
                    order += ch[0].upper()
                    cols.append(s + k)
            if order:
                R = Rotation.from_euler(order, self.motion[:, cols], degrees=True).as_matrix()
            else:
                R = np.broadcast_to(np.eye(3), (N, 3, 3))
            Rs.append(R)
            ts.append(t)
        if not Rs:
            return np.zeros((N, 0, 3, 3)), np.zeros((N, 0, 3))
        return np.stack(Rs, 1), np.stack(ts, 1)

    def ancestors(self, joints) -> list[int]:
        """Sorted indices of ``joints`` and all their ancestors."""
        need = set()
        for j in joints:
            while j >= 0 and j not in need:
                need.add(j)
                j = int(self.parents[j])
        return sorted(need)


def world_transforms(
    parents: np.ndarray, R_local: np.ndarray, t_local: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Forward kinematics: world rotations ``(N, J, 3, 3)`` and positions ``(N, J, 3)``.

    ``parents (J,)`` index into the same ``J`` joints (parents before children, ``-1`` root);
    ``R_local (N, J, 3, 3)``, ``t_local (N, J, 3)`` as from :meth:`Bvh.local_transforms`.
    """
    R = np.empty_like(R_local)
    p = np.empty_like(t_local)
    for j, par in enumerate(parents):
        if par < 0:
            R[:, j], p[:, j] = R_local[:, j], t_local[:, j]
        else:
            R[:, j] = R[:, par] @ R_local[:, j]
            p[:, j] = p[:, par] + (R[:, par] @ t_local[:, j, :, None])[..., 0]
    return R, p


# ------------------------------------------------------------------------------ parser
def _tokens(line: str) -> list[str]:
    return line.replace("{", " { ").replace("}", " } ").split()


def parse_bvh(text: str, source: str = "<text>") -> Bvh:
    """Parse BVH text. Raises :class:`BvhError` with the line number on malformed input."""
    lines = text.removeprefix("\ufeff").splitlines()
    first = next((t for line in lines if (t := _tokens(line))), [""])[0]
    if first.upper() != "HIERARCHY":
        raise BvhError(f"{source}: not a BVH file (it does not start with HIERARCHY)")
    names, parents, offsets, channels, is_end = [], [], [], [], []
    stack: list[int] = []
    pending: int | None = None  # joint declared, its "{" not seen yet
    i = 0

    def fail(msg):
        raise BvhError(f"{source}: line {i + 1}: {msg}")

    while i < len(lines):
        tok = _tokens(lines[i])
        if not tok:
            i += 1
            continue
        key = tok[0].upper()
        if key == "HIERARCHY":
            pass
        elif key in ("ROOT", "JOINT") or (key == "END" and len(tok) > 1
                                          and tok[1].upper() == "SITE"):
            end = key == "END"
            if not stack and not end and key == "JOINT":
                fail("JOINT outside a ROOT")
            if end and not stack:
                fail("End Site outside a joint")
            rest = [t for t in tok[(2 if end else 1):] if t not in "{}"]
            name = (names[stack[-1]] + END_SUFFIX) if end else " ".join(rest)
            if not name:
                fail(f"{key} without a name")
            names.append(name)
            parents.append(stack[-1] if stack else -1)
            offsets.append(np.zeros(3))
            channels.append(())
            is_end.append(end)
            pending = len(names) - 1
            if "{" in tok:
                stack.append(pending)
                pending = None
        elif key == "{":
            if pending is None:
                fail("unexpected '{'")
            stack.append(pending)
            pending = None
        elif key == "}":
            if not stack:
                fail("unbalanced '}'")
            stack.pop()
        elif key == "OFFSET":
            if not stack or len(tok) < 4:
                fail("bad OFFSET")
            try:
                offsets[stack[-1]] = np.array([float(v) for v in tok[1:4]])
            except ValueError:
                fail(f"bad OFFSET values {tok[1:4]}")
        elif key == "CHANNELS":
            if not stack or len(tok) < 2 or not tok[1].isdigit():
                fail("bad CHANNELS")
            n = int(tok[1])
            chans = tuple(tok[2:2 + n])
            if len(chans) != n or any(not re.fullmatch(r"[XYZxyz](position|rotation|scale)",
                                                       c, re.I) for c in chans):
                fail(f"bad CHANNELS {tok[2:]}")
            channels[stack[-1]] = chans
        elif key == "MOTION":
            break
        else:
            fail(f"unexpected {tok[0]!r}")
        i += 1
    if not names:
        raise BvhError(f"{source}: no HIERARCHY with a ROOT")
    if stack or i >= len(lines):
        raise BvhError(f"{source}: HIERARCHY not closed or MOTION section missing")

    # MOTION: "Frames: n", "Frame Time: t", then the numbers (any layout).
    header, body_start = {}, None
    for k in range(i + 1, min(i + 6, len(lines))):
        m = re.match(r"\s*(Frames|Frame\s+Time)\s*:?\s*([-+0-9.eE]+)", lines[k], re.I)
        if m:
            header["time" if "time" in m.group(1).lower() else "frames"] = m.group(2)
            body_start = k + 1
        if len(header) == 2:
            break
    if len(header) < 2:
        raise BvhError(f"{source}: MOTION section lacks 'Frames:' or 'Frame Time:'")
    try:
        n_frames, frame_time = int(float(header["frames"])), float(header["time"])
    except ValueError as exc:
        raise BvhError(f"{source}: bad MOTION header: {exc}") from None
    if not frame_time > 0:
        raise BvhError(f"{source}: Frame Time must be positive, got {frame_time}")
    C = sum(len(c) for c in channels)
    data = [(body_start + k + 1, t) for k, line in enumerate(lines[body_start:])
            if (t := line.split())]  # (line number, values) of the lines holding numbers
    if C and data and len(data[0][1]) == C:  # one frame per line: a short line is a cut
        for k, (num, t) in enumerate(data[:n_frames]):
            if len(t) != C and k < len(data) - 1:
                raise BvhError(f"{source}: line {num}: frame {k + 1} has {len(t)} values, "
                               f"expected {C} (one per channel)")
    try:
        values = np.array([v for _, t in data for v in t], dtype=np.float64)
    except ValueError:
        raise BvhError(f"{source}: non-numeric motion data") from None
    notes = []
    have = values.size // C if C else n_frames
    truncated = have < n_frames
    if truncated:
        # the line holding the first value of the first incomplete frame (or the last line)
        ends = np.cumsum([len(t) for _, t in data])
        k = int(np.searchsorted(ends, have * C, side="right")) if data else 0
        num = data[min(k, len(data) - 1)][0] if data else body_start + 1
        where = (f"in frame {have + 1}" if values.size % C else f"after frame {have}")
        notes.append(f"motion data truncated at line {num}, {where} of {n_frames} declared "
                     "frames")
    elif have > n_frames or (C and values.size % C):
        notes.append(f"values beyond the declared {n_frames} frames ignored")
    n = min(have, n_frames)
    if n == 0:
        raise BvhError(f"{source}: no motion frames")
    motion = values[: n * C].reshape(n, C)
    if not np.isfinite(motion).all():
        raise BvhError(f"{source}: motion data holds NaN or infinite values")
    return Bvh(names, np.array(parents), np.array(offsets), channels, np.array(is_end),
               frame_time, motion, notes, truncated)


def read_bvh(path: str | Path) -> Bvh:
    """Read and parse a BVH file (undecodable bytes are replaced, never fatal)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise BvhError(f"{p}: cannot read: {exc.strerror or exc}") from None
    return parse_bvh(text, str(p))


# ------------------------------------------------------------------------------ writer
def _matrix_to_euler(R: np.ndarray, order: str) -> np.ndarray:
    """Rotations ``(..., 3, 3)`` -> intrinsic Euler angles ``(..., 3)`` degrees, BVH order."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gimbal lock is fine: the matrix is reproduced
        flat = Rotation.from_matrix(R.reshape(-1, 3, 3)).as_euler(order, degrees=True)
    return flat.reshape(*R.shape[:-2], 3)


def smplh_to_bvh_text(
    poses: np.ndarray,
    trans: np.ndarray,
    betas: np.ndarray,
    body,
    fps: float,
    unit: str = "cm",
    up: str = "y",
    order: str = "ZXY",
) -> str:
    """An AMASS-layout SMPL+H motion as BVH text (SMPL+H joint names, T-pose rest).

    Args:
        poses: ``(N, 156)`` axis-angle, AMASS world (Z up). trans: ``(N, 3)`` metres.
        betas: ``(K,)`` shape of the skeleton (bone lengths from ``body.rest_joints``).
        body: a ``tracker.body.BodyModel``.
        unit: ``"cm"`` or ``"m"``. up: ``"y"`` (stage frame; Blender/Unity) or ``"z"`` (AMASS
            world). order: rotation channel order (intrinsic).
    """
    import torch

    from tracker.body.joints import JOINT_NAMES, PARENTS
    from tracker.signals.stage import R_STAGE_FROM_AMASS

    poses = np.asarray(poses, np.float64).reshape(-1, 52, 3)
    trans = np.asarray(trans, np.float64).reshape(-1, 3)
    scale = {"cm": 100.0, "m": 1.0}[unit]
    Rx90 = Rotation.from_euler("x", 90, degrees=True).as_matrix()
    # A: model (Y up, facing +Z) -> file rest frame; W: AMASS world -> file world.
    A, W = (np.eye(3), R_STAGE_FROM_AMASS.numpy()) if up == "y" else (Rx90, np.eye(3))
    k = min(len(betas), body.num_betas)
    b = torch.as_tensor(np.asarray(betas, np.float64)[:k], dtype=body.dtype)[None]
    with torch.no_grad():
        Jr = body.rest_joints(b)[0].double().numpy()  # (52, 3) model frame
        tips = (body.tip_template + torch.einsum("ick,bk->bic", body.tip_dirs[..., :k], b))[0]
    tips = tips.double().numpy().reshape(2, 5, 3)
    # End sites: fingertips (TIP order thumb, index, middle, ring, little), head top, toes.
    tip_of = {"thumb": 0, "index": 1, "middle": 2, "ring": 3, "pinky": 4}
    ends = {15: np.array([0.0, 0.12, 0.02]), 10: np.array([0.0, -0.02, 0.06]),
            11: np.array([0.0, -0.02, 0.06])}
    for j, name in enumerate(JOINT_NAMES):
        if name.endswith("3") and j >= 22:
            side = 0 if name.startswith("left") else 1
            ends[j] = tips[side, tip_of[name.split("_")[1][:-1]]] - Jr[j]
    children = {j: [c for c in range(52) if PARENTS[c] == j] for j in range(52)}

    out = ["HIERARCHY"]

    def fmt(v):
        return " ".join(f"{x:.6f}" for x in v)

    def emit(j, depth):
        ind = "\t" * depth
        off = Jr[j] if j == 0 else Jr[j] - Jr[PARENTS[j]]
        out.append(f"{ind}{'ROOT' if j == 0 else 'JOINT'} {JOINT_NAMES[j]}")
        out.append(f"{ind}{{")
        out.append(f"{ind}\tOFFSET {fmt(A @ off * scale)}")
        rot = " ".join(f"{a}rotation" for a in order)
        out.append(f"{ind}\tCHANNELS 6 Xposition Yposition Zposition {rot}" if j == 0
                   else f"{ind}\tCHANNELS 3 {rot}")
        for c in children[j]:
            emit(c, depth + 1)
        if j in ends:
            out.append(f"{ind}\tEnd Site\n{ind}\t{{\n{ind}\t\tOFFSET {fmt(A @ ends[j] * scale)}"
                       f"\n{ind}\t}}")
        out.append(f"{ind}}}")

    emit(0, 0)
    R = Rotation.from_rotvec(poses.reshape(-1, 3)).as_matrix().reshape(-1, 52, 3, 3)
    # File-frame rotations: root W G A^T (its rest is A-rotated), others A L A^T.
    R_file = A @ R @ A.T
    R_file[:, 0] = W @ R[:, 0] @ A.T
    root_pos = (trans + Jr[0]) @ W.T * scale  # pelvis joint in the file world
    order_idx = [j for j in _dfs(children)]
    angles = _matrix_to_euler(R_file[:, order_idx], order)  # (N, 52, 3)
    frames = np.concatenate([root_pos, angles.reshape(len(poses), -1)], 1)
    out += ["MOTION", f"Frames: {len(frames)}", f"Frame Time: {1.0 / fps:.8f}"]
    out += [" ".join(f"{v:.6f}" for v in row) for row in frames]
    return "\n".join(out) + "\n"


def _dfs(children, j=0):
    yield j
    for c in children[j]:
        yield from _dfs(children, c)


def write_bvh(path: str | Path, poses, trans, betas, body, fps: float, **kw) -> Path:
    """Write :func:`smplh_to_bvh_text` to ``path`` (folders created)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(smplh_to_bvh_text(poses, trans, betas, body, fps, **kw))
    return p


# ------------------------------------------------------------------------------ other rigs
@dataclass
class RigJoint:
    """A joint of a BVH rig unlike SMPL+H, driven by SMPL+H motion (:func:`rig_bvh_text`).

    Places are ``(smplh_joint, shift)``: that joint's rest position plus ``shift`` (metres),
    in the SMPL+H T-pose, model frame (Y up, facing +Z, left at +X).

    Attributes:
        name: BVH joint name. follows: SMPL+H joint whose global rotation it carries.
        parent: the rig joint above it (None: the root). at: where it sits (default: at
            ``follows``); the point moves with the parent's ``follows`` joint, so a joint away
            from its SMPL+H joint turns about another pivot, as on a real foreign rig.
        end: an End Site's place (moves with ``follows``), or None.
    """

    name: str
    follows: str
    parent: str | None = None
    at: tuple[str, tuple[float, float, float]] | None = None
    end: tuple[str, tuple[float, float, float]] | None = None


def rig_bvh_text(
    poses: np.ndarray,
    trans: np.ndarray,
    betas: np.ndarray,
    body,
    fps: float,
    joints: list[RigJoint],
    rest_pose: np.ndarray | None = None,
    unit: str = "cm",
    up: str = "y",
    order: str = "ZXY",
) -> str:
    """An AMASS-layout SMPL+H motion as BVH text on another rig (tests of the importer).

    The rig's rest pose (all channels zero) is the SMPL+H body posed by ``rest_pose`` (e.g. an
    A-pose), and each rig joint's global rotation is its ``follows`` joint's, relative to that
    rest pose, so ``G_smplh(t) = W^T O_rig(t) A G_rest`` exactly (``O_rig`` in the file world,
    ``W`` AMASS world -> file world, ``A`` model frame -> file rest frame).

    Args:
        poses: ``(N, 156)`` axis-angle, AMASS world (Z up). trans: ``(N, 3)`` metres.
        betas: ``(K,)``. body: a ``tracker.body.BodyModel``. joints: parents first.
        rest_pose: ``(52, 3)`` axis-angle local rotations of the rest pose (model frame; the
            root's turns the whole rest skeleton), default the T-pose.
        unit: ``"cm"`` or ``"m"``. up: ``"y"`` or ``"z"`` (file world up). order: rotation
            channel order (intrinsic), for every joint.
    """
    import torch

    from tracker.body.joints import JOINT_NAMES
    from tracker.signals.stage import R_STAGE_FROM_AMASS

    idx = {n: i for i, n in enumerate(JOINT_NAMES)}
    scale = {"cm": 100.0, "m": 1.0}[unit]
    Rx90 = Rotation.from_euler("x", 90, degrees=True).as_matrix()
    A, W = (np.eye(3), R_STAGE_FROM_AMASS.numpy()) if up == "y" else (Rx90, np.eye(3))
    n = len(poses)
    k = min(len(betas), body.num_betas)
    b = torch.as_tensor(np.asarray(betas, np.float64)[:k], dtype=body.dtype)[None]
    rp = np.zeros((52, 3)) if rest_pose is None else np.asarray(rest_pose, np.float64)
    with torch.no_grad():
        J = body.rest_joints(b)[0].double().numpy()  # (52, 3) T-pose, model frame
        st = body.forward_axis_angle(torch.as_tensor(poses, dtype=body.dtype), b.expand(n, -1),
                                     torch.as_tensor(trans, dtype=body.dtype))
        rs = body.forward_axis_angle(torch.as_tensor(rp.reshape(1, 156), dtype=body.dtype), b)
    G, x = st.rotations.double().numpy(), st.joints.double().numpy()  # AMASS world
    Gr, xr = rs.rotations[0].double().numpy(), rs.joints[0].double().numpy()  # model frame
    pos = {j.name: j for j in joints}

    def mover(j: RigJoint) -> int:  # the SMPL+H joint whose frame carries j's place
        return idx[j.follows if j.parent is None else pos[j.parent].follows]

    def place(spec, default: str) -> np.ndarray:
        name, shift = spec if spec is not None else (default, (0.0, 0.0, 0.0))
        return J[idx[name]] + np.asarray(shift, np.float64)

    rest = {}  # place of each rig joint in the rest pose, model frame
    for j in joints:
        a = mover(j)
        rest[j.name] = xr[a] + Gr[a] @ (place(j.at, j.follows) - J[a])
    out = ["HIERARCHY"]

    def fmt(v):
        return " ".join(f"{c:.6f}" for c in v)

    def emit(j: RigJoint, depth: int):
        ind = "\t" * depth
        off = rest[j.name] - (rest[j.parent] if j.parent else 0.0)
        rot = " ".join(f"{c}rotation" for c in order)
        out.append(f"{ind}{'JOINT' if j.parent else 'ROOT'} {j.name}\n{ind}{{")
        out.append(f"{ind}\tOFFSET {fmt(A @ off * scale)}")
        out.append(f"{ind}\tCHANNELS 6 Xposition Yposition Zposition {rot}" if j.parent is None
                   else f"{ind}\tCHANNELS 3 {rot}")
        for c in joints:
            if c.parent == j.name:
                emit(c, depth + 1)
        if j.end is not None:
            f = idx[j.follows]
            tip = xr[f] + Gr[f] @ (place(j.end, j.follows) - J[f])
            out.append(f"{ind}\tEnd Site\n{ind}\t{{\n{ind}\t\tOFFSET "
                       f"{fmt(A @ (tip - rest[j.name]) * scale)}\n{ind}\t}}")
        out.append(f"{ind}}}")

    roots = [j for j in joints if j.parent is None]
    if len(roots) != 1:
        raise ValueError(f"a rig needs exactly one root joint, got {len(roots)}")
    emit(roots[0], 0)
    # Global rotations in the file world: O_j = W G_f(t) (A Gr_f)^T; local = O_parent^T O_j.
    O = {j.name: W @ G[:, idx[j.follows]] @ (A @ Gr[idx[j.follows]]).T for j in joints}
    order_idx = []

    def dfs(j: RigJoint):
        order_idx.append(j)
        for c in joints:
            if c.parent == j.name:
                dfs(c)

    dfs(roots[0])
    local = np.stack([O[j.name] if j.parent is None else
                      np.swapaxes(O[j.parent], -1, -2) @ O[j.name] for j in order_idx], 1)
    r, a = roots[0], mover(roots[0])
    root_pos = (x[:, a] + G[:, a] @ (place(r.at, r.follows) - J[a])) @ W.T * scale
    frames = np.concatenate([root_pos, _matrix_to_euler(local, order).reshape(n, -1)], 1)
    out += ["MOTION", f"Frames: {n}", f"Frame Time: {1.0 / fps:.8f}"]
    out += [" ".join(f"{v:.6f}" for v in row) for row in frames]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    """``python -m tracker.motion.bvh IN.npz OUT.bvh``: export an AMASS-layout motion."""
    import argparse

    ap = argparse.ArgumentParser(description="Export an AMASS-layout .npz as an SMPL+H BVH.")
    ap.add_argument("npz", type=Path)
    ap.add_argument("bvh", type=Path)
    ap.add_argument("--up", choices=("y", "z"), default="y", help="file up axis (default y)")
    ap.add_argument("--unit", choices=("cm", "m"), default="cm", help="file unit (default cm)")
    ap.add_argument("--body-model", default=None, help="SMPL+H model (default: the open one)")
    a = ap.parse_args(argv)
    from tracker.body import load_body_model
    from tracker.motion.amass import read_amass

    m = read_amass(a.npz)
    body = load_body_model(a.body_model)
    print(write_bvh(a.bvh, m["poses"], m["trans"], m["betas"], body, m["fps"], unit=a.unit,
                    up=a.up))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
