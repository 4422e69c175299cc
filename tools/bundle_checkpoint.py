#!/usr/bin/env python3
"""Copy a training checkpoint into a bundled one: weights and config only, small meta.

    python tools/bundle_checkpoint.py runs/stream/final.pt tracker/fitter/models/default.pt
    python tools/bundle_checkpoint.py runs/phi/final.pt new.pt --base default.pt --take phi.

With ``--base``, only the weights (parameters and buffers, such as BatchNorm statistics) whose
names start with a ``--take`` prefix come from the source; everything else, and the config,
is the base checkpoint's (a regressor-stage run that should change Φ and nothing else: its
other modules may have moved their BatchNorm statistics in training mode).

Drops the optimiser and scheduler state (two thirds of a run checkpoint), keeps the body
fingerprint, step count, training time, and the training settings that matter for the model
card; ``history`` records the checkpoint it was fine-tuned from (``--init``), if any.
"""

from __future__ import annotations

import argparse

import torch

from tracker.fitter.checkpoint import load_fitter, read_checkpoint, save_checkpoint

KEEP = ("stage", "window", "burn_in", "batch", "per_frame_fraction", "lr", "mesh_vertices", "fps",
        "seed", "augment", "variants", "hands_lost", "losses",
        "data", "init", "max_steps")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--base", help="take every weight not under --take from this checkpoint")
    ap.add_argument("--take", action="append", default=[], metavar="PREFIX",
                    help="weight-name prefix taken from SRC with --base (repeatable)")
    args = ap.parse_args()
    if bool(args.base) != bool(args.take):
        ap.error("--base and --take go together")
    blob = read_checkpoint(args.src)
    meta = blob.get("meta", {})
    cfg = meta.get("config", {})
    history = []
    if cfg.get("init"):
        parent = read_checkpoint(cfg["init"]).get("meta", {})
        pcfg = parent.get("config", {})  # a run checkpoint; a bundled one has train_config
        history = [*parent.get("history", []),
                   {"step": parent.get("step"), "seconds": parent.get("seconds"),
                    "train_config": parent.get("train_config")
                    or {k: pcfg[k] for k in KEEP if k in pcfg}}]
    small = {
        "step": meta.get("step"), "epoch": meta.get("epoch"), "seconds": meta.get("seconds"),
        "clips_train": meta.get("clips_train"), "clips_val": meta.get("clips_val"),
        "windows": meta.get("windows"), "device": meta.get("device"),
        "train_config": {k: cfg[k] for k in KEEP if k in cfg},
        "history": history,
    }
    fitter = load_fitter(args.src)
    if args.base:
        base = load_fitter(args.base)
        src = fitter.state_dict()
        merged = {k: (src[k] if k.startswith(tuple(args.take)) else v)
                  for k, v in base.state_dict().items()}
        taken = sum(k.startswith(tuple(args.take)) for k in merged)
        if not taken:
            raise SystemExit(f"error: no weight of {args.src} starts with {args.take}")
        base.load_state_dict(merged)
        fitter = base
        small["base"] = {"path": str(args.base), "took": args.take, "weights": taken}
    save_checkpoint(args.dst, fitter, meta=small)
    back = load_fitter(args.dst)
    assert all(torch.equal(a, b) for a, b in zip(fitter.state_dict().values(),
                                                 back.state_dict().values(), strict=True))
    print(f"{args.dst}: step {small['step']}, {small['seconds'] or 0:.0f} s of training")


if __name__ == "__main__":
    main()
