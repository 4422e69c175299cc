"""What the viewer shows, produced on a worker thread from a live server or a recording.

Both sources call ``sink(pose_msg, ingest_payload_or_None)`` for every pose they receive;
:class:`LatestScene` counts it (the pose rate the viewer shows is the rate poses arrive, a
sliding window on the receive side) and keeps only the newest one (latest wins, like the
server). Only a pose that is drawn is turned into a :class:`SceneState` (mesh vertices,
joints, headset, hands, ground truth), so the receiving thread keeps up with any rate
however slow the window is.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from tracker.body.skinning import MeshPoser
from tracker.geometry import axis_angle_to_matrix
from tracker.protocol import FRAME_TOPIC_PREFIX, POSE_TOPIC_PREFIX, ground_truth, parse_frame


@dataclass
class SceneState:
    """One frame to draw; stage frame of the device, metres.

    Attributes:
        vertices: ``(V, 3)`` fitted mesh. joints: ``(52, 3)``.
        head: ``(4, 4)`` headset pose or ``None`` (no frame echo).
        wrists: ``(2, 4, 4)``; wrist_on: ``(2,)`` bool (reported); visible: ``(2,)`` bool
        (used by the fit); tips: ``(2, 5, 3)``; tips_on: ``(2,)`` bool.
        gt_joints: ``(52, 3)`` ground truth (simulated data) or ``None``.
        pose_rate: poses of this session received per second when it was taken.
    """

    session: str
    seq: int
    state: str
    residual: float
    vertices: np.ndarray
    joints: np.ndarray
    head: np.ndarray | None
    wrists: np.ndarray
    wrist_on: np.ndarray
    visible: np.ndarray
    tips: np.ndarray
    tips_on: np.ndarray
    gt_joints: np.ndarray | None
    pose_rate: float = 0.0


def _pose7(p) -> np.ndarray:
    from tracker.geometry.transforms import pose7_to_transform

    return pose7_to_transform(torch.as_tensor(np.asarray(p, np.float64))).numpy()


class LatestScene:
    """The sink the sources feed; :meth:`take` returns the newest unseen pose as a
    :class:`SceneState` (or ``None``), :meth:`pose_rate` the poses received per second."""

    RATE_WINDOW = 1.0
    """Seconds over which :meth:`pose_rate` counts the poses received."""

    def __init__(self, body, session: str | None = None):
        self.body, self.session = body, session
        self._lock = threading.Lock()
        self._pending: tuple[dict, bytes | None] | None = None
        self._times: collections.deque[float] = collections.deque()
        self._first: float | None = None
        self._poser: MeshPoser | None = None  # skinning for the current shape
        self._poser_betas: list | None = None
        self.clock = time.monotonic

    def __call__(self, msg: dict, payload: bytes | None) -> None:
        """Receive one pose (cheap: any thread, any rate)."""
        if self.session is None:
            self.session = msg["session"]  # the first session seen
        if msg["session"] != self.session:
            return
        now = self.clock()
        with self._lock:
            self._times.append(now)
            if self._first is None:
                self._first = now
            self._pending = (msg, payload)

    def pose_rate(self, now: float | None = None) -> float:
        """Poses of the shown session received per second over the last ``RATE_WINDOW``
        seconds (over the time since the first one while that is shorter)."""
        now = self.clock() if now is None else now
        with self._lock:
            while self._times and self._times[0] <= now - self.RATE_WINDOW:
                self._times.popleft()
            if self._first is None:
                return 0.0
            return len(self._times) / min(self.RATE_WINDOW, max(now - self._first, 0.25))

    def take(self) -> SceneState | None:
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return None
        state = self.scene(*pending)
        state.pose_rate = self.pose_rate()
        return state

    @torch.inference_mode()
    def scene(self, msg: dict, payload: bytes | None) -> SceneState:
        """What to draw for one pose message and its frame echo."""
        b = self.body
        if self._poser is None or self._poser_betas != msg["betas"]:  # shape: per profile
            self._poser_betas = list(msg["betas"])
            self._poser = MeshPoser(b, torch.tensor(msg["betas"], dtype=b.dtype))
        rot = axis_angle_to_matrix(torch.tensor(msg["pose"], dtype=b.dtype).reshape(1, 52, 3))
        st = self._poser(rot, torch.tensor([msg["transl"]], dtype=b.dtype))
        head, wrists = None, np.tile(np.eye(4), (2, 1, 1))
        wrist_on, tips, tips_on = np.zeros(2, bool), np.zeros((2, 5, 3)), np.zeros(2, bool)
        gt_joints = None
        frame = None
        if payload is not None:
            try:
                frame = parse_frame(payload)
            except ValueError:
                frame = None
        if frame is not None:
            head = _pose7(frame.head)
            for s, h in enumerate((frame.left, frame.right)):
                if h is not None and h.tracked:
                    wrists[s], wrist_on[s] = _pose7(h.wrist), True
                    if h.tips is not None:
                        tips[s], tips_on[s] = h.tips, True
            gt = ground_truth(payload)
            if gt is not None:
                gb = torch.tensor([gt["betas"]], dtype=b.dtype)[:, : b.num_betas]
                gt_joints = b.forward_axis_angle(
                    torch.tensor([gt["pose"]], dtype=b.dtype), gb,
                    torch.tensor([gt["transl"]], dtype=b.dtype)).joints[0].numpy()
        return SceneState(msg["session"], msg["seq"], msg["state"], msg["residual"],
                          st.vertices[0].numpy(), st.joints[0].numpy(), head, wrists, wrist_on,
                          np.asarray(msg["visible"], bool), tips, tips_on, gt_joints)


class LiveSource:
    """Subscribe to a server's output (``pose/<id>`` and the ``frame/<id>`` echo)."""

    def __init__(self, connect: str, session: str | None = None, curve=None):
        self.connect, self.session, self.curve = connect, session, curve
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def start(self, sink) -> None:
        self._thread = threading.Thread(target=self._run, args=(sink,), name="view-source",
                                        daemon=True)
        self._thread.start()

    def _run(self, sink) -> None:
        import msgpack
        import zmq

        ctx = zmq.Context()
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        if self.curve is not None:
            self.curve(sock)
        suffix = (self.session or "").encode()
        sock.subscribe(POSE_TOPIC_PREFIX + suffix)
        sock.subscribe(FRAME_TOPIC_PREFIX + suffix)
        sock.connect(self.connect)
        frames: dict[str, bytes] = {}
        try:
            while not self._stop.is_set():
                if not sock.poll(100):
                    continue
                topic, data = sock.recv_multipart()[-2:]
                if topic.startswith(FRAME_TOPIC_PREFIX):
                    frames[topic[len(FRAME_TOPIC_PREFIX):].decode()] = data
                    continue
                msg = msgpack.unpackb(data, raw=False)
                sink(msg, frames.pop(msg["session"], None))
        except Exception as exc:  # shown by the viewer, never a hung window
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            sock.close()
            ctx.term()

    @property
    def done(self) -> bool:
        """The worker started and has ended (a replay ran out, or the subscription failed)."""
        return self._thread is not None and not self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)


class ReplaySource(LiveSource):
    """Run a recording through a core (``tracker.server.replay``) on the worker thread."""

    def __init__(self, path, core, speed: float | None = 1.0, on_pose=None):
        super().__init__("", None)
        self.path, self.core, self.speed, self.on_pose = path, core, speed, on_pose
        self.stats = None

    def _run(self, sink) -> None:
        from tracker.server.replay import replay

        def both(msg, payload, data):
            if self.on_pose is not None:
                self.on_pose(msg, payload, data)
            sink(msg, payload)

        try:
            self.stats = replay(self.path, self.core, both, self.speed, self._stop.is_set)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
