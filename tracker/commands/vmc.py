"""``tracker vmc``: send a session's poses to VMC protocol receivers (OSC over UDP).

VSeeFace, Warudo, VNyan or EVMC4U in Unity then animate an avatar with no code: point their
VMC receiver at the port given with ``--to`` (39539 by default). Bones, frames and the
thumb's T-pose: :mod:`tracker.vmc.mapping`; messages: :mod:`tracker.vmc.osc`.
"""

from __future__ import annotations

from tracker.protocol import DEFAULT_PUBLISH
from tracker.vmc.osc import DEFAULT_TARGET


def add_arguments(p):
    p.add_argument("--connect", default=DEFAULT_PUBLISH, metavar="ADDR",
                   help=f"the server's publish address (default {DEFAULT_PUBLISH})")
    p.add_argument("--to", default=DEFAULT_TARGET, metavar="HOST:PORT",
                   help=f"the VMC receiver (default {DEFAULT_TARGET}, the VMC protocol's "
                        "Marionette port)")
    p.add_argument("--session", default=None, metavar="ID",
                   help="session to send (default: the first one that arrives)")


def run(args) -> int:
    import signal
    import sys
    import threading

    from tracker.cli import UserError
    from tracker.protocol import SESSION_RE
    from tracker.vmc.osc import TargetError, parse_target

    # checked before the bridge (and the body model's torch import behind it) loads
    if args.session is not None and not SESSION_RE.fullmatch(args.session):
        raise UserError(f"--session {args.session!r}: expected 1-64 characters of "
                        "[A-Za-z0-9._-]")
    if "://" not in args.connect:
        raise UserError(f"--connect {args.connect!r}: expected a ZeroMQ address such as "
                        f"{DEFAULT_PUBLISH}")
    try:
        target = parse_target(args.to)
    except TargetError as exc:
        raise UserError(str(exc)) from None

    from tracker.vmc.bridge import BridgeError, run_bridge

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        counts = run_bridge(args.connect, target, args.session, stop.is_set)
    except BridgeError as exc:
        raise UserError(str(exc)) from None
    extra = f", {counts['skipped']} unusable poses skipped" if counts["skipped"] else ""
    who = f"session {counts['session']!r}" if counts["session"] else "no session (no pose came)"
    print(f"tracker vmc: sent {counts['frames']} frames of {who} to {args.to}{extra}",
          file=sys.stderr, flush=True)
    return 0
