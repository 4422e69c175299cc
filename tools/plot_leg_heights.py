"""Knee and ankle heights over a clip: ground truth against streaming fits (a PNG).

    python tools/plot_leg_heights.py data/motion-open/cmu-daz/09_03.npz --out legs.png \\
        [--checkpoint NEW.pt] [--compare OLD.pt] [--seconds 6] [--noise clean]

The clip is fitted the way ``trainer eval`` streams it (``trainer.eval.stream``: the live
session path, full visibility, the given device noise). One panel per joint (left and right
knee and ankle), height above the floor in cm over time: black the ground truth, blue the
fit of ``--checkpoint`` (default: the bundled model), orange ``--compare`` if given.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

JOINTS = ((4, "left knee"), (5, "right knee"), (7, "left ankle"), (8, "right ankle"))
GT, NEW, OLD = (0, 0, 0), (31, 119, 180), (255, 127, 14)


def leg_heights(checkpoint, clip, seconds: float, noise: str) -> tuple[torch.Tensor, ...]:
    """``(gt (T, 4), fitted (T, 4))`` heights (m) of the ``JOINTS`` over the clip's start."""
    from engines import make_engine
    from tracker.body.skinning import MeshPoser
    from tracker.fitter.checkpoint import load_fitter
    from tracker.signals.headset import head_to_hmd
    from trainer.eval import EvalConfig, prepare_sequence, stream, theta_to_pose

    fitter = load_fitter(checkpoint)
    T_hmd = head_to_hmd()
    cfg = EvalConfig(visibility=("full",), noise=noise, max_frames=int(seconds * clip.fps))
    seq = prepare_sequence(fitter, clip, cfg, T_hmd)
    theta = stream(make_engine("eager", fitter), [seq], "full", T_hmd)[0]
    poser = MeshPoser(fitter.body, seq.betas)
    idx = [j for j, _ in JOINTS]
    gt = poser(seq.gt_rot, seq.gt_transl, vertices=False).joints[:, idx, 1]
    fit = poser(*theta_to_pose(theta), vertices=False).joints[:, idx, 1]
    return gt, fit


def draw(path: Path, fps: float, title: str, series: list[tuple[str, tuple, torch.Tensor]]):
    """Four panels (one per joint) of the given ``(label, colour, heights (T, 4))`` series."""
    from PIL import Image, ImageDraw, ImageFont

    pw, ph = 560, 260
    img = Image.new("RGB", (pw * 2, ph * 2 + 50), "white")
    d = ImageDraw.Draw(img)
    font, small = ImageFont.load_default(size=14), ImageFont.load_default(size=11)
    d.text((pw, 10), title, fill="black", font=font, anchor="mt")
    for p, (_, name) in enumerate(JOINTS):
        x0, y0 = (p % 2) * pw, 50 + (p // 2) * ph
        L, R, T, B = x0 + 55, x0 + pw - 15, y0 + 25, y0 + ph - 40
        vals = torch.cat([s[:, p] for _, _, s in series]) * 100
        lo, hi = 0.0, float(vals.max()) * 1.1 + 1.0  # heights: the floor at the bottom
        n = series[0][2].shape[0]
        sx = lambda i, n=n, L=L, R=R: L + (R - L) * i / max(n - 1, 1)  # noqa: E731
        sy = lambda v, lo=lo, hi=hi, T=T, B=B: B - (B - T) * (v - lo) / (hi - lo)  # noqa: E731
        d.text((x0 + pw / 2, y0 + 6), f"{name} height (cm)", fill="black", font=font,
               anchor="mt")
        d.rectangle((L, T, R, B), outline="black")
        for k in range(5):
            v = lo + (hi - lo) * k / 4
            d.line((L - 4, sy(v), L, sy(v)), fill="black")
            d.text((L - 6, sy(v)), f"{v:.0f}", fill="black", font=small, anchor="rm")
        for k in range(int((n - 1) / fps) + 1):  # a tick every second
            d.line((sx(k * fps), B, sx(k * fps), B + 4), fill="black")
            d.text((sx(k * fps), B + 6), f"{k}", fill="black", font=small, anchor="mt")
        d.text(((L + R) / 2, B + 20), "seconds", fill="black", font=small, anchor="mt")
        for label_i, (_, col, s) in enumerate(series):
            pts = [(sx(i), sy(float(v) * 100)) for i, v in enumerate(s[:, p])]
            d.line(pts, fill=col, width=2 if label_i else 3)
    x = pw - 130 * len(series) // 2  # one legend under the title, off the curves
    for label, col, _ in series:
        d.line((x, 32, x + 20, 32), fill=col, width=3)
        d.text((x + 25, 32), label, fill="black", font=small, anchor="lm")
        x += 40 + int(d.textlength(label, font=small))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clip", help="an AMASS-layout .npz (e.g. a walking clip)")
    ap.add_argument("--out", required=True, type=Path, help="PNG to write")
    ap.add_argument("--checkpoint", default=None, help="fitter (default: the bundled one)")
    ap.add_argument("--compare", default=None, help="a second fitter to draw (e.g. the old one)")
    ap.add_argument("--label", default=None, help="legend of --checkpoint")
    ap.add_argument("--compare-label", default=None, help="legend of --compare")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--noise", default="clean", choices=("clean", "consumer", "degraded"))
    ap.add_argument("--fps", type=float, default=60.0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from trainer.eval import load_motions

    clips, problems = load_motions([args.clip], fps=args.fps)
    if not clips:
        raise SystemExit(f"error: {args.clip}: {problems[0] if problems else 'no motion'}")
    clip = clips[0]
    gt, fit = leg_heights(args.checkpoint, clip, args.seconds, args.noise)
    series = [("ground truth", GT, gt), (args.label or args.checkpoint or "bundled", NEW, fit)]
    if args.compare:
        series.append((args.compare_label or args.compare, OLD,
                       leg_heights(args.compare, clip, args.seconds, args.noise)[1]))
    draw(args.out, clip.fps, f"{clip.name}: knee and ankle heights, streaming fit, "
         f"{args.noise} signals", series)
    for label, _, s in series[1:]:
        err = (s - gt).abs().mean(0) * 100
        print(f"{label}: mean height error (cm) " + ", ".join(
            f"{name} {e:.1f}" for (_, name), e in zip(JOINTS, err.tolist(), strict=True)))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
