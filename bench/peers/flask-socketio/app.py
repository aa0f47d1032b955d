"""Benchmark peer "flask-socketio": the seed's own stack, Flask + Flask-SocketIO
on eventlet, as a bare room relay. No auth, no storage.

    emit "join" ROOM  -> the socket joins ROOM and gets "joined" back
    emit "msg" DATA   -> every other socket in the sender's room gets "msg" DATA

With REDIS_URL set, instances share rooms through Flask-SocketIO's
message_queue. Usage: app.py [--port N] (or PORT). Listens on 127.0.0.1.
"""

import warnings

# Eventlet announces its own deprecation on import; the seed ran on it, so we
# measure it as it is and keep stderr quiet.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()

import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import eventlet.wsgi  # noqa: E402
from flask import Flask, request  # noqa: E402
from flask_socketio import SocketIO, emit, join_room, leave_room  # noqa: E402

DEFAULT_PORT = 8093
BACKLOG = 4096
# eventlet.wsgi serves at most this many connections at once (default 1024),
# and each WebSocket holds one for its whole life.
MAX_CONNECTIONS = 1_000_000


def parse_port():
    given = os.environ.get("PORT")
    args = sys.argv[1:]
    i = 0
    while i < len(args):
        if args[i] == "--port" and i + 1 < len(args):
            given = args[i + 1]
            i += 2
        elif args[i].startswith("--port="):
            given = args[i][len("--port="):]
            i += 1
        else:
            sys.exit(f"flask-socketio: unknown argument {args[i]!r}; usage: app.py [--port N]")
    if given is None:
        return DEFAULT_PORT
    try:
        port = int(given)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        sys.exit(f"flask-socketio: bad port {given!r}")
    return port


class Utf8Json:
    """The standard json module, but writing non-ASCII characters as they are
    (not as \\u escapes), so a relayed DATA leaves as it came, as it does
    from Socket.IO on Node."""

    loads = staticmethod(json.loads)

    @staticmethod
    def dumps(*args, **kwargs):
        kwargs.setdefault("ensure_ascii", False)
        return json.dumps(*args, **kwargs)


app = Flask(__name__)
socketio = SocketIO(
    app,
    async_mode="eventlet",
    message_queue=os.environ.get("REDIS_URL") or None,
    logger=False,
    engineio_logger=False,
    transports=["websocket"],
    allow_upgrades=False,
    http_compression=False,
    cors_allowed_origins="*",
    max_http_buffer_size=1 << 20,
    json=Utf8Json,
)

room_of = {}  # sid -> the room it joined


@socketio.on("join")
def on_join(name):
    if not isinstance(name, str) or not name:
        return
    old = room_of.get(request.sid)
    if old is not None:
        leave_room(old)
    room_of[request.sid] = name
    join_room(name)
    # The socket is ours: answer it directly, not through the message queue
    # (as Socket.IO on Node does for socket.emit).
    emit("joined", ignore_queue=True)


@socketio.on("msg")
def on_msg(data):
    room = room_of.get(request.sid)
    if room is not None:
        emit("msg", data, to=room, include_self=False)


@socketio.on("disconnect")
def on_disconnect(*_reason):
    room_of.pop(request.sid, None)


def without_ws_extensions(wsgi_app):
    """Drops Sec-WebSocket-Extensions, so permessage-deflate is never
    negotiated whatever the client offers."""

    def wrapped(environ, start_response):
        environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
        return wsgi_app(environ, start_response)

    return wrapped


def main():
    port = parse_port()
    for name in ("werkzeug", "engineio", "socketio", "engineio.server", "socketio.server"):
        logging.getLogger(name).setLevel(logging.ERROR)
    listener = eventlet.listen(("127.0.0.1", port), backlog=BACKLOG)
    cluster = " (redis message queue)" if os.environ.get("REDIS_URL") else ""
    print(f"flask-socketio listening on 127.0.0.1:{port}{cluster}", file=sys.stderr, flush=True)
    eventlet.wsgi.server(
        listener,
        without_ws_extensions(app),
        log_output=False,
        debug=False,
        max_size=MAX_CONNECTIONS,
    )


if __name__ == "__main__":
    main()
