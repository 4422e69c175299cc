"""``tracker serve``: fit headset streams live (ZeroMQ + MessagePack, see the README).

Devices PUB frames to the ingest address (the server's SUB is bound there); subscribers SUB
to the publish address for ``pose/<session>`` and ``status``. Runs until SIGINT or SIGTERM,
then finalises the recording and exits 0.
"""

from __future__ import annotations

from tracker.protocol import DEFAULT_INGEST, DEFAULT_PUBLISH


def add_arguments(p):
    from tracker.server.build import add_model_arguments

    p.add_argument("--ingest", default=DEFAULT_INGEST, metavar="ADDR",
                   help=f"where devices send frames (bound SUB; default {DEFAULT_INGEST})")
    p.add_argument("--publish", default=DEFAULT_PUBLISH, metavar="ADDR",
                   help=f"where poses and status go out (bound PUB; default {DEFAULT_PUBLISH})")
    add_model_arguments(p)
    p.add_argument("--record", default=None, metavar="FILE",
                   help="record ingest payloads and published poses to an MCAP file")
    p.add_argument("--curve-keys", default=None, metavar="DIR",
                   help="CURVE authentication: DIR/server.key_secret and DIR/clients/*.key "
                        "(the public keys allowed to connect)")
    p.add_argument("--profiles", default=None, metavar="DIR",
                   help="per-session calibration profiles DIR/<session>.json "
                        "(tracker calibrate); default: mean shape, default headset offset")
    p.add_argument("--max-sessions", type=int, default=256, metavar="N",
                   help="cap on live sessions; frames of new sessions beyond it are "
                        "rejected as session_limit (default 256)")
    p.add_argument("--status-period", type=float, default=1.0, metavar="S",
                   help="seconds between status messages (default 1)")
    p.add_argument("--no-frame-echo", action="store_true",
                   help="do not publish frame/<session> (the ingest payload each pose answers)")


def run(args) -> int:
    import gc
    import signal
    import sys
    import threading

    import zmq

    from tracker.cli import UserError
    from tracker.recording import RecordingWriter
    from tracker.server.build import build_core, set_threads
    from tracker.server.loop import Server, ServerConfig
    from tracker.server.security import KeyFolderError, load_server_keys, warn_if_exposed

    threads = set_threads(args.threads)
    keys = None
    if args.curve_keys:
        try:
            keys = load_server_keys(args.curve_keys)
        except KeyFolderError as exc:
            raise UserError(str(exc)) from exc
    core, info = build_core(args)
    print(f"tracker serve: warming up engine {core.engine.name} (a compiled engine builds once, "
          "then loads from its cache)", file=sys.stderr, flush=True)
    core.warm_up()
    # The model, engine and library objects live for the whole run: move them out of the
    # garbage collector's view, so that its full collections (which scan every tracked
    # object, tens of ms with torch loaded) do not stall a tick.
    gc.collect()
    gc.freeze()
    warn_if_exposed([args.ingest, args.publish], keys is not None)
    recorder = None
    if args.record:
        meta = dict(info, engine=core.engine.name, visibility=args.visibility, threads=threads,
                    clock="monotonic_ns", max_sessions=args.max_sessions, version=1)
        try:
            recorder = RecordingWriter(args.record, meta)
        except OSError as exc:
            raise UserError(f"{args.record}: cannot write ({exc.strerror or exc})") from exc
    cfg = ServerConfig(args.ingest, args.publish, args.status_period, keys, recorder,
                       not args.no_frame_echo)
    try:
        server = Server(core, cfg)
    except zmq.ZMQError as exc:
        if recorder is not None:
            recorder.close()
        raise UserError(f"cannot bind {args.ingest} / {args.publish}: {exc}") from exc

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()
        server.wake()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print(f"tracker serve: ingest {server.ingest_addr}  publish {server.publish_addr}  "
          f"engine {core.engine.name}  threads {threads}  model {info['checkpoint']}  "
          f"curve {'on' if keys else 'off'}  record {args.record or '-'}  ready",
          file=sys.stderr, flush=True)
    try:
        server.serve(stop)
    finally:
        server.close()
    print("tracker serve: stopped" + (f", recording {args.record} finalised" if recorder
                                      else ""), file=sys.stderr, flush=True)
    return 0
