"""What the viewer shows, produced on a worker thread from a live server or a recording.

Both sources call ``sink(pose_msg, ingest_payload_or_None)``; :class:`LatestScene` turns that
into a :class:`SceneState` (mesh vertices, joints, headset, hands, ground truth: everything
heavy is computed here, off the GUI thread) and keeps only the newest one (latest wins, like
the server).
"""

from __future__ import annotations

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
    """The sink the sources feed; :meth:`take` returns the newest unseen state or ``None``."""

    def __init__(self, body, session: str | None = None):
        self.body, self.session = body, session
        self._lock = threading.Lock()
        self._latest: SceneState | None = None
        self._times: list[float] = []
        self._poser: MeshPoser | None = None  # skinning for the current shape
        self._poser_betas: list | None = None

    @torch.inference_mode()
    def __call__(self, msg: dict, payload: bytes | None) -> None:
        if self.session is None:
            self.session = msg["session"]  # the first session seen
        if msg["session"] != self.session:
            return
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
        now = time.monotonic()
        self._times = [t for t in self._times if now - t < 1.0] + [now]
        state = SceneState(msg["session"], msg["seq"], msg["state"], msg["residual"],
                           st.vertices[0].numpy(), st.joints[0].numpy(), head, wrists, wrist_on,
                           np.asarray(msg["visible"], bool), tips, tips_on, gt_joints,
                           float(len(self._times)))
        with self._lock:
            self._latest = state

    def take(self) -> SceneState | None:
        with self._lock:
            s, self._latest = self._latest, None
        return s


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
