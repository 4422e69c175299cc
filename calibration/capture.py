"""Collecting a calibration capture (live over ZeroMQ, or from a recording) and finding the hold.

A :class:`Capture` is one session's validated frames as arrays. :func:`listen` binds a SUB
socket exactly like ``tracker serve``'s ingest (so a headset or ``tracker simulate`` that
publishes to the tracker publishes to the calibration instead, while serve is stopped);
:func:`read_recording` reads the ingest payloads of an MCAP recording. Both validate every
payload with :func:`tracker.protocol.parse_frame` and drop non-increasing ``seq`` like serve.

:func:`find_hold` finds the T-pose hold: the longest stretch, at least ``min_hold_s`` long,
where both hands are tracked, the arms are out sideways and nothing moves; when there is
none it raises :class:`CalibrationRefused` naming the reason.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tracker.geometry.transforms import pose7_to_transform
from tracker.protocol import stack_frames

MCAP_MAGIC = b"\x89MCAP0\r\n"


class CaptureError(RuntimeError):
    """The capture could not be made (address in use, no frames, unreadable recording)."""


class CalibrationRefused(RuntimeError):
    """The capture does not show a usable calibration; ``reason`` is a short code.

    Codes: ``too_short``, ``hand_not_tracked``, ``arms_not_out``, ``too_much_motion``,
    ``body_moved`` (while looking around), ``pose_mismatch``, ``implausible``.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class Capture:
    """One session's frames, ``N`` of them, stage frame as reported by the device.

    Attributes:
        t: ``(N,)`` seconds since the first frame (device clock).
        head: ``(N, 7)`` headset poses ``px py pz qx qy qz qw``.
        wrists: ``(N, 2, 7)`` left/right wrist poses (OpenXR wrist convention; identity
            where the hand is missing).
        tips: ``(N, 2, 5, 3)`` fingertips thumb..little, NaN where not reported.
        tracked: ``(N, 2)`` bool, hand present and tracked.
    """

    session: str
    source: str
    t: np.ndarray
    head: np.ndarray
    wrists: np.ndarray
    tips: np.ndarray
    tracked: np.ndarray
    rejected: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.t)

    @property
    def duration_s(self) -> float:
        return float(self.t[-1] - self.t[0]) if len(self) else 0.0

    @classmethod
    def from_frames(cls, frames, source: str, rejected: dict | None = None) -> Capture:
        """Stack validated :class:`tracker.protocol.Frame` objects of one session."""
        if not frames:
            raise CaptureError(f"{source}: no frames")
        t_ns = np.array([f.t for f in frames], dtype=np.int64)
        head, wrists, tips, tracked, _ = stack_frames(frames, missing_tip=np.nan)
        return cls(frames[0].session, source, (t_ns - t_ns[0]) * 1e-9, head, wrists, tips,
                   tracked, dict(rejected or {}))

    def slice(self, start: int, stop: int) -> Capture:
        return Capture(self.session, self.source, self.t[start:stop], self.head[start:stop],
                       self.wrists[start:stop], self.tips[start:stop],
                       self.tracked[start:stop], self.rejected)

    def head_rotations(self) -> np.ndarray:
        """``(N, 3, 3)`` headset orientations."""
        import torch

        return pose7_to_transform(torch.as_tensor(self.head))[..., :3, :3].numpy()

    def wrist_rotations(self) -> np.ndarray:
        """``(N, 2, 3, 3)`` wrist orientations (OpenXR wrist axes)."""
        import torch

        return pose7_to_transform(torch.as_tensor(self.wrists))[..., :3, :3].numpy()


class _SessionFilter:
    """Keeps one session's frames with strictly increasing ``seq`` (first session if None)."""

    def __init__(self, session: str | None):
        self.session = session
        self.frames = []
        self.rejected: dict[str, int] = {}
        self.other_sessions: set[str] = set()

    def offer(self, payload: bytes):
        from tracker.protocol import Rejected, parse_frame

        try:
            frame = parse_frame(payload)
        except Rejected as exc:
            self.rejected[exc.reason] = self.rejected.get(exc.reason, 0) + 1
            return None
        if self.session is None:
            self.session = frame.session
        if frame.session != self.session:
            self.other_sessions.add(frame.session)
            return None
        if self.frames and frame.seq <= self.frames[-1].seq:
            self.rejected["stale_seq"] = self.rejected.get("stale_seq", 0) + 1
            return None
        self.frames.append(frame)
        return frame

    def no_frames_message(self, where: str) -> str:
        msg = f"no frames of session {self.session!r} on {where}" if self.session else \
            f"no frames on {where}"
        if self.other_sessions:
            msg += f" (frames of other sessions arrived: {', '.join(sorted(self.other_sessions))})"
        if self.rejected:
            msg += f" ({sum(self.rejected.values())} messages rejected: " + ", ".join(
                f"{k} {v}" for k, v in sorted(self.rejected.items())) + ")"
        return msg


