"""A user standing still in front of the tracker: is the body fitted standing?

    python tools/stand_still.py [--checkpoint CKPT] [--engine eager] [--seconds 3]

The default body stands in its rest pose on the floor; the headset is where that body's eyes
are (``T_HMD``), looking straight ahead, with a millimetre of tracking noise; both hands are
not tracked (``nil`` on the wire). Frames go through the server's own path (wire parsing,
sessions, the stream state, the fit and the pose messages: ``tracker.server.core``) at
90 Hz, and the last second of poses is measured: knee flexion (the knee joints' rotation
angle), the height of the foot joints (ankles and feet) above where they are in the standing
rest pose, and the pelvis height against its rest height. Prints the figures, and with
``--check`` exits 1 unless knees ≤ 20°, feet within 5 cm and pelvis within 6 cm.
"""

from __future__ import annotations

import argparse
import sys

import msgpack
import numpy as np
import torch

from tracker.body.joints import FOOT_JOINTS as FEET

KNEES = (4, 5)
LIMITS = {"knee_deg": 20.0, "feet_cm": 5.0, "pelvis_cm": 6.0}


def standing_rest(body) -> tuple[np.ndarray, np.ndarray]:
    """The default body in its rest pose standing on the floor: joints ``(52, 3)`` and the
    headset pose ``(4, 4)`` (stage frame)."""
    from tracker.signals.headset import head_to_hmd

    z = torch.zeros(1, 156, dtype=body.dtype)
    st = body.forward_axis_angle(z, torch.zeros(1, body.num_betas, dtype=body.dtype),
                                 torch.zeros(1, 3, dtype=body.dtype), vertices=True)
    lift = -float(st.vertices[0, :, 1].min())
    joints = st.joints[0].double().numpy() + [0.0, lift, 0.0]
    head = st.head[0].double().numpy().copy()
    head[1, 3] += lift
    return joints, head @ head_to_hmd(dtype=torch.float64).numpy()


def measure(fitter, engine_name: str = "eager", seconds: float = 3.0, rate: float = 90.0,
            seed: int = 0) -> dict[str, float]:
    """Stream a standing user through the server's path; figures over the last second."""
    from scipy.spatial.transform import Rotation

    from engines import make_engine
    from tracker.server.core import TrackerCore

    body = fitter.body
    rest, hmd = standing_rest(body)
    core = TrackerCore(make_engine(engine_name, fitter))
    rng = np.random.default_rng(seed)
    q = Rotation.from_matrix(hmd[:3, :3]).as_quat()  # x y z w
    poses = []
    n = int(seconds * rate)
    for i in range(n):
        p = hmd[:3, 3] + rng.normal(0.0, 0.001, 3)
        t = int(i * 1e9 / rate)
        msg = {"v": 1, "session": "still", "seq": i + 1, "t": t,
               "head": [*map(float, p), *map(float, q)], "left": None, "right": None}
        core.receive(msgpack.packb(msg), t)
        out = core.tick(t + 1)
        poses += [o.msg for o in out.poses] if out is not None else []
    last = poses[-int(rate):]
    joints = np.array([m["joints"] for m in last]).reshape(len(last), -1, 3)
    aa = np.array([m["pose"] for m in last]).reshape(len(last), -1, 3)
    knee = np.degrees(np.linalg.norm(aa[:, KNEES], axis=-1)).mean(0)
    feet = (joints[:, FEET, 1] - rest[FEET, 1]).mean(0) * 100
    pelvis = float((joints[:, 0, 1] - rest[0, 1]).mean() * 100)
    return {"knee_deg": float(knee.max()), "knees_deg": knee.tolist(),
            "feet_cm": float(np.abs(feet).max()), "feet_above_rest_cm": feet.tolist(),
            "pelvis_cm": abs(pelvis), "pelvis_above_rest_cm": pelvis,
            "frames": len(poses)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="fitter checkpoint (default: bundled)")
    ap.add_argument("--engine", default="eager")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--check", action="store_true", help="exit 1 when a limit is exceeded")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from tracker.fitter.checkpoint import load_fitter

    r = measure(load_fitter(args.checkpoint), args.engine, args.seconds)
    print(f"standing still, {r['frames']} poses, last second:")
    print(f"  knee flexion     {r['knees_deg'][0]:5.1f}° left, {r['knees_deg'][1]:5.1f}° right "
          f"(limit {LIMITS['knee_deg']:g}°)")
    print("  foot joints      " + ", ".join(f"{v:+.1f}" for v in r["feet_above_rest_cm"])
          + f" cm from standing (ankles, feet; limit ±{LIMITS['feet_cm']:g})")
    print(f"  pelvis           {r['pelvis_above_rest_cm']:+.1f} cm from its rest height "
          f"(limit ±{LIMITS['pelvis_cm']:g})")
    bad = [k for k, lim in LIMITS.items() if r[k] > lim]
    if bad:
        print(f"outside the limits: {', '.join(bad)}")
    return 1 if args.check and bad else 0


if __name__ == "__main__":
    sys.exit(main())
