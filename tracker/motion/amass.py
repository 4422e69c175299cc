"""AMASS motion files as they come: SMPL+H and SMPL-X releases, resampling, selection.

Layouts read (``np.load`` of an ``.npz``):

* SMPL+H releases (``*_poses.npz``): ``poses (N, 156)``, ``trans (N, 3)``, ``betas (16,)``
  (or 10 / 300), ``gender`` (``str`` or ``bytes``), ``mocap_framerate``;
* SMPL-X releases (``*_stageii.npz``): ``poses (N, 165)`` = global orient, 21 body, jaw, two
  eyes, 15 + 15 hand joints -> the SMPL+H subset (drops jaw and eyes), ``mocap_frame_rate``.

Frames: AMASS world, Z up, metres (see ``tracker.signals.stage`` for the stage frame). Bad
files (corrupt zip, truncated, missing keys, wrong shapes, NaN) raise :class:`MotionFileError`
in :func:`read_amass`; :func:`load_amass` reports them as problems, skips and counts them.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

NUM_BETAS = 16
PAPER_DATASETS = ("CMU", "KIT", "MPI_HDM05")
"""The AMASS subsets the paper trains on (pass as ``datasets=``)."""
# SMPL-X pose (55 joints): 0-21 body, 22 jaw, 23-24 eyes, 25-39 left hand, 40-54 right hand.
SMPLX_TO_SMPLH = np.r_[0:22, 25:55]
_NOT_MOTION = ("shape.npz", "neutral_stagei.npz", "female_stagei.npz", "male_stagei.npz")


class MotionFileError(ValueError):
    """An unreadable motion file; the message names the file and the reason."""


@dataclass
class MotionClip:
    """One motion in the AMASS layout, Z up, metres, resampled to ``fps``.

    Attributes:
        name: unique clip name, e.g. ``"CMU/01/01_01_poses"`` (path below the search root).
        poses: ``(N, 156)`` float32 axis-angle (global orient, 21 body, 2 x 15 hand joints).
        trans: ``(N, 3)`` float32 translation. betas: ``(16,)`` float32.
        fps: frames per second. source: the file it came from.
        gender: ``"neutral"``, ``"male"`` or ``"female"``.
        digest: content hash of the source file (for caches).
    """

    name: str
    poses: np.ndarray
    trans: np.ndarray
    betas: np.ndarray
    fps: float
    source: str
    gender: str = "neutral"
    digest: str = ""
    extra: dict = field(default_factory=dict, repr=False)

    @property
    def num_frames(self) -> int:
        return int(self.poses.shape[0])

    @property
    def seconds(self) -> float:
        return self.num_frames / self.fps

    @property
    def has_hands(self) -> bool:
        """Whether the hand poses carry articulation (not all flat or frozen)."""
        return clip_has_hands(self.poses)


def clip_to_stage(clip: MotionClip, body) -> tuple[np.ndarray, np.ndarray]:
    """A clip's ``poses (N, 156)`` and ``trans (N, 3)`` moved from the AMASS world (Z up) to
    the tracker's stage frame (Y up), float32 (see ``tracker.signals.stage``)."""
    from tracker.signals.motion import stage_params

    poses, trans, _ = stage_params(body, clip.poses, clip.trans, clip.betas)
    return poses.float().numpy(), trans.float().numpy()


def clip_has_hands(poses: np.ndarray, tol_deg: float = 1.0) -> bool:
    """True unless the hand joints of ``poses (N, 156)`` are flat or constant in time."""
    h = np.asarray(poses)[:, 66:]
    if np.abs(h).max(initial=0.0) < np.deg2rad(0.1):
        return False
    return bool(np.abs(h - h.mean(0)).max(initial=0.0) > np.deg2rad(tol_deg))


def file_digest(path: str | Path) -> str:
    """Short content hash of a file (blake2b, 16 hex digits)."""
    h = hashlib.blake2b(digest_size=8)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------ reading
def _scalar(x):
    x = np.asarray(x)
    return x.item() if x.size == 1 else x


