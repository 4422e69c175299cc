"""CURVE authentication for the server's sockets, and the warning for open binds.

Key folder (``tracker serve --curve-keys DIR``), made with :func:`create_keys` or pyzmq's
``zmq.auth.create_certificates``::

    DIR/server.key            the server's public key: give it to every client
    DIR/server.key_secret     the server's secret key: stays on the server
    DIR/clients/<name>.key    public keys of the clients allowed to connect (devices,
                              viewers, Unity); remove a file to revoke that client
    DIR/clients/<name>.key_secret   (only on that client's machine; create_keys writes it
                              next to the public key for convenience, move it away)

With keys, both sockets (ingest SUB and output PUB) are CURVE servers and a ZAP handler
(``zmq.auth.thread.ThreadAuthenticator``) admits only the public keys in ``DIR/clients``,
re-read when the server starts. A client sets ``curve_serverkey`` (server.key),
``curve_publickey`` and ``curve_secretkey`` (its own pair) before connecting.

Failing closed: without a ZAP handler libzmq's CURVE server admits *any* client key. So the
sockets set a ZAP domain (:data:`ZAP_DOMAIN`) and ``ZMQ_ZAP_ENFORCE_DOMAIN``, under which a
missing handler refuses every handshake (libzmq ``zmq_setsockopt(3)``), and the server
watches the handler's thread and exits when it is gone (``tracker.server.loop``).

Identity: the handler gives every admitted connection a ``User-Id``, the z85 text of the
client's public key (pyzmq ``Authenticator.curve_user_id``); the server reads it from each
message (``zmq.Frame.get("User-Id")``, libzmq ``zmq_msg_gets(3)``) and binds a session to the
key that started it (``tracker.server.sessions``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
ZAP_DOMAIN = "fitstream"


class KeyFolderError(ValueError):
    """A ``--curve-keys`` folder without the expected files."""


@dataclass(frozen=True)
class CurveKeys:
    public: bytes
    secret: bytes
    clients_dir: Path
    num_clients: int


def load_server_keys(directory: str | Path) -> CurveKeys:
    """Read ``server.key_secret`` and check ``clients/`` (see the module docstring)."""
    import zmq.auth

    d = Path(directory).expanduser()
    secret_file = d / "server.key_secret"
    if not secret_file.is_file():
        raise KeyFolderError(f"{secret_file} not found: make keys with `python -c \"from "
                             f"tracker.server.security import create_keys; create_keys('{d}', "
                             "['headset', 'viewer'])\"`")
    public, secret = zmq.auth.load_certificate(secret_file)
    clients = d / "clients"
    if not clients.is_dir():
        raise KeyFolderError(f"{clients}: folder of authorised client public keys not found")
    n = len(list(clients.glob("*.key")))
    if n == 0:
        raise KeyFolderError(f"{clients}: no client public keys (*.key); nobody could connect")
    return CurveKeys(public, secret, clients, n)


def create_keys(directory: str | Path, clients=("client",)) -> Path:
    """Make a server key pair and one key pair per client name in ``directory``."""
    import zmq.auth

    d = Path(directory).expanduser()
    (d / "clients").mkdir(parents=True, exist_ok=True)
    zmq.auth.create_certificates(d, "server")
    for name in clients:
        zmq.auth.create_certificates(d / "clients", name)
    return d


def start_authenticator(ctx, keys: CurveKeys):
    """Start the ZAP handler admitting ``keys.clients_dir``; returns it (``.stop()`` it)."""
    from zmq.auth.thread import ThreadAuthenticator

    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain=ZAP_DOMAIN, location=str(keys.clients_dir))
    return auth


def stop_authenticator(auth) -> None:
    """Stop the ZAP handler and close its sockets, also when its thread is already gone
    (then ``auth.stop()`` would wait forever for the thread to answer)."""
    from zmq.auth.base import Authenticator

    if auth.is_alive():
        auth.stop()
        return
    if auth.pipe is not None:
        auth.pipe.close(linger=0)
        auth.pipe = None
    auth.thread = None
    Authenticator.stop(auth)  # closes the ZAP socket


def make_curve_server(sock, keys: CurveKeys) -> None:
    """Turn ``sock`` into a CURVE server (before bind) that fails closed without ZAP."""
    import zmq

    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_server = True
    sock.zap_domain = ZAP_DOMAIN.encode()
    sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)


def set_curve_client(sock, server_public: bytes, client_secret_file: str | Path) -> None:
    """Client side: use the key pair in ``client_secret_file`` to talk to ``server_public``."""
    import zmq.auth

    public, secret = zmq.auth.load_certificate(client_secret_file)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_serverkey = server_public


def is_loopback(addr: str) -> bool:
    """Whether a ZeroMQ endpoint stays on this machine (tcp loopback, ipc, inproc)."""
    if addr.startswith(("ipc://", "inproc://")):
        return True
    host = urlparse(addr).hostname if "://" in addr else None
    return host in LOOPBACK_HOSTS or (host or "").startswith("127.")


def warn_if_exposed(addrs: list[str], curve: bool, stream=None) -> bool:
    """Print a loud warning when binding beyond loopback without CURVE; whether it did."""
    exposed = [a for a in addrs if not is_loopback(a)]
    if not exposed or curve:
        return False
    stream = stream or sys.stderr
    bar = "!" * 78
    print(f"{bar}\n!! WARNING: binding {', '.join(exposed)} beyond loopback WITHOUT "
          "authentication.\n!! Anyone on the network can send frames and read every pose "
          "(body motion is\n!! personal data). Use --curve-keys DIR (see `tracker serve "
          f"--help`).\n{bar}", file=stream, flush=True)
    return True
