"""``tracker serve``: fit headset streams live (ZeroMQ + MessagePack, see the README).

Devices PUB frames to the ingest address (the server's SUB is bound there); subscribers SUB
to the publish address for ``pose/<session>`` and ``status``. Runs until SIGINT, SIGTERM or
SIGHUP (handlers in place before the recording is opened), then finalises the recording,
prints its totals and exits 0. Exits 1 when a worker thread failed, or with CURVE the ZAP
authenticator died (``tracker.server.loop``), 2 on bad options. Log lines:
``tracker.server.serve_log``.
"""

from __future__ import annotations

from tracker.protocol import DEFAULT_INGEST, DEFAULT_PUBLISH


def add_arguments(p):
    from tracker.options import add_light_iterations_argument, add_model_arguments

    p.add_argument("--ingest", default=DEFAULT_INGEST, metavar="ADDR",
                   help=f"where devices send frames (bound SUB; default {DEFAULT_INGEST})")
    p.add_argument("--publish", default=DEFAULT_PUBLISH, metavar="ADDR",
                   help=f"where poses and status go out (bound PUB; default {DEFAULT_PUBLISH})")
    add_model_arguments(p)
    add_light_iterations_argument(p)
    p.add_argument("--record", default=None, metavar="FILE",
                   help="record accepted ingest payloads and published poses to an MCAP "
                        "file (readable even after a crash; see tracker recover)")
    p.add_argument("--curve-keys", default=None, metavar="DIR",
                   help="CURVE authentication: DIR/server.key_secret and DIR/clients/*.key "
                        "(the public keys allowed to connect)")
    p.add_argument("--profiles", default=None, metavar="DIR",
                   help="per-session calibration profiles DIR/<session>.json "
                        "(tracker calibrate); default: mean shape, default headset offset")
    p.add_argument("--max-sessions", type=int, default=256, metavar="N",
                   help="cap on live sessions; frames of new sessions beyond it are "
                        "rejected as session_limit (default 256)")
    p.add_argument("--max-sessions-per-client", type=int, default=16, metavar="N",
                   help="with --curve-keys: live sessions one client key may hold; more are "
                        "rejected as client_quota (default 16)")
    p.add_argument("--status-period", type=float, default=1.0, metavar="S",
                   help="seconds between status messages (default 1)")
    p.add_argument("--no-frame-echo", action="store_true",
                   help="do not publish frame/<session> (the frame each pose answers)")
    p.add_argument("--build", choices=("background", "wait"), default="background",
                   help="when the compiled engine or one of its light fits is not in the "
                        "engine cache yet (the first run after an install or a model change; "
                        "inductor takes minutes): serve at once (on eager, or on the cached "
                        "full engine) and switch between ticks when the build, done in a "
                        "low-priority child process, is ready (background), or build before "
                        "serving (wait) (default: background)")
    p.add_argument("--quiet", action="store_true",
                   help="no session and periodic lines (errors and the exit totals still "
                        "print)")
    p.add_argument("--log-period", type=float, default=10.0, metavar="S",
                   help="seconds between the one-line totals (default 10)")


def run(args) -> int:
    import gc
    import os
    import signal
    import sys
    import threading

    import zmq

    from tracker.cli import UserError
    from tracker.recording import RecordingWriter
    from tracker.server.build import build_core, set_threads
    from tracker.server.faults import FAULTS_ENV, FaultInjection
    from tracker.server.loop import Server, ServerConfig
    from tracker.server.security import KeyFolderError, load_server_keys, warn_if_exposed
    from tracker.server.serve_log import ServeLog

    for name, value, low in (("--max-sessions", args.max_sessions, 1),
                             ("--max-sessions-per-client", args.max_sessions_per_client, 1),
                             ("--status-period", args.status_period, 0.01),
                             ("--log-period", args.log_period, 0.1)):
        if not value >= low:
            raise UserError(f"{name} must be at least {low:g}, got {value:g}")
    try:
        faults = FaultInjection.parse(os.environ.get(FAULTS_ENV))
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    threads = set_threads(args.threads)
    keys = None
    if args.curve_keys:
        try:
            keys = load_server_keys(args.curve_keys)
        except KeyFolderError as exc:
            raise UserError(str(exc)) from exc
    core, info = build_core(args)
    build = info.pop("build", None)
    if build is None:
        print(f"tracker serve: warming up engine {core.engine.name} (a compiled engine builds "
              "once, then loads from its cache)", file=sys.stderr, flush=True)
    core.warm_up()
    # The model, engine and library objects live for the whole run: move them out of the
    # garbage collector's view, so that its full collections (which scan every tracked
    # object, tens of ms with torch loaded) do not stall a tick.
    gc.collect()
    gc.freeze()
    warn_if_exposed([args.ingest, args.publish], keys is not None)
    # From here on a signal stops the server cleanly (the recording is finalised): the
    # handlers are in place before the recorder opens its file.
    stop = threading.Event()  # the server's workers look at it at least every 0.1 s

    def on_signal(signum, frame):
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    recorder = None
    if args.record:
        meta = dict(info, engine=core.engine.name, visibility=args.visibility, threads=threads,
                    clock="monotonic_ns", max_sessions=args.max_sessions, version=1)
        try:
            recorder = RecordingWriter(args.record, meta)
        except OSError as exc:
            raise UserError(f"{args.record}: cannot write ({exc.strerror or exc})") from exc
    log = ServeLog(quiet=args.quiet, period_s=args.log_period)
    cfg = ServerConfig(args.ingest, args.publish, args.status_period, keys, recorder,
                       not args.no_frame_echo, log, faults, build)
    try:
        server = Server(core, cfg)
    except zmq.ZMQError as exc:
        if recorder is not None:
            recorder.close()
        raise UserError(f"cannot bind {args.ingest} / {args.publish}: {exc}") from exc
    print(f"tracker serve: ingest {server.ingest_addr}  publish {server.publish_addr}  "
          f"engine {core.engine.label}  threads {threads}  model {info['checkpoint']}  "
          f"curve {'on' if keys else 'off'}  record {args.record or '-'}  ready",
          file=sys.stderr, flush=True)
    try:
        server.serve(stop)
    finally:
        if build is not None:
            build.stop()
        server.close()
        if server.fatal is not None:
            log.error(f"{server.fatal}; stopped" + (f" (recording {args.record} finalised)"
                                                     if recorder else ""))
        log.exit_totals(server.status())
    if server.fatal is not None:
        return 1
    if recorder is not None and recorder.error is not None:
        state = f"recording {args.record} stopped early ({recorder.error}), readable"
    else:
        state = f"recording {args.record} finalised" if recorder else ""
    print("tracker serve: stopped" + (f", {state}" if state else ""), file=sys.stderr,
          flush=True)
    return 0
