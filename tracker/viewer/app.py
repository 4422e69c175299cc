"""The viewer window: Open3D's legacy ``Visualizer`` on the main thread, data from a worker.

Shows the fitted body mesh, the headset (frustum, and its half-space plane z = 0 in
orange), the wrist frames (RGB = the OpenXR wrist x y z axes) and fingertips (red left, blue
right; grey when the fit did not use that hand), the ground-truth skeleton in green when the
frames carry one (simulated data), the floor grid (y = 0, 0.5 m), a line of text above the
body with session, seq, state, residual and the rates (poses received per second, counted
as they arrive; frames drawn per second), and a legend in the bottom-left corner (key L hides
and shows it; it replaces Open3D's lighting toggle). The view follows the body's pelvis
(drag to rotate, scroll to zoom; the floor grid moves under the body in whole 0.5 m cells).

Only the newest pose is turned into geometry (skinned), when it is drawn. The window is
redrawn only when something changed (a new pose, the camera, the text), and after a slow
frame (software rendering) it waits as long as that frame took before taking the next pose:
Open3D holds Python's lock while it renders, and the threads that receive (or, in
``tracker replay --view``, fit) the poses need it too.

Without a display it refuses at once (:func:`tracker.viewer.display_problem`), except with
``--screenshot``, which Open3D renders off-screen (EGL); the legacy renderer also runs under
Xvfb with Mesa (``xvfb-run -a tracker view --screenshot out.png``).
"""

from __future__ import annotations

import collections
import sys
import time

import numpy as np

from tracker.viewer import scene as S
from tracker.viewer.source import LatestScene, SceneState


class ViewerError(RuntimeError):
    """No window (no display) or nothing to show before the timeout."""


class Legend:
    """The legend (:data:`tracker.viewer.scene.LEGEND`) as a flat mesh a short way in front
    of the camera, in the window's bottom-left corner, moved with the camera."""

    DEPTH = 0.2  # metres in front of the camera (beyond its 0.05 m near plane)
    LINE_PX, MARGIN_PX = 18.0, 14.0

    def __init__(self, vis, shown: bool = True):
        self.vis, self.shown = vis, shown
        self.mesh = S.legend_mesh()
        if self.mesh is not None:
            self._rest = np.asarray(self.mesh.vertices).copy()
        self._added = False
        if shown:
            self.show(True)

    def show(self, on: bool) -> None:
        self.shown = on
        if self.mesh is None or on == self._added:
            return
        self._added = on
        if on:
            self.vis.add_geometry(self.mesh, reset_bounding_box=False)
            self.place()
        else:
            self.vis.remove_geometry(self.mesh, reset_bounding_box=False)

    def toggle(self, *_) -> bool:
        self.show(not self.shown)
        return True

    def place(self, params=None) -> None:
        """Put the legend in the bottom-left corner of the current view."""
        if self.mesh is None or not self._added:
            return
        params = params or self.vis.get_view_control().convert_to_pinhole_camera_parameters()
        K = params.intrinsic.intrinsic_matrix
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        d = self.DEPTH
        h = self.LINE_PX * d / fy  # metres per line at depth d
        top = params.intrinsic.height - self.MARGIN_PX - self.LINE_PX * len(S.LEGEND)
        corner = np.array([(self.MARGIN_PX - cx) * d / fx, (top - cy) * d / fy, d])
        cam, eye = camera_frame(params.extrinsic)
        R = cam @ np.diag([1.0, -1.0, -1.0])  # text x right, y up, facing the camera
        self.mesh.vertices = S.v3((self._rest * h) @ R.T + cam @ corner + eye)
        self.vis.update_geometry(self.mesh)


