"""What a BVH clip says about an SMPL+H body: mapped joints' world positions and orientations.

Frames: the BVH is run through forward kinematics in its own world (file units, its up axis,
detected or set by the mapping), then turned into the AMASS world (Z up, metres) by a proper
rotation (never a mirror) and scaled. Nothing here depends on the file's rest pose.

Real mocap is not clean: :func:`repair_jumps` finds frame-to-frame jumps faster than a human
moves (marker swaps, flipped joints, the calibration T-pose glued in front of CMU dance clips,
cuts), fills short glitches by interpolation and splits the clip at the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy.spatial.transform import Rotation

from tracker.body.joints import JOINT_NAMES
from tracker.motion.amass import lerp_frames, resample_times, slerp_quaternions
from tracker.motion.bvh import Bvh, world_transforms
from tracker.motion.mappings import Mapping, resolve

UP_TO_Z = {  # rotation taking the file's up axis to +Z (proper rotations, no mirroring)
    "+x": Rotation.from_euler("y", -90, degrees=True), "-x": Rotation.from_euler("y", 90, True),
    "+y": Rotation.from_euler("x", 90, degrees=True), "-y": Rotation.from_euler("x", -90, True),
    "+z": Rotation.identity(), "-z": Rotation.from_euler("x", 180, degrees=True),
}
UNIT_CANDIDATES = {"m": 1.0, "cm": 0.01, "mm": 0.001, "in": 0.0254, "cmu": 0.0254 / 0.45}
MAX_SPEED = 15.0
"""m/s: a mapped joint moving faster between two frames is a glitch or a cut."""
MAX_TURN = 60.0
"""rad/s: a mapped joint turning faster (57 degrees per frame at 60 fps) is a glitch."""


class RetargetError(ValueError):
    """A clip that cannot be retargeted (e.g. too few mapped joints)."""


@dataclass
class Targets:
    """Mapped BVH joints in the AMASS world (Z up, metres) at ``fps``.

    Attributes:
        joints: ``(M,)`` SMPL+H indices. pos: ``(N, M, 3)``. rot: ``(N, M, 3, 3)`` world
            orientations (meaningless where ``has_rot`` is False: end sites). has_rot: ``(M,)``.
        weights: ``(M,)`` fit weights. unit: metres per file unit. up: the file's up axis.
        hands_animated: the file's fingers move (else only the finger bases are kept, to
            orient the hands). exact: the mapping's joints are the SMPL+H joints themselves.
        segments: ``[(start, end), ...]`` frame ranges of continuous motion (see
            :func:`repair_jumps`); frames outside them were removed already.
        rest_pos: ``(M, 3)`` and rest_rot: ``(M, 3, 3)``: the mapped joints in the file's rest
            pose (all channels zero, offsets only), same world and units as ``pos``/``rot``.
    """

    joints: np.ndarray
    pos: np.ndarray
    rot: np.ndarray
    has_rot: np.ndarray
    weights: np.ndarray
    fps: float
    unit: float
    up: str
    hands_animated: bool
    exact: bool = False
    segments: list[tuple[int, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rest_pos: np.ndarray | None = None
    rest_rot: np.ndarray | None = None

    def subset(self, idx) -> Targets:
        return replace(self, pos=self.pos[idx], rot=self.rot[idx])

    def keep(self, frames: np.ndarray, min_len: int) -> Targets | None:
        """The targets without the frames where ``frames (N,)`` is False: each segment is split
        there, and pieces shorter than ``min_len`` frames are dropped too. None when nothing
        is left."""
        idx, segs = [], []
        for a, b in self.segments:
            f = np.r_[False, frames[a:b], False]
            d = np.diff(f.astype(int))
            for s, e in zip(np.nonzero(d == 1)[0] + a, np.nonzero(d == -1)[0] + a, strict=True):
                if e - s >= min_len:
                    segs.append((sum(len(i) for i in idx), sum(len(i) for i in idx) + e - s))
                    idx.append(np.arange(s, e))
        if not idx:
            return None
        idx = np.concatenate(idx)
        return replace(self, pos=self.pos[idx], rot=self.rot[idx], segments=segs)


def detect_up(pos: np.ndarray, joints: list[int]) -> str:
    """The file's up axis (``"+y"``, ``"-z"``...) from positions ``(N, M, 3)`` of SMPL+H
    ``joints``: the mean direction from the feet to the head."""
    top = [joints.index(j) for j in (15, 12, 9, 6) if j in joints][:1]
    low = [joints.index(j) for j in (7, 8, 10, 11, 4, 5) if j in joints]
    if not top or not low:
        raise RetargetError("cannot detect the up axis: map a head/neck and the feet, or set "
                            "\"up\" in the mapping")
    d = (pos[:, top[0]] - pos[:, low].mean(1)).mean(0)
    a = int(np.argmax(np.abs(d)))
    return ("+" if d[a] > 0 else "-") + "xyz"[a]


def detect_unit(pos: np.ndarray, joints: list[int], up: str) -> float:
    """Metres per file unit: the candidate (m, cm, mm, inch, CMU) that makes the head-to-ankle
    height closest to 1.45 m. ``pos (N, M, 3)`` in file units."""
    top = [joints.index(j) for j in (15, 12) if j in joints][:1]
    low = [joints.index(j) for j in (7, 8) if j in joints]
    if not top or not low:
        return 0.01
    ax = "xyz".index(up[1])
    h = np.percentile(np.abs(pos[:, top[0], ax] - pos[:, low, ax].min(1)), 90)
    return min(UNIT_CANDIDATES.values(), key=lambda u: abs(np.log(max(h * u, 1e-9) / 1.45)))


def _angles(Ra: np.ndarray, Rb: np.ndarray) -> np.ndarray:
    """Angles (radians) between rotation stacks ``(..., 3, 3)``."""
    tr = np.einsum("...ba,...ba->...", Ra, Rb)
    return np.arccos(np.clip((tr - 1) / 2, -1.0, 1.0))


def repair_jumps(
    pos: np.ndarray, rot: np.ndarray, fps: float, body_cols, rot_cols=(),
    max_speed: float = MAX_SPEED, max_turn: float = MAX_TURN, max_gap_s: float = 0.3,
    min_segment_s: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]], int]:
    """Fill short glitches, split at cuts.

    A transition between frames ``t`` and ``t + 1`` where a joint moves faster than
    ``max_speed`` (m/s; any joint) or turns faster than ``max_turn`` (rad/s; joints
    ``rot_cols``) opens a glitch; if a later such transition within ``max_gap_s`` lands where
    a plausible motion from frame ``t`` could be (within 2/3 of both limits), the frames
    between are interpolated (slerp for ``rot``). Otherwise, if at least 3 joints of
    ``body_cols`` jump or flip (a cut, a teleport, a calibration pose, a leg whose twist flips
    for good), the clip is cut there; a lone joint that does so (e.g. a hand flipping over for
    a while) is left as it is. Frames moving at half the glitch speed within ``max_gap_s`` of
    either end (what is left of a calibration pose) are dropped.

    Args:
        pos: ``(N, M, 3)`` metres. rot: ``(N, M, 3, 3)`` world orientations.

    Returns:
        ``(pos, rot, segments, repaired_frames)``: segments are ``(start, end)`` ranges of at
        least ``min_segment_s`` (the longest one if none is that long).
    """
    pos, rot = pos.copy(), rot.copy()
    n, rc = len(pos), list(rot_cols)

    def too_fast(t0, t1):  # joints moving too fast from frame t0 to t1, (M,) bool
        dt = (t1 - t0) / fps
        f = np.linalg.norm(pos[t1] - pos[t0], axis=-1) / dt > max_speed
        if rc:
            f[rc] |= _angles(rot[t0, rc], rot[t1, rc]) / dt > max_turn
        return f

    lin = np.linalg.norm(np.diff(pos, axis=0), axis=-1) * fps > max_speed  # (N-1, M)
    if rc:
        lin[:, rc] |= _angles(rot[:-1, rc], rot[1:, rc]) * fps > max_turn
    bad = np.nonzero(lin.any(-1))[0]
    gap = max(1, int(round(max_gap_s * fps)))
    cuts, repaired, i = [], 0, 0
    while i < len(bad):
        t0, closed = bad[i], False
        for k in range(i + 1, len(bad)):
            t1 = bad[k]
            if t1 - t0 > gap:
                break
            dt = (t1 + 1 - t0) / fps
            ok = (np.linalg.norm(pos[t1 + 1] - pos[t0], axis=-1).max() / dt
                  <= max_speed * 2 / 3)
            if rc:
                ok &= _angles(rot[t0, rc], rot[t1 + 1, rc]).max() / dt <= max_turn * 2 / 3
            if ok:
                a = (np.arange(t0 + 1, t1 + 1) - t0) / (t1 + 1 - t0)
                pos[t0 + 1:t1 + 1] = lerp_frames(pos[[t0, t1 + 1]], a)
                q = Rotation.from_matrix(rot[[t0, t1 + 1]].reshape(-1, 3, 3)).as_quat()
                qs = slerp_quaternions(q.reshape(2, -1, 4), a).reshape(-1, 4)
                rot[t0 + 1:t1 + 1] = Rotation.from_quat(qs).as_matrix().reshape(len(a), -1, 3, 3)
                repaired += t1 - t0
                i, closed = k + 1, True
                break
        if not closed:
            if too_fast(t0, t0 + 1)[list(body_cols)].sum() >= 3:
                cuts.append(int(t0))
            i += 1
    # Settle the ends: a clip rarely starts or ends at half the glitch speed (the remains of
    # a calibration pose), so such frames within max_gap_s of an end are dropped too.
    start, end = 0, n
    while start < min(gap, n - 2) and (
            np.linalg.norm(pos[start + 1] - pos[start], axis=-1).max() * fps > max_speed / 2):
        start += 1
    while end > max(n - gap, start + 2) and (
            np.linalg.norm(pos[end - 1] - pos[end - 2], axis=-1).max() * fps > max_speed / 2):
        end -= 1
    cuts = [c for c in cuts if start <= c < end - 1]
    edges = [start] + [c + 1 for c in cuts] + [end]
    segs = [(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
    keep = [s for s in segs if s[1] - s[0] >= min_segment_s * fps]
    return pos, rot, keep or [max(segs, key=lambda s: s[1] - s[0])], repaired


def bvh_targets(bvh: Bvh, mapping: Mapping, fps: float | None, clean: bool = True) -> Targets:
    """Mapped joints' world positions and orientations in the AMASS world.

    The file's local channels are resampled to ``fps`` first (slerp; ``None`` keeps the
    file's rate). With ``clean``, glitches are repaired and the clip is cut at jumps (see
    :func:`repair_jumps`): only the frames of ``segments`` are kept, back to back.
    """
    found, missing = resolve(mapping, bvh.names)
    notes = [f"mapped BVH joints not in the file: {', '.join(missing)}"] if missing else []
    if sum(1 for j in found if j < 22) < 8:
        raise RetargetError(f"mapping {mapping.name!r} matches only {len(found)} joints of this "
                            "file; pass --mapping with a profile or JSON file that fits it")
    need = bvh.ancestors(found.values())
    remap = {j: i for i, j in enumerate(need)}
    par = np.array([remap.get(int(bvh.parents[j]), -1) for j in need])
    R_loc, t_loc = bvh.local_transforms(need)
    # Finger articulation present? (rotation spread of the mapped non-thumb finger joints)
    spread = []
    for s, b in found.items():
        if 22 <= s < 52 and "thumb" not in JOINT_NAMES[s] and not bvh.is_end[b]:
            r = Rotation.from_matrix(R_loc[:, remap[b]])
            spread.append(np.percentile((r * r.mean().inv()).magnitude(), 95))
    hands = bool(spread) and bool(np.median(spread) > np.deg2rad(3.0))
    if fps and abs(bvh.fps - fps) > 1e-3 * fps and bvh.num_frames > 1:
        t = resample_times(bvh.num_frames, bvh.fps, fps)
        q = Rotation.from_matrix(R_loc.reshape(-1, 3, 3)).as_quat().reshape(*R_loc.shape[:2], 4)
        R_loc = Rotation.from_quat(slerp_quaternions(q, t).reshape(-1, 4)).as_matrix()
        R_loc = R_loc.reshape(len(t), len(need), 3, 3)
        t_loc = lerp_frames(t_loc, t)
    elif not fps:
        fps = bvh.fps  # else: equal up to the file's rounding of its frame time
    R_w, p_w = world_transforms(par, R_loc, t_loc)
    R_r, p_r = world_transforms(par, np.eye(3)[None, None].repeat(len(need), 1),
                                bvh.offsets[need][None])  # the rest pose (zero channels)
    smpl = sorted(found)
    if not hands:  # keep only the finger bases (they orient the hand), never fit the fingers
        smpl = [j for j in smpl if j < 22 or JOINT_NAMES[j][-1] == "1"]
    cols = [remap[found[j]] for j in smpl]
    pos, rot = p_w[:, cols], R_w[:, cols]
    up = ("+" + mapping.up) if mapping.up else detect_up(pos, smpl)
    unit = mapping.unit or detect_unit(pos, smpl, up)
    C = UP_TO_Z[up].as_matrix()
    pos, rot = pos @ C.T * unit, C @ rot
    rest_pos, rest_rot = p_r[0, cols] @ C.T * unit, C @ R_r[0, cols]
    segments = [(0, len(pos))]
    if clean and len(pos) > 2:
        body_cols = [k for k, j in enumerate(smpl) if j < 22]
        rot_cols = [k for k, j in enumerate(smpl) if not bvh.is_end[found[j]]]
        pos, rot, segments, fixed = repair_jumps(pos, rot, fps, body_cols, rot_cols)
        if fixed:
            notes.append(f"{fixed} glitch frames interpolated")
        dropped = len(pos) - sum(b - a for a, b in segments)
        if dropped or len(segments) > 1:
            notes.append(f"cut into {len(segments)} segment(s) at jumps; {dropped} frames "
                         "dropped")
        idx = np.concatenate([np.arange(a, b) for a, b in segments])
        pos, rot = pos[idx], rot[idx]
        starts = np.cumsum([0] + [b - a for a, b in segments])
        segments = [(int(starts[k]), int(starts[k + 1])) for k in range(len(segments))]
    return Targets(
        joints=np.array(smpl), pos=pos, rot=rot,
        has_rot=np.array([not bvh.is_end[found[j]] for j in smpl]),
        weights=np.array([mapping.weights.get(JOINT_NAMES[j], 1.0) for j in smpl]),
        fps=float(fps), unit=unit, up=up, hands_animated=hands, exact=mapping.exact,
        segments=segments, notes=notes, rest_pos=rest_pos, rest_rot=rest_rot)
