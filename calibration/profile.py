"""A user's calibration profile: body shape, head-to-headset offset and floor correction.

A profile is a small JSON file (``tracker calibrate`` writes it, ``tracker serve --profiles
DIR`` reads ``DIR/<session>.json`` through :class:`ProfileStore`)::

    {
      "format": "fitstream-profile", "version": 1,
      "body_fingerprint": "86db2d3f2bd97a86",
      "betas": [0.93, -0.02, ...],              # (K,) the body model's own shape space
      "T_hmd": [[-1, 0, 0, 0], [0, 1, 0, 0.07], [0, 0, -1, 0.09], [0, 0, 0, 1]],
      "floor_offset": 0.031,                    # metres ADDED to every incoming stage y
      "created": "2025-01-01T12:00:00Z", "source": "...",
      "measured": {...}, "model": {...}, "fit": {...}, "warnings": [...]
    }

Frames and signs:

* ``T_hmd`` ``(4, 4)``: the headset VIEW frame expressed in the head-joint frame (as
  :func:`tracker.signals.headset.head_to_hmd`): ``T_stage_view = T_stage_head @ T_hmd``.
* ``floor_offset``: ``y_true = y_reported + floor_offset``. A runtime whose floor sits 3 cm
  *above* the real floor reports every height 3 cm too low, so its profile has ``+0.03``.

Only ``betas``, ``T_hmd``, ``floor_offset`` and ``body_fingerprint`` are read back by the
tracker; every other key is kept, untouched, in :attr:`Profile.metadata`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

PROFILE_FORMAT = "fitstream-profile"
PROFILE_VERSION = 1
MAX_ABS_FLOOR_OFFSET_M = 1.0
MAX_ABS_HMD_OFFSET_M = 0.5
_SESSION_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # as tracker.protocol.SESSION_RE
_CORE_KEYS = ("format", "version", "body_fingerprint", "betas", "T_hmd", "floor_offset")


class ProfileError(ValueError):
    """A profile file that cannot be used (unreadable, bad JSON, bad values, wrong model)."""


def _frozen(a) -> np.ndarray:
    a = np.array(a, dtype=np.float64)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Profile:
    """One user's calibration (see the module docstring for frames and signs).

    Attributes:
        betas: ``(K,)`` shape coefficients in the body model's shape space.
        T_hmd: ``(4, 4)`` headset VIEW frame in the head-joint frame.
        floor_offset: metres added to every incoming stage ``y`` so that the floor is ``y = 0``.
        body_fingerprint: the body model the betas belong to (``BodyModel.fingerprint``).
        metadata: everything else in the file (created, source, measured, fit, ...).
    """

    betas: np.ndarray
    T_hmd: np.ndarray
    floor_offset: float
    body_fingerprint: str
    metadata: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "betas", _frozen(self.betas).reshape(-1))
        object.__setattr__(self, "T_hmd", _frozen(self.T_hmd))
        object.__setattr__(self, "floor_offset", float(self.floor_offset))
        object.__setattr__(self, "body_fingerprint", str(self.body_fingerprint))
        _validate(self.betas, self.T_hmd, self.floor_offset)

    def __eq__(self, other) -> bool:
        if not isinstance(other, Profile):
            return NotImplemented
        return (self.body_fingerprint == other.body_fingerprint
                and self.floor_offset == other.floor_offset
                and np.array_equal(self.betas, other.betas)
                and np.array_equal(self.T_hmd, other.T_hmd))

    def __hash__(self) -> int:
        return hash((self.body_fingerprint, self.floor_offset, self.betas.tobytes(),
                     self.T_hmd.tobytes()))

    # ------------------------------------------------------------------ construction
    @classmethod
    def default(cls, body) -> Profile:
        """Zero betas (the model's mean shape), the default ``T_HMD``, no floor correction."""
        import torch

        from tracker.signals.headset import head_to_hmd

        T = head_to_hmd(dtype=torch.float64).numpy()
        return cls(np.zeros(body.num_betas), T, 0.0, body.fingerprint,
                   {"source": "default"})

    @property
    def hmd_offset(self) -> np.ndarray:
        """``(3,)`` translation of :attr:`T_hmd` (the headset origin in the head-joint frame)."""
        return self.T_hmd[:3, 3].copy()

    def betas_for(self, num_betas: int) -> np.ndarray:
        """The betas padded with zeros (or cut, when the extra ones are zero) to ``num_betas``."""
        b = np.zeros(num_betas)
        k = min(num_betas, len(self.betas))
        b[:k] = self.betas[:k]
        if np.any(self.betas[k:] != 0):
            raise ProfileError(f"profile has {len(self.betas)} non-zero betas, model "
                               f"has {num_betas}")
        return b

    # ------------------------------------------------------------------ files
    def to_json(self) -> dict:
        meta = {k: v for k, v in self.metadata.items() if k not in _CORE_KEYS}
        meta.setdefault("created", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        return {
            "format": PROFILE_FORMAT,
            "version": PROFILE_VERSION,
            "body_fingerprint": self.body_fingerprint,
            "betas": [float(x) for x in self.betas],
            "T_hmd": [[float(x) for x in row] for row in self.T_hmd],
            "floor_offset": self.floor_offset,
            **_jsonable(meta),
        }

    def save(self, path) -> Path:
        """Write the profile atomically (temporary file + rename): readers never see half."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def from_json(cls, data, body=None, where: str = "profile") -> Profile:
        if not isinstance(data, dict):
            raise ProfileError(f"{where}: expected a JSON object")
        if data.get("format", PROFILE_FORMAT) != PROFILE_FORMAT:
            raise ProfileError(f"{where}: not a profile (format {data.get('format')!r})")
        version = data.get("version")
        if version != PROFILE_VERSION:
            raise ProfileError(f"{where}: profile version {version!r} is not supported "
                               f"(this tracker reads version {PROFILE_VERSION})")
        missing = [k for k in ("body_fingerprint", "betas", "T_hmd", "floor_offset")
                   if k not in data]
        if missing:
            raise ProfileError(f"{where}: missing {', '.join(missing)}")
        try:
            betas = np.asarray(data["betas"], dtype=np.float64)
            T = np.asarray(data["T_hmd"], dtype=np.float64)
            floor = float(data["floor_offset"])
        except (TypeError, ValueError) as exc:
            raise ProfileError(f"{where}: betas, T_hmd and floor_offset must be numbers "
                               f"({exc})") from None
        if betas.ndim != 1 or T.shape != (4, 4):
            raise ProfileError(f"{where}: betas must be a list and T_hmd a 4x4 matrix")
        fp = data["body_fingerprint"]
        if body is not None and fp != body.fingerprint:
            raise ProfileError(
                f"{where} was calibrated for body model {fp}, but the tracker runs "
                f"{body.data.name} ({body.fingerprint}): recalibrate with this model "
                f"(tracker calibrate ... --body-model) or run the model it was made for")
        meta = {k: v for k, v in data.items() if k not in _CORE_KEYS}
        try:
            profile = cls(betas, T, floor, fp, meta)
        except ProfileError as exc:
            raise ProfileError(f"{where}: {exc}") from None
        if body is not None:
            profile.betas_for(body.num_betas)  # raises when it does not fit the model
        return profile

    @classmethod
    def load(cls, path, body=None) -> Profile:
        """Read a profile; ``body`` checks the fingerprint. Raises :class:`ProfileError`."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ProfileError(f"{path}: cannot read ({exc.strerror or exc})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ProfileError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno} "
                               f"column {exc.colno})") from None
        return cls.from_json(data, body, where=str(path))