def read_amass(path: str | Path) -> dict:
    """Read one AMASS ``.npz`` (SMPL+H or SMPL-X layout) without resampling.

    Returns:
        ``poses (N, 156)`` float32, ``trans (N, 3)`` float32, ``betas (16,)`` float32,
        ``gender`` str, ``fps`` float, ``layout`` (``"smplh"`` or ``"smplx"``).

    Raises:
        MotionFileError: unreadable, truncated or corrupt file, missing keys, bad shapes.
    """
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            data = {}
            for k in z.files:
                try:
                    data[k] = z[k]
                except ValueError as exc:  # an object array (never unpickled: not needed)
                    if "allow_pickle" not in str(exc):
                        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        from tracker.errors import describe_file

        kind = describe_file(p)
        why = (f"{type(exc).__name__}: {exc}" if kind == "a NumPy .npz archive"
               else f"{kind}; expected an AMASS-layout .npz motion")
        raise MotionFileError(f"{p}: not a readable .npz ({why})") from None
    except Exception as exc:  # zlib.error and friends from a damaged member
        raise MotionFileError(f"{p}: corrupt .npz ({type(exc).__name__}: {exc})") from None
    if "poses" not in data:
        raise MotionFileError(f"{p}: no 'poses' array (keys: {sorted(data)})")
    poses = np.asarray(data["poses"], dtype=np.float64)
    if poses.ndim != 2 or poses.shape[0] == 0:
        raise MotionFileError(f"{p}: 'poses' has shape {poses.shape}, expected (N, 156|165)")
    if poses.shape[1] == 165:
        layout = "smplx"
        poses = poses.reshape(-1, 55, 3)[:, SMPLX_TO_SMPLH].reshape(-1, 156)
    elif poses.shape[1] == 156:
        layout = "smplh"
    else:
        raise MotionFileError(f"{p}: 'poses' has {poses.shape[1]} columns, expected 156 "
                              "(SMPL+H) or 165 (SMPL-X)")
    n = poses.shape[0]
    trans = np.asarray(data.get("trans", np.zeros((n, 3))), dtype=np.float64)
    if trans.shape != (n, 3):
        raise MotionFileError(f"{p}: 'trans' has shape {trans.shape}, expected ({n}, 3)")
    fps = None
    for key in ("mocap_framerate", "mocap_frame_rate", "frame_rate", "fps"):
        if key in data:
            fps = float(_scalar(data[key]))
            break
    if fps is None or not np.isfinite(fps) or fps <= 0:
        raise MotionFileError(f"{p}: no valid frame rate ('mocap_framerate' or "
                              "'mocap_frame_rate')")
    b = np.asarray(data.get("betas", np.zeros(NUM_BETAS)), dtype=np.float64).reshape(-1)
    betas = np.zeros(NUM_BETAS)
    betas[: min(NUM_BETAS, b.size)] = b[:NUM_BETAS]
    g = _scalar(data.get("gender", "neutral"))
    gender = (g.decode("utf-8", "replace") if isinstance(g, bytes) else str(g)).strip().lower()
    if not (np.isfinite(poses).all() and np.isfinite(trans).all() and np.isfinite(betas).all()):
        raise MotionFileError(f"{p}: NaN or infinite values")
    return dict(poses=poses.astype(np.float32), trans=trans.astype(np.float32),
                betas=betas.astype(np.float32), gender=gender or "neutral", fps=fps,
                layout=layout)


# ------------------------------------------------------------------------------ resampling
def resample_times(n: int, src_fps: float, dst_fps: float) -> np.ndarray:
    """Source-frame coordinates ``(M,)`` of the ``M`` output frames at ``dst_fps``."""
    m = int(np.floor((n - 1) * dst_fps / src_fps + 1e-9)) + 1
    return np.arange(m) * (src_fps / dst_fps)


