"""``trainer fit-gmm``: the GMM pose prior of the L-BFGS baseline (``trainer eval --prior``)."""

from __future__ import annotations


def add_arguments(p):
    p.add_argument("--data", nargs="+", required=True, metavar="PATH",
                   help="training motions: AMASS-layout .npz files or folders")
    p.add_argument("--out", required=True, metavar="GMM", help="output .npz")
    p.add_argument("--components", type=int, default=8, help="mixture components (paper: 8)")
    p.add_argument("--fps", type=float, default=60.0,
                   help="frame rate the motions are resampled to")
    p.add_argument("--split-file", default=None, metavar="TXT",
                   help="only the files listed here (e.g. a protocol-1 train list)")
    p.add_argument("--max-samples", type=int, default=20_000,
                   help="pose samples used (a seeded subset of all frames)")
    p.add_argument("--seed", type=int, default=0, help="subset and initialisation seed")


def run(args) -> int:
    from pathlib import Path

    from tracker.cli import UserError
    from trainer.baselines.gmm import fit_gmm, pose_samples
    from trainer.commands import read_clips

    missing = [p for p in args.data if not Path(p).expanduser().exists()]
    if missing:
        raise UserError(f"--data: not found: {', '.join(missing)}")
    if args.components < 1:
        raise UserError("--components must be >= 1")
    clips = read_clips(args.data, args.fps, args.split_file)
    x = pose_samples([c.poses for c in clips], args.max_samples, args.seed)
    try:
        gmm = fit_gmm(x, args.components, seed=args.seed)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    path = gmm.save(args.out)
    print(f"GMM: {gmm.components} components on {len(x)} poses from {len(clips)} clips -> {path}")
    return 0
