"""``trainer fit-amass``: train the neural fitter on AMASS-layout motion.

Takes real AMASS folders (``--amass-root ~/AMASS``, select ``--datasets CMU KIT MPI_HDM05``
or ``--split FILE``) and the output of ``trainer import-bvh``. Multi-GPU / multi-node::

    torchrun --nproc_per_node 4 -m trainer.cli fit-amass --amass-root ... --out runs/x
"""

from __future__ import annotations


def add_arguments(p):
    g = p.add_argument_group("data")
    g.add_argument("--amass-root", nargs="+", required=True, metavar="DIR",
                   help="AMASS-layout folders or files (real AMASS, trainer import-bvh output)")
    g.add_argument("--datasets", nargs="+", default=None,
                   help="AMASS dataset folders to use, e.g. CMU KIT MPI_HDM05 (default: all)")
    g.add_argument("--split", default=None, metavar="FILE", help="a split file listing clips")
    g.add_argument("--val-fraction", type=float, default=0.1, help="clips held out for validation")
    g.add_argument("--fps", type=float, default=60.0, help="resample motions to this rate")
    g.add_argument("--body-model", default=None, help="SMPL+H model (default: the open model)")
    m = p.add_argument_group("model")
    m.add_argument("--hidden", type=int, default=1024, help="GRU width (paper: 1024)")
    m.add_argument("--layers", type=int, default=2, help="stacked GRU cells (paper: 2)")
    m.add_argument("--init-hidden", type=int, default=256, help="width of Φ and Φh")
    m.add_argument("--iterations", type=int, default=5, help="fitting iterations N per frame")
    m.add_argument("--update-rule", choices=("eq1", "lgd"), default="eq1",
                   help="eq1: λ·ΔΘ − γ·g (the paper); lgd: λ = 1, γ = 0 (baseline)")
    m.add_argument("--dropout", type=float, default=0.0, help="dropout on GRU hidden states")
    m.add_argument("--carry", type=float, default=0.9,
                   help="initial streaming carry gate a in (0, 1] (learned per parameter)")
    m.add_argument("--init", default=None, metavar="CKPT",
                   help="fine-tune: start from this checkpoint's architecture and weights")
    t = p.add_argument_group("training")
    t.add_argument("--out", required=True, metavar="RUN", help="run folder (checkpoints, logs)")
    t.add_argument("--window", type=int, default=8, help="frames per sequence (truncated BPTT)")
    t.add_argument("--burn-in", type=int, default=0, metavar="M",
                   help="frames streamed without gradient before each window")
    t.add_argument("--batch", type=int, default=32, help="sequences per step and process")
    t.add_argument("--per-frame-fraction", type=float, default=0.25,
                   help="fraction of steps that reset every frame (per-frame samples)")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    t.add_argument("--max-minutes", type=float, default=None, help="stop after this long")
    t.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (cosine decay)")
    t.add_argument("--warmup-steps", type=int, default=200)
    t.add_argument("--mesh-vertices", type=int, default=1024,
                   help="vertices in the mesh losses (0 = the whole mesh)")
    t.add_argument("--workers", type=int, default=0, help="data loader processes")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--no-amp", action="store_true", help="no bfloat16 autocast on CUDA")
    t.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    t.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints")
    t.add_argument("--resume", action="store_true", help="continue from RUN/last.pt")


def run(args) -> int:
    from pathlib import Path

    from tracker.body import BodyModelError
    from tracker.cli import UserError
    from tracker.fitter.checkpoint import CheckpointError
    from tracker.fitter.fitter import FitterConfig
    from trainer.train import TrainConfig, TrainingError, train

    missing = [p for p in args.amass_root if not Path(p).expanduser().exists()]
    if missing:
        raise UserError(f"no such file or folder: {', '.join(missing)}")
    cfg = TrainConfig(
        data=args.amass_root, out=args.out, datasets=args.datasets, split=args.split,
        body_model=args.body_model,
        fitter=FitterConfig(hidden=args.hidden, layers=args.layers, init_hidden=args.init_hidden,
                            iterations=args.iterations, update_rule=args.update_rule,
                            dropout=args.dropout, carry=args.carry),
        window=args.window, burn_in=args.burn_in, init=args.init, batch=args.batch,
        per_frame_fraction=args.per_frame_fraction,
        epochs=args.epochs, max_steps=args.max_steps, max_minutes=args.max_minutes, lr=args.lr,
        warmup_steps=args.warmup_steps, mesh_vertices=args.mesh_vertices or None,
        val_fraction=args.val_fraction, fps=args.fps, seed=args.seed, workers=args.workers,
        amp=not args.no_amp, resume=args.resume, checkpoint_every=args.checkpoint_every,
        device=args.device,
    )
    try:
        path = train(cfg)
    except (TrainingError, CheckpointError, BodyModelError) as exc:
        raise UserError(str(exc)) from exc
    print(f"checkpoint: {path}")
    return 0
