"""Build a compiled engine into the engine cache and exit: ``python -m engines.prebuild``.

What :class:`engines.background.BackgroundBuild` runs in a child process, so that the build
(minutes of tracing and C++ compilation, mostly holding the GIL) never competes with the
serving thread for the interpreter. It loads the same checkpoint and body model as the
parent, so the cache key is the same and the parent then only loads the artifacts.
Progress goes to stdout, one line per step; the exit status is 0 when every slot is built.
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engines.prebuild", description=__doc__)
    ap.add_argument("--engine", required=True, help="a compiled backend name (inductor, ...)")
    ap.add_argument("--checkpoint", default=None, help="fitter checkpoint (default: bundled)")
    ap.add_argument("--body-model", default=None, help="body model (default: bundled)")
    ap.add_argument("--buckets", type=int, nargs="*", default=None,
                    help="batch sizes to build for (default: every bucket)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    ap.add_argument("--iterations", type=int, default=None, metavar="N",
                    help="build the fit at N iterations per frame (one of a server's light fits, "
                         "NeuralFitter.with_iterations; default: the checkpoint's)")
    args = ap.parse_args(argv)

    import torch

    from engines.base import CompiledEngine
    from engines.buckets import BUCKETS
    from engines.registry import make_engine
    from tracker.body import load_body_model
    from tracker.fitter.checkpoint import load_fitter

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    fitter = load_fitter(args.checkpoint, load_body_model(args.body_model))
    if args.iterations is not None:
        fitter = fitter.with_iterations(args.iterations)
    engine = make_engine(args.engine, fitter, prepare=False)
    if not isinstance(engine, CompiledEngine):
        print(f"prebuild: {engine.name} needs no build", flush=True)
        return 0
    slots = engine.missing(args.buckets or BUCKETS)
    what = f"{engine.name} at {fitter.cfg.iterations} iterations"
    print(f"prebuild: {what}: {len(slots)} artifact(s) to build", flush=True)
    for i, slot in enumerate(slots, 1):
        engine.runner(slot)
        print(f"prebuild: {what} {i}/{len(slots)} built (batch {slot}, "
              f"{time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
