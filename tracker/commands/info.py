"""``tracker info``: what the tracker would run with on this machine."""

from __future__ import annotations

import platform


def add_arguments(p):
    from tracker.options import add_body_model_argument

    add_body_model_argument(p)


def run(args) -> int:
    import numpy
    import torch

    from tracker import __version__
    from tracker.body import BodyModelError, read_model_file
    from tracker.cli import UserError

    try:
        data = read_model_file(args.body_model)
    except BodyModelError as exc:
        raise UserError(str(exc)) from exc
    print(f"tracker {__version__}  python {platform.python_version()}  torch {torch.__version__}"
          f"  numpy {numpy.__version__}")
    print(f"cpu: {platform.processor() or platform.machine()}  threads: {torch.get_num_threads()}"
          f"  cuda: {torch.cuda.is_available()}")
    v = data.v_template
    print(f"body model: {data.name}  fingerprint {data.fingerprint}")
    print(f"  {data.num_vertices} vertices, {len(data.faces)} faces, {data.num_betas} shape "
          f"components, rest height {v[:, 1].max() - v[:, 1].min():.3f} m")
    return 0
