"""``trainer eval``: the fitter and its baselines on AMASS-layout motions, paper and AGRoL metrics.

Writes ``{"methods": {method: {visibility: {metric: value}}}, "frames": n, "sequences": n}``
(``--json``), prints a table and, with ``--plot``, draws the per-iteration errors of the
per-frame fitter (the paper's Fig. 4) as a PNG. Metric definitions: ``trainer/metrics.py``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

TABLE = (("v2v_fb_mm", "V2V"), ("v2v_head_mm", "Head"), ("v2v_lhand_mm", "LHand"),
         ("v2v_rhand_mm", "RHand"), ("jnt_err_mm", "JntErr"), ("grpe_mm", "GrPe"),
         ("mpjpe_cm", "MPJPE"), ("mpjre_deg", "MPJRE"), ("mpjve_cms", "MPJVE"),
         ("jitter", "Jitter"), ("hand_pe_cm", "HandPE"), ("upper_pe_cm", "UpperPE"),
         ("lower_pe_cm", "LowerPE"))


def add_arguments(p):
    from tracker.options import add_body_model_argument
    from trainer.eval import METHODS, VISIBILITY

    p.add_argument("--data", nargs="+", required=True, metavar="PATH",
                   help="AMASS-layout .npz files or folders (real AMASS files included)")
    p.add_argument("--json", required=True, metavar="OUT", help="write the metrics here")
    p.add_argument("--checkpoint", default=None, metavar="CKPT",
                   help="fitter checkpoint (default: the bundled one)")
    add_body_model_argument(p, ', the one the checkpoint was trained for')
    p.add_argument("--visibility", nargs="+", choices=list(VISIBILITY),
                   default=list(VISIBILITY), help="full (= signals mode 'device') and/or "
                   "half-space (the paper's field of view)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                   help="methods to compare (default: " + " ".join(METHODS)
                        + "; lbfgs only with a pose prior)")
    p.add_argument("--noise", choices=["clean", "consumer", "degraded"], default="consumer",
                   help="device noise model applied to the signals (seeded per clip)")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--fps", type=float, default=60.0,
                   help="frame rate the motions are resampled to")
    p.add_argument("--split-file", default=None, metavar="TXT",
                   help="only the files listed here (e.g. a protocol-1 test list)")
    p.add_argument("--datasets", nargs="+", default=None, metavar="NAME",
                   help="only files under folders with these names (e.g. CMU BMLrub MPI_HDM05)")
    p.add_argument("--max-frames", type=int, default=None, help="cut every sequence to N frames")
    p.add_argument("--batch", type=int, default=16, help="sequences streamed together")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's; 1 is best on a busy machine)")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="draw the per-iteration errors of the fitter (paper Fig. 4)")
    g = p.add_argument_group("baselines")
    g.add_argument("--lgd-checkpoint", default=None, metavar="CKPT",
                   help="fitter trained with update_rule='lgd' (default: "
                        "tracker/fitter/models/lgd.pt if it exists, else lgd is skipped)")
    g.add_argument("--prior", default=None, metavar="GMM",
                   help="GMM pose prior for lbfgs (from 'trainer fit-gmm')")
    g.add_argument("--prior-data", nargs="+", default=None, metavar="PATH",
                   help="training motions to fit the GMM prior on (cached); without --prior "
                        "or --prior-data lbfgs is skipped")
    g.add_argument("--gmm-components", type=int, default=8, help="GMM components for --prior-data")
    g.add_argument("--lbfgs-iterations", type=int, default=120, help="L-BFGS iterations")
    g.add_argument("--lbfgs-stride", type=int, default=1,
                   help="fit every S-th frame with L-BFGS (velocity/jitter at fps/S)")
    g.add_argument("--lbfgs-prior-weight", type=float, default=None, help="w_θ of the GMM term")
    g.add_argument("--lbfgs-gravity-weight", type=float, default=None, help="w_g of L_G")


def _check_paths(paths, what: str):
    from tracker.cli import UserError

    missing = [p for p in paths if not Path(p).expanduser().exists()]
    if missing:
        raise UserError(f"{what}: not found: {', '.join(map(str, missing))}")


def _load_fitters(args, methods: list[str]):
    import warnings

    from tracker.body import BodyModelError, load_body_model
    from tracker.cli import UserError
    from tracker.fitter.checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_fitter

    try:
        body = load_body_model(args.body_model)
    except BodyModelError as exc:
        raise UserError(str(exc)) from exc
    default_lgd = DEFAULT_CHECKPOINT.parent / "lgd.pt"
    try:
        untrained = args.checkpoint is None and not DEFAULT_CHECKPOINT.is_file()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # said once, below
            fitter = load_fitter(args.checkpoint, body)
        if untrained:
            print("note: no bundled fitter checkpoint: evaluating UNTRAINED weights")
        lgd = None
        if "lgd" in methods:
            path = args.lgd_checkpoint or (default_lgd if default_lgd.is_file() else None)
            if path is None:
                print("note: lgd skipped: no --lgd-checkpoint and no bundled "
                      "tracker/fitter/models/lgd.pt")
                methods.remove("lgd")
            else:
                lgd = load_fitter(path, body)
                if lgd.cfg.update_rule != "lgd":
                    raise UserError(f"{path}: trained with update_rule={lgd.cfg.update_rule!r}, "
                                    "not 'lgd'")
    except CheckpointError as exc:
        raise UserError(str(exc)) from exc
    return fitter, lgd


def _load_prior(args, methods: list[str]):
    from tracker.cli import UserError
    from trainer.baselines.gmm import GaussianMixture, MaxMixturePrior
    from trainer.eval import prior_from_data

    if "lbfgs" not in methods:
        return None
    if args.prior:
        _check_paths([args.prior], "--prior")
        try:
            gmm = GaussianMixture.load(args.prior)
        except ValueError as exc:
            raise UserError(str(exc)) from exc
    elif args.prior_data:
        _check_paths(args.prior_data, "--prior-data")
        try:
            gmm, path, cached = prior_from_data(args.prior_data, args.gmm_components, args.fps)
        except ValueError as exc:
            raise UserError(f"--prior-data: {exc}") from exc
        print(f"GMM prior ({gmm.components} components, {gmm.num_samples} poses): "
              f"{'cached' if cached else 'fitted, saved to'} {path}")
    else:
        print("note: lbfgs skipped: give a pose prior (--prior GMM.npz from 'trainer fit-gmm', "
              "or --prior-data PATH...)")
        methods.remove("lbfgs")
        return None
    return MaxMixturePrior(gmm).float()


def run(args) -> int:
    from dataclasses import replace

    from tracker.cli import UserError
    from trainer.baselines.lbfgs import LBFGSConfig
    from trainer.commands import read_clips
    from trainer.eval import EvalConfig, evaluate, seconds_per_1000_frames

    _check_paths(args.data, "--data")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.split_file:
        _check_paths([args.split_file], "--split-file")
    for name in ("lbfgs_stride", "lbfgs_iterations", "batch"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1")
    methods = list(dict.fromkeys(args.methods))
    fitter, lgd = _load_fitters(args, methods)
    prior = _load_prior(args, methods)
    clips = read_clips(args.data, args.fps, args.split_file, args.datasets, progress=True)

    lb = LBFGSConfig(iterations=args.lbfgs_iterations)
    if args.lbfgs_prior_weight is not None:
        lb = replace(lb, prior_weight=args.lbfgs_prior_weight)
    if args.lbfgs_gravity_weight is not None:
        lb = replace(lb, gravity_weight=args.lbfgs_gravity_weight)
    cfg = EvalConfig(methods=tuple(methods), visibility=tuple(dict.fromkeys(args.visibility)),
                     noise=args.noise, seed=args.seed, batch=args.batch,
                     max_frames=args.max_frames, lbfgs=lb, lbfgs_stride=args.lbfgs_stride,
                     iterates=args.plot is not None)
    report = evaluate(clips, fitter, cfg, lgd_fitter=lgd, prior=prior)

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_finite(report.to_json()), indent=2, allow_nan=False) + "\n")
    print(format_table(report.methods))
    speed = seconds_per_1000_frames(report)
    print("fit time, s per 1000 frames: " + ", ".join(f"{m} {s:.2f}" for m, s in speed.items()))
    print(f"{report.sequences} sequences, {report.frames} frames -> {out}")
    if args.plot:
        path = plot_iterations(report.iterations, args.plot)
        print(f"per-iteration errors -> {path}")
    return 0


def _finite(x):
    """Non-finite numbers -> ``None`` (strict JSON has no NaN)."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    return None if isinstance(x, float) and not math.isfinite(x) else x


