"""``tracker view``: watch a server's poses in an Open3D window.

Needs a display (refused at once without one); headless: ``--screenshot out.png`` renders
one frame off-screen, or ``xvfb-run -a tracker view``. Key L hides or shows the legend.
"""

from __future__ import annotations

from tracker.protocol import DEFAULT_PUBLISH


def add_arguments(p):
    from tracker.options import add_body_model_argument

    p.add_argument("--connect", default=DEFAULT_PUBLISH, metavar="ADDR",
                   help=f"the server's publish address (default {DEFAULT_PUBLISH})")
    p.add_argument("--session", default=None, metavar="ID",
                   help="session to show (default: the first one that arrives)")
    p.add_argument("--screenshot", default=None, metavar="FILE",
                   help="save one frame (PNG) once the body is on screen, then exit (no "
                        "display needed: it is rendered off-screen)")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="with --screenshot: give up after S seconds without a pose (default 60)")
    add_body_model_argument(p, ' for the mesh: the one the server runs')
    p.add_argument("--curve-server-key", default=None, metavar="FILE",
                   help="CURVE: the server's public key file (server.key)")
    p.add_argument("--curve-client-key", default=None, metavar="FILE",
                   help="CURVE: this client's secret key file (NAME.key_secret)")


def run(args) -> int:
    from tracker.cli import UserError
    from tracker.viewer import display_problem

    if problem := display_problem(args.screenshot is not None):  # before the slow imports
        raise UserError(problem)
    from tracker.body import BodyModelError, load_body_model
    from tracker.viewer.app import ViewerError, run_viewer
    from tracker.viewer.source import LiveSource

    try:
        body = load_body_model(args.body_model)
    except BodyModelError as exc:
        raise UserError(str(exc)) from exc
    curve = None
    if args.curve_server_key:
        import zmq.auth

        from tracker.server.security import set_curve_client

        if not args.curve_client_key:
            raise UserError("--curve-server-key needs --curve-client-key")
        server_public, _ = zmq.auth.load_certificate(args.curve_server_key)

        def curve(sock):
            set_curve_client(sock, server_public, args.curve_client_key)

    try:
        return run_viewer(LiveSource(args.connect, args.session, curve), body, args.session,
                          args.screenshot, args.timeout)
    except ViewerError as exc:
        raise UserError(str(exc)) from exc
