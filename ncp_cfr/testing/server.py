"""The emulator on a real loopback port: an HTTP/1.1 server around
[`Rules`][ncp_cfr.testing.rules.Rules].

One thread (the reactor) accepts connections and watches the idle ones; a connection is handed to a
worker from a fixed pool only once it has bytes to read, and goes back to the reactor after each
answer. So an idle keep-alive connection, or a client that connects and says nothing, costs a file
descriptor, not a thread; a client that stalls mid-request holds one worker for at most
``read_timeout`` seconds; and the number of threads (and with it the per-thread memory: stacks and
malloc arenas) is bounded by ``max_workers`` whatever the clients do.

Malformed requests get the gateway's JSON envelope, never the standard library's HTML page, a
traceback or silence:

- a ``Content-Length`` that is not a decimal number (``abc``, ``-5``), two different lengths, a
  ``Transfer-Encoding`` other than ``chunked``, a bad chunk size, a malformed request line or
  header: 400 with gateway code ``100`` (``Bad Request Exception``), connection closed;
- a body over ``MAX_BODY_BYTES`` (declared or chunked): 413 with gateway code ``430``, closed;
- any method but POST (HEAD, PATCH, OPTIONS, GET ...) and any unknown path: 404 with gateway code
  ``300`` (``Not Found Exception``), as NCP's gateway answers a method no resource defines
  (HEAD gets the headers without the body);
- a request (headers and body) not received whole within ``read_timeout`` of its first byte, or a
  connection silent that long: the connection is closed without an answer.
"""

from __future__ import annotations

import collections
import contextlib
import json
import re
import selectors
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler
from typing import Any

from ncp_cfr.errors import InvalidArgumentError
from ncp_cfr.testing.rules import MAX_BODY_BYTES, Answer, Rules, cfr_error, gateway_error

__all__ = ["DEFAULT_MAX_WORKERS", "DEFAULT_READ_TIMEOUT", "LoopbackServer"]

#: Seconds a request may take to arrive whole (from its first byte), and a connection may stay idle.
DEFAULT_READ_TIMEOUT = 10.0
#: Worker threads answering requests at the same time (more connections wait, costing no thread).
DEFAULT_MAX_WORKERS = 32
#: Open connections beyond this are refused at once with a 503 envelope.
DEFAULT_MAX_CONNECTIONS = 512

_DIGITS = re.compile(r"[0-9]{1,19}")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
_LINGER = 1.0  # seconds to drain an unread request before closing (see _Connection.close)


class _Malformed(Exception):
    """A request the gateway would refuse with ``answer`` (and then close the connection)."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.status)
        self.answer = answer


def _envelope(status: int, body: dict[str, Any]) -> Answer:
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    return Answer(status, data, {"Content-Type": "application/json;charset=UTF-8"})


def _bad_request(details: str, status: int = 400) -> Answer:
    _, body = gateway_error("100")
    body["error"]["details"] = details
    return _envelope(status, body)


class _Reader:
    """The socket's bytes, buffered, with a deadline for the whole request rather than per read.

    A per-``recv`` timeout would let a client dripping one byte every few seconds hold a worker
    for ever; the deadline bounds the request as a whole.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray()
        self.deadline = float("inf")

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def _fill(self) -> bool:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request did not arrive in time")
        self._sock.settimeout(remaining)
        chunk = self._sock.recv(65536)
        if not chunk:
            return False
        self._buf += chunk
        return True

    def readline(self, limit: int = -1) -> bytes:
        start = 0
        while True:
            end = self._buf.find(b"\n", start)
            if end >= 0:
                end += 1
                break
            if 0 <= limit <= len(self._buf):
                end = limit
                break
            start = len(self._buf)
            if not self._fill():
                end = len(self._buf)
                break
        if 0 <= limit < end:
            end = limit
        line = bytes(self._buf[:end])
        del self._buf[:end]
        return line

    def read(self, size: int) -> bytes:
        """Exactly ``size`` bytes, fewer only if the client closed the connection."""
        while len(self._buf) < size and self._fill():
            pass
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data


class _Writer:
    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self._sock = sock
        self._timeout = timeout

    def write(self, data: bytes) -> int:
        # A client that does not read its answer must not hold the worker either.
        self._sock.settimeout(self._timeout)
        self._sock.sendall(data)
        return len(data)

    def flush(self) -> None:
        pass


