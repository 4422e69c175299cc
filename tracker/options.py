"""Command-line options that several commands share, declared once (argparse).

The CLI layer: commands import this; the packages they drive never do.
"""


def add_body_model_argument(p, role: str = "") -> None:
    """``--body-model PATH``, the same for every command; ``role`` says what it is for."""
    p.add_argument("--body-model", default=None, metavar="PATH",
                   help=f"SMPL+H model file or folder{role} (default: the bundled open model)")


def add_model_arguments(p, recorded: bool = False) -> None:
    """--checkpoint, --body-model, --engine, --visibility, --threads.

    ``recorded``: ``--engine`` and ``--visibility`` default to what a recording says (replay).
    """
    from tracker.server.build import default_threads

    p.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="fitter checkpoint (default: the bundled model)")
    add_body_model_argument(p)
    p.add_argument("--engine", default=None if recorded else "auto", metavar="NAME",
                   help="fit backend (engines/): auto = the best one that runs here, eager, "
                        "cpu, onnxruntime, inductor, tensorrt, tensorrt-fp16 (default: "
                        + ("as recorded" if recorded else "auto; compiled engines are built "
                           "on first use and cached") + ")")
    p.add_argument("--visibility", default=None if recorded else "device",
                   choices=("device", "half-space"),
                   help="which hands enter the fit: the device's tracked flag alone, or also "
                        "only hands in front of the headset (the paper's FOV model) (default: "
                        + ("as recorded" if recorded else "device") + ")")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help=f"torch threads for the fit (default: cores - 1 = {default_threads()})")


def add_light_iterations_argument(p, recorded: bool = False) -> None:
    """``--light-iterations N[,M...]|auto|0``: the fewer iterations a server runs for ticks
    the full fit would make late (``tracker.server.pacing``); ``recorded``: default as
    recorded."""
    p.add_argument("--light-iterations", default=None if recorded else "auto",
                   type=light_iterations_or_auto, metavar="N[,M...]|auto",
                   help="iterations per frame of the light fits, heaviest first: a tick runs "
                        "the next lighter one when the one it runs would publish it after "
                        "the next frame arrives (a busy machine, many sessions); 0: never "
                        "(default: " + (
                            "as recorded" if recorded else
                            "auto = the checkpoint's iterations - 2 and - 4, none below 2; a "
                            "compiled engine builds them in the background after the full "
                            "one") + ")")


def light_iterations_or_auto(text: str) -> tuple[int, ...] | str:
    """``auto``, or whole numbers separated by commas (argparse type)."""
    import argparse

    from tracker.server.pacing import parse_light_iterations

    if text == "auto":
        return text
    try:
        return parse_light_iterations(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'auto', 0, or whole numbers separated by commas (e.g. 4,2), got "
            f"{text!r}") from None
