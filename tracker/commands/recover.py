"""``tracker recover IN OUT``: rewrite a cut-off or unfinalised recording into a finalised one.

Recordings written by ``tracker serve --record`` stay complete MCAP files while the server
runs (``tracker.recording``), so a killed server's file opens as it is; this command is for
files cut in the middle of a write (power loss, a full disk on another writer, copies of a
growing file, recordings from before that scheme): it keeps every message up to the last
complete record and writes ``OUT`` with the summary and indexes that MCAP tools use.
"""

from __future__ import annotations


def add_arguments(p):
    p.add_argument("input", metavar="IN", help="the recording to read (MCAP, possibly cut off)")
    p.add_argument("output", metavar="OUT", help="where to write the finalised recording")


def run(args) -> int:
    import sys
    from pathlib import Path

    from tracker.cli import UserError
    from tracker.recording import is_recording, recover

    src, dst = Path(args.input), Path(args.output)
    if not src.is_file():
        raise UserError(f"{src}: no such file")
    if src.resolve() == dst.resolve():
        raise UserError("IN and OUT must differ (OUT is written from scratch)")
    if not is_recording(src):
        raise UserError(f"{src}: not an MCAP recording (no MCAP magic)")
    try:
        res = recover(src, dst)
    except OSError as exc:
        raise UserError(f"{dst}: cannot write ({exc.strerror or exc})") from exc
    state = ("cut off mid-record" if res["truncated"] else
             "finalised already" if res["finalised"] else "not finalised")
    print(f"tracker recover: {src} ({state}): {res['messages']} messages recovered to {dst}",
          file=sys.stderr)
    return 0