class _Scene:
    """The geometries of one session, created from the first state and updated in place."""

    def __init__(self, vis, st: SceneState, faces, grid):
        self.vis, self.grid = vis, grid
        self._grid_rest = np.asarray(grid.points).copy()
        self._grid_at = None
        self.mesh = S.body_mesh(st.vertices, faces)
        eye = np.eye(4)
        self.frustum, self.plane = S.headset(st.head if st.head is not None else eye)
        self.wrists = S.wrist_axes(st.wrists, st.wrist_on, st.visible)
        self.tips = S.tip_markers(st.tips, st.tips_on, st.visible)
        gt = st.gt_joints if st.gt_joints is not None else np.zeros((52, 3))
        self.gt = S.skeleton(gt)
        self.text = None
        self.text_value = ""
        self._lookat = None
        for i, g in enumerate((self.mesh, self.frustum, self.plane, self.wrists, self.tips,
                               self.gt)):
            vis.add_geometry(g, reset_bounding_box=i == 0)
        self._place_camera(st)
        self.update(st, None)

    def _place_camera(self, st: SceneState) -> None:
        ctl = self.vis.get_view_control()
        ctl.set_constant_z_near(0.05)  # the text sits 1 m from the camera: never clip it
        ctl.set_constant_z_far(200.0)
        ctl.set_lookat(st.joints[3] if np.isfinite(st.joints).all() else np.zeros(3))
        ctl.set_front(_front(st))
        ctl.set_up([0.0, 1.0, 0.0])
        ctl.set_zoom(0.9)

    def follow(self, st: SceneState) -> None:
        """Keep the view on the body: the camera's look-at point follows the pelvis (mouse
        rotation and zoom are kept) and the floor grid moves under it in whole cells."""
        pelvis = st.joints[0]
        if not np.isfinite(pelvis).all():
            return
        self._lookat = pelvis
        self.vis.get_view_control().set_lookat(pelvis)
        cell = np.round(pelvis[[0, 2]] / 0.5) * 0.5
        if self._grid_at is None or (cell != self._grid_at).any():
            self._grid_at = cell
            self.grid.points = S.v3(self._grid_rest + [cell[0], 0.0, cell[1]])
            self.vis.update_geometry(self.grid)

    def update(self, st: SceneState, fps: float | None) -> None:
        vis = self.vis
        self.follow(st)
        S.update_mesh(self.mesh, st.vertices)
        if st.head is not None:
            S.move_lines(self.frustum, S.FRUSTUM, st.head)
            S.move_lines(self.plane, S.PLANE, st.head)
        w = S.wrist_axes(st.wrists, st.wrist_on, st.visible)
        self.wrists.points, self.wrists.colors = w.points, w.colors
        t = S.tip_markers(st.tips, st.tips_on, st.visible)
        self.tips.vertices, self.tips.vertex_colors = t.vertices, t.vertex_colors
        self.tips.vertex_normals = t.vertex_normals
        gt = st.gt_joints if st.gt_joints is not None else np.zeros((52, 3))
        self.gt.points = S.v3(gt)
        for g in (self.mesh, self.frustum, self.plane, self.wrists, self.tips, self.gt):
            vis.update_geometry(g)
        self.st = st
        self.show_rates(st.pose_rate, fps)

    def show_rates(self, pose_rate: float | None, fps: float | None) -> None:
        """The text line: the last pose's session, seq, state and residual, and the rates
        (``-`` until measured)."""
        st = self.st

        def rate(v):
            return "-" if v is None else f"{v:.0f}"

        self.set_text(f"{st.session}  seq {st.seq}  {st.state}  residual "
                      f"{st.residual * 100:.1f} cm  poses {rate(pose_rate)}/s  "
                      f"view {rate(fps)} fps")

    def set_text(self, value: str) -> None:
        if value == self.text_value:
            return
        self.text_value = value
        if self.text is not None:
            self.vis.remove_geometry(self.text, reset_bounding_box=False)
        self.text = S.text_mesh(value, 0.05)
        if self.text is not None:
            self._text_rest = np.asarray(self.text.vertices).copy()
            self.vis.add_geometry(self.text, reset_bounding_box=False)
            self.place_text()

    def place_text(self) -> None:
        """Keep the text facing the camera, above the body (a billboard near the look-at
        point, so it is never clipped by the renderer's near and far planes)."""
        if self.text is None or self._lookat is None:
            return
        ctl = self.vis.get_view_control()
        cam, _ = camera_frame(ctl.convert_to_pinhole_camera_parameters().extrinsic)
        R = cam @ np.diag([1.0, -1.0, -1.0])  # text x right, y up, facing the camera
        width = np.ptp(self._text_rest[:, 0])
        p = self._lookat + R @ np.array([-0.5 * width, 1.05, 0.0])
        self.text.vertices = S.v3(self._text_rest @ R.T + p)
        self.vis.update_geometry(self.text)


def camera_frame(extrinsic) -> tuple[np.ndarray, np.ndarray]:
    """The camera's axes in the world (columns: x right, y down, z ahead) and its position,
    from Open3D's extrinsic. Open3D builds the extrinsic's rows from its front, right and up
    vectors as set, and the up set with ``set_up`` need not be square to the front (it is
    in the view it renders), so the y row is taken as z x x rather than read."""
    E = np.asarray(extrinsic, np.float64)
    x, z = E[0, :3] / np.linalg.norm(E[0, :3]), E[2, :3] / np.linalg.norm(E[2, :3])
    x = x - (x @ z) * z
    x /= np.linalg.norm(x)
    eye = -np.linalg.solve(E[:3, :3], E[:3, 3])  # the point the extrinsic maps to 0
    return np.stack([x, np.cross(z, x), z], axis=1), eye


