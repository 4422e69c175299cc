"""``tracker replay``: run a recording through the tracker again (same code path as serve).

With the checkpoint, engine and thread count of the recording it reproduces the recorded
poses (the summary says how closely); ``--out DIR`` writes one AMASS-layout ``.npz`` per
session, ``--view`` shows it, ``--publish ADDR`` sends it out like a live server.
"""

from __future__ import annotations


def _speed(text: str) -> float | None:
    if text == "max":
        return None
    v = float(text)
    if v <= 0:
        raise ValueError(text)
    return v


def add_arguments(p):
    from tracker.options import add_light_iterations_argument, add_model_arguments

    p.add_argument("file", metavar="FILE", help="an MCAP recording (tracker serve --record)")
    p.add_argument("--speed", type=_speed, default=False, metavar="1|max",
                   help="multiple of real time, or max (default: 1 with --view/--publish, "
                        "else max)")
    p.add_argument("--view", action="store_true", help="show it in the Open3D viewer")
    p.add_argument("--session", default=None, metavar="ID",
                   help="with --view: the session to show (default: the first)")
    p.add_argument("--screenshot", default=None, metavar="FILE",
                   help="with --view: save one frame once the body is on screen, then exit "
                        "(no display needed)")
    p.add_argument("--publish", default=None, metavar="ADDR",
                   help="also publish pose/<session> (and frame/<session>, "
                        "skeleton/<session>) on a bound XPUB, as tracker serve does")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write DIR/<session>.npz (AMASS layout, Z up) per session")
    add_model_arguments(p, recorded=True)
    add_light_iterations_argument(p, recorded=True)


def run(args) -> int:
    import re
    import sys
    from collections import defaultdict
    from pathlib import Path

    from tracker.cli import UserError
    from tracker.recording import is_recording, recording_metadata
    from tracker.server.build import build_core, set_threads
    from tracker.server.profiles import RecordedProfiles
    from tracker.server.replay import replay, write_amass_npz

    path = Path(args.file)
    if not path.is_file():
        raise UserError(f"{path}: no such recording")
    try:
        if not is_recording(path):
            raise UserError(f"{path}: not a recording (expected an MCAP file written by "
                            "tracker serve --record)")
        meta = recording_metadata(path)
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc})") from exc
    if args.view:
        from tracker.viewer import display_problem

        if problem := display_problem(args.screenshot is not None):
            raise UserError(problem)
    engine_asked = args.engine is not None
    args.engine = args.engine or meta.get("engine", "auto")
    args.visibility = args.visibility or meta.get("visibility", "device")
    # metadata values are text: "[4, 2]", or "4" / "None" from before the ladder of light fits
    recorded_light = tuple(int(n) for n in re.findall(r"\d+", meta.get("light_iterations", "")))
    if args.light_iterations is None:  # as recorded (none in recordings from before them)
        args.light_iterations = recorded_light
    threads = set_threads(args.threads or int(meta.get("threads", 0)) or None)
    args.profiles = None
    core, info = build_core(args)
    core.profiles = RecordedProfiles(core.body)  # the profiles the recording applied
    rec_sha = meta.get("checkpoint_sha256")
    light_now = core.engine.iterations[1:]
    if meta and (rec_sha != info["checkpoint_sha256"] or meta.get("engine") != core.engine.name
                 or recorded_light != light_now):
        print(f"tracker replay: note: recorded with {meta.get('checkpoint')} "
              f"({rec_sha or '-'}) / {meta.get('engine')} / light fits "
              f"{_counts(recorded_light)}; replaying with {info['checkpoint']} "
              f"({info['checkpoint_sha256'] or '-'}) / {core.engine.name} / light fits "
              f"{_counts(light_now)}: poses will differ", file=sys.stderr)
    if args.speed is False:
        args.speed = 1.0 if (args.view or args.publish) else None

    fitted: dict = defaultdict(list)
    skeletons_sent: dict = {}
    pub = None
    if args.publish:
        import zmq

        from tracker.protocol import frame_topic, pose_topic, skeleton_topic
        from tracker.server.subscriptions import Subscriptions

        ctx = zmq.Context.instance()
        pub = ctx.socket(zmq.XPUB)  # as serve: subscribing asks for the current skeletons
        pub.setsockopt(zmq.XPUB_VERBOSE, 1)
        pub.setsockopt(zmq.LINGER, 200)
        subscriptions = Subscriptions()
        try:
            pub.bind(args.publish)
        except zmq.ZMQError as exc:
            raise UserError(f"cannot bind {args.publish}: {exc}") from exc

    def on_pose(msg, payload, data):
        if args.out:
            fitted[msg["session"]].append({k: msg[k] for k in ("seq", "t", "pose", "transl",
                                                               "betas")})
        if pub is not None:
            s = msg["session"]
            due = core.skeletons_for(subscriptions.read(pub))
            sk = core.skeletons.get(s)
            if sk is not None and sk is not skeletons_sent.get(s):  # a new session or shape
                skeletons_sent[s] = sk
                due.append((s, sk))
            for sid, sk in due:
                pub.send_multipart([skeleton_topic(sid), sk])
            pub.send_multipart([frame_topic(msg["session"]), payload])
            pub.send_multipart([pose_topic(msg["session"]), data])

    def on_engine(name):
        """The live server switched engines here (its background build was ready): do the
        same, unless --engine chose one."""
        if engine_asked or name == core.engine.name:
            return None
        from engines.base import EngineError
        from engines.registry import make_engine

        print(f"tracker replay: the recording switched to engine {name} here; loading it "
              "(a build takes minutes if it is not cached)", file=sys.stderr, flush=True)
        try:
            return make_engine(name, core.engine.fitter,
                               light_iterations=core.engine.iterations[1:])
        except EngineError as exc:
            print(f"tracker replay: note: {exc}; going on with {core.engine.name} (poses "
                  "will differ)", file=sys.stderr, flush=True)
            return None

    print(f"tracker replay: {path} engine {core.engine.name} threads {threads} visibility "
          f"{args.visibility} speed {args.speed or 'max'}", file=sys.stderr, flush=True)
    if args.view:
        from tracker.viewer.app import ViewerError, run_viewer
        from tracker.viewer.source import ReplaySource

        source = ReplaySource(path, core, args.speed, on_pose)
        try:
            run_viewer(source, core.body, args.session, args.screenshot)
        except ViewerError as exc:
            raise UserError(str(exc)) from exc
        stats = source.stats
    else:
        stats = replay(path, core, on_pose, args.speed, on_engine=on_engine)
    if pub is not None:
        pub.close()
    if stats is None:
        return 0
    _report(stats, path)
    if args.out:
        for session, msgs in fitted.items():
            out = write_amass_npz(args.out, session, msgs, core.body)
            print(f"  wrote {out} ({len(msgs)} frames)")
    return 0


def _counts(light: tuple[int, ...]) -> str:
    """``4,2``, or ``-`` for none."""
    return ",".join(map(str, light)) or "-"


def _report(stats, path) -> None:
    print(f"{path}: {stats.ticks} ticks, {stats.poses} poses"
          + (" (recording cut off: read up to its last complete chunk)" if stats.truncated
             else ""))
    for s, c in sorted(stats.compare.items()):
        same = (c["matched"] == c["recorded"] == c["replayed"] and c["max_abs_diff"] == 0.0
                and c["state_mismatches"] == 0)
        print(f"  {s}: replayed {c['replayed']}, recorded {c['recorded']}, matched "
              f"{c['matched']}, max |diff| {c['max_abs_diff']:.3g}"
              + ("  (identical)" if same else ""))
