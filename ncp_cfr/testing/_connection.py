"""One client connection of the loopback server: HTTP/1.1 request reading and framing, and the
answer written back.

The server (``ncp_cfr.testing.server``) hands a ``Connection`` to a worker once it has bytes to
read; the worker runs one request at a time through its handler, which reads the request line,
headers and body within a deadline for the whole request, asks
[`Rules`][ncp_cfr.testing.rules.Rules] for the answer and writes it.

Malformed requests get the gateway's JSON envelope, never the standard library's HTML page, a
traceback or silence:

- a ``Content-Length`` that is not a decimal number (``abc``, ``-5``), two different lengths, a
  ``Transfer-Encoding`` other than ``chunked``, a bad chunk size, a malformed request line or
  header, a request line without an HTTP version (HTTP/0.9): 400 with gateway code ``100``
  (``Bad Request Exception``) over HTTP/1.1, connection closed;
- a body over ``MAX_BODY_BYTES`` (declared or chunked): 413 with gateway code ``430``, closed;
- any method but POST (HEAD, PATCH, OPTIONS, GET ...) and any unknown path: 404 with gateway code
  ``300`` (``Not Found Exception``), as NCP's gateway answers a method no resource defines
  (HEAD gets the headers without the body);
- a request (headers and body) not received whole within ``read_timeout`` of its first byte: the
  connection is closed without an answer.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol

from ncp_cfr.testing._wire import MAX_BODY_BYTES, cfr_error, gateway_error
from ncp_cfr.testing.rules import Answer, Rules

__all__ = ["Connection", "Host"]

_DIGITS = re.compile(r"[0-9]{1,19}")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
_LINGER = 1.0  # seconds to drain an unread request before closing (see Connection.close)


class Host(Protocol):
    """What a connection needs of the server that accepted it."""

    rules: Rules
    read_timeout: float
    #: Set when the server shuts down: an answer's injected delay ends early.
    stopping: threading.Event


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

    def __init__(self, sock: socket.socket, address: Any, owner: Host) -> None:
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
            line = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
            if len(line.split()) == 2:
                # HTTP/0.9 ("GET /path", no version): parse_request would wait for headers such a
                # request never sends, then answer without a status line. Refuse it in HTTP/1.1.
                self.requestline, self.command, self.request_version = line, "", "HTTP/1.1"
                self.send_error(400, f"no HTTP version in the request line: {line!r}")
                return
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


class Connection:
    """An accepted socket and its HTTP state, passed between the reactor and the workers."""

    def __init__(self, sock: socket.socket, address: Any, owner: Host) -> None:
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
