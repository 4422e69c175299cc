"""A live OpenXR headset as a protocol source (``tracker openxr``), through pyopenxr.

Two halves, kept apart so that the first is testable without a runtime:

* **Conversions** (pure, no runtime): OpenXR structures -> protocol values.
  OpenXR's STAGE / LOCAL_FLOOR space *is* the protocol's stage frame (right-handed, +Y up,
  metres, floor at y = 0), its VIEW pose *is* the protocol's headset pose, and
  ``XR_HAND_JOINT_WRIST_EXT`` *is* the protocol's wrist convention; so positions and
  quaternions pass through unchanged: ``xr.Posef`` (orientation ``x y z w``, position
  ``x y z``) -> ``px py pz qx qy qz qw``. Fingertips are the joints
  ``THUMB_TIP, INDEX_TIP, MIDDLE_TIP, RING_TIP, LITTLE_TIP`` (5, 10, 15, 20, 25) in that
  order. Flags: a hand is sent when its tracker is active and the wrist pose is valid
  (position and orientation ``VALID`` bits); ``tracked`` is true when the wrist's position
  and orientation ``TRACKED`` bits are set too (valid but not tracked = the runtime's guess
  while the hand is occluded); tips are sent when all five positions are valid.
* **The runtime loop** (:class:`OpenXRSource`): an instance with ``XR_EXT_hand_tracking``,
  headless (``XR_MND_headless``) where the runtime offers it together with
  ``XR_KHR_convert_timespec_time``, otherwise a minimal OpenGL binding (a hidden 1x1 GLFW
  window, no swapchains, empty frames); a STAGE space (LOCAL_FLOOR when there is no STAGE);
  per frame the VIEW pose and the 26 joints of each hand.

Timestamps: with ``XR_KHR_convert_timespec_time`` the poses are located at "now" on
``CLOCK_MONOTONIC`` (converted to the runtime's ``XrTime``) and ``t`` is that monotonic time
in ns; without it they are located at the frame's predicted display time and ``t`` is that
``XrTime`` in ns (the runtime's own monotonic clock, epoch unspecified).

pyopenxr's ``xr.locate_hand_joints_ext`` passes a joint array of length 0, which runtimes
reject; :func:`locate_hand_joints` allocates the 26 locations itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HAND_JOINT_COUNT = 26
PALM_JOINT, WRIST_JOINT = 0, 1
TIP_JOINTS = (5, 10, 15, 20, 25)  # thumb, index, middle, ring, little (protocol order)

ORIENTATION_VALID, POSITION_VALID = 0x1, 0x2
ORIENTATION_TRACKED, POSITION_TRACKED = 0x4, 0x8
POSE_VALID = ORIENTATION_VALID | POSITION_VALID
POSE_TRACKED = ORIENTATION_TRACKED | POSITION_TRACKED

HAND_TRACKING_EXT = "XR_EXT_hand_tracking"
HEADLESS_EXT = "XR_MND_headless"
TIMESPEC_EXT = "XR_KHR_convert_timespec_time"
OPENGL_EXT = "XR_KHR_opengl_enable"
LOCAL_FLOOR_EXT = "XR_EXT_local_floor"

INSTALL_HINT = """install and start an OpenXR runtime with hand tracking, then run again:
  - Monado (Linux, open source): `monado-service`; it offers headless sessions
  - SteamVR: set it as the OpenXR runtime; hands from e.g. Valve Index controllers or Ultraleap
  - Meta Quest Link / Air Link (Windows): enable the developer runtime features for hand
    tracking over Link
  - or another vendor's runtime with XR_EXT_hand_tracking
