"""The ``trainer`` command (offline jobs): ``trainer <subcommand> --help`` for each."""

from __future__ import annotations

import sys

from tracker.cli import run_cli

SUBCOMMANDS = {
    "import-bvh": ("trainer.commands.import_bvh",
                   "convert BVH mocap into AMASS-layout training motion (retargeting)"),
    "data-info": ("trainer.commands.data_info",
                  "report clips, hours and retarget errors of a training set; build its cache"),
    "fit-amass": ("trainer.commands.fit_amass", "train the neural fitter on AMASS-layout motion"),
    "make-motion": ("trainer.commands.make_motion",
                    "write procedural AMASS-layout motions (no mocap data needed)"),
    "eval": ("trainer.commands.eval", "score the fitter and its baselines (paper + AGRoL metrics)"),
    "fit-gmm": ("trainer.commands.fit_gmm", "fit the GMM pose prior of the L-BFGS baseline"),
}


def main(argv: list[str] | None = None) -> int:
    return run_cli("trainer", SUBCOMMANDS, argv,
                   "Offline jobs: motion data, training and evaluation of the fitter.")


if __name__ == "__main__":  # python -m trainer.cli: run the importable module, so that the
    # commands' ``UserError`` (imported from tracker.cli) is the class caught above
    from trainer.cli import main as _main

    sys.exit(_main())
