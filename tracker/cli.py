"""The ``tracker`` command line and the small framework ``trainer`` shares.

Subcommands register in ``SUBCOMMANDS`` as ``name: (module, help)``; every module has
``add_arguments(parser)`` and ``run(args) -> int``. ``tracker <subcommand> --help`` for each.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from tracker.errors import UserError

SUBCOMMANDS = {
    "bench": ("tracker.commands.bench", "time the fit engines (eager, CPU, TensorRT) per batch"),
    "demo": ("tracker.commands.demo", "run the pipeline on a generated motion (no headset)"),
    "info": ("tracker.commands.info", "show the body model, package versions and devices"),
    "calibrate": ("tracker.commands.calibrate", "measure a user: shape, T_HMD, floor"),
    "openxr": ("tracker.commands.openxr", "publish a live OpenXR headset's frames"),
    "serve": ("tracker.commands.serve", "fit headset streams live (ZeroMQ in, poses out)"),
    "simulate": ("tracker.commands.simulate", "synthetic headsets publishing protocol frames"),
    "replay": ("tracker.commands.replay", "re-run a recording through the tracker"),
    "recover": ("tracker.commands.recover", "rewrite a cut-off recording into a finalised one"),
    "view": ("tracker.commands.view", "live 3D view of the published poses (Open3D)"),
    "vmc": ("tracker.commands.vmc", "send poses to VMC protocol receivers (OSC: VSeeFace, "
                                    "Warudo, EVMC4U)"),
}


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default where it has one (not ``None``/``False``)
    and the text does not already give it."""

    def _get_help_string(self, action):
        text = action.help or ""
        d = action.default
        if (action.option_strings and d is not None and d is not False
                and d is not argparse.SUPPRESS and "default" not in text.lower()):
            shown = " ".join(map(str, d)) if isinstance(d, list | tuple) else str(d)
            text = f"{text} (default: {shown.replace('%', '%%')})".strip()
        return text


def build_parser(prog: str, subcommands: dict, argv: list[str],
                 description: str | None = None) -> argparse.ArgumentParser:
    """All subcommands are listed; only the one being run is imported (fast ``--help``)."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in subcommands.items():
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=HelpFormatter)
        if name == chosen:
            mod = importlib.import_module(module)
            mod.add_arguments(p)
            p.set_defaults(run_command=mod.run)
    return parser


def run_cli(prog: str, subcommands: dict, argv: list[str] | None = None,
            description: str | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(prog, subcommands, argv, description).parse_args(argv)
    try:
        return int(args.run_command(args) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except UserError as exc:
        print(f"{prog} {args.command}: error: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    return run_cli("tracker", SUBCOMMANDS, argv,
                   "Real-time SMPL+H body tracking from headset signals (see README.md).")


if __name__ == "__main__":  # python -m tracker.cli: run the importable module, so that the
    # commands' ``UserError`` (imported from tracker.cli) is the class caught above
    from tracker.cli import main as _main

    sys.exit(_main())