A runtime that is installed but not the active one is chosen with
XR_RUNTIME_JSON=/path/to/its/manifest.json (e.g. /usr/share/openxr/1/openxr_monado.json)."""


class OpenXRUnavailable(RuntimeError):
    """No usable OpenXR setup: the message says what is missing and what to install."""


# ---------------------------------------------------------------------- conversions
def flags_of(x) -> int:
    """The location flags of an ``xr.SpaceLocation`` / ``xr.HandJointLocationEXT`` (or an int)."""
    if isinstance(x, int):
        return int(x)
    return int(getattr(x, "location_flags", 0))


def is_valid(flags: int) -> bool:
    """Position and orientation both valid."""
    return (int(flags) & POSE_VALID) == POSE_VALID


def is_tracked(flags: int) -> bool:
    """Position and orientation both actively tracked (not inferred)."""
    return (int(flags) & POSE_TRACKED) == POSE_TRACKED


def posef_to_pose7(pose) -> np.ndarray:
    """``xr.Posef`` -> ``(7,)`` ``px py pz qx qy qz qw`` (stage frame, metres; no axis change:
    OpenXR and the protocol share the frame and the quaternion order)."""
    p, q = pose.position, pose.orientation
    return np.array([p.x, p.y, p.z, q.x, q.y, q.z, q.w], dtype=np.float64)


def head_from_location(location) -> np.ndarray | None:
    """The headset pose ``(7,)`` from the VIEW space located in the stage space, or ``None``
    when its position or orientation is not valid."""
    if not is_valid(flags_of(location)):
        return None
    return posef_to_pose7(location.pose)


@dataclass(frozen=True)
class HandSample:
    """One hand for the protocol: ``wrist (7,)``, ``tips (5, 3)`` or ``None``, ``tracked``."""

    wrist: np.ndarray
    tips: np.ndarray | None
    tracked: bool


def hand_from_joints(joints: Sequence, is_active: bool,
                     require_tracked: bool = True) -> HandSample | None:
    """The protocol hand from 26 ``xr.HandJointLocationEXT`` (``XR_HAND_JOINT_SET_DEFAULT``).

    Returns ``None`` (sent as nil: not tracked) when the tracker is inactive or the wrist
    pose is not valid. ``tracked`` is the wrist's TRACKED bits (or just validity when
    ``require_tracked`` is false); ``tips`` needs all five tip positions valid.
    """
    if not is_active or len(joints) < HAND_JOINT_COUNT:
        return None
    wrist = joints[WRIST_JOINT]
    wf = flags_of(wrist)
    if not is_valid(wf):
        return None
    tips = None
    if all(flags_of(joints[j]) & POSITION_VALID for j in TIP_JOINTS):
        tips = np.array([[joints[j].pose.position.x, joints[j].pose.position.y,
                          joints[j].pose.position.z] for j in TIP_JOINTS], dtype=np.float64)
    tracked = is_tracked(wf) if require_tracked else True
    return HandSample(posef_to_pose7(wrist.pose), tips, tracked)


def frame_payload(session: str, seq: int, t_ns: int, head: np.ndarray,
                  left: HandSample | None, right: HandSample | None) -> bytes:
    """The protocol ingest payload of one OpenXR sample (float32 numbers, as runtimes give)."""
    from tracker.protocol import encode_frame

    def parts(h):
        return (None, None, True) if h is None else (h.wrist, h.tips, h.tracked)

    lw, lt, ltr = parts(left)
    rw, rt, rtr = parts(right)
    return encode_frame(session, seq, t_ns, head, lw, rw, lt, rt, ltr, rtr, single_float=True)


def timespec_to_ns(ts) -> int:
    """``xr.timespec`` (``tv_sec``, ``tv_nsec``) -> integer nanoseconds."""
    return int(ts.tv_sec) * 1_000_000_000 + int(ts.tv_nsec)


def ns_to_timespec(ns: int):
    import xr

    ts = xr.timespec()
    ts.tv_sec, ts.tv_nsec = divmod(int(ns), 1_000_000_000)
    return ts


def allocate_joint_locations(count: int = HAND_JOINT_COUNT):
    """An ``xr.HandJointLocationsEXT`` with room for ``count`` joints (the array lives as long
    as the returned object: ctypes keeps what is stored into a pointer field)."""
    import xr

    buf = (xr.HandJointLocationEXT * count)()
    return xr.HandJointLocationsEXT(joint_count=count, joint_locations=buf)


def locate_hand_joints(hand_tracker, base_space, time_, locations=None, fn=None):
    """``xrLocateHandJointsEXT`` with a caller-owned array of 26 joint locations.

    Args:
        locations: from :func:`allocate_joint_locations` (reused every frame), or ``None``.
        fn: the ``xrLocateHandJointsEXT`` function (default: looked up on the instance);
            tests pass a stand-in.

    Returns:
        ``locations``, filled in (``is_active``, ``joint_locations``).
    """
    import xr

    if locations is None:
        locations = allocate_joint_locations()
    if fn is None:
        fn = ctypes.cast(xr.get_instance_proc_addr(hand_tracker.instance, "xrLocateHandJointsEXT"),
                         xr.PFN_xrLocateHandJointsEXT)
    info = xr.HandJointsLocateInfoEXT(base_space=base_space, time=time_)
    result = xr.check_result(xr.Result(fn(hand_tracker, ctypes.byref(info),
                                          ctypes.byref(locations))))
    if result.is_exception():
        raise result
    return locations


# ---------------------------------------------------------------------- runtime discovery
@contextlib.contextmanager
def captured_native_stderr(log: list | None = None):
    """Silence file descriptor 2 (the OpenXR loader prints its errors there, outside Python);
    what was written is appended to ``log``."""
    fd = 2  # the C runtime's stderr, whatever Python's sys.stderr is at the moment
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    try:
        saved = os.dup(fd)
    except OSError:  # no fd 2 at all
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            if log is not None:
                tmp.seek(0)
                log.append(tmp.read().decode(errors="replace"))


def runtime_manifest() -> str:
    """Where the loader looks for the active runtime (for messages)."""
    env = os.environ.get("XR_RUNTIME_JSON")
    if env:
        state = "" if Path(env).is_file() else " (no such file)"
        return f"XR_RUNTIME_JSON={env}{state}"
    if sys.platform.startswith("linux"):
        dirs = [os.environ.get("XDG_CONFIG_HOME", str(Path.home() / ".config"))]
        dirs += os.environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(":") + ["/etc"]
        cands = [Path(d) / "openxr" / "1" / "active_runtime.json" for d in dirs if d]
        found = [str(c) for c in cands if c.is_file()]
        if found:
            return f"active runtime manifest {found[0]}"
        return "no XR_RUNTIME_JSON and no active_runtime.json in " + ", ".join(
            str(c.parent) for c in cands)
    if sys.platform == "win32":
        return r"the registry key HKLM\SOFTWARE\Khronos\OpenXR\1\ActiveRuntime"
    return "the platform's active-runtime setting"


def available_extensions(loader_log: list | None = None) -> set[str]:
    """The runtime's instance extensions; :class:`OpenXRUnavailable` without a runtime."""
    try:
        import xr
    except Exception as exc:  # ImportError, or OSError when the loader library is missing
        raise OpenXRUnavailable(
            f"pyopenxr cannot be imported ({exc}): pip install pyopenxr") from None
    try:
        with captured_native_stderr(loader_log):
            props = xr.enumerate_instance_extension_properties()
    except xr.RuntimeUnavailableError:
        raise OpenXRUnavailable(
            f"no OpenXR runtime found (the OpenXR loader found none: {runtime_manifest()});\n"
            + INSTALL_HINT) from None
    except xr.XrException as exc:
        raise OpenXRUnavailable(f"the OpenXR runtime failed to start ({exc}; "
                                f"{runtime_manifest()});\n" + INSTALL_HINT) from None
    names = set()
    for p in props:
        n = p.extension_name
        names.add(n.decode() if isinstance(n, bytes) else str(n))
    return names