def slerp_quaternions(q: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Unit quaternions ``q (N, ..., 4)`` (x y z w) sampled at frame coordinates ``t (M,)``.

    Slerp between the two neighbouring frames, the short way round. Returns ``(M, ..., 4)``.
    """
    n = q.shape[0]
    i0 = np.clip(np.floor(t).astype(int), 0, n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    a = (t - i0).reshape(-1, *([1] * (q.ndim - 1)))
    q0, q1 = q[i0], q[i1]
    dot = np.sum(q0 * q1, -1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.clip(np.abs(dot), 0.0, 1.0)
    theta = np.arccos(dot)
    s = np.sin(theta)
    near = s < 1e-6
    s_safe = np.where(near, 1.0, s)
    w0 = np.where(near, 1.0 - a, np.sin((1.0 - a) * theta) / s_safe)
    w1 = np.where(near, a, np.sin(a * theta) / s_safe)
    out = w0 * q0 + w1 * q1
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def lerp_frames(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``x (N, ...)`` at frame coordinates ``t (M,)`` -> ``(M, ...)``."""
    n = x.shape[0]
    i0 = np.clip(np.floor(t).astype(int), 0, n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    a = (t - i0).reshape(-1, *([1] * (x.ndim - 1)))
    return (1 - a) * x[i0] + a * x[i1]


def resample_motion(
    poses: np.ndarray, trans: np.ndarray, src_fps: float, dst_fps: float
) -> tuple[np.ndarray, np.ndarray]:
    """Resample an AMASS-layout motion: slerp on every joint, linear on the translation.

    Args:
        poses: ``(N, 156)`` (or ``(N, 3J)``) axis-angle. trans: ``(N, 3)``.

    Returns:
        ``poses (M, 3J)`` float32 and ``trans (M, 3)`` float32 at ``dst_fps``, frame 0 kept,
        ``M = floor((N - 1) * dst / src) + 1``.
    """
    poses = np.asarray(poses, np.float64)
    if abs(src_fps - dst_fps) < 1e-6 * dst_fps:
        return poses.astype(np.float32), np.asarray(trans, np.float32)
    n, d = poses.shape
    t = resample_times(n, src_fps, dst_fps)
    q = Rotation.from_rotvec(poses.reshape(-1, 3)).as_quat().reshape(n, d // 3, 4)
    qs = slerp_quaternions(q, t)
    out = Rotation.from_quat(qs.reshape(-1, 4)).as_rotvec().reshape(len(t), d)
    return out.astype(np.float32), lerp_frames(np.asarray(trans, np.float64), t).astype(np.float32)


# ------------------------------------------------------------------------------ selection
def _norm_key(parts: Iterable[str]) -> tuple[str, ...]:
    parts = [p.lower() for p in parts]
    stem = parts[-1]
    for suf in (".npz", "_poses", "_stageii"):
        stem = stem.removesuffix(suf)
    return (*parts[:-1], stem)


def read_split_file(path: str | Path) -> list[str]:
    """Entries of a split file (one relative ``.npz`` path per line; ``#`` comments)."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{p} is a folder; pass one split file such as "
                         f"{p / 'CMU' / 'train_split.txt'}")
    lines = p.read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def find_motion_files(
    paths: Sequence[str | Path],
    datasets: Sequence[str] | None = None,
    split_file: str | Path | Sequence[str | Path] | None = None,
    pattern: str = "*.npz",
) -> tuple[list[tuple[Path, str]], list[str]]:
    """Motion files under ``paths`` (files or folders, searched recursively).

    Args:
        datasets: keep files with one of these folder names in their path (case-insensitive),
            e.g. ``["CMU", "KIT", "MPI_HDM05"]``.
        split_file: keep files listed in this split file (or these files): relative paths
            such as ``CMU/142/142_19_poses.npz``, matched on their trailing path components,
            with ``_poses`` / ``_stageii`` ignored (SMPL+H and SMPL-X releases both match).

    Returns:
        ``([(path, name), ...], problems)``; ``name`` is the path below the search root with
        the root's own folder name in front and no suffix (``"CMU/01/01_01_poses"``).
    """
    problems: list[str] = []
    found: list[tuple[Path, str]] = []
    for root in map(Path, paths):
        if root.is_file():
            found.append((root, root.stem))
        elif root.is_dir():
            for f in sorted(root.rglob(pattern)):
                if f.name.lower() in _NOT_MOTION:
                    continue
                found.append((f, "/".join((root.name, *f.relative_to(root).with_suffix("").parts))))
        else:
            problems.append(f"{root}: no such file or folder")
    if datasets:
        want = {d.lower() for d in datasets}
        found = [(f, n) for f, n in found if want & {p.lower() for p in f.parts[:-1]}]
    if split_file is not None:
        files = [split_file] if isinstance(split_file, str | Path) else list(split_file)
        entries = {_norm_key(Path(e).parts) for sf in files for e in read_split_file(sf)}
        lengths = {len(e) for e in entries}
        keep, hit = [], set()
        for f, n in found:
            keys = {_norm_key(f.parts[-k:]) for k in lengths if k <= len(f.parts)}
            if keys & entries:
                keep.append((f, n))
                hit |= keys & entries
        if len(hit) < len(entries):
            problems.append(f"{len(entries) - len(hit)} of {len(entries)} files in the split "
                            "were not found under the given paths")
        found = keep
    return found, problems


def load_amass(
    paths: Sequence[str | Path],
    fps: float = 60.0,
    datasets: Sequence[str] | None = None,
    split_file: str | Path | Sequence[str | Path] | None = None,
    progress: bool = False,
) -> tuple[list[MotionClip], list[str]]:
    """Read, check and resample every selected motion file; bad files are skipped.

    Returns:
        ``(clips, problems)``: clips resampled to ``fps`` (AMASS world, Z up) and one message
        per skipped file or selection issue.
    """
    files, problems = find_motion_files(paths, datasets, split_file)
    it = files
    if progress:
        from tqdm import tqdm
        it = tqdm(files, desc="motion files", unit="file")
    clips = []
    for f, name in it:
        try:
            m = read_amass(f)
        except MotionFileError as exc:
            problems.append(str(exc))
            continue
        if m["poses"].shape[0] < 2 and m["fps"] != fps:
            problems.append(f"{f}: a single frame cannot be resampled; skipped")
            continue
        poses, trans = resample_motion(m["poses"], m["trans"], m["fps"], fps)
        clips.append(MotionClip(name=name, poses=poses, trans=trans, betas=m["betas"],
                                fps=float(fps), source=str(f), gender=m["gender"],
                                digest=file_digest(f), extra=dict(layout=m["layout"])))
    return clips, problems