def _validate(betas: np.ndarray, T: np.ndarray, floor: float) -> None:
    if not (np.isfinite(betas).all() and np.isfinite(T).all() and math.isfinite(floor)):
        raise ProfileError("non-finite numbers")
    if T.shape != (4, 4):
        raise ProfileError(f"T_hmd must be 4x4, got {T.shape}")
    R = T[:3, :3]
    if (not np.allclose(R @ R.T, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0
            or not np.allclose(T[3], [0, 0, 0, 1])):
        raise ProfileError("T_hmd is not a rigid transform")
    if np.linalg.norm(T[:3, 3]) > MAX_ABS_HMD_OFFSET_M:
        raise ProfileError(f"T_hmd translation {np.linalg.norm(T[:3, 3]):.2f} m is implausible "
                           f"(> {MAX_ABS_HMD_OFFSET_M} m)")
    if abs(floor) > MAX_ABS_FLOOR_OFFSET_M:
        raise ProfileError(f"floor_offset {floor:+.2f} m is implausible "
                           f"(> {MAX_ABS_FLOOR_OFFSET_M} m)")


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


class ProfileStore:
    """Per-session profiles from a folder: ``DIR/<session>.json``, else the default profile.

    :meth:`get` is cheap enough to call for every frame: it ``stat``\\ s the file (at most once
    per ``check_interval_s`` per session) and re-reads it only when its modification time,
    size or inode changed. A broken file (bad JSON, bad values, another body model) logs one
    warning per version of the file and falls back to the session's last good profile, or the
    default; :meth:`get` never raises. Thread-safe.
    """

    def __init__(self, directory, body, default: Profile | None = None,
                 check_interval_s: float = 0.0):
        self.directory = Path(directory)
        self.body = body
        self.default = default if default is not None else Profile.default(body)
        self.check_interval_s = float(check_interval_s)
        self._lock = threading.Lock()
        # session -> (stat key or None, profile, monotonic time of the last check)
        self._cache: dict[str, tuple[tuple | None, Profile, float]] = {}
        self._warned: set[tuple[str, tuple | None]] = set()
        if not self.directory.is_dir():
            log.warning("profile folder %s does not exist (yet): every session gets the "
                        "default profile until a file appears", self.directory)

    def path(self, session: str) -> Path:
        return self.directory / f"{session}.json"

    def get(self, session: str) -> Profile:
        try:
            return self._get(session)
        except Exception as exc:  # never raise into the server loop
            self._warn_once(session, None, f"profile lookup failed: {exc}")
            with self._lock:
                cached = self._cache.get(session)
            return cached[1] if cached else self.default

    def _get(self, session: str) -> Profile:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(session)
            if cached and now - cached[2] < self.check_interval_s:
                return cached[1]
            if not isinstance(session, str) or not _SESSION_RE.match(session):
                return self.default
            path = self.path(session)
            try:
                st = path.stat()
                key = (st.st_mtime_ns, st.st_size, st.st_ino)
            except OSError:
                key = None
            if cached and cached[0] == key:
                self._cache[session] = (key, cached[1], now)
                return cached[1]
            if key is None:  # no file (or it was removed): the default profile
                if cached and cached[0] is not None:
                    log.info("profile %s removed: session %s uses the default profile",
                             path, session)
                self._cache[session] = (None, self.default, now)
                return self.default
            try:
                profile = Profile.load(path, self.body)
            except ProfileError as exc:
                fallback = cached[1] if cached else self.default
                which = "its last good profile" if cached and fallback is not self.default \
                    else "the default profile"
                self._warn_once(session, key, f"{exc}; session {session} keeps {which}")
                self._cache[session] = (key, fallback, now)
                return fallback
            log.info("profile %s loaded for session %s", path, session)
            self._cache[session] = (key, profile, now)
            return profile

    def _warn_once(self, session: str, key, message: str) -> None:
        if (session, key) not in self._warned:
            self._warned.add((session, key))
            log.warning("%s", message)
