"""Where a session's calibration comes from: the default, a profile folder, or a recording.

A provider has ``get(session) -> calibration.profile.Profile`` and is asked at every tick for
each session being fitted; a profile that differs from the one in use resets the session
and applies from that frame on (the change is recorded, so a replay applies it at the same
tick). Profile: ``betas (K,)``, ``T_hmd (4, 4)``, ``floor_offset`` (metres added to the
device's stage y before fitting, and subtracted again from the published poses).
"""

from __future__ import annotations

import msgpack
import numpy as np
import torch

from calibration.profile import Profile


class DefaultProfiles:
    """Every session gets :meth:`Profile.default` (mean shape, default ``T_HMD``, no floor
    correction)."""

    def __init__(self, body):
        self.default = Profile.default(body)

    def get(self, session: str) -> Profile:
        return self.default


class StoreProfiles:
    """``DIR/<session>.json`` through :class:`calibration.profile.ProfileStore` (re-read when
    the file changes; a broken file keeps the last good profile)."""

    def __init__(self, directory, body):
        from calibration.profile import ProfileStore

        self.store = ProfileStore(directory, body, check_interval_s=0.5)

    def get(self, session: str) -> Profile:
        return self.store.get(session)


class RecordedProfiles:
    """The profiles a recording says were applied (replay); ``set`` as records are read."""

    def __init__(self, body):
        self.default = Profile.default(body)
        self.current: dict[str, Profile] = {}

    def set(self, session: str, profile: Profile) -> None:
        self.current[session] = profile

    def get(self, session: str) -> Profile:
        return self.current.get(session, self.default)


def encode_profile(session: str, p: Profile) -> bytes:
    """A profile record (MessagePack, float64) for recordings."""
    return msgpack.packb({
        "session": session, "betas": [float(x) for x in p.betas],
        "T_hmd": [float(x) for x in np.asarray(p.T_hmd).reshape(16)],
        "floor_offset": float(p.floor_offset), "body_fingerprint": p.body_fingerprint,
        "source": str(p.metadata.get("source", "")),
    }, use_single_float=False)


def decode_profile(data: bytes) -> tuple[str, Profile]:
    d = msgpack.unpackb(data, raw=False)
    p = Profile(np.asarray(d["betas"]), np.asarray(d["T_hmd"]).reshape(4, 4),
                d["floor_offset"], d["body_fingerprint"], {"source": d.get("source", "")})
    return d["session"], p


class ProfileTensors:
    """Profiles -> batched float32 tensors.

    A profile's rows are made once (profiles hash and compare by identity); a tick's stack is
    kept and handed out again while the same profile objects come in the same order (a steady
    set of sessions, the usual tick), so the tensors are shared between ticks and are never
    written to (no engine writes its inputs)."""

    def __init__(self, num_betas: int):
        self.num_betas = num_betas
        self._rows: dict[Profile, tuple[torch.Tensor, torch.Tensor, float]] = {}
        self._last: tuple[tuple[Profile, ...], tuple] | None = None

    def _one(self, p: Profile):
        hit = self._rows.get(p)
        if hit is not None:
            return hit
        if len(self._rows) > 4096:
            self._rows.clear()
        b = np.zeros(self.num_betas)
        k = min(self.num_betas, len(p.betas))
        b[:k] = p.betas[:k]
        entry = (torch.tensor(b, dtype=torch.float32),
                 torch.tensor(np.asarray(p.T_hmd), dtype=torch.float32), float(p.floor_offset))
        self._rows[p] = entry
        return entry

    def stack(self, profiles: list[Profile]):
        """``betas (B, K)``, ``T_hmd (B, 4, 4)``, ``floor_offset (B,)``."""
        key = tuple(profiles)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        rows = [self._one(p) for p in profiles]
        out = (torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows]),
               torch.tensor([r[2] for r in rows], dtype=torch.float32))
        self._last = (key, out)
        return out
