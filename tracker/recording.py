"""Recordings: MCAP files of what a server received and published (``tracker serve --record``).

Channels (message encoding ``msgpack``, schemaless; times are the server's monotonic clock in
ns, the same clock as ``t_recv`` / ``t_pub`` on the wire):

==================== ============================================== =========================
topic                data                                           log_time
==================== ============================================== =========================
``ingest``           the exact ingest payload (the last ZeroMQ       receive time ``t_recv``
                     frame), every message that reached the parser
``pose/<session>``   the published pose payload                      ``t_pub``
``status``           the published status payload                    its ``t``
``tracker/tick``     ``{"t", "n"}``: a tick took every frame          the tick time
                     received before ``t`` and fitted ``n``
``tracker/profile``  a session's calibration, applied from the next   the tick time
                     tick (``tracker.server.profiles``)
==================== ============================================== =========================

plus one metadata record ``tracker`` (engine, checkpoint, body model, visibility, threads).

Crash tolerance: messages are collected in chunks (zstd) that are written and flushed when
they reach ``chunk_bytes`` or are ``chunk_seconds`` old, from a writer thread (the server's
tick never waits on the disk). A ``kill -9`` loses at most the chunk being collected (about a
second); :func:`read_recording` reads a cut-off file up to its last complete chunk. A clean
:meth:`RecordingWriter.close` writes the summary and footer.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

INGEST = "ingest"
STATUS = "status"
TICK = "tracker/tick"
PROFILE = "tracker/profile"
POSE_PREFIX = "pose/"
ENCODING = "msgpack"


@dataclass(frozen=True)
class RecordedMessage:
    topic: str
    log_time: int
    data: bytes


class RecordingWriter:
    """Thread-safe MCAP writer; every ``write`` is queued and written by a worker thread."""

    def __init__(self, path: str | Path, metadata: dict | None = None,
                 chunk_bytes: int = 256 * 1024, chunk_seconds: float = 1.0):
        from mcap.writer import CompressionType, Writer

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "wb")  # closed in close()
        self._writer = Writer(self._file, chunk_size=chunk_bytes,
                              compression=CompressionType.ZSTD)
        self._writer.start(profile="fitstream", library="fitstream tracker")
        if metadata:
            self._writer.add_metadata("tracker", {str(k): str(v) for k, v in metadata.items()})
        self._channels: dict[str, int] = {}
        self._chunk_seconds = chunk_seconds
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self.count = 0
        self._thread = threading.Thread(target=self._run, name="recording", daemon=True)
        self._thread.start()

    def write(self, topic: str, log_time: int, data: bytes) -> None:
        """Queue one message (any thread)."""
        if not self._closed:
            self._q.put((topic, int(log_time), bytes(data)))

    def _channel(self, topic: str) -> int:
        cid = self._channels.get(topic)
        if cid is None:
            cid = self._writer.register_channel(topic, ENCODING, 0)
            self._channels[topic] = cid
        return cid

    def _flush_chunk(self) -> None:
        finalize = getattr(self._writer, "_Writer__finalize_chunk", None)
        if finalize is not None:  # mcap has no public API for a time-based chunk boundary
            finalize()
        self._file.flush()

    def _run(self) -> None:
        last = time.monotonic()
        dirty = False
        while True:
            try:
                item = self._q.get(timeout=self._chunk_seconds / 4)
            except queue.Empty:
                item = ()
            if item is None:
                break
            if item:
                topic, t, data = item
                self._writer.add_message(self._channel(topic), t, data, t, self.count)
                self.count += 1
                dirty = True
            if dirty and time.monotonic() - last >= self._chunk_seconds:
                self._flush_chunk()
                last, dirty = time.monotonic(), False

    def close(self) -> None:
        """Write everything queued, then the summary and footer (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._q.put(None)
        self._thread.join()
        self._writer.finish()
        self._file.close()


def read_recording(path: str | Path, info: dict | None = None) -> Iterator[RecordedMessage]:
    """Every message in file order (the order they happened). A file cut off mid-chunk
    (``kill -9``) yields everything up to its last complete chunk; ``info`` (if given) gets
    ``metadata`` and ``truncated``."""
    from mcap.records import Channel, Message, Metadata
    from mcap.stream_reader import StreamReader

    info = info if info is not None else {}
    info.setdefault("metadata", {})
    info["truncated"] = False
    channels: dict[int, str] = {}
    with open(path, "rb") as f:
        reader = StreamReader(f, validate_crcs=True, record_size_limit=1 << 30)
        it = reader.records
        while True:
            try:
                rec = next(it)
            except StopIteration:
                break
            except Exception:  # cut-off or damaged tail: stop at the last good record
                info["truncated"] = True
                break
            if isinstance(rec, Channel):
                channels[rec.id] = rec.topic
            elif isinstance(rec, Message):
                yield RecordedMessage(channels.get(rec.channel_id, "?"), rec.log_time, rec.data)
            elif isinstance(rec, Metadata) and rec.name == "tracker":
                info["metadata"] = dict(rec.metadata)


MCAP_MAGIC = b"\x89MCAP0\r\n"  # the first 8 bytes of every MCAP file (mcap.dev spec)


def is_recording(path: str | Path) -> bool:
    """Whether ``path`` starts like an MCAP file (checked before anything is built for it)."""
    with open(path, "rb") as f:
        return f.read(len(MCAP_MAGIC)) == MCAP_MAGIC


def recording_metadata(path: str | Path) -> dict:
    """The ``tracker`` metadata record (written first, so readable from any recording)."""
    info: dict = {}
    for _ in read_recording(path, info):
        if info["metadata"]:
            break
    return info["metadata"]
