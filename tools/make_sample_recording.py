#!/usr/bin/env python3
"""Regenerate the bundled sample recording ``tracker/data/sample.mcap``.

A real ``tracker serve --record`` on loopback, fed ~10 s of one simulated user (a seeded
procedural motion with the consumer device model and ground truth) at 90 Hz, then stopped
with SIGTERM. Re-run it whenever the bundled checkpoint changes, so that
``tracker replay tracker/data/sample.mcap`` reproduces the recorded poses::

    python tools/make_sample_recording.py [--out tracker/data/sample.mcap] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MAX_BYTES = 2 * 1024 * 1024


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--out", default=str(ROOT / "tracker" / "data" / "sample.mcap"))
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=90.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--engine", default="eager",
                    help="eager (default): replays anywhere without building a compiled engine")
    args = ap.parse_args(argv)

    import zmq

    from tracker.body import load_body_model
    from tracker.server.simulator import load_motion, make_headset, publish_streams

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.mcap")
    ingest, publish = f"tcp://127.0.0.1:{_port()}", f"tcp://127.0.0.1:{_port()}"
    cmd = [sys.executable, "-m", "tracker.cli", "serve", "--ingest", ingest, "--publish",
           publish, "--record", str(tmp), "--threads", "1", "--visibility", "half-space",
           "--engine", args.engine]
    if args.checkpoint:
        cmd += ["--checkpoint", args.checkpoint]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    server = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    body = load_body_model()
    motion = load_motion("procedural:walk,turn,reach,wave,crouch", args.rate, args.seconds,
                         args.seed, body)
    head = make_headset(body, motion, "sample", "consumer", "half-space", seed=args.seed)
    for line in server.stderr:
        print(line, end="", file=sys.stderr)
        if "ready" in line:
            break
    ctx = zmq.Context()
    sock = ctx.socket(zmq.XPUB)  # XPUB: know when the server has subscribed
    sock.connect(ingest)
    if not sock.poll(60000):
        server.kill()
        raise SystemExit("the server never subscribed")
    sock.recv()
    counts = publish_streams(sock, [head], args.rate)
    time.sleep(1.0)  # let the last fits finish and the status go out
    server.send_signal(signal.SIGTERM)
    print(server.stderr.read(), end="", file=sys.stderr)
    rc = server.wait(60)
    sock.close(0)
    ctx.term()
    if rc != 0:
        raise SystemExit(f"server exited {rc}")
    os.replace(tmp, out)
    size = out.stat().st_size
    print(f"{out}: {counts['sent']} frames sent, {size / 1e6:.2f} MB")
    if size > MAX_BYTES:
        print(f"warning: larger than {MAX_BYTES / 1e6:.1f} MB; use fewer --seconds",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
