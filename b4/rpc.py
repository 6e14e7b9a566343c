"""A small RPC: JSON objects, one per line, over TCP on 127.0.0.1.

Used between the TE server and the site controllers (ops, acks, hellos, topology events)
and by the lab and experiments to drive the TE server. Every message is a JSON object with a
``type``. A line that is not a JSON object gets ``{"type": "error", ...}`` back and the
connection stays up; a handler that raises gets the same, and the server stays up.
`process_config` is the common start of both processes' ``main``.
"""
from __future__ import annotations

import argparse
import json
import logging
import queue
import socket
import socketserver
import sys
import threading
import time
from typing import Any, Callable

log = logging.getLogger(__name__)

MAX_LINE = 1 << 20
LOCALHOST = "127.0.0.1"


class RpcError(RuntimeError):
    pass


def encode(msg: dict[str, Any]) -> bytes:
    return (json.dumps(msg, separators=(",", ":")) + "\n").encode()


def decode(line: bytes) -> dict[str, Any]:
    """Parse one line; raises ValueError with a short reason."""
    try:
        msg = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"malformed JSON: {e}") from None
    if not isinstance(msg, dict):
        raise ValueError("a message must be a JSON object")
    if not isinstance(msg.get("type"), str):
        raise ValueError("a message needs a string 'type'")
    return msg


class Connection:
    """One side of a JSON-lines TCP connection; `send` is thread-safe."""

    def __init__(self, sock: socket.socket, peer: str = ""):
        self.sock = sock
        self.peer = peer
        self._wlock = threading.Lock()
        self._rfile = sock.makefile("rb")
        self.closed = False

    def send(self, msg: dict[str, Any]) -> bool:
        data = encode(msg)
        with self._wlock:
            if self.closed:
                return False
            try:
                self.sock.sendall(data)
                return True
            except OSError:
                self.close()
                return False

    def lines(self):
        """Yield raw lines until the peer closes."""
        while not self.closed:
            try:
                line = self._rfile.readline(MAX_LINE + 1)
            except (OSError, ValueError):
                break
            if not line:
                break
            if len(line) > MAX_LINE:
                self.send({"type": "error", "reason": "line too long"})
                break
            if line.strip():
                yield line
        self.close()

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


Handler = Callable[[Connection, dict[str, Any]], "dict[str, Any] | None"]


class _ThreadingServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class RpcServer:
    """Serve JSON lines on 127.0.0.1:port; ``handler(conn, msg)`` may return a reply."""

    def __init__(self, port: int, handler: Handler, *, name: str = "rpc",
                 on_connect: Callable[[Connection], None] | None = None,
                 on_disconnect: Callable[[Connection], None] | None = None):
        self.handler = handler
        self.name = name
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.connections: set[Connection] = set()
        self._lock = threading.Lock()
        outer = self

        class _H(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn = Connection(self.request, f"{self.client_address[0]}:{self.client_address[1]}")
                outer._serve(conn)

        self._server = _ThreadingServer((LOCALHOST, port), _H)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"{name}-accept", daemon=True)

    def start(self) -> "RpcServer":
        self._thread.start()
        log.info("%s listening on %s:%d", self.name, LOCALHOST, self.port)
        return self

    def _serve(self, conn: Connection) -> None:
        with self._lock:
            self.connections.add(conn)
        if self.on_connect:
            self.on_connect(conn)
        try:
            for line in conn.lines():
                try:
                    msg = decode(line)
                except ValueError as e:
                    log.warning("%s: bad message from %s: %s", self.name, conn.peer, e)
                    conn.send({"type": "error", "reason": str(e)})
                    continue
                try:
                    reply = self.handler(conn, msg)
                except Exception as e:  # a bad request must not take the server down
                    log.exception("%s: handling %s from %s", self.name, msg.get("type"), conn.peer)
                    reply = {"type": "error", "reason": f"{type(e).__name__}: {e}", "request": msg.get("type")}
                if reply is not None:
                    conn.send(reply)
        finally:
            with self._lock:
                self.connections.discard(conn)
            if self.on_disconnect:
                self.on_disconnect(conn)

    def broadcast(self, msg: dict[str, Any]) -> None:
        with self._lock:
            conns = list(self.connections)
        for c in conns:
            c.send(msg)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            conns = list(self.connections)
        for c in conns:
            c.close()


class RpcClient:
    """A client with a reader thread: messages go to ``on_message`` (or a queue)."""

    def __init__(self, port: int, *, on_message: Callable[[dict[str, Any]], None] | None = None,
                 timeout: float = 5.0, name: str = "rpc-client"):
        self.port = port
        self.name = name
        sock = socket.create_connection((LOCALHOST, port), timeout=timeout)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = Connection(sock, f"{LOCALHOST}:{port}")
        self.inbox: "queue.Queue[dict[str, Any]]" = queue.Queue()
        self._on_message = on_message
        self._thread = threading.Thread(target=self._read, name=name, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.conn.lines():
            try:
                msg = decode(line)
            except ValueError as e:
                log.warning("%s: bad message from %s: %s", self.name, self.conn.peer, e)
                continue
            if self._on_message is not None:
                try:
                    self._on_message(msg)
                except Exception:
                    log.exception("%s: handling %s", self.name, msg.get("type"))
            else:
                self.inbox.put(msg)
        if self._on_message is not None:
            try:
                self._on_message({"type": "closed"})
            except Exception:
                log.exception("%s: handling close", self.name)
        else:
            self.inbox.put({"type": "closed"})

    @property
    def alive(self) -> bool:
        return not self.conn.closed

    def send(self, msg: dict[str, Any]) -> bool:
        return self.conn.send(msg)

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are (tests of malformed input)."""
        self.conn.sock.sendall(data)

    def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        """The next inbox message satisfying ``pred`` (others are dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RpcError(f"{self.name}: no matching message within {timeout:.1f} s")
            try:
                msg = self.inbox.get(timeout=left)
            except queue.Empty:
                continue
            if pred(msg):
                return msg
            if msg.get("type") == "closed":
                raise RpcError(f"{self.name}: connection closed")

    def request(self, msg: dict[str, Any], reply_type: str | None = None, timeout: float = 10.0) -> dict[str, Any]:
        """Send and wait for the reply of ``reply_type`` (default: the same type)."""
        want = reply_type or msg["type"]
        self.send(msg)
        return self.wait_for(lambda m: m.get("type") in (want, "error"), timeout)

    def close(self) -> None:
        self.conn.close()


def call(port: int, msg: dict[str, Any], reply_type: str | None = None, timeout: float = 10.0) -> dict[str, Any]:
    """One request/reply on a fresh connection."""
    c = RpcClient(port, timeout=timeout)
    try:
        return c.request(msg, reply_type, timeout)
    finally:
        c.close()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket() as s:
        s.bind((LOCALHOST, 0))
        return s.getsockname()[1]


def process_config(description: str, argv: list[str] | None = None,
                   quiet: tuple[str, ...] = ("kazoo",)) -> dict[str, Any]:
    """Parse ``--config FILE``, load that JSON and set up logging (to the config's
    ``log_file``, else stderr); returns the config. Loggers named in ``quiet`` log warnings
    only: their INFO lines would drown the process's own."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--config", required=True)
    args = ap.parse_args(argv)
    with open(args.config) as f:
        cfg = json.load(f)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if cfg.get("log_file"):
        handlers = [logging.FileHandler(cfg["log_file"])]
    logging.basicConfig(level=logging.INFO, handlers=handlers,
                        format="%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
    return cfg
