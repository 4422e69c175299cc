"""``trainer fit-amass``: train the neural fitter on AMASS-layout motion.

Takes real AMASS folders (``--amass-root ~/AMASS``, select ``--datasets CMU KIT MPI_HDM05``
or ``--split FILE``) and the output of ``trainer import-bvh``. Multi-GPU / multi-node::

    torchrun --nproc_per_node 4 -m trainer.cli fit-amass --amass-root ... --out runs/x
"""

from __future__ import annotations

# The options are generated from ``TrainConfig`` and ``FitterConfig`` (trainer.options): a
# field and its documentation are the option and its help.
RENAME = {"data": "amass-root"}
PREFIXED = ("fitter.data_term", "losses")


def add_arguments(p):
    from trainer.options import add_dataclass_arguments
    from trainer.train import TrainConfig

    add_dataclass_arguments(p, TrainConfig, rename=RENAME, prefix_nested=PREFIXED)


def run(args) -> int:
    from pathlib import Path

    from tracker.body import BodyModelError
    from tracker.cli import UserError
    from tracker.fitter.checkpoint import CheckpointError
    from trainer.options import dataclass_from_args
    from trainer.train import TrainConfig, TrainingError, train

    missing = [p for p in args.data if not Path(p).expanduser().exists()]
    if missing:
        raise UserError(f"no such file or folder: {', '.join(missing)}")
    try:
        cfg = dataclass_from_args(TrainConfig, args)
    except ValueError as exc:  # a setting the config itself refuses (e.g. a joint name)
        raise UserError(str(exc)) from exc
    try:
        path = train(cfg)
    except (TrainingError, CheckpointError, BodyModelError) as exc:
        raise UserError(str(exc)) from exc
    print(f"checkpoint: {path}")
    return 0
