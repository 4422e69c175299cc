"""``tracker simulate``: synthetic headsets that publish protocol frames (no headset needed).

Each of ``--sessions K`` simulated users plays one MOTION (cycling through the list): an
AMASS ``.npz``, a ``.bvh`` (retargeted on the fly) or ``procedural[:walk,wave,...]``; frames
carry their ground truth under ``gt`` (viewers overlay it; the server ignores it).
"""

from __future__ import annotations

from tracker.protocol import DEFAULT_INGEST


def add_arguments(p):
    from tracker.options import add_body_model_argument
    from tracker.signals.headset import DEFAULT_HMD_OFFSET

    p.add_argument("motion", nargs="*", default=["procedural"], metavar="MOTION",
                   help="AMASS .npz, .bvh, or 'procedural[:walk,turn,reach,crouch,wave,idle]' "
                        "(default: procedural)")
    p.add_argument("--connect", default=DEFAULT_INGEST, metavar="ADDR",
                   help=f"the server's ingest address (default {DEFAULT_INGEST})")
    p.add_argument("--rate", type=float, default=90.0, help="frames per second (default 90)")
    p.add_argument("--sessions", type=int, default=1, metavar="K",
                   help="simulated users, sessions PREFIX0..PREFIX{K-1} (default 1)")
    p.add_argument("--session-prefix", default="sim-", metavar="PREFIX",
                   help="session ids are PREFIX0, PREFIX1, ...")
    p.add_argument("--loop", action="store_true", help="repeat the motions forever")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="stop after S seconds (default: at the end of the motions)")
    p.add_argument("--seconds", type=float, default=20.0,
                   help="length of procedural motions (default 20)")
    p.add_argument("--seed", type=int, default=0, help="motion and noise seed (+ user index)")
    p.add_argument("--visibility", default="device", choices=("device", "half-space"),
                   help="half-space: the simulated device also loses hands behind the headset")
    p.add_argument("--noise", default="consumer", metavar="PRESET",
                   help="device error model: none, clean, consumer, degraded (default consumer)")
    p.add_argument("--hmd-offset", type=float, nargs=3, default=None, metavar=("X", "Y", "Z"),
                   help="the users' headset origin in the head-joint frame, metres "
                        "(default: the library default "
                        f"{' '.join(f'{v:g}' for v in DEFAULT_HMD_OFFSET)})")
    p.add_argument("--floor-offset", type=float, default=0.0, metavar="M",
                   help="the headset's floor error: added to every published y (the matching "
                        "calibration profile has floor_offset = -M)")
    p.add_argument("--no-ground-truth", action="store_true",
                   help="leave the gt key out of the frames (smaller messages)")
    add_body_model_argument(p, ' that poses the users')
    p.add_argument("--curve-server-key", default=None, metavar="FILE",
                   help="CURVE: the server's public key file (server.key)")
    p.add_argument("--curve-client-key", default=None, metavar="FILE",
                   help="CURVE: this client's secret key file (NAME.key_secret)")


def run(args) -> int:
    import signal
    import sys
    import threading
    import time

    import zmq

    from tracker.body import BodyModelError, load_body_model
    from tracker.cli import UserError
    from tracker.server.simulator import (
        MotionSpecError,
        load_motion,
        make_headset,
        publish_streams,
    )
    from tracker.signals.device import DeviceModel
    from tracker.signals.headset import DEFAULT_HMD_OFFSET

    if args.rate <= 0 or args.sessions < 1:
        raise UserError("--rate must be > 0 and --sessions >= 1")
    if args.noise not in ("none", *DeviceModel.presets()):
        raise UserError(f"unknown --noise {args.noise!r}: none, {', '.join(DeviceModel.presets())}")
    try:
        body = load_body_model(args.body_model)
    except BodyModelError as exc:
        raise UserError(str(exc)) from exc
    heads = []
    for k in range(args.sessions):
        spec = args.motion[k % len(args.motion)]
        try:
            motion = load_motion(spec, args.rate, args.seconds, args.seed + k, body)
        except (MotionSpecError, ValueError) as exc:
            raise UserError(str(exc)) from exc
        heads.append(make_headset(
            body, motion, f"{args.session_prefix}{k}", args.noise, args.visibility,
            args.hmd_offset or DEFAULT_HMD_OFFSET, args.floor_offset, args.seed + k,
            not args.no_ground_truth))
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 1000)
    if args.curve_server_key:
        from tracker.server.security import set_curve_client

        if not args.curve_client_key:
            raise UserError("--curve-server-key needs --curve-client-key")
        server_public, _ = zmq.auth.load_certificate(args.curve_server_key)
        set_curve_client(sock, server_public, args.curve_client_key)
    monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED)
    try:
        sock.connect(args.connect)
    except zmq.ZMQError as exc:
        raise UserError(f"cannot connect to {args.connect}: {exc}") from exc
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    n = max(h.num_frames for h in heads)
    print(f"tracker simulate: {args.sessions} session(s) x {n} frames at {args.rate:g} Hz -> "
          f"{args.connect}{' (loop)' if args.loop else ''}", file=sys.stderr, flush=True)
    time.sleep(0.3)  # let the connection and subscription settle (ZeroMQ slow joiner)
    counts = publish_streams(sock, heads, args.rate, args.loop, args.duration, stop.is_set)
    connected = monitor.poll(0) != 0  # a connection event is queued once one was made
    sock.disable_monitor()
    monitor.close()
    sock.close()
    ctx.term()
    if not connected:
        print(f"tracker simulate: error: no tracker was listening at {args.connect}: none of "
              f"the {counts['sent']} frames was delivered (start tracker serve first)",
              file=sys.stderr, flush=True)
        return 1
    print(f"tracker simulate: sent {counts['sent']} frames in {counts['ticks']} ticks "
          f"({counts['late']} late restarts)", file=sys.stderr, flush=True)
    return 0
