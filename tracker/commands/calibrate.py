"""``tracker calibrate``: measure a user (body shape, T_HMD, floor) and write a profile.

Three ways in:

* live: ``tracker calibrate --ingest tcp://127.0.0.1:5555 --session alice --out alice.json``
  binds the ingest address like ``tracker serve`` (stop serve first) while the user stands
  straight with the arms stretched out sideways for a few seconds, then looks around;
* from a recording: ``tracker calibrate --recording take.mcap --session alice --out ...``;
* from known numbers: ``tracker calibrate --height 1.80 [--arm-span 1.82] --out ...``
  (stature, top of the head to the soles; arm span fingertip to fingertip).

``--height``/``--arm-span`` may also accompany a live or recorded capture (they then pin the
stature, and the floor is measured exactly). ``--write-motion calib.npz`` writes the
calibration motion of a synthetic user (of ``--height`` or the mean shape) in the AMASS
layout, for ``tracker simulate`` to publish.
"""

from __future__ import annotations

import sys


def add_arguments(p):
    from tracker.options import add_body_model_argument

    src = p.add_mutually_exclusive_group()
    src.add_argument("--ingest", metavar="ADDR", default=None,
                     help="listen for a headset's frames on this ZeroMQ address (SUB, bound, as "
                          "serve's ingest; e.g. tcp://127.0.0.1:5555)")
    src.add_argument("--recording", metavar="FILE", default=None,
                     help="read the frames from an MCAP recording instead")
    p.add_argument("--session", metavar="ID", default=None,
                   help="the session to calibrate (default: the first one that sends)")
    p.add_argument("--seconds", type=float, default=5.0,
                   help="how long to capture, seconds of device time (default: 5)")
    p.add_argument("--start", type=float, default=0.0, metavar="S",
                   help="with --recording: skip this many seconds of the session first")
    p.add_argument("--wait", type=float, default=10.0, metavar="S",
                   help="live: how long to wait for the first frame (default: 10)")
    p.add_argument("--height", type=float, default=None, metavar="M",
                   help="the user's stature in metres (top of the head to the soles)")
    p.add_argument("--arm-span", type=float, default=None, metavar="M",
                   help="the user's arm span in metres, fingertip to fingertip")
    p.add_argument("--hmd-offset", type=float, nargs=3, default=None, metavar=("X", "Y", "Z"),
                   help="without a capture: T_HMD translation in the head-joint frame, metres "
                        "(default: the tracker's built-in offset)")
    p.add_argument("--floor-offset", type=float, default=0.0, metavar="M",
                   help="without a capture: metres added to every incoming stage y (default 0)")
    p.add_argument("--floor-prior", type=float, default=None, metavar="M",
                   help="how far the headset's floor may be off, metres (default 0.10; small "
                        "values trust the headset's floor, large ones the body model)")
    p.add_argument("--shape-components", type=int, default=None, metavar="K",
                   help="how many leading betas to fit (default 4)")
    add_body_model_argument(p)
    p.add_argument("--out", metavar="PROFILE.json", default=None,
                   help="where to write the profile")
    p.add_argument("--write-motion", metavar="NPZ", default=None,
                   help="instead: write the calibration motion of a synthetic user of --height "
                        "(AMASS layout, for tracker simulate)")
    p.add_argument("--fps", type=float, default=60.0,
                   help="with --write-motion: frame rate (default 60)")


def _fmt_offset(t) -> str:
    return "(" + ", ".join(f"{x:+.3f}" for x in t) + ") m"


def _summary(profile, path) -> str:
    meta = profile.metadata
    m = meta.get("model", {})
    lines = [f"wrote {path}"]
    nan = float("nan")
    lines.append(f"  body: stature {m.get('height_m', nan):.3f} m, arm span "
                 f"{m.get('arm_span_m', nan):.3f} m fingertip to fingertip "
                 f"({m.get('wrist_span_m', nan):.3f} m wrist to wrist), headset (eye) height "
                 f"{m.get('headset_height_m', nan):.3f} m")
    lines.append(f"  betas: {' '.join(f'{b:+.2f}' for b in profile.betas[:6])} ...")
    lines.append(f"  T_HMD translation {_fmt_offset(profile.hmd_offset)}, floor offset "
                 f"{profile.floor_offset:+.3f} m")
    meas = meta.get("measured")
    if meas:
        lines.append(f"  measured: headset {meas['headset_height_m']:.3f} m above the floor, "
                     f"wrists {meas['arm_span_wrist_m']:.3f} m apart, shoulders "
                     f"{meas['shoulder_height_m']:.3f} m; hold {meas['hold_s']:.1f} s")
        fit = meta.get("fit", {})
        lines.append(f"  fit: wrists {100 * fit.get('pose_rms_m', 0):.1f} cm RMS, head pivot "
                     f"{100 * fit.get('pivot_rms_m', 0):.1f} cm RMS")
    for w in meta.get("warnings", []):
        lines.append(f"  warning: {w}")
    return "\n".join(lines)


