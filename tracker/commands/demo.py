"""``tracker demo``: the tracker's pipeline on a generated motion, no headset needed.

Generates a motion, derives what a headset would observe (with the device noise model),
fits it frame by frame through the same engine call the server makes, carrying the fitter's
state across frames, and prints the error against the ground truth per second.
"""

from __future__ import annotations


def add_arguments(p):
    p.add_argument("--seconds", type=float, default=10.0, help="length of the generated motion")
    p.add_argument("--rate", type=float, default=90.0, help="headset frame rate (Hz)")
    p.add_argument("--seed", type=int, default=0, help="motion and noise seed")
    from tracker.options import add_model_arguments

    add_model_arguments(p)  # the same model options, and defaults, as serve


def run(args) -> int:

    import numpy as np
    import torch

    from tracker.motion.procedural import generate_motion
    from tracker.server.build import build_engine, set_threads
    from tracker.signals.device import DeviceModel
    from tracker.signals.headset import head_to_hmd
    from tracker.signals.motion import motion_signals
    from tracker.stream import NS_PER_S, StreamState, fit_tick

    set_threads(args.threads)
    engine, _ = build_engine(args.checkpoint, args.body_model, args.engine)
    body = engine.fitter.body
    motion = generate_motion(None, args.seconds, args.rate, args.seed, body=body)
    clean, truth, _ = motion_signals(body, motion["poses"], motion["trans"], motion["betas"],
                                     mode=args.visibility)
    sig = DeviceModel().apply(clean, args.seed, args.visibility)
    T = len(motion["poses"])
    betas = torch.as_tensor(motion["betas"][None, : body.num_betas], dtype=torch.float32)
    stream = StreamState()
    T_hmd = head_to_hmd()[None]
    print(f"demo: {T} frames at {args.rate:g} Hz, engine {engine.name}, "
          f"visibility {args.visibility}, body {body.data.name}")
    errs, lat = [], []
    for t in range(T):
        res, _, fit_ns = fit_tick(engine, [stream], sig.map(lambda x: x[t : t + 1]),  # noqa: B023
                                  betas, T_hmd, [round(t * NS_PER_S / args.rate)])
        lat.append(fit_ns * 1e-9)
        joints = res.joints.reshape(52, 3)[:22].cpu()  # what the wire would carry
        errs.append((joints - truth.joints[t, :22]).norm(dim=-1).mean().item())
        if (t + 1) % int(args.rate) == 0 or t == T - 1:
            s = slice(max(0, t + 1 - int(args.rate)), t + 1)
            print(f"  t={(t + 1) / args.rate:5.1f}s  body joint error "
                  f"{np.mean(errs[s]) * 100:6.1f} cm  fit {np.median(lat[s]) * 1e3:6.2f} ms (p50)")
    p50, p99 = np.median(lat) * 1e3, np.percentile(lat, 99) * 1e3
    print(f"mean body joint error {np.mean(errs) * 100:.1f} cm over {T} frames; "
          f"fit latency p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    return 0