def choose_extensions(available: set[str]) -> tuple[list[str], bool]:
    """Extensions to enable and whether to run headless.

    Raises :class:`OpenXRUnavailable` without ``XR_EXT_hand_tracking``, or without both a
    headless mode and an OpenGL binding.
    """
    if HAND_TRACKING_EXT not in available:
        raise OpenXRUnavailable(
            f"the active OpenXR runtime ({runtime_manifest()}) does not offer "
            f"{HAND_TRACKING_EXT}, which `tracker openxr` needs for the wrists and fingertips: "
            "use a runtime and device with hand tracking (Monado with hand tracking, SteamVR "
            "with Index controllers or Ultraleap, Meta Quest Link with hand tracking enabled)")
    enabled = [HAND_TRACKING_EXT]
    headless = HEADLESS_EXT in available and TIMESPEC_EXT in available
    if headless:
        enabled.append(HEADLESS_EXT)
    elif OPENGL_EXT in available:
        enabled.append(OPENGL_EXT)
    else:
        raise OpenXRUnavailable(
            f"the OpenXR runtime offers neither {HEADLESS_EXT} (with {TIMESPEC_EXT}) nor "
            f"{OPENGL_EXT}, so `tracker openxr` cannot open a session; Monado offers headless "
            "sessions")
    for ext in (TIMESPEC_EXT, LOCAL_FLOOR_EXT):
        if ext in available and ext not in enabled:
            enabled.append(ext)
    return enabled, headless


# ---------------------------------------------------------------------- the runtime loop
@dataclass
class Sample:
    """One located frame: ``t_ns``, ``head (7,)``, ``left``/``right`` :class:`HandSample`."""

    t_ns: int
    head: np.ndarray
    left: HandSample | None
    right: HandSample | None