def format_table(methods: dict) -> str:
    """Methods × visibility rows, the metrics of ``TABLE`` as columns (units in the header)."""
    from trainer.metrics import METRIC_UNITS

    assert set(k for k, _ in TABLE) == set(METRIC_UNITS)
    units = {"mm": "mm", "cm": "cm", "deg": "deg", "cms": "cm/s"}
    head = ["method", "visibility"] + [h for _, h in TABLE]
    sub = ["", ""] + [units.get(k.rsplit("_", 1)[-1], "km/s3") for k, _ in TABLE]
    rows = [head, sub]
    for m, per_vis in methods.items():
        for v, vals in per_vis.items():
            rows.append([m, v] + ["-" if vals.get(k) is None else f"{vals[k]:.1f}"
                                  for k, _ in TABLE])
    w = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w[i]) if i < 2 else c.rjust(w[i]) for i, c in enumerate(r))
             for r in rows]
    lines.insert(2, "-" * len(lines[0]))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- plot (PIL)
PANELS = (
    ("Full body errors per iteration",
     (("v2v_fb_mm", "Vertex-to-vertex error"), ("jnt_err_mm", "Mean joint error"))),
    ("Part vertex-to-vertex errors per iteration",
     (("v2v_head_mm", "Head"), ("v2v_lhand_mm", "Left hand"), ("v2v_rhand_mm", "Right hand"))),
    ("Ground penetration distance per iteration",
     (("grpe_mm", "Vertices"), ("grpe_joints_mm", "Joints"))),
)
COLORS = ((31, 119, 180), (255, 127, 14), (44, 160, 44))


