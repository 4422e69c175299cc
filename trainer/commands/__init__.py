"""Implementations of the ``trainer`` subcommands (one module each)."""

from __future__ import annotations


def read_clips(data: list[str], fps: float, split_file=None, datasets=None,
               progress: bool = False) -> list:
    """Motion clips for a command (``trainer.eval.load_motions``): skipped files are printed,
    and no usable clip at all is a :class:`tracker.cli.UserError`."""
    from tracker.cli import UserError
    from trainer.eval import load_motions

    try:
        clips, problems = load_motions(data, fps, split_file, datasets, progress=progress)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    if not clips and len(problems) == 1:  # one file given, and it is not a motion: say why
        raise UserError(problems[0])
    for msg in problems:
        print(f"skipped: {msg}")
    if not clips:
        raise UserError(f"no usable motion clips in {' '.join(data)}")
    return clips
