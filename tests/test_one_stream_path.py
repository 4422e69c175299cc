"""Serve's path and eval's path fit the same frames to the same poses (one stream code path)."""

from __future__ import annotations

import numpy as np
import torch

from engines import make_engine
from tracker.body import load_body_model
from tracker.fitter.fitter import FitterConfig, NeuralFitter
from tracker.motion.procedural import generate_motion
from tracker.protocol import parse_frame
from tracker.server.core import TrackerCore
from tracker.server.simulator import make_headset
from tracker.signals.headset import HeadsetSignals, head_to_hmd
from tracker.stream import frames_to_signals
from trainer.eval import _Sequence, stream


def test_recorded_frames_give_the_same_poses_through_serve_and_eval():
    body = load_body_model()
    torch.manual_seed(0)
    fitter = NeuralFitter(body, FitterConfig(hidden=32, layers=1, init_hidden=32, lg_hidden=16,
                                             iterations=2)).eval()
    rate, n = 90.0, 40
    motion = generate_motion(None, n / rate, rate, 5, body=body)
    headset = make_headset(body, motion, "s", noise="consumer", seed=1, ground_truth=False)
    payloads = [headset.payload(i, i + 1, int(i * 1e9 / rate)) for i in range(n)]

    # serve: the live core, one frame per tick (wire parsing, sessions, publish)
    core = TrackerCore(make_engine("eager", fitter))
    served = []
    for i, p in enumerate(payloads):
        core.receive(p, int(i * 1e9 / rate))
        served += [np.array(o.msg["pose"]) for o in core.tick(int(i * 1e9 / rate) + 1).poses]
    assert len(served) == n

    # eval: the same parsed frames as one sequence through trainer.eval.stream
    frames = [parse_frame(p) for p in payloads]
    sig = frames_to_signals(frames, "device")
    seq = _Sequence("s", rate, torch.as_tensor(headset.betas), torch.zeros(n, 52, 3, 3),
                    torch.zeros(n, 3), {"full": HeadsetSignals(*(getattr(sig, k) for k in (
                        "head", "wrists", "tips", "tracked", "tips_valid", "visible")))})
    (theta,) = stream(make_engine("eager", fitter), [seq], "full", head_to_hmd())
    from tracker.fitter.theta import theta_to_axis_angle

    poses, _ = theta_to_axis_angle(theta)
    diff = np.abs(np.stack(served) - poses.numpy()).max()
    assert diff < 1e-4, diff
