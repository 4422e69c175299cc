#!/usr/bin/env python3
"""Widen the initialisers Φ, Φh of a checkpoint without changing what they compute.

    python tools/widen_initialisers.py tracker/fitter/models/default.pt runs/wide.pt --width 512

Net2WiderNet (Chen, Goodfellow and Shlens, "Net2Net: Accelerating Learning via Knowledge
Transfer", ICLR 2016, Sec. 2.2): each new hidden unit copies an existing one (its Linear row
and bias, its BatchNorm scale, shift and running statistics), and the next layer's weights
from a unit and its copies are divided by their number, so the widened MLP gives the same
output in eval mode and, a copy's batch statistics being its source's, in training mode too.
A little noise on the copies' incoming weights (``--noise``, relative to the layer's weight
scale) lets them drift apart once trained. Everything else is copied as is; the config's
``init_hidden`` becomes ``--width``. Then fine-tune with ``trainer fit-amass --init OUT``.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch
from torch import nn

from tracker.fitter.checkpoint import CheckpointError, load_fitter, read_checkpoint, save_checkpoint
from tracker.fitter.fitter import NeuralFitter


def widen_mlp(old: nn.Sequential, new: nn.Sequential, gen: torch.Generator,
              noise: float) -> None:
    """Copy ``old`` (``(Linear, BatchNorm1d, ReLU) × L, Linear``) into the wider ``new``."""
    linears = [m for m in old if isinstance(m, nn.Linear)]
    norms = [m for m in old if isinstance(m, nn.BatchNorm1d)]
    new_linears = [m for m in new if isinstance(m, nn.Linear)]
    new_norms = [m for m in new if isinstance(m, nn.BatchNorm1d)]
    src_in = torch.arange(linears[0].in_features)  # the input is not widened
    for i, (lin, nlin) in enumerate(zip(linears, new_linears, strict=True)):
        w = lin.weight[:, src_in]
        # Each input unit's share: the number of copies of its source unit.
        counts = torch.bincount(src_in, minlength=lin.in_features).to(w.dtype)
        w = w / counts[src_in][None, :]
        last = i == len(linears) - 1
        width = nlin.out_features
        extra = width - lin.out_features
        src_out = (torch.arange(lin.out_features) if last else
                   torch.cat([torch.arange(lin.out_features),
                              torch.randint(lin.out_features, (extra,), generator=gen)]))
        w_new = w[src_out].clone()
        if not last and extra:
            scale = w.std()
            w_new[lin.out_features:] += noise * scale * torch.randn(
                extra, w.shape[1], generator=gen, dtype=w.dtype)
        with torch.no_grad():
            nlin.weight.copy_(w_new)
            nlin.bias.copy_(lin.bias[src_out])
            if not last:
                bn, nbn = norms[i], new_norms[i]
                for name in ("weight", "bias", "running_mean", "running_var"):
                    getattr(nbn, name).copy_(getattr(bn, name)[src_out])
                nbn.num_batches_tracked.copy_(bn.num_batches_tracked)
        src_in = src_out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--width", type=int, required=True, help="new hidden width of Φ and Φh")
    ap.add_argument("--noise", type=float, default=0.002,
                    help="noise on the copied units' incoming weights, relative (default 0.002)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    try:
        old = load_fitter(args.src)
    except CheckpointError as exc:
        raise SystemExit(f"error: {exc}") from None
    if args.width <= old.cfg.init_hidden:
        raise SystemExit(f"error: --width {args.width} is not wider than "
                         f"{old.cfg.init_hidden}")
    new = NeuralFitter(old.body, replace(old.cfg, init_hidden=args.width))
    state = {k: v for k, v in old.state_dict().items()
             if not k.startswith(("phi.", "phi_h."))}
    new.load_state_dict(state, strict=False)
    gen = torch.Generator().manual_seed(args.seed)
    widen_mlp(old.phi, new.phi, gen, args.noise)
    widen_mlp(old.phi_h, new.phi_h, gen, args.noise)
    new.eval()
    # The widened Φ should compute what the old one did (up to the copies' noise).
    x = torch.randn(64, old.phi[0].in_features, generator=gen)
    with torch.no_grad():
        err = (new.phi(x) - old.phi(x)).abs().max().item()
        err_h = (new.phi_h(x) - old.phi_h(x)).abs().max().item()
    meta = dict(read_checkpoint(args.src).get("meta", {}))
    meta["widened"] = {"from": args.src, "width": args.width, "noise": args.noise,
                       "max_change_phi": err, "max_change_phi_h": err_h}
    save_checkpoint(args.dst, new, meta=meta)
    print(f"{args.dst}: Φ, Φh {old.cfg.init_hidden} -> {args.width} wide; "
          f"largest output change on random inputs {err:.2e} (Φ), {err_h:.2e} (Φh)")


if __name__ == "__main__":
    main()
