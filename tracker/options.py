"""Command-line options that several commands share, declared once (argparse, no imports)."""


def add_body_model_argument(p, role: str = "") -> None:
    """``--body-model PATH``, the same for every command; ``role`` says what it is for."""
    p.add_argument("--body-model", default=None, metavar="PATH",
                   help=f"SMPL+H model file or folder{role} (default: the bundled open model)")
