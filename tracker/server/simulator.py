"""Synthetic headsets: protocol frames from AMASS-layout motions (``tracker simulate``).

A :class:`SimulatedHeadset` precomputes one user's whole stream (clean signals from
``tracker.signals.motion_signals``, then a seeded :class:`DeviceModel`), and
:func:`publish_streams` sends the frames of several of them at a fixed rate on one PUB.

What a simulated device reports, per frame, in its own stage frame:

* ``head``: the headset pose (the body's head joint @ ``T_HMD`` with the user's offset);
* ``left`` / ``right``: wrist pose and fingertips, or nil while the hand is not visible to
  the device (lost by the device model, or, with ``--visibility half-space``, behind the
  headset plane); fingertips are left out while the device model drops them;
* every y is offset by ``floor_offset`` (the headset's floor error: its floor sits
  ``floor_offset`` below the real one). The matching calibration profile has
  ``floor_offset = -floor_offset``;
* ``gt``: the ground truth in the same (device) frame: ``transl (3)``, ``pose (156)``
  stage-frame axis-angle, ``betas``. The server ignores it; viewers overlay it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tracker.geometry.transforms import transform_to_pose7
from tracker.protocol import encode_frame
from tracker.signals.device import DeviceModel
from tracker.signals.headset import DEFAULT_HMD_OFFSET, head_to_hmd
from tracker.signals.motion import motion_signals, stage_params


class MotionSpecError(ValueError):
    """A MOTION argument that cannot be read."""


def load_motion(spec: str, rate: float, seconds: float, seed: int, body) -> dict:
    """An AMASS-layout motion (``poses``, ``trans``, ``betas``, ``fps``) resampled to ``rate``.

    ``spec``: an AMASS ``.npz``, a ``.bvh`` (retargeted on the fly), or ``procedural`` /
    ``procedural:walk,wave`` (the seeded generator, ``seconds`` long).
    """
    from tracker.motion.amass import resample_motion

    if spec == "procedural" or spec.startswith("procedural:"):
        from tracker.motion.procedural import ACTIONS, generate_motion

        actions = [a for a in spec.partition(":")[2].split(",") if a] or None
        bad = [a for a in actions or () if a not in ACTIONS]
        if bad:
            raise MotionSpecError(f"unknown action(s) {bad}; choose from {list(ACTIONS)}")
        m = generate_motion(actions, seconds=seconds, fps=rate, seed=seed, body=body)
        return dict(poses=m["poses"], trans=m["trans"], betas=m["betas"], fps=float(rate))
    path = Path(spec)
    if not path.is_file():
        raise MotionSpecError(f"{spec}: no such file (or use 'procedural[:actions]')")
    if path.suffix.lower() == ".bvh":
        from tracker.motion.bvh import read_bvh
        from tracker.motion.retarget import retarget

        r = retarget(read_bvh(path), body)
        poses, trans, betas, fps = r.poses, r.trans, r.betas, r.fps
    else:
        from tracker.motion.amass import MotionFileError, read_amass

        try:
            m = read_amass(path)
        except MotionFileError as exc:
            raise MotionSpecError(str(exc)) from None
        poses, trans, betas, fps = m["poses"], m["trans"], m["betas"], m["fps"]
    poses, trans = resample_motion(poses, trans, fps, rate)
    return dict(poses=poses, trans=trans, betas=betas, fps=float(rate))


@dataclass
class SimulatedHeadset:
    """One user's precomputed stream of ``N`` frames (device stage frame, float32 on the wire).

    Attributes:
        head: ``(N, 7)``; wrists: ``(N, 2, 7)``; tips: ``(N, 2, 5, 3)``; hand_on: ``(N, 2)``
        bool (sent, else nil); tips_on: ``(N, 2)`` bool; gt_pose ``(N, 156)``,
        gt_transl ``(N, 3)``, betas ``(K,)``.
    """

    session: str
    head: np.ndarray
    wrists: np.ndarray
    tips: np.ndarray
    hand_on: np.ndarray
    tips_on: np.ndarray
    gt_pose: np.ndarray
    gt_transl: np.ndarray
    betas: np.ndarray
    ground_truth: bool = True

    @property
    def num_frames(self) -> int:
        return int(self.head.shape[0])

    def payload(self, i: int, seq: int, t_ns: int) -> bytes:
        """The ingest payload of frame ``i`` (see the module docstring)."""
        hands = []
        for s in (0, 1):
            if not self.hand_on[i, s]:
                hands.append((None, None))
                continue
            hands.append((self.wrists[i, s], self.tips[i, s] if self.tips_on[i, s] else None))
        extra = None
        if self.ground_truth:
            extra = {"gt": {"transl": self.gt_transl[i].tolist(), "pose": self.gt_pose[i].tolist(),
                            "betas": self.betas.tolist()}}
        return encode_frame(self.session, seq, t_ns, self.head[i], hands[0][0], hands[1][0],
                            hands[0][1], hands[1][1], extra=extra, single_float=True)


def make_headset(body, motion: dict, session: str, noise: str = "consumer",
                 visibility: str = "device", hmd_offset=DEFAULT_HMD_OFFSET,
                 floor_offset: float = 0.0, seed: int = 0,
                 ground_truth: bool = True) -> SimulatedHeadset:
    """Precompute a headset stream from an AMASS-layout ``motion`` (see :func:`load_motion`).

    ``noise``: a :meth:`DeviceModel.presets` name or ``"none"`` (clean signals).
    """
    T_hmd = head_to_hmd(tuple(float(x) for x in hmd_offset), dtype=body.dtype)
    with torch.inference_mode():
        sig, _, poses = motion_signals(body, motion["poses"], motion["trans"], motion["betas"],
                                       T_hmd, visibility)
        _, trans, _ = stage_params(body, motion["poses"], motion["trans"], motion["betas"])
        if noise != "none":
            presets = DeviceModel.presets()
            if noise not in presets:
                raise ValueError(f"unknown noise preset {noise!r}: none, {', '.join(presets)}")
            sig = presets[noise].apply(sig, seed, visibility)
        up = torch.tensor([0.0, floor_offset, 0.0], dtype=sig.head.dtype)
        head = transform_to_pose7(sig.head).numpy()
        wrists = transform_to_pose7(sig.wrists).numpy()
        head[:, :3] += up.numpy()
        wrists[..., :3] += up.numpy()
        tips = (sig.tips + up).numpy()
        gt_transl = (trans + up).numpy()
    betas = np.asarray(motion["betas"], dtype=np.float32)[: body.num_betas]
    return SimulatedHeadset(session, head, wrists, tips, sig.visible.numpy(),
                            sig.tips_valid.numpy() & sig.visible.numpy(),
                            poses.numpy().astype(np.float32), gt_transl.astype(np.float32),
                            betas, ground_truth)


def publish_streams(sock, headsets: list[SimulatedHeadset], rate: float, loop: bool = False,
                    duration: float | None = None, stop=None, seq0: int = 1,
                    clock=time.monotonic_ns) -> dict:
    """Send one frame of every headset per period of ``1/rate`` on a connected PUB ``sock``.

    Frames are sent on an absolute schedule; when the host falls more than two periods
    behind, the schedule restarts from now (like a headset dropping frames, never a burst).
    Stops at the end of the longest stream (or loops), after ``duration`` seconds, or when
    ``stop()`` returns true. Returns counts: ``sent``, ``ticks``, ``late``.
    """
    period = 1e9 / rate
    start = clock()
    nxt = start
    k = late = sent = 0
    longest = max(h.num_frames for h in headsets)
    while True:
        if stop is not None and stop():
            break
        if duration is not None and clock() - start >= duration * 1e9:
            break
        if k >= longest and not loop:
            break
        for h in headsets:
            if not loop and k >= h.num_frames:
                continue
            sock.send(h.payload(k % h.num_frames, seq0 + k, clock()))
            sent += 1
        k += 1
        nxt += period
        now = clock()
        if now - nxt > 2 * period:
            late += 1
            nxt = now
        elif nxt > now:
            time.sleep((nxt - now) / 1e9)
    return {"sent": sent, "ticks": k, "late": late}