def listen(address: str, session: str | None = None, seconds: float = 5.0,
           wait_s: float = 10.0, on_first_frame=None, on_ready=None) -> Capture:
    """Bind a SUB socket at ``address`` (like serve's ingest) and collect one session.

    Collection starts with the session's first frame and lasts ``seconds`` of device time
    (or stops when the stream stays silent for 1 s afterwards).

    Args:
        session: the session id to keep; ``None``: the first session that sends a frame.
        wait_s: how long to wait for the first frame before giving up.
        on_first_frame: called with the session id when the first frame arrives.
        on_ready: called once the socket is bound.

    Raises:
        CaptureError: the address cannot be bound, or no frame arrived in ``wait_s``.
    """
    import zmq

    from tracker.protocol import MAX_MESSAGE_BYTES

    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
    sock.setsockopt(zmq.RCVHWM, 10000)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    keep = _SessionFilter(session)
    try:
        try:
            sock.bind(address)
        except zmq.ZMQError as exc:
            hint = (" (is `tracker serve` running on it? stop it first, or record with serve "
                    "and calibrate with --recording)") if exc.errno == zmq.EADDRINUSE else ""
            raise CaptureError(f"cannot listen on {address}: {exc.strerror}{hint}") from None
        if on_ready is not None:
            on_ready()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        start = time.monotonic()
        first_wall = last_wall = None
        while True:
            now = time.monotonic()
            if first_wall is None and now - start > wait_s:
                raise CaptureError(keep.no_frames_message(address) + f" within {wait_s:g} s: "
                                   "is the headset app or `tracker simulate` publishing to it?")
            if first_wall is not None and (now - last_wall > 1.0
                                           or now - first_wall > seconds + 5.0):
                break
            if not poller.poll(50):
                continue
            while True:
                try:
                    parts = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                frame = keep.offer(parts[-1])
                if frame is None:
                    continue
                last_wall = time.monotonic()
                if first_wall is None:
                    first_wall = last_wall
                    if on_first_frame is not None:
                        on_first_frame(frame.session)
            if keep.frames and (keep.frames[-1].t - keep.frames[0].t) * 1e-9 >= seconds:
                break
    finally:
        sock.close(0)
        ctx.term()
    return Capture.from_frames(keep.frames, f"live {address}", keep.rejected)


def read_recording(path, session: str | None = None, start_s: float = 0.0,
                   seconds: float | None = None) -> Capture:
    """One session's ingest frames from an MCAP recording (``tracker serve --record``).

    Reads the ``ingest`` channel (the exact payloads the server received; see
    :mod:`tracker.recording`). ``start_s``/``seconds`` cut a window measured from the
    session's first frame (device clock); ``seconds=None`` keeps the rest.
    """
    from tracker.recording import INGEST
    from tracker.recording import read_recording as read_messages

    path = Path(path)
    if not path.is_file():
        raise CaptureError(f"{path}: no such recording")
    with path.open("rb") as fh:
        if fh.read(len(MCAP_MAGIC)) != MCAP_MAGIC:
            raise CaptureError(f"{path}: not a readable MCAP recording (no MCAP header)")
    keep = _SessionFilter(session)
    info: dict = {}
    try:
        for msg in read_messages(path, info):
            if msg.topic == INGEST:
                keep.offer(msg.data)
    except Exception as exc:  # the mcap package raises many types for non-MCAP files
        raise CaptureError(f"{path}: not a readable MCAP recording ({exc})") from None
    if not keep.frames:
        cut = " (the file is damaged or cut off)" if info.get("truncated") else ""
        raise CaptureError(keep.no_frames_message(str(path)) + cut)
    t0 = keep.frames[0].t
    lo = t0 + int(start_s * 1e9)
    hi = math.inf if seconds is None else lo + int(seconds * 1e9)
    frames = [f for f in keep.frames if lo <= f.t <= hi]
    if not frames:
        raise CaptureError(f"{path}: session {keep.session!r} has no frames between "
                           f"{start_s:g} s and {start_s + (seconds or 0):g} s")
    return Capture.from_frames(frames, f"recording {path}", keep.rejected)