class _Handler(BaseHTTPRequestHandler):
    """One connection's HTTP state; the server runs one request at a time through it."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the real gateway
    server_version = "ncp-cfr-emulator"
    sys_version = ""

    def __init__(self, sock: socket.socket, address: Any, owner: _Server) -> None:
        # Not BaseRequestHandler.__init__: that would serve the whole connection in this thread.
        self.request = self.connection = sock
        self.client_address = address
        self.owner = owner
        self.rfile = _Reader(sock)  # type: ignore[assignment]
        self.wfile = _Writer(sock, owner.read_timeout)  # type: ignore[assignment]
        self.close_connection = True
        self.answered = False

    def log_message(self, format: str, *args: object) -> None:
        # Silence per-request stderr lines; tests read emu.requests instead.
        pass

    def handle_one_request(self) -> None:
        """The standard library's loop body, with every method going to the rules."""
        self.answered = False
        self.close_connection = True
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline = self.request_version = self.command = ""
                self.send_error(414)
                return
            if not self.raw_requestline:
                return  # the client closed an idle connection
            if not self.parse_request():
                return  # send_error has answered
            self._serve()
        except TimeoutError:
            self.close_connection = True  # stalled: drop it without an answer

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The gateway's JSON envelope instead of the standard library's HTML page."""
        details = message or explain or "malformed request"
        if self.request_version == "HTTP/0.9":  # an unparsable request line: answer in HTTP/1.1
            self.request_version = "HTTP/1.1"
        self._write(_bad_request(details, code), close=True)

    def handle_expect_100(self) -> bool:
        # Do not invite a body that will be refused unread.
        try:
            self._length()
        except _Malformed:
            return True
        return super().handle_expect_100()

    # -- the body -------------------------------------------------------------------------------

    def _length(self) -> int | None:
        """The declared body length, ``None`` for a chunked body; ``_Malformed`` if unusable."""
        coding = self.headers.get_all("Transfer-Encoding") or []
        if coding:
            if ",".join(coding).strip().lower() != "chunked":
                raise _Malformed(_bad_request(f"unsupported Transfer-Encoding: {coding!r}"))
            return None
        values = {v.strip() for v in self.headers.get_all("Content-Length") or []}
        if not values:
            return 0
        if len(values) > 1 or not _DIGITS.fullmatch(next(iter(values))):
            raise _Malformed(_bad_request(f"invalid Content-Length: {sorted(values)!r}"))
        length = int(next(iter(values)))
        if length > MAX_BODY_BYTES:
            raise _Malformed(self.owner.rules.too_large())
        return length

    def _chunked(self) -> bytes | None:
        """A ``Transfer-Encoding: chunked`` body (``None``: the client went away)."""
        body = bytearray()
        while True:
            line = self.rfile.readline(1024)
            if not line.endswith(b"\n"):
                if not line or len(line) < 1024:
                    return None
                raise _Malformed(_bad_request("chunk size line too long"))
            size_text = line.split(b";", 1)[0].strip()
            if not _CHUNK_SIZE.fullmatch(size_text):
                raise _Malformed(_bad_request(f"invalid chunk size: {size_text[:20]!r}"))
            size = int(size_text, 16)
            if size == 0:
                break
            if len(body) + size > MAX_BODY_BYTES:
                raise _Malformed(self.owner.rules.too_large())
            data = self.rfile.read(size + 2)
            if len(data) < size + 2:
                return None
            if data[size:] != b"\r\n":
                raise _Malformed(_bad_request("chunk data not followed by CRLF"))
            body += data[:size]
        for _ in range(100):  # trailer fields, up to the empty line
            line = self.rfile.readline(65537)
            if not line:
                return None
            if line in (b"\r\n", b"\n"):
                return bytes(body)
        raise _Malformed(_bad_request("too many trailer fields"))

    def _body(self) -> bytes | None:
        length = self._length()
        if length is None:
            return self._chunked()
        body = self.rfile.read(length) if length else b""
        return body if len(body) == length else None

    # -- answering ------------------------------------------------------------------------------

    def _serve(self) -> None:
        rules = self.owner.rules
        rules.enter()
        try:
            try:
                body = self._body()
            except _Malformed as refused:
                self._write(refused.answer, close=True)
                return
            if body is None:  # the client closed mid-body: nobody to answer
                self.close_connection = True
                return
            path = self.path.split("?")[0]
            try:
                answer = rules.handle(self.command, path, dict(self.headers), body)
            except Exception:  # a bug, or a user's detector raising: say so, answer as the service
                traceback.print_exc(file=sys.stderr)
                answer = _envelope(*cfr_error("ER99"))
            if answer.delay and self.owner.stopping.wait(answer.delay):
                answer = Answer(503, drop=True)  # shutting down
            if answer.drop:
                self.close_connection = True
                return
            self._write(answer)
        finally:
            rules.leave()

    def _write(self, answer: Answer, close: bool = False) -> None:
        body = answer.body
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if body and not any(k.lower() == "content-type" for k in answer.headers):
            self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":  # HTTP: a HEAD answer has the headers of a GET and no body
            self.wfile.write(body)
        self.answered = True


class _Connection:
    def __init__(self, sock: socket.socket, address: Any, owner: _Server) -> None:
        self.sock = sock
        self.handler = _Handler(sock, address, owner)
        self.idle_since = time.monotonic()

    def close(self, linger: bool) -> None:
        """Close; after an answer, drain what the client still sends first.

        Closing a socket with unread bytes makes the kernel send a reset, which can destroy the
        answer before the client reads it (a 400 to a request whose body was never read).
        """
        try:
            if linger:
                self.sock.shutdown(socket.SHUT_WR)
                deadline = time.monotonic() + _LINGER
                while (remaining := deadline - time.monotonic()) > 0:
                    self.sock.settimeout(remaining)
                    if not self.sock.recv(65536):
                        break
        except OSError:
            pass
        finally:
            self.sock.close()


class _Server:
    """The reactor thread, the worker pool and the listening socket."""

    def __init__(
        self,
        address: tuple[str, int],
        rules: Rules,
        *,
        read_timeout: float,
        max_workers: int,
        max_connections: int,
    ) -> None:
        if read_timeout <= 0 or max_workers < 1 or max_connections < 1:
            raise InvalidArgumentError(
                "read_timeout must be > 0 and max_workers, max_connections >= 1, not "
                f"{read_timeout}, {max_workers}, {max_connections}"
            )
        self.rules = rules
        self.read_timeout = read_timeout
        self.max_workers = max_workers
        self.max_connections = max_connections
        self.stopping = threading.Event()
        self.socket = socket.create_server(address, backlog=256)
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()
        self._lock = threading.Lock()
        self._ready: collections.deque[_Connection] = collections.deque()
        self._ready_signal = threading.Condition(self._lock)
        self._parked: collections.deque[_Connection] = collections.deque()
        self._busy: set[_Connection] = set()
        self._open = 0
        self._workers: list[threading.Thread] = []
        self._idle_workers = 0
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)

    # -- the reactor ---------------------------------------------------------------------------

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.socket, selectors.EVENT_READ, "accept")
        selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        idle: dict[_Connection, float] = {}  # connection -> when it is closed if still silent
        try:
            while not self.stopping.is_set():
                now = time.monotonic()
                wait = min([poll_interval, *(d - now for d in idle.values())])
                for key, _ in selector.select(max(0.0, wait)):
                    if key.data == "accept":
                        self._accept(selector, idle)
                    elif key.data == "wake":
                        self._unpark(selector, idle)
                    else:
                        connection: _Connection = key.data
                        selector.unregister(connection.sock)
                        del idle[connection]
                        self._dispatch(connection)
                now = time.monotonic()
                for connection in [c for c, d in idle.items() if d <= now]:
                    selector.unregister(connection.sock)
                    del idle[connection]
                    self._closed(connection, linger=False)
        finally:
            for connection in idle:
                connection.sock.close()
            selector.close()

    def _accept(self, selector: selectors.BaseSelector, idle: dict[_Connection, float]) -> None:
        while True:
            try:
                sock, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # out of descriptors, or the client already gone
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms stalls
            with self._lock:
                refuse = self._open >= self.max_connections
                self._open += 0 if refuse else 1
            if refuse:
                self._refuse(sock)
                continue
            connection = _Connection(sock, address, self)
            selector.register(sock, selectors.EVENT_READ, connection)
            idle[connection] = time.monotonic() + self.read_timeout

    @staticmethod
    def _refuse(sock: socket.socket) -> None:
        _, body = gateway_error("500")
        data = json.dumps(body).encode()
        head = (
            f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json;charset=UTF-8\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
        )
        try:
            sock.setblocking(False)
            sock.send(head.encode() + data)  # fits any fresh socket's send buffer
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            sock.close()

    def _unpark(self, selector: selectors.BaseSelector, idle: dict[_Connection, float]) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while True:
            with self._lock:
                if not self._parked:
                    return
                connection = self._parked.popleft()
            if self.stopping.is_set():
                self._closed(connection, linger=False)
                continue
            connection.idle_since = time.monotonic()
            selector.register(connection.sock, selectors.EVENT_READ, connection)
            idle[connection] = connection.idle_since + self.read_timeout

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # a full buffer: the reactor is awake anyway
            self._wake_w.send(b"x")

    # -- the workers -----------------------------------------------------------------------------

    def _dispatch(self, connection: _Connection) -> None:
        with self._lock:
            self._ready.append(connection)
            # Idle workers may not have taken earlier connections yet: compare with the queue.
            if len(self._ready) > self._idle_workers and len(self._workers) < self.max_workers:
                worker = threading.Thread(
                    target=self._work, daemon=True, name=f"ncp-cfr-emulator-{len(self._workers)}"
                )
                self._workers.append(worker)
                self._idle_workers += 1
                worker.start()
            self._ready_signal.notify()

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._ready and not self.stopping.is_set():
                    self._ready_signal.wait()
                if self.stopping.is_set():
                    self._idle_workers -= 1
                    return
                connection = self._ready.popleft()
                self._idle_workers -= 1
                self._busy.add(connection)
            try:
                self._run(connection)
            finally:
                with self._lock:
                    self._busy.discard(connection)
                    self._idle_workers += 1

    def _run(self, connection: _Connection) -> None:
        handler = connection.handler
        while True:
            handler.rfile.deadline = time.monotonic() + self.read_timeout  # type: ignore[attr-defined]
            try:
                handler.handle_one_request()
            except OSError:  # the client went away (reset, broken pipe): its business
                self._closed(connection, linger=False)
                return
            except Exception:
                traceback.print_exc(file=sys.stderr)
                self._closed(connection, linger=False)
                return
            if handler.close_connection or self.stopping.is_set():
                self._closed(connection, linger=handler.answered)
                return
            if not handler.rfile.buffered:  # type: ignore[attr-defined]
                break  # else a pipelined request is already here: answer it now
        with self._lock:
            self._parked.append(connection)
        self._wake()

    def _closed(self, connection: _Connection, linger: bool) -> None:
        connection.close(linger)
        with self._lock:
            self._open -= 1

    @property
    def threads(self) -> int:
        """Worker threads started so far (never more than ``max_workers``)."""
        return len(self._workers)

    def shutdown(self) -> None:
        self.stopping.set()
        with self._lock:
            self._ready_signal.notify_all()
            busy = list(self._busy)
            waiting = list(self._ready) + list(self._parked)
            self._ready.clear()
            self._parked.clear()
        for connection in busy:  # wake workers blocked reading a stalled client
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)
        for connection in waiting:
            connection.sock.close()
        self._wake()

    def close(self) -> None:
        self.socket.close()
        self._wake_r.close()
        self._wake_w.close()
        deadline = time.monotonic() + 2.0  # a user's detector may be mid-call: do not wait for it
        for worker in self._workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))


class LoopbackServer:
    """Serve ``rules`` on ``host:port`` (port 0: a free one) in a background thread.

    Args:
        rules: the emulated service.
        host: the address to listen on.
        port: the port (0: any free one).
        read_timeout: seconds a request may take to arrive whole, and a connection may stay idle.
        max_workers: requests answered at the same time; more connections wait without a thread.
        max_connections: open connections beyond this are refused at once (503).
    """

    def __init__(
        self,
        rules: Rules,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        max_workers: int = DEFAULT_MAX_WORKERS,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self._server = _Server(
            (host, port),
            rules,
            read_timeout=read_timeout,
            max_workers=max_workers,
            max_connections=max_connections,
        )
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def threads(self) -> int:
        """Worker threads started so far (at most ``max_workers``), not counting the reactor."""
        return self._server.threads

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name="ncp-cfr-emulator",
        )
        self._thread.start()

    def serve_forever(self) -> None:
        """Serve in the calling thread until ``stop()`` is called from another thread."""
        self._server.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        self._server.shutdown()  # also wakes handlers waiting out an injected delay
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server.close()