class OpenXRSource:
    """A live headset: ``with OpenXRSource() as src: for s in src.samples(): ...``.

    Needs a runtime (see the module docstring); untested here, where none exists.
    """

    def __init__(self, require_tracked: bool = True, rate_hz: float = 90.0,
                 application_name: str = "fitstream tracker openxr"):
        self.require_tracked = require_tracked
        self.rate_hz = rate_hz
        self.application_name = application_name
        self.loader_log: list[str] = []
        self._handles: list[tuple] = []  # (destroy function, handle), destroyed in reverse
        self._glfw = None
        self.running = False
        self.exit = False

    # -- setup
    def __enter__(self) -> OpenXRSource:
        import xr

        try:
            self._open(xr)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _open(self, xr) -> None:
        available = available_extensions(self.loader_log)
        enabled, self.headless = choose_extensions(available)
        self.timespec = TIMESPEC_EXT in enabled
        with captured_native_stderr(self.loader_log):
            self.instance = xr.create_instance(xr.InstanceCreateInfo(
                application_info=xr.ApplicationInfo(application_name=self.application_name,
                                                    engine_name="fitstream"),
                enabled_extension_names=enabled))
        self._handles.append((xr.destroy_instance, self.instance))
        props = xr.get_instance_properties(self.instance)
        name = props.runtime_name
        self.runtime_name = name.decode() if isinstance(name, bytes) else str(name)
        try:
            self.system = xr.get_system(self.instance, xr.SystemGetInfo(
                form_factor=xr.FormFactor.HEAD_MOUNTED_DISPLAY))
        except xr.FormFactorUnavailableError:
            raise OpenXRUnavailable(
                f"the OpenXR runtime {self.runtime_name} sees no headset: connect and switch on "
                "the headset (and start its companion software), then run again") from None
        ht = xr.SystemHandTrackingPropertiesEXT()
        sp = xr.SystemProperties(next=ctypes.cast(ctypes.pointer(ht), ctypes.c_void_p))
        xr.check_result(xr.Result(xr.raw_functions.xrGetSystemProperties(
            self.instance, self.system, ctypes.byref(sp))))
        self.system_name = sp.system_name.decode(errors="replace") \
            if isinstance(sp.system_name, bytes) else str(sp.system_name)
        if not ht.supports_hand_tracking:
            raise OpenXRUnavailable(
                f"{self.system_name} on {self.runtime_name} has no hand tracking "
                "(XR_EXT_hand_tracking is offered but the system does not support it): enable "
                "hand tracking on the headset / in the runtime, or use a device that has it")
        info = xr.SessionCreateInfo(system_id=self.system)
        if not self.headless:
            info.next = self._graphics_binding(xr)
        self.session = xr.create_session(self.instance, info)
        self._handles.append((xr.destroy_session, self.session))
        spaces = {int(s) for s in xr.enumerate_reference_spaces(self.session)}
        if int(xr.ReferenceSpaceType.STAGE) in spaces:
            kind = xr.ReferenceSpaceType.STAGE
        elif int(xr.ReferenceSpaceType.LOCAL_FLOOR) in spaces:
            kind = xr.ReferenceSpaceType.LOCAL_FLOOR
        else:
            raise OpenXRUnavailable(
                f"{self.runtime_name} offers no floor-level space (STAGE or LOCAL_FLOOR): set "
                "up the play area / boundary with the floor, then run again")
        self.space_name = xr.ReferenceSpaceType(kind).name
        self.stage = xr.create_reference_space(self.session, xr.ReferenceSpaceCreateInfo(
            reference_space_type=kind))
        self._handles.append((xr.destroy_space, self.stage))
        self.view = xr.create_reference_space(self.session, xr.ReferenceSpaceCreateInfo(
            reference_space_type=xr.ReferenceSpaceType.VIEW))
        self._handles.append((xr.destroy_space, self.view))
        self.trackers = []
        for hand in (xr.HandEXT.LEFT, xr.HandEXT.RIGHT):
            tr = xr.create_hand_tracker_ext(self.session, xr.HandTrackerCreateInfoEXT(hand=hand))
            self._handles.append((xr.destroy_hand_tracker_ext, tr))
            self.trackers.append((tr, allocate_joint_locations()))
        self._locate_fn = ctypes.cast(
            xr.get_instance_proc_addr(self.instance, "xrLocateHandJointsEXT"),
            xr.PFN_xrLocateHandJointsEXT)

    def _graphics_binding(self, xr):
        """A hidden 1x1 GLFW window's OpenGL context: the least a non-headless session needs."""
        try:
            from xr.utils.gl import OpenGLGraphics
            from xr.utils.gl.glfw_util import GLFWOffscreenContextProvider
        except Exception as exc:
            raise OpenXRUnavailable(
                f"the runtime has no headless mode and the OpenGL binding cannot be loaded "
                f"({exc}): pip install glfw PyOpenGL, or use a headless-capable runtime "
                "(Monado)") from None
        try:
            self._glfw = GLFWOffscreenContextProvider()
            self._graphics = OpenGLGraphics(self.instance, self.system, self._glfw)
        except Exception as exc:
            raise OpenXRUnavailable(
                f"cannot create the OpenGL context the runtime needs ({exc}): run in a desktop "
                "session (a display), or use a headless-capable runtime (Monado)") from None
        return self._graphics.graphics_binding.pointer

    def close(self) -> None:
        import xr

        if getattr(self, "session", None) is not None and self.running:
            with contextlib.suppress(Exception):
                xr.end_session(self.session)
            self.running = False
        while self._handles:
            destroy, handle = self._handles.pop()
            with contextlib.suppress(Exception):
                destroy(handle)
        if self._glfw is not None:
            with contextlib.suppress(Exception):
                self._glfw.destroy()
            self._glfw = None

    # -- the loop
    def _poll_events(self, xr) -> None:
        while True:
            try:
                event = xr.poll_event(self.instance)
            except xr.EventUnavailable:
                return
            kind = xr.StructureType(event.type)
            if kind == xr.StructureType.EVENT_DATA_BUFFER:  # nothing (pyopenxr variant)
                return
            if kind == xr.StructureType.EVENT_DATA_INSTANCE_LOSS_PENDING:
                self.exit = True
            elif kind == xr.StructureType.EVENT_DATA_SESSION_STATE_CHANGED:
                state = xr.SessionState(ctypes.cast(
                    ctypes.byref(event), ctypes.POINTER(xr.EventDataSessionStateChanged)
                ).contents.state)
                if state == xr.SessionState.READY:
                    xr.begin_session(self.session, xr.SessionBeginInfo(
                        xr.ViewConfigurationType.PRIMARY_STEREO))
                    self.running = True
                elif state == xr.SessionState.STOPPING:
                    xr.end_session(self.session)
                    self.running = False
                elif state in (xr.SessionState.EXITING, xr.SessionState.LOSS_PENDING):
                    self.exit = True

    def _now(self, xr):
        t_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        return xr.convert_timespec_time_to_time_khr(self.instance, ns_to_timespec(t_ns)), t_ns

    def _locate(self, xr, xr_time, t_ns: int) -> Sample | None:
        head = head_from_location(xr.locate_space(self.view, self.stage, xr_time))
        if head is None:
            return None
        hands = []
        for tracker, locations in self.trackers:
            locate_hand_joints(tracker, self.stage, xr_time, locations, self._locate_fn)
            hands.append(hand_from_joints(locations.joint_locations, bool(locations.is_active),
                                          self.require_tracked))
        return Sample(t_ns, head, hands[0], hands[1])

    def samples(self, stop=lambda: False) -> Iterator[Sample]:
        """Located frames until the runtime ends the session or ``stop()`` is true."""
        import xr

        period = 1.0 / self.rate_hz
        next_t = time.monotonic()
        while not self.exit and not stop():
            self._poll_events(xr)
            if not self.running:
                time.sleep(0.05)
                continue
            if self.headless:
                next_t += period
                time.sleep(max(0.0, next_t - time.monotonic()))
                sample = self._locate(xr, *self._now(xr))
            else:
                state = xr.wait_frame(self.session)
                with contextlib.suppress(xr.FrameDiscarded):  # a qualified success, raised
                    xr.begin_frame(self.session)
                if self.timespec:
                    sample = self._locate(xr, *self._now(xr))
                else:
                    t = state.predicted_display_time
                    sample = self._locate(xr, t, int(t))
                xr.end_frame(self.session, xr.FrameEndInfo(
                    display_time=state.predicted_display_time,
                    environment_blend_mode=xr.EnvironmentBlendMode.OPAQUE))
            if sample is not None:
                yield sample


def publish(connect: str, session: str, source: OpenXRSource, stop=lambda: False,
            on_sample=None) -> int:
    """Publish every sample of ``source`` as a protocol frame on a PUB connected to
    ``connect``; returns the number sent."""
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 16)  # a slow tracker drops frames, never queues them
    sock.connect(connect)
    sent = 0
    try:
        for seq, s in enumerate(source.samples(stop), start=1):
            sock.send(frame_payload(session, seq, s.t_ns, s.head, s.left, s.right), zmq.NOBLOCK)
            sent += 1
            if on_sample is not None:
                on_sample(seq, s)
    finally:
        sock.close(0)
        ctx.term()
    return sent