def run(args) -> int:
    import torch

    from calibration.capture import CalibrationRefused, CaptureError
    from calibration.fit import FitOptions, fit_capture, fit_known
    from tracker.body import BodyModelError, load_body_model
    from tracker.cli import UserError

    torch.set_num_threads(1)  # tiny problems: threads only cost here
    live = args.ingest or args.recording
    if args.write_motion is None and args.out is None:
        raise UserError("--out PROFILE.json is required (or --write-motion NPZ)")
    if not live and args.write_motion is None and args.height is None:
        raise UserError("give a capture (--ingest ADDR or --recording FILE) or your numbers "
                        "(--height M [--arm-span M])")
    for name in ("height", "arm_span"):
        v = getattr(args, name)
        if v is not None and not 0.8 <= v <= 2.6:
            raise UserError(f"--{name.replace('_', '-')} {v:g} m is out of range (0.8-2.6 m)")
    if args.arm_span is not None and args.height is None and not live:
        raise UserError("--arm-span needs --height (or a capture)")
    if args.seconds <= 0:
        raise UserError("--seconds must be positive")
    if live and (args.hmd_offset is not None or args.floor_offset):
        raise UserError("--hmd-offset/--floor-offset are for profiles without a capture; a "
                        "capture measures them")

    opts = {}
    if args.floor_prior is not None:
        if args.floor_prior <= 0:
            raise UserError("--floor-prior must be positive")
        opts["floor_prior_m"] = args.floor_prior
    if args.shape_components is not None:
        if args.shape_components < 1:
            raise UserError("--shape-components must be at least 1")
        opts["shape_components"] = args.shape_components
    options = FitOptions(**opts)
    try:
        body = load_body_model(args.body_model, dtype=torch.float64)
    except BodyModelError as exc:
        raise UserError(str(exc)) from exc

    if args.write_motion is not None:
        return _write_motion(args, body, options)

    if not live:
        from tracker.signals.headset import DEFAULT_HMD_OFFSET

        profile = fit_known(body, args.height, args.arm_span,
                            hmd_offset=args.hmd_offset or DEFAULT_HMD_OFFSET,
                            floor_offset=args.floor_offset, options=options)
    else:
        capture = _capture(args)
        try:
            profile = fit_capture(body, capture, height=args.height, arm_span=args.arm_span,
                                  options=options)
        except CalibrationRefused as exc:
            raise UserError(f"calibration refused ({exc.reason}): {exc}; no profile written"
                            ) from None
        except CaptureError as exc:
            raise UserError(str(exc)) from None
    try:
        profile.save(args.out)
    except OSError as exc:
        raise UserError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    print(_summary(profile, args.out))
    return 0


def _capture(args):
    from calibration.capture import CaptureError, listen, read_recording
    from tracker.cli import UserError

    try:
        if args.recording:
            return read_recording(args.recording, args.session, args.start, args.seconds)
        _warn_if_exposed(args.ingest)

        def ready():
            who = f"session {args.session}" if args.session else "the first session"
            print(f"listening on {args.ingest} for {args.seconds:g} s of {who}: stand straight, "
                  "arms out sideways, palms down, and hold still; then look around (left, "
                  "right, up, down) keeping the shoulders still", file=sys.stderr, flush=True)

        def started(session):
            print(f"receiving session {session} ...", file=sys.stderr, flush=True)

        return listen(args.ingest, args.session, args.seconds, args.wait, started, ready)
    except CaptureError as exc:
        raise UserError(str(exc)) from None


def _warn_if_exposed(address: str) -> None:
    host = address.split("://", 1)[-1].rsplit(":", 1)[0]
    if host not in ("127.0.0.1", "localhost", "[::1]", "::1") and not address.startswith(
            ("ipc://", "inproc://")):
        print(f"warning: listening on {address}, beyond loopback and without authentication",
              file=sys.stderr)


def _write_motion(args, body, options) -> int:
    import numpy as np

    from calibration.fit import body_measurements, fit_known
    from calibration.pose import CalibrationMotionConfig, write_calibration_motion

    betas = np.zeros(body.num_betas)
    if args.height is not None:
        betas = fit_known(body, args.height, args.arm_span, options=options).betas
    path = write_calibration_motion(args.write_motion, body, betas,
                                    CalibrationMotionConfig(fps=args.fps))
    m = body_measurements(body, betas)
    print(f"wrote {path}: a synthetic user of stature {m['height']:.3f} m (arm span "
          f"{m['arm_span']:.3f} m) holding the calibration pose, then looking around; betas "
          f"{' '.join(f'{b:+.2f}' for b in betas[:4])} ...")
    return 0