# ---------------------------------------------------------------------- the hold
@dataclass(frozen=True)
class HoldCriteria:
    """What counts as holding the calibration pose."""

    min_hold_s: float = 1.0
    """The shortest acceptable hold, seconds."""
    max_wrist_motion_m: float = 0.02
    """Largest RMS deviation of each wrist from its mean position during the hold, metres."""
    max_head_motion_m: float = 0.03
    """Largest RMS deviation of the headset from its mean position during the hold, metres."""
    min_arm_out_m: float = 0.40
    """Each wrist at least this far from the headset, horizontally, metres."""
    max_arm_pitch_deg: float = 35.0
    """The hands point at most this far above or below horizontal, degrees."""
    wrist_below_head_m: tuple[float, float] = (0.0, 0.75)
    """Each wrist this far below the headset (min, max), metres."""


@dataclass(frozen=True)
class Hold:
    """The frames ``[start, stop)`` of a capture where the pose was held."""

    start: int
    stop: int
    duration_s: float
    wrist_motion_m: float
    head_motion_m: float


def arms_out(cap: Capture, crit: HoldCriteria = HoldCriteria()) -> dict[str, np.ndarray]:
    """Per-frame pose checks ``(N,)`` bool: ``tracked``, ``reach``, ``height``, ``pitch``,
    ``sides`` (the two hands on opposite sides, pointing away from the head) and ``ok``."""
    head = cap.head[:, :3]
    wp = cap.wrists[:, :, :3]  # (N, 2, 3)
    rel = wp - head[:, None]
    horiz = rel[..., [0, 2]]
    dist = np.linalg.norm(horiz, axis=-1)  # (N, 2)
    fingers = -cap.wrist_rotations()[..., :, 2]  # OpenXR: -Z of the wrist points to the fingers
    pitch = np.degrees(np.arcsin(np.clip(fingers[..., 1], -1, 1)))
    fh = fingers[..., [0, 2]]
    outward = (fh * horiz).sum(-1) / (np.linalg.norm(fh, axis=-1) * dist + 1e-9)
    unit = horiz / (dist[..., None] + 1e-9)
    opposite = (unit[:, 0] * unit[:, 1]).sum(-1) < -0.5  # more than 120 degrees apart
    below = -rel[..., 1]
    checks = {
        "tracked": cap.tracked.all(1),
        "reach": (dist >= crit.min_arm_out_m).all(1),
        "height": ((below >= crit.wrist_below_head_m[0])
                   & (below <= crit.wrist_below_head_m[1])).all(1),
        "pitch": (np.abs(pitch) <= crit.max_arm_pitch_deg).all(1),
        "sides": opposite & (outward > 0.5).all(1),
    }
    checks["ok"] = np.logical_and.reduce(list(checks.values()))
    checks["_dist"], checks["_pitch"] = dist, pitch
    return checks


class _Windows:
    """O(1) statistics of frame ranges ``[i, j)`` from cumulative sums."""

    def __init__(self, x: np.ndarray):  # (N, D)
        self.s1 = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x, 0)])
        self.s2 = np.concatenate([np.zeros(1), np.cumsum((x * x).sum(1))])

    def rms(self, i, j):
        n = np.asarray(j - i, dtype=np.float64)
        m = (self.s1[j] - self.s1[i]) / n[..., None]
        return np.sqrt(np.maximum((self.s2[j] - self.s2[i]) / n - (m * m).sum(-1), 0.0))


