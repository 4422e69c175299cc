"""Recordings: MCAP files of what a server received and published (``tracker serve --record``).

Channels (message encoding ``msgpack``, schemaless; times are the server's monotonic clock in
ns, the same clock as ``t_recv`` / ``t_pub`` on the wire):

==================== ============================================== =========================
topic                data                                           log_time
==================== ============================================== =========================
``ingest``           the exact ingest payload (the last ZeroMQ       receive time ``t_recv``
                     frame) of every *accepted* frame (rejected ones
                     are only counted: they change no session state)
``pose/<session>``   the published pose payload                      ``t_pub``
``skeleton/<sess.>`` a skeleton published by a tick (a session's     the tick time
                     start or new shape; not the repeats that answer
                     subscriptions); replay rebuilds them, unread
``status``           the published status payload                    its ``t``
``tracker/tick``     ``{"t", "n", "light"}``: a tick took every       the tick time
                     frame received before ``t`` and fitted ``n``
                     with the fit ``light``: 0 the full fit, k the
                     k-th light fit (``tracker.server.pacing``;
                     ``true`` / ``false`` in recordings from before
                     the ladder, absent in older ones)
``tracker/profile``  a session's calibration, applied from the next   the tick time
                     tick (``tracker.server.profiles``)
``tracker/engine``   ``{"t", "engine", "light_iterations"}``: the     the switch time
                     server switched to this engine, with these
                     light fits (a list; a number or nil before the
                     ladder), before the next tick (its background
                     build was ready)
==================== ============================================== =========================

plus one metadata record ``tracker`` (engine, checkpoint, body model, visibility, threads).

Crash tolerance: messages are collected in chunks (zstd) that are written when they reach
``chunk_bytes`` or are ``chunk_seconds`` (0.5 s) old, from a writer thread (the server's tick
never waits on the disk). Every write puts the new chunk *and a trailer* (a ``DataEnd`` and a
``Footer`` without summary, then the magic) at the end of the data in one ``pwrite``; the next
write goes over that trailer. So after every write the file on disk is a complete MCAP file
(no summary section: readers fall back to reading it front to back, which
``mcap.reader.make_reader(f).iter_messages()`` does by itself), and a ``kill -9`` loses only
the chunk being collected (at most ``chunk_seconds`` plus the queue). A clean
:meth:`RecordingWriter.close` replaces the trailer with the summary (indexes, statistics) and
footer. A file cut in the middle of a write (power loss, or a recording from before this
scheme) is read by :func:`read_recording` up to its last complete record, and ``tracker
recover IN OUT`` (:func:`recover`) rewrites it into a finalised file.

Bounds: :meth:`RecordingWriter.write` never blocks; beyond ``max_queue_bytes`` (32 MiB) queued
the message is dropped and counted. A write error (a full disk) is counted, reported in
:meth:`RecordingWriter.stats` (``error``), ends the recording (the file stays readable up to
the last good write; everything later is counted as dropped), and never stops the server.
Spec: https://mcap.dev/spec (records, "Summary Section" optional, ``summary_start`` 0).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

INGEST = "ingest"
STATUS = "status"
TICK = "tracker/tick"
PROFILE = "tracker/profile"
ENGINE = "tracker/engine"  # {"t", "engine"}: the server switched engines before tick t
POSE_PREFIX = "pose/"
ENCODING = "msgpack"


@dataclass(frozen=True)
class RecordedMessage:
    topic: str
    log_time: int
    data: bytes


def _trailer() -> bytes:
    """``DataEnd`` (no data CRC) + ``Footer`` (no summary) + magic: what makes the data so far
    a complete MCAP file."""
    from mcap.data_stream import RecordBuilder
    from mcap.records import DataEnd, Footer

    b = RecordBuilder()
    DataEnd(data_section_crc=0).write(b)
    Footer(summary_start=0, summary_offset_start=0, summary_crc=0).write(b)
    return bytes(b.end()) + MCAP_MAGIC


class _CommittedFile:
    """The stream under ``mcap.writer.Writer``: writes are buffered; :meth:`commit` writes
    them at the end of the data followed by the trailer, in one ``pwrite`` (see the module
    docstring), so the file is a complete MCAP file between commits."""

    def __init__(self, path: Path):
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._end = 0  # bytes of data committed (the trailer follows them on disk)
        self._buf = bytearray()
        self._trailer = _trailer()

    # the file-like interface the mcap Writer uses
    def write(self, data) -> int:
        self._buf += data
        return len(data)

    def tell(self) -> int:
        return self._end + len(self._buf)

    def flush(self) -> None:
        self.commit()

    @property
    def pending(self) -> int:
        return len(self._buf)

    def commit(self, final: bool = False) -> None:
        """Write the buffer (+ the trailer unless ``final``: then the Writer's own footer is
        in the buffer and the file is cut right after it)."""
        if not self._buf and not final:
            return
        data = bytes(self._buf) if final else bytes(self._buf) + self._trailer
        _pwrite_all(self._fd, data, self._end)
        self._end += len(self._buf)
        self._buf.clear()
        if final:
            _truncate(self._fd, self._end)

    def salvage(self) -> None:
        """After a failed write: put the trailer back right after the last committed data (its
        blocks are already allocated, so this works on a full disk) and cut the rest."""
        self._buf.clear()
        try:
            _pwrite_all(self._fd, self._trailer, self._end)
            _truncate(self._fd, self._end + len(self._trailer))
        except OSError:
            pass

    def close(self) -> None:
        os.close(self._fd)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _truncate(fd: int, size: int) -> None:
    try:
        os.ftruncate(fd, size)
    except OSError:  # not a regular file (a device): nothing to cut
        pass


class McapFile:
    """A crash-safe MCAP file written from one thread: :meth:`add`, :meth:`flush` (end the
    chunk and commit), :meth:`finish`. Raises ``OSError`` when the file cannot be written
    (already in the constructor, which commits the header and metadata)."""

    def __init__(self, path: str | Path, metadata: dict | None = None,
                 chunk_bytes: int = 64 * 1024):
        from mcap.writer import CompressionType, Writer

        self.path = Path(path)
        self._file = _CommittedFile(self.path)
        try:
            self._writer = Writer(self._file, chunk_size=chunk_bytes,
                                  compression=CompressionType.ZSTD)
            self._writer.start(profile="fitstream", library="fitstream tracker")
            if metadata:
                self.add_metadata(metadata)
            self._file.commit()
        except BaseException:
            self._file.close()
            raise
        self._channels: dict[str, int] = {}
        self.count = 0

    def add_metadata(self, metadata: dict) -> None:
        self._writer.add_metadata("tracker", {str(k): str(v) for k, v in metadata.items()})

    def add(self, topic: str, log_time: int, data: bytes) -> None:
        cid = self._channels.get(topic)
        if cid is None:
            cid = self._channels[topic] = self._writer.register_channel(topic, ENCODING, 0)
        self._writer.add_message(cid, log_time, data, log_time, self.count)
        self.count += 1
        if self._file.pending:  # the Writer closed a chunk (chunk_bytes reached)
            self._file.commit()

    def flush(self) -> None:
        self._writer.flush()  # public API: ends the chunk in progress, then commits

    def finish(self) -> None:
        self._writer.finish()
        self._file.commit(final=True)
        self._file.close()

    def abandon(self) -> None:
        """After a write error: keep the file readable up to the last good commit."""
        self._file.salvage()
        self._file.close()


class RecordingWriter:
    """Thread-safe, bounded MCAP recorder: :meth:`write` queues (never blocks), a worker
    thread writes. ``OSError`` from the constructor when ``path`` cannot be written."""

    def __init__(self, path: str | Path, metadata: dict | None = None,
                 chunk_bytes: int = 64 * 1024, chunk_seconds: float = 0.5,
                 max_queue_bytes: int = 32 * 1024 * 1024):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._mcap = McapFile(self.path, metadata, chunk_bytes)
        self._chunk_seconds = chunk_seconds
        self._max_queue_bytes = max_queue_bytes
        self._q: deque = deque()
        self._queued_bytes = 0
        self._cv = threading.Condition()
        self._closing = self._closed = False
        self.written = self.dropped = self.write_errors = 0
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="recording", daemon=True)
        self._thread.start()

    @property
    def count(self) -> int:
        return self.written

    def write(self, topic: str, log_time: int, data: bytes) -> bool:
        """Queue one message (any thread); ``False`` when it was dropped (queue full, or the
        recording ended by an error or :meth:`close`)."""
        n = len(data)
        with self._cv:
            if self._closing or self.error is not None or \
                    self._queued_bytes + n > self._max_queue_bytes:
                self.dropped += 1
                return False
            self._q.append((topic, int(log_time), bytes(data)))
            self._queued_bytes += n
            self._cv.notify()
        return True

    def stats(self) -> dict:
        """``written``, ``dropped`` (queue full or after an error), ``write_errors``,
        ``error`` (the first, or ``None``), ``queued_bytes``."""
        with self._cv:
            return {"written": self.written, "dropped": self.dropped,
                    "write_errors": self.write_errors, "error": self.error,
                    "queued_bytes": self._queued_bytes}

    def _run(self) -> None:
        last, dirty = time.monotonic(), False
        while True:
            with self._cv:
                if not self._q and not self._closing:
                    self._cv.wait(self._chunk_seconds / 4)
                items = list(self._q)
                self._q.clear()
                self._queued_bytes = 0
                closing = self._closing
            if self.error is None:
                done = 0
                try:
                    for topic, t, data in items:
                        self._mcap.add(topic, t, data)
                        self.written += 1
                        done += 1
                    dirty = dirty or bool(items)
                    if dirty and (closing or time.monotonic() - last >= self._chunk_seconds):
                        self._mcap.flush()
                        last, dirty = time.monotonic(), False
                except Exception as exc:  # a full disk, an I/O error: end the recording
                    with self._cv:
                        self.write_errors += 1
                        self.error = f"{type(exc).__name__}: {exc}"
                        self.dropped += len(items) - done
                    self._mcap.abandon()
            elif items:
                with self._cv:
                    self.dropped += len(items)
            if closing:
                return

    def close(self) -> None:
        """Write everything queued, then the summary and footer (idempotent)."""
        if self._closed:
            return
        self._closed = True
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._thread.join()
        if self.error is None:
            try:
                self._mcap.finish()
            except Exception as exc:
                self.write_errors += 1
                self.error = f"{type(exc).__name__}: {exc}"
                self._mcap.abandon()


def read_recording(path: str | Path, info: dict | None = None) -> Iterator[RecordedMessage]:
    """Every message in file order (the order they happened). A file cut off mid-record
    yields everything up to its last complete chunk; ``info`` (if given) gets ``metadata``,
    ``truncated`` (cut off mid-record) and ``finalised`` (closed cleanly: it has a summary; a
    recording whose server was killed ends with the bare trailer instead)."""
    from mcap.records import Channel, Footer, Message, Metadata
    from mcap.stream_reader import StreamReader

    info = info if info is not None else {}
    info.setdefault("metadata", {})
    info["truncated"] = False
    info["finalised"] = False
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
            elif isinstance(rec, Footer):
                info["finalised"] = rec.summary_start != 0


def recover(src: str | Path, dst: str | Path) -> dict:
    """Rewrite the readable part of recording ``src`` (cut off or not finalised) into a
    finalised recording ``dst`` (``tracker recover``); returns ``{"messages", "truncated",
    "finalised"}`` (the last two describe ``src``)."""
    info: dict = {}
    out = None
    n = 0
    try:
        for m in read_recording(src, info):
            if out is None:
                out = McapFile(dst, info["metadata"])
            out.add(m.topic, m.log_time, m.data)
            n += 1
        if out is None:
            out = McapFile(dst, info["metadata"])
        out.finish()
    except BaseException:
        if out is not None:
            out.abandon()
        raise
    return {"messages": n, "truncated": info["truncated"], "finalised": info["finalised"]}


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
