"""List the held-out (validation-side) clips of a training run's data, one path per line.

    python tools/heldout_clips.py data/motion-open data/procedural [--val-fraction 0.1] [--seed 0]

``trainer fit-amass`` splits by clip name with ``trainer.dataset.split_clips`` (stable: a
clip's side depends only on its name and the seed); this prints the files of the held-out
side so that ``trainer eval --data $(python tools/heldout_clips.py ...)`` scores exactly them;
``--side train`` prints the training side (e.g. for ``trainer eval --prior-data``: the L-BFGS
baseline's pose prior then sees the training poses only, like the fitter).
"""

from __future__ import annotations

import argparse

from trainer.dataset import load_clips, split_clips


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="+")
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fps", type=float, default=60.0)
    ap.add_argument("--side", choices=("heldout", "train"), default="heldout")
    args = ap.parse_args()
    clips, _ = load_clips(args.data, fps=args.fps)
    train, val = split_clips(clips, args.val_fraction, args.seed)
    for c in val if args.side == "heldout" else train:
        print(c.source)


if __name__ == "__main__":
    main()