def find_hold(cap: Capture, crit: HoldCriteria = HoldCriteria()) -> Hold:
    """The calibration hold in ``cap``, or :class:`CalibrationRefused` saying why not."""
    N = len(cap)
    if N < 10 or cap.duration_s < crit.min_hold_s:
        raise CalibrationRefused(
            "too_short", f"the capture holds {N} frames over {cap.duration_s:.1f} s; the hold "
            f"alone needs {crit.min_hold_s:g} s: capture longer (--seconds)")
    t = cap.t
    stop = np.searchsorted(t, t + crit.min_hold_s - 1e-6, side="left") + 1  # exclusive
    starts = np.nonzero(stop <= N)[0]
    stop = stop[starts]
    checks = arms_out(cap, crit)

    def all_true(flag):
        c = np.concatenate([[0], np.cumsum(~flag)])
        return (c[stop] - c[starts]) == 0

    wl = _Windows(cap.wrists[:, 0, :3])
    wr = _Windows(cap.wrists[:, 1, :3])
    hd = _Windows(cap.head[:, :3])
    motion = np.maximum(wl.rms(starts, stop), wr.rms(starts, stop))
    head_motion = hd.rms(starts, stop)

    tracked_w = all_true(checks["tracked"])
    if not tracked_w.any():
        lost = 1.0 - cap.tracked.mean(0)
        worst = "left" if lost[0] >= lost[1] else "right"
        raise CalibrationRefused(
            "hand_not_tracked",
            f"the hands were never both tracked for {crit.min_hold_s:g} s (the left hand was "
            f"lost in {100 * lost[0]:.0f}% of the frames, the right in {100 * lost[1]:.0f}%; "
            f"worst: {worst}): keep both hands open, palms down, where the headset's cameras "
            "see them, and hold still")
    pose_w = all_true(checks["ok"])
    if not pose_w.any():
        # explain with the window that came closest
        best = int(np.argmax(np.convolve(checks["ok"].astype(float), np.ones(8), "same")))
        failing = [k for k in ("reach", "height", "pitch", "sides") if not checks[k][best]]
        d = checks["_dist"][best]
        p = checks["_pitch"][best]
        detail = {
            "reach": f"the wrists were only {d.min():.2f} m from the head "
                     f"(at least {crit.min_arm_out_m:.2f} m)",
            "height": f"the wrists were not just below the head ({crit.wrist_below_head_m[0]:g}"
                      f"-{crit.wrist_below_head_m[1]:g} m below it)",
            "pitch": f"the hands pointed {np.abs(p).max():.0f} degrees off horizontal "
                     f"(at most {crit.max_arm_pitch_deg:g})",
            "sides": "the hands were not on opposite sides pointing away from the body",
        }
        why = "; ".join(detail[k] for k in failing) or "the pose was never held long enough"
        raise CalibrationRefused(
            "arms_not_out",
            f"the arms were not stretched out sideways for {crit.min_hold_s:g} s ({why}): "
            "stand straight with both arms straight out to the sides, palms down")
    still = (motion <= crit.max_wrist_motion_m) & (head_motion <= crit.max_head_motion_m)
    good = pose_w & still
    if not good.any():
        cand = np.nonzero(pose_w)[0]
        k = cand[np.argmin(motion[cand] + head_motion[cand])]
        raise CalibrationRefused(
            "too_much_motion",
            f"too much motion during the hold: in the stillest {crit.min_hold_s:g} s the wrists "
            f"moved {100 * motion[k]:.1f} cm RMS (limit {100 * crit.max_wrist_motion_m:.1f}) and "
            f"the headset {100 * head_motion[k]:.1f} cm (limit {100 * crit.max_head_motion_m:.1f})"
            ": hold the pose still for a few seconds (very noisy hand tracking has the same "
            "effect: check the lighting)")
    # grow the stillest good window while it stays good
    cand = np.nonzero(good)[0]
    k = cand[np.argmin(motion[cand])]
    i, j = int(starts[k]), int(stop[k])
    ok = checks["ok"]

    def fine(a, b):
        return (max(float(wl.rms(a, b)), float(wr.rms(a, b))) <= crit.max_wrist_motion_m
                and float(hd.rms(a, b)) <= crit.max_head_motion_m)

    while j < N and ok[j] and fine(i, j + 1):
        j += 1
    while i > 0 and ok[i - 1] and fine(i - 1, j):
        i -= 1
    return Hold(i, j, float(t[j - 1] - t[i]),
                max(float(wl.rms(i, j)), float(wr.rms(i, j))), float(hd.rms(i, j)))
