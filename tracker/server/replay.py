"""Replay: a recording's ingest payloads through :class:`TrackerCore`, tick by tick.

The core gets every payload with its recorded receive time and ticks at the recorded tick
times, with the recorded profiles and the recorded choice of fit (the full fit or which light one,
``tracker.server.pacing``): the same batches as live, so the same checkpoint and engine (and thread
count) give the same poses. ``t_recv`` is the recorded one; ``t_pub`` is
the tick time plus this machine's processing time (the replay's clock is the recording's).

Recordings without ``tracker/tick`` records (not written by ``tracker serve``) are fitted one
frame per tick, at each frame's receive time.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import numpy as np

from tracker.protocol import decode_pose
from tracker.recording import ENGINE, INGEST, POSE_PREFIX, PROFILE, TICK, read_recording
from tracker.server.core import TrackerCore
from tracker.server.profiles import decode_profile
from tracker.server.publish import finish_pose


@dataclass
class ReplayStats:
    ticks: int = 0
    poses: int = 0
    truncated: bool = False
    metadata: dict = field(default_factory=dict)
    compare: dict = field(default_factory=dict)  # session -> comparison (see _Comparer)


def replay(path: str | Path, core: TrackerCore, on_pose=None, speed: float | None = None,
           stop=None, on_engine=None) -> ReplayStats:
    """Run a recording through ``core``.

    Args:
        on_engine: ``callback(name: str) -> Engine | None`` where the live server switched
            engines (``tracker/engine``); the engine it returns fits from then on (``None``
            keeps the current one).
        on_pose: ``callback(msg: dict, payload: bytes, data: bytes)`` per published pose
            (``payload``: the frame it answers as the live ``frame/<session>`` echo, i.e.
            validated and re-encoded; ``data``: the packed message).
        speed: ``None`` as fast as possible, else a multiple of real time.
        stop: ``callable() -> bool`` to end early.

    ``stats.compare`` holds, per session, how the replayed poses match the recorded ones.
    """
    info: dict = {}
    stats = ReplayStats()
    cmp = _Comparer()

    def emit(msg, payload, data):
        cmp.replayed(msg)
        if on_pose is not None:
            on_pose(msg, payload, data)

    msgs = read_recording(path, info)
    has_ticks = None
    wall0 = rec0 = None
    for m in msgs:
        if has_ticks is None:
            has_ticks = "clock" in info.get("metadata", {})
        if stop is not None and stop():
            break
        if speed is not None and m.topic in (INGEST, TICK):
            if wall0 is None:
                wall0, rec0 = time.monotonic_ns(), m.log_time
            wait = (m.log_time - rec0) / speed - (time.monotonic_ns() - wall0)
            if wait > 0:
                time.sleep(wait / 1e9)
        if m.topic == INGEST:
            core.receive(m.data, m.log_time)
            if not has_ticks:
                _tick(core, m.log_time + 1, emit, stats)
        elif m.topic == TICK:
            tick = msgpack.unpackb(m.data)
            _tick(core, tick["t"], emit, stats, int(tick.get("light", 0)))
        elif m.topic == ENGINE and on_engine is not None:
            engine = on_engine(msgpack.unpackb(m.data)["engine"])
            if engine is not None:
                core.engine = engine
        elif m.topic == PROFILE and hasattr(core.profiles, "set"):
            core.profiles.set(*decode_profile(m.data))
        elif m.topic.startswith(POSE_PREFIX):
            cmp.recorded(decode_pose(m.data))
    stats.truncated = info.get("truncated", False)
    stats.metadata = info.get("metadata", {})
    stats.compare = cmp.result()
    return stats


def _tick(core: TrackerCore, t: int, on_pose, stats: ReplayStats, level: int = 0) -> None:
    t0 = time.perf_counter_ns()
    out = core.tick(t, level)
    if out is None:
        return
    stats.ticks += 1
    for p in out.poses:
        t_pub = t + time.perf_counter_ns() - t0
        data = finish_pose(p.msg, t_pub)
        core.note_published(p.session, p.msg["t_recv"], t_pub)
        stats.poses += 1
        if on_pose is not None:
            on_pose(p.msg, p.echo(), data)


class _Comparer:
    """Streams recorded and replayed poses, matched by ``(session, seq)``; keeps only the
    unmatched ones (a replayed pose precedes its recorded twin by at most one tick)."""

    KEYS = ("pose", "transl", "joints", "betas")

    def __init__(self):
        self.waiting: dict = {}
        self.stats: dict = defaultdict(lambda: {"recorded": 0, "replayed": 0, "matched": 0,
                                                "max_abs_diff": 0.0, "state_mismatches": 0})

    def replayed(self, msg: dict) -> None:
        self.stats[msg["session"]]["replayed"] += 1
        self._meet(("rep",), msg)

    def recorded(self, msg: dict) -> None:
        self.stats[msg["session"]]["recorded"] += 1
        self._meet(("rec",), msg)

    def _meet(self, side, msg) -> None:
        key = (msg["session"], msg["seq"])
        other = self.waiting.pop(key, None)
        if other is None or other[0] == side:
            self.waiting[key] = (side, msg)
            return
        st = self.stats[msg["session"]]
        st["matched"] += 1
        a, b = other[1], msg
        for k in self.KEYS:
            if len(a[k]) != len(b[k]):
                d = float("inf")
            else:
                d = float(np.max(np.abs(np.subtract(a[k], b[k])))) if len(a[k]) else 0.0
            st["max_abs_diff"] = max(st["max_abs_diff"], d)
        st["state_mismatches"] += a["state"] != b["state"]

    def result(self) -> dict:
        return {k: dict(v) for k, v in self.stats.items()}


def write_amass_npz(directory: str | Path, session: str, msgs: list[dict], body) -> Path:
    """One session's fitted poses as an AMASS-layout ``.npz`` (Z-up AMASS world).

    Keys: ``poses (N, 156)``, ``trans (N, 3)``, ``betas (16,)``, ``mocap_framerate`` (from
    the median device-time step of the fitted frames), ``gender``, and per frame ``seq (N,)``
    and ``t (N,)`` (device ns): frames skipped by the server (dropped) leave gaps in ``seq``.
    """
    import torch

    from tracker.signals.stage import stage_to_amass

    msgs = sorted(msgs, key=lambda m: m["seq"])
    poses = torch.tensor([m["pose"] for m in msgs], dtype=torch.float64)
    trans = torch.tensor([m["transl"] for m in msgs], dtype=torch.float64)
    betas = torch.tensor(msgs[0]["betas"], dtype=torch.float64)
    k = min(len(betas), body.num_betas)
    pelvis = body.rest_joints(betas[None, :k].to(body.dtype))[0, 0].to(torch.float64)
    poses, trans = stage_to_amass(poses, trans, pelvis)
    t = np.array([m["t"] for m in msgs], dtype=np.int64)
    steps = np.diff(t)
    steps = steps[steps > 0]
    fps = float(1e9 / np.median(steps)) if len(steps) else 0.0
    b16 = np.zeros(16, np.float32)
    b16[: min(16, len(betas))] = betas.numpy()[:16]
    path = Path(directory) / f"{session}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, poses=poses.numpy().astype(np.float32), trans=trans.numpy().astype(np.float32),
             betas=b16, mocap_framerate=np.float64(fps), gender=np.str_("neutral"),
             seq=np.array([m["seq"] for m in msgs], dtype=np.int64), t=t)
    return path