def plot_iterations(iterations: dict, path: str | Path) -> Path:
    """Draw ``{visibility: [{metric: value} per iteration]}`` as rows of three panels."""
    from PIL import Image, ImageDraw, ImageFont

    pw, ph, rows = 420, 300, max(len(iterations), 1)
    img = Image.new("RGB", (pw * 3, ph * rows), "white")
    d = ImageDraw.Draw(img)
    font, small = ImageFont.load_default(size=13), ImageFont.load_default(size=11)
    for r, (vis, its) in enumerate(iterations.items()):
        for c, (title, series) in enumerate(PANELS):
            _panel(d, (c * pw, r * ph, pw, ph), f"{title} ({vis})", its, series, font, small)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def y_ticks(values: list[float], count: int = 4) -> list[float]:
    """The y axis of an error panel: ``count + 1`` round ticks from 0 (errors and distances
    are never negative) to at least the largest value."""
    top = max([v for v in values if v > 0], default=1.0)
    raw = top / count
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 3, 4, 5, 6, 8, 10) if m * mag >= raw * (1 - 1e-9))
    return [step * k for k in range(count + 1)]


def _panel(d, box, title, its, series, font, small):
    x0, y0, w, h = box
    L, R, T, B = x0 + 55, x0 + w - 15, y0 + 30, y0 + h - 45
    d.text((x0 + w / 2, y0 + 8), title, fill="black", font=font, anchor="mt")
    vals = [v for k, _ in series for it in its if (v := it.get(k)) is not None
            and math.isfinite(v)]
    ticks = y_ticks(vals)
    lo, hi = ticks[0], ticks[-1]
    n = max(len(its) - 1, 1)
    sx = lambda i: L + (R - L) * i / n  # noqa: E731
    sy = lambda v: B - (B - T) * (v - lo) / (hi - lo)  # noqa: E731
    d.rectangle((L, T, R, B), outline="black")
    for v in ticks:  # y ticks
        d.line((L - 4, sy(v), L, sy(v)), fill="black")
        d.text((L - 6, sy(v)), f"{v:g}", fill="black", font=small, anchor="rm")
    for i in range(len(its)):  # x ticks
        d.line((sx(i), B, sx(i), B + 4), fill="black")
        d.text((sx(i), B + 6), str(i), fill="black", font=small, anchor="mt")
    d.text(((L + R) / 2, B + 22), "Number of iterations", fill="black", font=small, anchor="mt")
    d.text((x0 + 4, T - 14), "mm", fill="black", font=small)
    for j, (key, _) in enumerate(series):
        pts = [(sx(i), sy(it[key])) for i, it in enumerate(its) if it.get(key) is not None]
        col = COLORS[j % len(COLORS)]
        if len(pts) > 1:
            d.line(pts, fill=col, width=2)
        for px, py in pts:
            d.ellipse((px - 3, py - 3, px + 3, py + 3), fill=col)
    d.rectangle((R - 156, T + 1, R - 1, T + 15 * len(series) + 3), fill="white", outline="gray")
    for j, (_, label) in enumerate(series):  # legend on top of the data
        ly, col = T + 9 + 15 * j, COLORS[j % len(COLORS)]
        d.line((R - 150, ly, R - 130, ly), fill=col, width=2)
        d.text((R - 126, ly), label, fill="black", font=small, anchor="lm")
