"""Open3D geometry for the viewer (legacy ``open3d.geometry``; stage frame, Y up, metres).

Pure builders and in-place updaters: no window here (see ``tracker.viewer.app``).
"""

from __future__ import annotations

import numpy as np
import open3d as o3d

from tracker.body.joints import PARENTS

BODY_COLOR = (0.62, 0.70, 0.85)
GT_COLOR = (0.1, 0.75, 0.2)
HEADSET_COLOR = (0.15, 0.15, 0.15)
PLANE_COLOR = (0.95, 0.55, 0.1)
GREY = (0.65, 0.65, 0.65)
HAND_COLORS = ((0.85, 0.25, 0.25), (0.2, 0.35, 0.9))  # left, right
AXES = np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, 1]])
AXIS_COLORS = np.array([[0.9, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.2, 0.9]])
BONES = np.array([(j, p) for j, p in enumerate(PARENTS) if p >= 0])


def v3(a) -> o3d.utility.Vector3dVector:
    """Points ``(N, 3)`` (anything array-like) as Open3D's float64 vector."""
    return o3d.utility.Vector3dVector(np.ascontiguousarray(a, dtype=np.float64))


def lines(points, pairs, color) -> o3d.geometry.LineSet:
    ls = o3d.geometry.LineSet(v3(points), o3d.utility.Vector2iVector(np.asarray(pairs, np.int32)))
    set_line_colors(ls, color)
    return ls


def set_line_colors(ls: o3d.geometry.LineSet, color) -> None:
    c = np.asarray(color, np.float64)
    n = len(ls.lines)
    ls.colors = v3(np.broadcast_to(c, (n, 3)) if c.ndim == 1 else c)


def floor_grid(half: float = 4.0, step: float = 0.5) -> o3d.geometry.LineSet:
    """Lines on y = 0 every ``step`` metres out to ``±half``."""
    ticks = np.arange(-half, half + 1e-9, step)
    pts, pairs = [], []
    for t in ticks:
        pts += [(t, 0, -half), (t, 0, half), (-half, 0, t), (half, 0, t)]
        i = len(pts)
        pairs += [(i - 4, i - 3), (i - 2, i - 1)]
    return lines(pts, pairs, (0.78, 0.78, 0.78))


def body_mesh(vertices, faces) -> o3d.geometry.TriangleMesh:
    m = o3d.geometry.TriangleMesh(v3(vertices), o3d.utility.Vector3iVector(
        np.asarray(faces, np.int32)))
    m.compute_vertex_normals()
    m.paint_uniform_color(BODY_COLOR)
    return m


def update_mesh(m: o3d.geometry.TriangleMesh, vertices) -> None:
    m.vertices = v3(vertices)
    m.compute_vertex_normals()


def skeleton(joints, color=GT_COLOR) -> o3d.geometry.LineSet:
    return lines(joints, BONES, color)


def _transform(T, pts) -> np.ndarray:
    return np.asarray(pts) @ T[:3, :3].T + T[:3, 3]


# Headset (VIEW frame: looks along -Z): a frustum 12 cm deep and the half-space plane z = 0.
FRUSTUM = np.array([[0, 0, 0], [-.08, -.06, -.12], [.08, -.06, -.12], [.08, .06, -.12],
                    [-.08, .06, -.12], [0, .09, -.12]])
FRUSTUM_PAIRS = [(0, 1), (0, 2), (0, 3), (0, 4), (1, 2), (2, 3), (3, 4), (4, 1), (3, 5), (4, 5)]
PLANE = np.array([[x, y, 0.0] for x in (-.5, -.25, 0, .25, .5) for y in (-.6, .3)] +
                 [[x, y, 0.0] for y in (-.6, -.3, 0, .3) for x in (-.5, .5)])
