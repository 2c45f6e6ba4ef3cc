"""The emulator on a real loopback port: a threaded HTTP/1.1 server around :class:`Rules`."""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ncp_cfr.testing.rules import MAX_BODY_BYTES, Rules

__all__ = ["LoopbackServer"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real gateway
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stalls
    server: _Server
    server_version = "ncp-cfr-emulator"
    sys_version = ""

    def log_message(self, format: str, *args: object) -> None:
        # Silence per-request stderr lines; tests read emu.requests instead.
        pass

    def _serve(self) -> None:
        rules = self.server.rules
        rules.enter()
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                # The gateway refuses before reading: do not hold megabytes we will not parse.
                answer = rules.too_large()
                self._write(answer.status, answer.body, answer.headers, close=True)
                return
            body = self.rfile.read(length) if length else b""
            answer = rules.handle(self.command, self.path.split("?")[0], dict(self.headers), body)
            if answer.delay and self.server.stopping.wait(answer.delay):
                answer = answer.__class__(503, b"", {}, 0.0, drop=True)  # shutting down
            if answer.drop:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self._write(answer.status, answer.body, answer.headers)
        finally:
            rules.leave()

    def _write(
        self, status: int, body: bytes, headers: Mapping[str, str], close: bool = False
    ) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if body and not any(k.lower() == "content-type" for k in headers):
            self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    do_POST = _serve
    do_GET = _serve
    do_PUT = _serve
    do_DELETE = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], rules: Rules) -> None:
        self.rules = rules
        self.stopping = threading.Event()
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that gave up (its timeout, a dropped test) closes the socket before the
        # answer is written: that is the client's business, not a server error to print.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class LoopbackServer:
    """Serve ``rules`` on ``host:port`` (port 0: a free one) in a background thread."""

    def __init__(self, rules: Rules, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = _Server((host, port), rules)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name="ncp-cfr-emulator",
        )
        self._thread.start()

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (the standalone emulator)."""
        self._server.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        self._server.stopping.set()  # wake handlers waiting out an injected delay
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
