"""``trainer make-motion``: procedural AMASS-layout motions for tests and demos."""

from __future__ import annotations


def add_arguments(p):
    from tracker.motion.procedural import ACTIONS

    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--count", type=int, default=1, help="number of motions (seeds seed..)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each motion")
    p.add_argument("--fps", type=float, default=60.0, help="frame rate")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--actions", nargs="+", choices=ACTIONS, default=None,
                   help="actions in order (default: a seeded random mix)")
    p.add_argument("--shape-std", type=float, default=0.0,
                   help="standard deviation of random betas (0 = mean body)")


def run(args) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from tracker.motion.procedural import generate_motion, write_amass_npz

    out = Path(args.out)
    for i in tqdm(range(args.count), desc="motions", unit="clip"):
        seed = args.seed + i
        m = generate_motion(args.actions, args.seconds, args.fps, seed, shape_std=args.shape_std)
        path = write_amass_npz(out / f"procedural_{seed:04d}.npz", m)
        tqdm.write(f"{path}: {len(m['poses'])} frames at {args.fps:g} Hz")
    return 0
