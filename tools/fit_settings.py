#!/usr/bin/env python3
"""Set a checkpoint's settings of the fit: carry gates, joints left to Φ, N, data-term weights.

    python tools/fit_settings.py default.pt out.pt --gate translation=0 legs=0.25
    python tools/fit_settings.py default.pt out.pt --regressor-joints pelvis legs
    python tools/fit_settings.py default.pt out.pt --iterations 6 --data-term wrist=1.5
    python tools/fit_settings.py default.pt          # print the settings, write nothing

None of these changes a weight of the networks; each changes what the same networks do on
every frame, so each is for ``trainer eval`` to judge (on clips the model trained on, to keep
the held-out ones for the final figures).

Each streamed frame starts from ``Φ(D) + a ⊙ (Θ(t-1) - Φ(D))`` (``tracker.fitter.fitter``):
``a`` is the carry gate, one per Θ entry, stored as ``carry_logit``. A gate of 0 starts every
frame from Φ's guess; 1 from the previous frame. The regions below group Θ's 6D rotations by
joint (``tracker.body.joints``) and its translation; ``--gate REGION=A`` writes ``a = A`` for
every entry of the region (``A`` in [0, 1]; stored through ``tracker.fitter.fitter.carry_logit``,
which keeps it within [1e-4, 1 - 1e-6], so 0 means 1e-4: an error decays to nothing in a frame).

``--regressor-joints`` sets ``FitterConfig.regressor_joints`` (the joints whose rotations the
iterations leave to Φ and the gate) from joint or region names. ``--iterations N`` sets
``FitterConfig.iterations``, the number of update steps run on every frame (the networks are
the same at every step, so a model trained with 5 runs with more or fewer; each step costs
time in every engine). ``--data-term TERM=W`` sets a weight of the data term
(``tracker.fitter.data_term.DataTermConfig``: ``head``, ``wrist``, ``tips``, ``floor``,
``rot_scale``, ``robust_scale``); the iterations see the weighted residuals and gradients,
so a weight changes both how hard a term pulls and what the networks are shown. With the
bundled model's raised weights an odd N made streamed frames jitter and an even one did not
(session 10's model card): check jitter whenever N or a weight changes.

Everything else (weights, meta) is copied unchanged; the written checkpoint's meta records
what was set, under ``gates``. (This tool was ``tools/set_carry_gates.py`` until session 10.)
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields, replace

import torch

from tracker.body.joints import JOINT_NAMES, LEG_JOINT_NAMES
from tracker.fitter.checkpoint import CheckpointError, load_fitter, read_checkpoint, save_checkpoint
from tracker.fitter.data_term import DataTermConfig
from tracker.fitter.fitter import carry_logit

REGIONS: dict[str, tuple[str, ...]] = {
    "pelvis": ("pelvis",),
    "legs": LEG_JOINT_NAMES,
    "trunk": ("spine1", "spine2", "spine3", "neck", "left_collar", "right_collar", "head"),
    "arms": ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
             "right_wrist"),
    "hands": JOINT_NAMES[22:],
}
"""Joint regions of Θ's rotations; ``translation`` (Θ's last 3 entries) is a region too."""


def gate_indices(region: str) -> list[int]:
    """Θ entries ``(0..314)`` of ``region``: a name in :data:`REGIONS`, ``translation``, or
    one joint name."""
    if region == "translation":
        return [312, 313, 314]
    names = REGIONS.get(region, (region,) if region in JOINT_NAMES else None)
    if names is None:
        raise ValueError(f"unknown region {region!r} (one of {', '.join(REGIONS)}, "
                         "translation, or a joint name such as left_knee)")
    return [6 * JOINT_NAMES.index(n) + k for n in names for k in range(6)]


def _name_and_number(text: str, option: str, form: str) -> tuple[str, float]:
    """``NAME=X`` -> ``(NAME, float(X))``; a one-line ``ValueError`` naming ``option`` and the
    expected ``form`` when there is no ``=`` or ``X`` is not a number."""
    name, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return name, float(value)
    except ValueError:
        raise ValueError(f"{option} {text!r}: expected {form}") from None


def parse_gate(text: str) -> tuple[str, float]:
    """``REGION=A`` -> ``(REGION, A)`` with ``A`` in ``[0, 1]``."""
    region, a = _name_and_number(text, "--gate", "REGION=A with A a number in [0, 1]")
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"--gate {text!r}: the gate must lie in [0, 1]")
    gate_indices(region)  # validates the name
    return region, a


DATA_TERMS = tuple(f.name for f in fields(DataTermConfig))


def parse_weight(text: str) -> tuple[str, float]:
    """``TERM=W`` -> ``(TERM, W)``: a field of ``DataTermConfig`` and a finite ``W``, positive
    for the scales and at least 0 for the weights."""
    form = f"TERM=W with TERM one of {', '.join(DATA_TERMS)} and W a number"
    term, w = _name_and_number(text, "--data-term", form)
    if term not in DATA_TERMS:
        raise ValueError(f"--data-term {text!r}: expected {form}")
    low_ok = w > 0 if term.endswith("_scale") else w >= 0
    if not (low_ok and w < float("inf")):
        raise ValueError(f"--data-term {text!r}: W must be finite and "
                         f"{'above 0' if term.endswith('_scale') else 'at least 0'}")
    return term, w


def summary(fitter) -> str:
    """One line per region: its gates' range."""
    a = torch.sigmoid(fitter.carry_logit.detach())
    lines = []
    for region in (*REGIONS, "translation"):
        v = a[gate_indices(region)]
        lo, hi = v.min().item(), v.max().item()
        lines.append(f"  {region:<12} {lo:.3f}" + (f"..{hi:.3f}" if hi - lo > 5e-4 else ""))
    lines.append(f"  regressor joints: {', '.join(fitter.cfg.regressor_joints) or 'none'}")
    lines.append(f"  iterations: {fitter.cfg.iterations}")
    d = fitter.cfg.data_term
    lines.append("  data term: " + ", ".join(f"{k} {getattr(d, k):g}" for k in DATA_TERMS))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", help="checkpoint to read")
    ap.add_argument("dst", nargs="?", help="checkpoint to write (none: print the gates)")
    ap.add_argument("--gate", nargs="+", default=[], metavar="REGION=A",
                    help=f"regions: {', '.join(REGIONS)}, translation, or a joint name")
    ap.add_argument("--regressor-joints", nargs="+", metavar="NAME",
                    help="joints (or regions) the iterations leave to Φ")
    ap.add_argument("--iterations", type=int, metavar="N",
                    help="update steps per frame (FitterConfig.iterations, at least 1)")
    ap.add_argument("--data-term", nargs="+", default=[], metavar="TERM=W",
                    help=f"data-term weights: {', '.join(DATA_TERMS)}")
    args = ap.parse_args(argv)
    try:
        gates = [parse_gate(g) for g in args.gate]
        joints = None
        if args.regressor_joints is not None:
            joints = []
            for name in args.regressor_joints:
                for j in REGIONS.get(name, (name,)):
                    if j not in JOINT_NAMES:
                        raise ValueError(f"--regressor-joints: unknown joint or region {name!r}")
                    if j not in joints:
                        joints.append(j)
        if args.iterations is not None and args.iterations < 1:
            raise ValueError(f"--iterations must be at least 1, got {args.iterations}")
        weights = dict(parse_weight(w) for w in args.data_term)
        changes = gates or weights or joints is not None or args.iterations is not None
        if changes and not args.dst:
            raise ValueError("give an output checkpoint to write the changes to")
        fitter = load_fitter(args.src)
        meta = dict(read_checkpoint(args.src).get("meta", {}))
    except (ValueError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.src}:\n{summary(fitter)}")
    if not args.dst:
        return 0
    with torch.no_grad():
        for region, a in gates:
            fitter.carry_logit[gate_indices(region)] = carry_logit(a)
    cfg = fitter.cfg
    if joints is not None:
        cfg = replace(cfg, regressor_joints=tuple(joints))
    if args.iterations is not None:
        cfg = replace(cfg, iterations=args.iterations)
    if weights:
        cfg = replace(cfg, data_term=replace(cfg.data_term, **weights))
    if cfg is not fitter.cfg:
        state = fitter.state_dict()
        fitter = type(fitter)(fitter.body, cfg)
        fitter.load_state_dict(state)
    meta["gates"] = {"set": dict(gates), "regressor_joints": list(fitter.cfg.regressor_joints),
                     "iterations": fitter.cfg.iterations, "data_term": weights,
                     "from": str(args.src)}
    save_checkpoint(args.dst, fitter, meta=meta)
    print(f"{args.dst}:\n{summary(load_fitter(args.dst))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