def _front(st: SceneState) -> np.ndarray:
    """Camera direction for a three-quarter view of the user's front: the headset's forward
    (its -Z) on the floor plane, turned 30 degrees, looking slightly down."""
    fwd = np.array([0.0, 0.0, 1.0])
    if st.head is not None:
        f = -st.head[:3, 2]
        if np.hypot(f[0], f[2]) > 1e-3:
            fwd = np.array([f[0], 0.0, f[2]]) / np.hypot(f[0], f[2])
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    turned = np.array([c * fwd[0] + s * fwd[2], 0.0, -s * fwd[0] + c * fwd[2]])
    return turned + np.array([0.0, 0.3, 0.0])


def run_viewer(source, body, session: str | None = None, screenshot: str | None = None,
               timeout_s: float | None = None, title: str = "fitstream viewer",
               size: tuple[int, int] = (1280, 800), legend: bool = True) -> int:
    """Open the window and show ``source`` until it is closed.

    With ``screenshot``: save one frame once the body is on screen, then close (raises
    :class:`ViewerError` when no pose arrives within ``timeout_s``, default 60 s). Raises
    :class:`ViewerError` at once when there is no display (and no ``screenshot``).
    """
    from tracker.viewer import display_problem

    problem = display_problem(screenshot is not None)
    if problem:
        raise ViewerError(problem)
    import open3d as o3d

    sink = LatestScene(body, session)
    vis = o3d.visualization.VisualizerWithKeyCallback()
    if not vis.create_window(title, size[0], size[1]):
        raise ViewerError("cannot open a window (no display? run under xvfb-run -a)")
    source.start(sink)
    opt = vis.get_render_option()
    opt.background_color = np.array([1.0, 1.0, 1.0])
    opt.mesh_show_back_face = True
    opt.line_width = 2.0
    grid = S.floor_grid(3.0, 0.5)
    vis.add_geometry(grid)
    faces = body.data.faces
    view, key = None, Legend(vis, legend)
    vis.register_key_callback(ord("L"), key.toggle)
    drawn: collections.deque[float] = collections.deque()  # when frames were drawn
    shown, t_text, camera = 0, 0.0, None
    start = time.monotonic()
    wait_until, redraw = 0.0, True
    timeout_s = timeout_s if timeout_s is not None else (60.0 if screenshot else None)
    try:
        while True:
            t0 = time.monotonic()
            if not vis.poll_events():  # draws the frame asked for by update_renderer
                break
            now = time.monotonic()
            if redraw:
                drawn.append(now)
                wait_until = now + (now - t0)  # a slow frame: as long again for the others
            redraw = False
            while drawn and drawn[0] <= now - 1.0:
                drawn.popleft()
            if now >= wait_until:
                st = sink.take()
                if st is not None:
                    if view is None:
                        view = _Scene(vis, st, faces, grid)
                    else:
                        view.update(st, _rate(drawn, now, start))
                    shown += 1
                    redraw = True
            if view is not None and now - t_text >= 0.5:  # rates decay when poses stop
                t_text = now
                before = view.text_value
                view.show_rates(sink.pose_rate(now), _rate(drawn, now, start))
                redraw |= view.text_value != before
            params = vis.get_view_control().convert_to_pinhole_camera_parameters()
            cam = np.concatenate([params.extrinsic.ravel(),
                                  params.intrinsic.intrinsic_matrix.ravel()])
            moved = camera is None or not np.array_equal(cam, camera)
            if moved:  # the legend stays in its corner, the text faces the camera
                camera = cam
                key.place(params)
            if (moved or redraw) and view is not None:
                view.place_text()
            redraw |= moved
            if redraw:
                vis.update_renderer()
            if screenshot and (shown >= 3 or (shown > 0 and source.done)):
                vis.capture_screen_image(str(screenshot), do_render=True)
                print(f"tracker view: saved {screenshot} (poses {sink.pose_rate():.0f}/s "
                      "received)", file=sys.stderr)
                return 0
            if timeout_s is not None and view is None and time.monotonic() - start > timeout_s:
                err = getattr(source, "error", None)
                raise ViewerError(f"no pose within {timeout_s:g} s" + (f" ({err})" if err else ""))
            time.sleep(0.005)
        return 0
    finally:
        vis.destroy_window()
        source.stop()


def _rate(times, now: float, start: float) -> float | None:
    """Events per second over the last second (``None`` in the first half second)."""
    span = min(1.0, now - start)
    return len(times) / span if span >= 0.5 else None
