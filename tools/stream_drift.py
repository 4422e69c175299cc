#!/usr/bin/env python3
"""Does streaming drift? Joint error by time since the stream started, per-frame vs streaming.

    python tools/stream_drift.py --data $(python tools/heldout_clips.py data/motion-open \
        data/procedural) --max-frames 480 [--checkpoint CKPT] [--bucket 80]

For each visibility setting it fits every sequence three ways with the same code as
``trainer eval`` (``trainer.eval.per_frame`` and ``trainer.eval.stream`` through the eager
engine): ``per-frame`` (every frame from Φ, Φh), ``stream`` (the checkpoint's carry gate) and
``stream, a = 1`` (the gate forced open: each frame starts exactly from the previous fit, the
session-1 behaviour), and prints the mean joint error (mm, all 52 joints, unaligned) per time
bucket and the jitter of the 22 body joints (km/s³, as ``trainer eval``). Growing error along
a row is drift.
"""

from __future__ import annotations

import argparse
import copy

import torch

from engines.registry import make_engine
from tracker.body.skinning import MeshPoser
from tracker.fitter.checkpoint import load_fitter
from tracker.signals.headset import head_to_hmd
from trainer.eval import (
    EvalConfig,
    load_motions,
    per_frame,
    prepare_sequence,
    stream,
    theta_to_pose,
)
from trainer.metrics import jerk


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", required=True, help="AMASS-layout files or folders")
    ap.add_argument("--checkpoint", default=None, help="fitter (default: the bundled one)")
    ap.add_argument("--max-frames", type=int, default=480)
    ap.add_argument("--bucket", type=int, default=80, help="frames per column")
    ap.add_argument("--visibility", nargs="+", default=["full", "half-space"])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    fitter = load_fitter(args.checkpoint)
    opened = copy.deepcopy(fitter)
    with torch.no_grad():
        opened.carry_logit.fill_(30.0)  # sigmoid(30) = 1 in float32
    body, T_hmd = fitter.body, head_to_hmd()
    clips, problems = load_motions(args.data)
    for p in problems:
        print(f"skipped: {p}")
    cfg = EvalConfig(max_frames=args.max_frames, visibility=tuple(args.visibility))
    seqs = [prepare_sequence(fitter, c, cfg, T_hmd) for c in clips]
    seqs.sort(key=lambda s: -s.frames)
    T = seqs[0].frames
    edges = list(range(0, T, args.bucket))
    print(f"{len(seqs)} sequences, up to {T} frames at {seqs[0].fps:g} fps; joint error (mm) by "
          f"frames since the stream started; jitter km/s³")
    for vis in cfg.visibility:
        runs = {
            "per-frame": [per_frame(fitter, s.signals[vis], s.betas[None], T_hmd, 256,
                                    fps=s.fps)[0] for s in seqs],
            "stream": stream(make_engine("eager", fitter), seqs, vis, T_hmd),
            "stream, a = 1": stream(make_engine("eager", opened), seqs, vis, T_hmd),
        }
        head = " ".join(f"{e:>4d}-{min(e + args.bucket, T) - 1:<4d}" for e in edges)
        print(f"\n== {vis}\n{'method':15s} {head}  {'all':>6s} {'jitter':>7s}")
        for name, thetas in runs.items():
            sums, counts = torch.zeros(len(edges)), torch.zeros(len(edges))
            jit, n_jit = 0.0, 0
            for s, th in zip(seqs, thetas, strict=True):
                poser = MeshPoser(body, s.betas)
                gt = poser(s.gt_rot, s.gt_transl, vertices=False).joints
                pred = poser(*theta_to_pose(th), vertices=False).joints
                err = (pred - gt).norm(dim=-1).mean(-1) * 1000  # (T_i,) mm
                for b, e in enumerate(edges):
                    seg = err[e: e + args.bucket]
                    sums[b] += seg.sum()
                    counts[b] += seg.numel()
                j = jerk(pred[:, :22], s.fps)  # (T_i - 3, 22) m/s³
                jit, n_jit = jit + float(j.sum()), n_jit + j.numel()
            cells = " ".join(f"{v:9.1f}" for v in (sums / counts.clamp_min(1)).tolist())
            total = float(sums.sum() / counts.sum())
            print(f"{name:15s} {cells}  {total:6.1f} {jit / max(n_jit, 1) / 1000:7.2f}")


if __name__ == "__main__":
    main()
