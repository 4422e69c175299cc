"""``tracker openxr``: publish a live OpenXR headset's head and hand poses as protocol frames.

Reads the VIEW pose and both hands' joints (``XR_EXT_hand_tracking``) through pyopenxr in
the runtime's STAGE space and publishes them to the tracker's ingest address. Without a
runtime (or without hand tracking) it says what is missing and what to install, and exits 2.
"""

from __future__ import annotations

import sys

from tracker.protocol import DEFAULT_INGEST


def add_arguments(p):
    p.add_argument("--connect", default=DEFAULT_INGEST, metavar="ADDR",
                   help=f"the tracker's ingest address (default {DEFAULT_INGEST})")
    p.add_argument("--session", default="openxr", metavar="ID",
                   help="session id of this headset's stream (default: openxr)")
    p.add_argument("--rate", type=float, default=90.0,
                   help="frames per second when the runtime runs headless (default 90; with a "
                        "graphics session the runtime's display rate paces the frames)")
    p.add_argument("--accept-inferred", action="store_true",
                   help="send hands whose pose is valid but not actively tracked as tracked")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="stop after S seconds (default: until interrupted)")
    p.add_argument("--verbose", action="store_true",
                   help="also print the OpenXR loader's own messages")


def run(args) -> int:
    import time

    from tracker.cli import UserError
    from tracker.openxr_source import OpenXRSource, OpenXRUnavailable, publish
    from tracker.protocol import SESSION_RE

    if not SESSION_RE.match(args.session):
        raise UserError("--session must be 1-64 characters of [A-Za-z0-9._-]")
    if args.rate <= 0:
        raise UserError("--rate must be positive")
    source = OpenXRSource(require_tracked=not args.accept_inferred, rate_hz=args.rate)
    try:
        with source:
            print(f"tracker openxr: {source.system_name} on {source.runtime_name} "
                  f"({'headless' if source.headless else 'OpenGL session'}, "
                  f"{source.space_name} space) -> {args.connect} as session {args.session}",
                  file=sys.stderr, flush=True)
            t_end = None if args.duration is None else time.monotonic() + args.duration
            sent = publish(args.connect, args.session, source,
                           stop=lambda: t_end is not None and time.monotonic() > t_end)
        print(f"tracker openxr: sent {sent} frames", file=sys.stderr)
        return 0
    except OpenXRUnavailable as exc:
        if args.verbose and source.loader_log:
            print("".join(source.loader_log), file=sys.stderr, end="")
        raise UserError(str(exc)) from None
    except Exception as exc:  # pyopenxr raises its own XrException types mid-session
        import xr

        if isinstance(exc, xr.XrException):
            raise UserError(f"the OpenXR runtime failed: {type(exc).__name__}: {exc}") from None
        raise
