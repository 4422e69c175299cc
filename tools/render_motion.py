"""Render a few frames of an AMASS-layout motion (.npz) to a PNG: front and side views.

The body model poses the motion on the stage (Y up); each frame gets a front view (the
character faces the viewer, so its LEFT side is on the image's right) and a view from the
character's left side, orthographic, with the floor (y = 0) drawn as a line. Left body parts
are blue, right ones red, so mirroring shows at a glance. With ``--bvh`` the source BVH's
mapped joints are drawn as dots (cyan: joints the BVH calls left, magenta: right, yellow:
centre; after the importer's unit/axis conversion and floor shift), to check a retarget.

    python tools/render_motion.py data/motion-open/cmu-iclone/002_01.npz --frames 4 \
        --out /tmp/002_01.png [--bvh ../shared/data/motion/cmu-iclone/002_01.bvh]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PX_PER_M = 170
PANEL = (300, 400)  # width, height in pixels
FLOOR_Y = 360  # pixel row of y = 0
CENTER = None


def _part_colors(body) -> np.ndarray:
    """Per-vertex base colours ``(V, 3)``: left parts blue, right red, the rest grey."""
    from tracker.body.joints import JOINT_NAMES

    owner = body.data.weights.argmax(1)
    side = np.array([1 if n.startswith("left") else -1 if n.startswith("right") else 0
                     for n in JOINT_NAMES])[owner]
    col = np.full((len(owner), 3), 170.0)
    col[side == 1] = (90, 130, 230)
    col[side == -1] = (220, 90, 80)
    return col


def _panel(verts, faces, vcol, right, depth_axis, title, points=None, pcol=None) -> Image.Image:
    """Orthographic panel: screen x along ``right (3,)``, y up, painter-sorted faces."""
    img = Image.new("RGB", PANEL, (250, 250, 250))
    dr = ImageDraw.Draw(img)
    x = verts @ right
    y = verts[:, 1]
    cx = np.median(x) if CENTER is None else CENTER
    px_per_m = min(PX_PER_M, (FLOOR_Y - 24) / max(float(y.max()), 0.1))  # fit tall poses
    sx = (x - cx) * px_per_m + PANEL[0] / 2
    sy = FLOOR_Y - y * px_per_m
    tri = verts[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
    light = 0.35 + 0.65 * np.abs(n @ _unit(depth_axis + np.array([0.0, 0.5, 0.0])))
    depth = (tri @ depth_axis).mean(1)
    col = vcol[faces].mean(1) * light[:, None]
    for f in np.argsort(depth):  # far to near
        pts = list(zip(sx[faces[f]], sy[faces[f]], strict=True))
        dr.polygon(pts, fill=tuple(int(c) for c in col[f]))
    dr.line([(0, FLOOR_Y), (PANEL[0], FLOOR_Y)], fill=(40, 160, 40), width=2)
    if points is not None:
        px = (points @ right - cx) * px_per_m + PANEL[0] / 2
        py = FLOOR_Y - points[:, 1] * px_per_m
        for k, (a, b) in enumerate(zip(px, py, strict=True)):
            c = (250, 210, 0) if pcol is None else pcol[k]
            dr.ellipse([a - 3, b - 3, a + 3, b + 3], fill=c, outline=(0, 0, 0))
    scale = "" if px_per_m == PX_PER_M else f"  (x{px_per_m / PX_PER_M:.2f})"
    dr.text((6, 6), title + scale, fill=(0, 0, 0))
    return img


def _unit(v):
    return v / np.linalg.norm(v)


def render(npz: Path, out: Path, frames: list[int] | int = 4, body_model=None, bvh=None,
           mapping=None) -> Path:
    """Render ``frames`` (indices, or a count spread over the clip) of ``npz`` to ``out``."""
    from tracker.body import load_body_model
    from tracker.signals.motion import stage_params
    from tracker.signals.stage import R_STAGE_FROM_AMASS

    body = load_body_model(body_model)
    z = np.load(npz)
    poses, trans, betas = z["poses"], z["trans"], z["betas"]
    n = len(poses)
    if isinstance(frames, int):
        frames = np.linspace(0, n - 1, frames).round().astype(int).tolist()
    P, T, B = stage_params(body, poses[frames], trans[frames], betas)
    with torch.no_grad():
        st = body.forward_axis_angle(P, B, T, vertices=True)
    verts = st.vertices.double().numpy()
    faces = np.asarray(body.data.faces)
    vcol = _part_colors(body)
    pts, pcol = None, None
    if bvh is not None:  # the source joints, as the importer sees them
        from tracker.motion.bvh import read_bvh
        from tracker.motion.mappings import detect_profile, load_mapping
        from tracker.motion.targets import bvh_targets

        b = read_bvh(bvh)
        m = load_mapping(mapping) if mapping else detect_profile(b.names)
        tg = bvh_targets(b, m, float(z["mocap_framerate"]))
        shift = float(z["floor_shift"]) if "floor_shift" in z.files else 0.0
        first = int(z["segment"][0]) if "segment" in z.files else 0  # a part of a cut clip
        pts = (tg.pos[[first + f for f in frames]] + np.array([0, 0, shift])
               ) @ R_STAGE_FROM_AMASS.numpy().T
        from tracker.body.joints import JOINT_NAMES

        pcol = [(0, 230, 255) if JOINT_NAMES[j].startswith("left") else (255, 0, 200)
                if JOINT_NAMES[j].startswith("right") else (250, 210, 0) for j in tg.joints]
    fps = float(z["mocap_framerate"])
    cols = []
    for k, f in enumerate(frames):
        R0 = st.rotations[k, 0].double().numpy()
        fwd = R0[:, 2] * np.array([1.0, 0, 1])  # the pelvis' facing, horizontal
        fwd = _unit(fwd) if np.linalg.norm(fwd) > 1e-6 else np.array([0.0, 0, 1])
        left = np.cross(np.array([0.0, 1, 0]), fwd)  # the character's left
        p = None if pts is None else pts[k]
        front = _panel(verts[k], faces, vcol, left, fwd, f"front  f{f}  {f / fps:.1f}s  L->", p,
                       pcol)
        side = _panel(verts[k], faces, vcol, -fwd, left, "left side", p, pcol)
        col = Image.new("RGB", (PANEL[0], PANEL[1] * 2), "white")
        col.paste(front, (0, 0))
        col.paste(side, (0, PANEL[1]))
        cols.append(col)
    sheet = Image.new("RGB", (PANEL[0] * len(cols), PANEL[1] * 2), "white")
    for k, c in enumerate(cols):
        sheet.paste(c, (k * PANEL[0], 0))
    ImageDraw.Draw(sheet).text((6, PANEL[1] * 2 - 16), str(npz)[-60:], fill=(80, 80, 80))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("npz", type=Path, help="AMASS-layout .npz (poses, trans, betas, ...)")
    ap.add_argument("--out", type=Path, required=True, help="PNG to write")
    ap.add_argument("--frames", default="4",
                    help="a count spread over the clip, or comma-separated frame indices")
    ap.add_argument("--body-model", default=None, help="SMPL+H model (default: the open one)")
    ap.add_argument("--bvh", default=None, help="source BVH: overlay its mapped joints")
    ap.add_argument("--mapping", default=None, help="mapping of --bvh (default: detected)")
    a = ap.parse_args(argv)
    frames = [int(x) for x in a.frames.split(",")] if "," in a.frames else int(a.frames)
    print(render(a.npz, a.out, frames, a.body_model, a.bvh, a.mapping))
    return 0


if __name__ == "__main__":
    sys.exit(main())
