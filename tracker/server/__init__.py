"""The tracking server: sessions, the per-tick fit, publishing, recording hooks, security.

Layout (I/O kept apart from the pure per-tick logic, so live serving and replay
run the same code):

* :mod:`tracker.server.sessions`: per-session state and the ingest rules (latest frame wins,
  stale seq and restarts, gaps, forgetting, the live-session cap, CURVE key ownership);
* :mod:`tracker.server.core`: :class:`TrackerCore`, ``receive(payload, t_recv)`` and
  ``tick(t_now)``: no sockets, no clock;
* :mod:`tracker.server.publish`: pose messages from a fit result, the frame echo;
* :mod:`tracker.server.loop`: the live server (ZeroMQ sockets, two workers, clock,
  fault isolation and the watchdog of its threads);
* :mod:`tracker.server.ingest`: reading whole ingest messages within the size limits;
* :mod:`tracker.server.serve_log`: what ``tracker serve`` logs while it runs;
* :mod:`tracker.server.faults`: bad messages of every rejection kind, injected faults (tests);
* :mod:`tracker.server.replay`: the same core driven from a recording;
* :mod:`tracker.server.security`: CURVE keys and the loopback warning;
* :mod:`tracker.server.simulator`: synthetic headsets (``tracker simulate``).
"""
