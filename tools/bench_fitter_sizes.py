"""Batch-1 fit latency against the fitter's size: eager and compiled CPU engines, same run.

    python tools/bench_fitter_sizes.py [--hidden 128 256 384 512 1024] [--iterations 5 3]
        [--engine inductor onnxruntime] [--seconds 2] [--rounds 3] [--json OUT]

For every (hidden, iterations) an untrained fitter (2 GRU layers; compute does not depend on
training) is built, its engines are built (or loaded from the engine cache), and eager and the
engines are timed interleaved on the same streams (``tracker.commands.bench``). Prints a
markdown table with the load average, for choosing the bundled model's size.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from engines import make_engine
from engines.streams import make_streams
from tracker.body import load_body_model
from tracker.commands.bench import load_average, machine_description, time_engines
from tracker.fitter.fitter import FitterConfig, NeuralFitter


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, nargs="+", default=[128, 256, 384, 512, 1024])
    ap.add_argument("--iterations", type=int, nargs="+", default=[5, 3])
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--engine", nargs="+", default=["inductor"])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    body = load_body_model()
    streams = make_streams(body, args.batch, frames=180, seed=0)
    print(f"machine: {machine_description()}")
    rows = []
    for iterations in args.iterations:
        for hidden in args.hidden:
            torch.manual_seed(0)
            cfg = FitterConfig(hidden=hidden, layers=args.layers, iterations=iterations)
            fitter = NeuralFitter(body, cfg).eval()
            engines = {"eager": make_engine("eager", fitter)}
            for name in args.engine:
                t0 = time.perf_counter()
                engines[name] = make_engine(name, fitter, cache=args.cache)
                engines[name].warmup([args.batch])
                print(f"hidden {hidden} N={iterations}: {name} ready in "
                      f"{time.perf_counter() - t0:.0f} s", flush=True)
            params = sum(p.numel() for n, p in fitter.named_parameters()
                         if not n.startswith("body."))
            load = load_average()
            res = time_engines(engines, streams, [args.batch], args.seconds, args.rounds)
            for r in res:
                rows.append({"hidden": hidden, "layers": args.layers, "iterations": iterations,
                             "params": params, "load_average": load, **r})
    print()
    print(f"batch {args.batch}, {args.threads} thread(s); {machine_description()}")
    print("| hidden | N | params | engine | p50 ms | p99 ms | speed-up (p50) | load avg (1 min) |")
    print("|---:|---:|---:|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['hidden']} | {r['iterations']} | {r['params'] / 1e6:.2f} M | {r['engine']} "
              f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['speedup_p50']:.1f}x "
              f"| {r['load_average'][0] if r['load_average'] else '?'} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine_description(), "results": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
