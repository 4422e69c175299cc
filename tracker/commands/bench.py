"""``tracker bench``: per-frame fit latency and throughput of each engine, eager in the same run.

Every engine fits the same multi-session streams (procedural motions through the device
noise model) frame by frame through the server's stream session (``tracker.stream.fit_tick``:
each session carries its state and restarts when its motion does); the figures are the engine
call's time, which ``fit_tick`` measures. Engines are measured *interleaved*, in rounds (eager,
A, B, eager, A, B, ...), so that a busy machine slows them alike; p50 / p99 are over every
timed call of every round.
"""

from __future__ import annotations

import os
import platform


def add_arguments(p):
    p.add_argument("--engine", nargs="+", default=None, metavar="NAME",
                   help="engines to time (default: every engine available here); eager is "
                        "always added")
    p.add_argument("--batch", nargs="+", type=int, default=[1, 16, 256], metavar="B",
                   help="batch sizes (sessions per call) (default: 1 16 256)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the results here")
    p.add_argument("--seconds", type=float, default=2.0,
                   help="timed seconds per engine, batch and round (default: 2)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default: 3)")
    p.add_argument("--checkpoint", default=None, help="fitter checkpoint (default: bundled)")
    p.add_argument("--hidden", type=int, default=None,
                   help="time an UNTRAINED fitter of this GRU width instead of the checkpoint")
    p.add_argument("--layers", type=int, default=2, help="GRU layers with --hidden (default 2)")
    p.add_argument("--iterations", type=int, default=None, help="override N iterations")
    p.add_argument("--threads", type=int, default=None,
                   help="torch / engine CPU threads (default: all cores but one, at most 8, "
                        "as serve uses)")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="engine cache (default: $FITSTREAM_CACHE or ~/.cache/fitstream/engines)")


def machine_description() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if "model name" in line)
    except (OSError, StopIteration):
        pass
    desc = (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()})")
    if torch.cuda.is_available():
        desc += f"; GPU {torch.cuda.get_device_name()}"
    return desc


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def build_fitter(args):
    import warnings

    import torch

    from tracker.cli import UserError
    from tracker.fitter.checkpoint import CheckpointError, load_fitter
    from tracker.fitter.fitter import FitterConfig, NeuralFitter

    if args.hidden is not None:
        from tracker.body import load_body_model

        cfg = FitterConfig(hidden=args.hidden, layers=args.layers,
                           iterations=args.iterations or FitterConfig.iterations)
        torch.manual_seed(0)
        return NeuralFitter(load_body_model(), cfg).eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitter = load_fitter(args.checkpoint)
    except CheckpointError as exc:
        raise UserError(str(exc)) from exc
    if args.iterations is not None:
        from dataclasses import replace

        fitter.cfg = replace(fitter.cfg, iterations=args.iterations)
    return fitter


def time_engines(engines: dict, streams, batches, seconds: float, rounds: int,
                 log=print) -> list[dict]:
    """Interleaved timing (see the module docstring); one result row per engine and batch."""
    import time

    import numpy as np

    from tracker.stream import NS_PER_S, StreamState, fit_tick

    rows = []
    for B in batches:
        samples: dict[str, list[float]] = {name: [] for name in engines}
        sessions = {name: [StreamState() for _ in range(B)] for name in engines}
        frame = dict.fromkeys(engines, 0)

        def step(name, engine, B=B, sessions=sessions, frame=frame):
            k = frame[name]
            t = k % streams.frames  # the motions loop: each session restarts with them
            sig, betas, T_hmd = streams.frame(t, rows=slice(0, B))
            _, _, fit_ns = fit_tick(engine, sessions[name], sig, betas, T_hmd,
                                    [round(k * NS_PER_S / streams.rate)] * B,
                                    reset=[t == 0] * B)
            frame[name] += 1
            return fit_ns / NS_PER_S

        for name, engine in engines.items():  # warm-up: builds, first-call allocations
            for _ in range(5):
                step(name, engine)
        for _ in range(rounds):
            for name, engine in engines.items():
                start = time.perf_counter()
                while time.perf_counter() - start < seconds or len(samples[name]) < 5:
                    samples[name].append(step(name, engine))
        for name in engines:
            t = np.array(samples[name]) * 1e3
            rows.append({"engine": name, "batch": B, "p50_ms": round(float(np.median(t)), 4),
                         "p99_ms": round(float(np.percentile(t, 99)), 4),
                         "fits_per_s": round(float(B * len(t) / (t.sum() / 1e3)), 1),
                         "calls": len(t)})
        eager = next(r for r in rows if r["engine"] == "eager" and r["batch"] == B)
        for r in rows:
            if r["batch"] == B:
                r["speedup_p50"] = round(eager["p50_ms"] / r["p50_ms"], 2)
                log(f"  batch {B:4d}  {r['engine']:14s} p50 {r['p50_ms']:9.3f} ms  "
                    f"p99 {r['p99_ms']:9.3f} ms  {r['fits_per_s']:10.1f} fits/s  "
                    f"x{r['speedup_p50']:.2f} vs eager (p50)")
    return rows


def run(args) -> int:
    import json
    import time

    from engines.buckets import MAX_BUCKET
    from engines.registry import available_engines, make_engine, resolve_engine_name
    from engines.streams import make_streams
    from tracker.cli import UserError
    from tracker.server.build import set_threads

    set_threads(args.threads)
    if any(b < 1 or b > MAX_BUCKET for b in args.batch):
        raise UserError(f"--batch values must be in 1..{MAX_BUCKET}")
    fitter = build_fitter(args)
    avail = available_engines()
    names = args.engine or [n for n, why in avail.items() if why is None]
    names = ["eager"] + [resolve_engine_name(n) for n in names if n != "eager"]
    names = list(dict.fromkeys(names))
    print(f"machine: {machine_description()}")
    print(f"fitter: hidden {fitter.cfg.hidden}, layers {fitter.cfg.layers}, "
          f"iterations {fitter.cfg.iterations}; load average {load_average()}")
    engines = {}
    for name in names:
        t0 = time.perf_counter()  # the build (or cache load) and the warm-up
        try:
            engine = make_engine(name, fitter, cache=args.cache)
        except Exception as exc:
            raise UserError(str(exc)) from exc
        engine.warmup(sorted(set(args.batch)))
        if name != "eager":
            print(f"  {name}: ready in {time.perf_counter() - t0:.1f} s (build or cache load, "
                  "warm-up)")
        engines[name] = engine
    streams = make_streams(fitter.body, max(args.batch), frames=180, seed=0)
    load_before = load_average()
    rows = time_engines(engines, streams, sorted(set(args.batch)), args.seconds, args.rounds)
    load_after = load_average()
    print(f"load average before {load_before}, after {load_after}")
    if args.json:
        out = {"machine": machine_description(), "load_average": [load_before, load_after],
               "fitter": {"hidden": fitter.cfg.hidden, "layers": fitter.cfg.layers,
                          "iterations": fitter.cfg.iterations},
               "results": rows}
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
        print(f"wrote {args.json}")
    return 0
