"""Time the kinematics fast path (pose -> joints, tips, head/wrist SE(3)) on this machine.

    python tools/bench_kinematics.py [--body-model PATH] [--batch 1 256] [--json OUT]

Prints p50/p99 per call for each batch size and dtype, with and without vertices.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from tracker.body import load_body_model
from tracker.geometry import axis_angle_to_matrix


def time_call(fn, warmup: int = 10, min_seconds: float = 1.0) -> np.ndarray:
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < min_seconds or len(times) < 20:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return np.array(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--body-model", default=None)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 256])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    for dtype in (torch.float32, torch.float64):
        body = load_body_model(args.body_model, dtype=dtype)
        for B in args.batch:
            g = torch.Generator().manual_seed(0)
            R = axis_angle_to_matrix(0.3 * torch.randn(B, 52, 3, generator=g, dtype=dtype))
            betas = torch.randn(B, body.num_betas, generator=g, dtype=dtype)
            transl = torch.zeros(B, 3, dtype=dtype)
            for verts in (False, True):
                with torch.inference_mode():
                    t = time_call(lambda: body(R, betas, transl, vertices=verts))  # noqa: B023
                row = {"dtype": str(dtype).split(".")[-1], "batch": B, "vertices": verts,
                       "p50_ms": float(np.percentile(t, 50)), "p99_ms": float(np.percentile(t, 99))}
                rows.append(row)
                print(f"{row['dtype']:8s} batch {B:4d} vertices={verts!s:5s} "
                      f"p50 {row['p50_ms']:8.3f} ms  p99 {row['p99_ms']:8.3f} ms")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": platform.processor() or platform.machine(), "results": rows}, fh,
                      indent=1)


if __name__ == "__main__":
    main()
