"""Errors every layer may raise for the command line to print in one line."""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """A problem the user can fix (bad path, bad option): printed without a traceback."""


def describe_file(path: str | Path) -> str:
    """What a file that failed to load holds, judged by its first bytes, in words for an error
    message ("a text file", "a damaged or truncated zip archive", "a NumPy .npz archive", ...),
    so that no loader's internals (``allow_pickle``, ``inline_container.cc``) reach the user."""
    import zipfile

    p = Path(path)
    try:
        with p.open("rb") as fh:
            head = fh.read(512)
    except IsADirectoryError:
        return "a folder"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if not head:
        return "an empty file"
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(p) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return "a damaged or truncated zip archive"
        if names and all(n.endswith(".npy") for n in names):
            return "a NumPy .npz archive"
        if any(n.endswith("data.pkl") for n in names):
            return "a PyTorch file"
        return "a zip archive"
    if head.startswith(b"\x93NUMPY"):
        return "a single NumPy array (.npy)"
    if head.startswith(b"\x89MCAP"):
        return "an MCAP recording"
    if head[:1] == b"\x80":
        return "a Python pickle"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the 512th byte
            return "a binary file of another kind"
    return "a text file"

