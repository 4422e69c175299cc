"""``trainer data-info``: what a training set holds, and whether it loads.

    trainer data-info data/motion-open [--cache data/cache/motion-open] [--window 16]

Reads every AMASS-layout ``.npz`` below the given paths the way training does (bad files are
reported and counted), prints clips, frames and hours per source folder, the retarget errors
of ``trainer import-bvh`` (from ``summary.json``), and with ``--cache`` builds the window
dataset's per-clip cache so that training starts without re-running the kinematics.
"""

from __future__ import annotations

import json
from pathlib import Path


def add_arguments(p):
    from tracker.options import add_body_model_argument

    p.add_argument("paths", nargs="+", metavar="PATH", help="folders or .npz files")
    p.add_argument("--fps", type=float, default=60.0, help="resampling rate (default 60)")
    p.add_argument("--datasets", nargs="*", default=None, metavar="NAME",
                   help="keep files below folders of these names (e.g. CMU KIT MPI_HDM05)")
    p.add_argument("--split", default=None, metavar="FILE",
                   help="keep files listed in this split file")
    p.add_argument("--cache", type=Path, default=None, metavar="DIR",
                   help="build the window dataset cache here (and check a few windows)")
    p.add_argument("--window", type=int, default=16, help="window length for --cache")
    add_body_model_argument(p)


def run(args) -> int:
    import numpy as np

    from tracker.cli import UserError
    from trainer.commands.import_bvh import SUMMARY, print_summary, summarize
    from trainer.dataset import load_clips, split_clips

    try:
        clips, problems = load_clips(args.paths, args.fps, args.datasets, args.split)
    except (OSError, ValueError) as exc:
        raise UserError(str(exc)) from None
    for p in problems:
        print(f"problem: {p}")
    if not clips:
        raise UserError("no readable motion files found")
    groups: dict[str, list] = {}
    for c in clips:
        parts = c.name.split("/")
        groups.setdefault("/".join(parts[:2]) if len(parts) > 2 else parts[0], []).append(c)
    frames = sum(c.num_frames for c in clips)
    print(f"{len(clips)} clips, {frames} frames, {frames / args.fps / 3600:.3f} h at "
          f"{args.fps:g} fps; {len(problems)} problems")
    for g, cs in sorted(groups.items()):
        n = sum(c.num_frames for c in cs)
        hands = sum(c.has_hands for c in cs)
        print(f"  {g}: {len(cs)} clips, {n / args.fps / 60:.1f} min, {hands} with finger motion")
    train, val = split_clips(clips)
    print(f"split (val_fraction=0.1, seed=0): {len(train)} train / {len(val)} val clips")
    for p in map(Path, args.paths):
        s = p / SUMMARY
        if s.is_file():
            entries = json.loads(s.read_text()).get("clips", {})
            print(f"import summary {s}:")
            print_summary(summarize(entries))
    if args.cache is not None:
        from tracker.body import BodyModelError, load_body_model
        from trainer.dataset import WindowDataset

        try:
            body = load_body_model(args.body_model)
        except BodyModelError as exc:
            raise UserError(str(exc)) from None
        ds = WindowDataset(clips, body, window=args.window, cache_dir=args.cache)
        rng = np.random.default_rng(0)
        for i in rng.choice(len(ds), size=min(8, len(ds)), replace=False):
            item = ds[int(i)]
            bad = [k for k, v in item.items() if v.is_floating_point() and not v.isfinite().all()]
            if bad:
                raise UserError(f"window {i} has non-finite {bad}")
        print(f"window dataset: {len(ds)} windows of {args.window} frames; cache in {args.cache}")
    return 0