PLANE_PAIRS = [(2 * i, 2 * i + 1) for i in range(len(PLANE) // 2)]


def headset(T) -> tuple[o3d.geometry.LineSet, o3d.geometry.LineSet]:
    """Frustum and half-space plane at headset pose ``T (4, 4)``."""
    return (lines(_transform(T, FRUSTUM), FRUSTUM_PAIRS, HEADSET_COLOR),
            lines(_transform(T, PLANE), PLANE_PAIRS, PLANE_COLOR))


def move_lines(ls: o3d.geometry.LineSet, template, T) -> None:
    ls.points = v3(_transform(T, template))


def wrist_axes(wrists, on, visible, size: float = 0.07) -> o3d.geometry.LineSet:
    """Axes of both wrist frames ``(2, 4, 4)``; grey where not visible, collapsed if absent."""
    pts, cols = [], []
    for s in (0, 1):
        T = wrists[s]
        o = T[:3, 3]
        for a in range(3):
            tip = o + (T[:3, :3] @ AXES[a]) * (size if on[s] else 0.0)
            pts += [o, tip]
            cols.append(AXIS_COLORS[a] if visible[s] else GREY)
    return lines(pts, [(2 * i, 2 * i + 1) for i in range(6)], np.array(cols))


def tip_markers(tips, on, visible, radius: float = 0.008) -> o3d.geometry.TriangleMesh:
    """Ten small spheres at the fingertips ``(2, 5, 3)``; grey where the hand is not used,
    hidden (shrunk to a point: a zero radius leaves no normals, and Open3D then drew every tip
    black) where the device reported none."""
    ball = o3d.geometry.TriangleMesh.create_sphere(1.0, resolution=6)
    bv, bf = np.asarray(ball.vertices), np.asarray(ball.triangles)
    verts, faces, cols = [], [], []
    for s in (0, 1):
        c = HAND_COLORS[s] if visible[s] else GREY
        for k in range(5):
            verts.append(bv * (radius if on[s] else 1e-6) + tips[s, k])
            faces.append(bf + len(bv) * (5 * s + k))
            cols.append(np.broadcast_to(c, bv.shape))
    m = o3d.geometry.TriangleMesh(v3(np.concatenate(verts)),
                                  o3d.utility.Vector3iVector(np.concatenate(faces)))
    m.vertex_colors = v3(np.concatenate(cols))
    m.compute_vertex_normals()
    return m


def _glyphs(text: str) -> tuple[o3d.geometry.TriangleMesh, np.ndarray] | None:
    """``text`` in Open3D's built-in font as a flat mesh and its vertices ``(N, 3)`` (font
    units, ``FONT_LINE`` a line), or ``None`` (no glyphs, or Open3D cannot make text here)."""
    try:
        t = o3d.t.geometry.TriangleMesh.create_text(text, depth=0.0).to_legacy()
    except Exception:
        return None
    v = np.asarray(t.vertices)
    return (t, v) if len(v) else None


def text_mesh(text: str, height: float = 0.05) -> o3d.geometry.TriangleMesh | None:
    """Flat 3D text (Open3D's built-in font), ``height`` metres tall, or ``None``."""
    glyphs = _glyphs(text)
    if glyphs is None:
        return None
    t, v = glyphs
    scale = height / max(np.ptp(v[:, 1]), 1e-9)
    t.vertices = v3((v - v.min(0)) * scale)
    t.paint_uniform_color((0.1, 0.1, 0.1))
    t.compute_vertex_normals()
    return t


LEGEND = (
    ("body: the fitted SMPL+H mesh", (0.35, 0.45, 0.7)),
    ("black frustum: the headset (looks along -Z)", HEADSET_COLOR),
    ("orange grid: the headset's plane z = 0;", PLANE_COLOR),
    ("  half-space visibility drops hands behind it", PLANE_COLOR),
    ("wrist axes: OpenXR x y z (red green blue)", (0.2, 0.2, 0.2)),
    ("red dots: left fingertips", HAND_COLORS[0]),
    ("blue dots: right fingertips", HAND_COLORS[1]),
    ("grey axes, dots: a hand the fit did not use", (0.5, 0.5, 0.5)),
    ("green lines: ground truth (simulated data)", GT_COLOR),
    ("floor grid: y = 0, 0.5 m cells", (0.5, 0.5, 0.5)),
    ("poses/s: received; view fps: frames drawn", (0.2, 0.2, 0.2)),
    ("L: hide or show this legend", (0.2, 0.2, 0.2)),
)
"""The viewer's legend: ``(line, colour)``, the colour of what the line explains."""

FONT_LINE = 16.0  # Open3D's text font: units per line (glyphs span about y 0..14)


def legend_mesh(entries=LEGEND, line_height: float = 1.0) -> o3d.geometry.TriangleMesh | None:
    """The legend as one flat mesh facing +z: a line of text per entry in its colour on a
    white panel, the first line's top at y = 0 and the lines going down (-y),
    ``line_height`` apart; x from 0 to the right. It has no normals, so it is drawn unlit."""
    out = o3d.geometry.TriangleMesh()
    scale = line_height / FONT_LINE
    for k, (text, color) in enumerate(entries):
        glyphs = _glyphs(text)
        if glyphs is None:
            continue
        t, v = glyphs
        t.vertices = v3((v - [0.0, FONT_LINE, 0.0]) * scale - [0.0, k * line_height, 0.0])
        t.paint_uniform_color(color)
        out += t
    if len(out.vertices) == 0:
        return None
    # Open3D's glyphs read correctly from +z but their triangles face -z: turn them over so
    # that the front faces +z (no back-face rendering needed)
    out.triangles = o3d.utility.Vector3iVector(np.asarray(out.triangles)[:, ::-1].copy())
    lo, hi = np.asarray(out.vertices).min(0), np.asarray(out.vertices).max(0)
    pad = 0.3 * line_height  # a white panel behind the text, so that nothing shows through
    x0, x1, y0, y1, z = lo[0] - pad, hi[0] + pad, lo[1] - pad, hi[1] + pad, -0.05 * line_height
    panel = o3d.geometry.TriangleMesh(v3([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]]),
                                      o3d.utility.Vector3iVector([[0, 1, 2], [0, 2, 3]]))
    panel.paint_uniform_color((1.0, 1.0, 1.0))
    out += panel
    # without normals Open3D draws a mesh unlit: the colours exactly, wherever the lights are
    flat = o3d.geometry.TriangleMesh(out.vertices, out.triangles)
    flat.vertex_colors = out.vertex_colors
    return flat
