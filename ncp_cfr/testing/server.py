"""The emulator on a real loopback port: an HTTP/1.1 server around
[`Rules`][ncp_cfr.testing.rules.Rules], its accept loop and its worker pool.

One thread (the reactor) accepts connections and watches the idle ones; a connection is handed to a
worker from a fixed pool only once it has bytes to read, and goes back to the reactor after each
answer. So an idle keep-alive connection, or a client that connects and says nothing, costs a file
descriptor, not a thread; a client that stalls mid-request holds one worker for at most
``read_timeout`` seconds; and the number of threads (and with it the per-thread memory: stacks and
malloc arenas) is bounded by ``max_workers`` whatever the clients do.

Connections beyond ``max_connections`` get a 503 envelope (gateway code ``500``) at once; a
connection silent for ``read_timeout`` is closed without an answer. How one connection's requests
are read and framed, and the envelope each malformed request gets, is in
``ncp_cfr.testing._connection``.
"""

from __future__ import annotations

import collections
import contextlib
import json
import selectors
import socket
import sys
import threading
import time
import traceback

from ncp_cfr.errors import InvalidArgumentError
from ncp_cfr.testing._connection import Connection
from ncp_cfr.testing._wire import gateway_error
from ncp_cfr.testing.rules import Rules

__all__ = ["DEFAULT_MAX_WORKERS", "DEFAULT_READ_TIMEOUT", "LoopbackServer"]

#: Seconds a request may take to arrive whole (from its first byte), and a connection may stay idle.
DEFAULT_READ_TIMEOUT = 10.0
#: Worker threads answering requests at the same time (more connections wait, costing no thread).
DEFAULT_MAX_WORKERS = 32
#: Open connections beyond this are refused at once with a 503 envelope.
DEFAULT_MAX_CONNECTIONS = 512


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
        self._ready: collections.deque[Connection] = collections.deque()
        self._ready_signal = threading.Condition(self._lock)
        self._parked: collections.deque[Connection] = collections.deque()
        self._busy: set[Connection] = set()
        self._open = 0
        self._workers: list[threading.Thread] = []
        self._idle_workers = 0
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        # Set while no accept loop runs: close() waits for it, so the sockets the loop selects on
        # are closed only after it has returned, whichever thread runs it.
        self._loop_done = threading.Event()
        self._loop_done.set()

    # -- the reactor ---------------------------------------------------------------------------

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        # Cleared before ``stopping`` is looked at: a shutdown() that the check misses finds the
        # loop marked running, and its close() waits for it.
        self._loop_done.clear()
        try:
            if not self.stopping.is_set():  # else stopped before it began: the sockets may be gone
                self._loop(poll_interval)
        finally:
            self._loop_done.set()

    def _loop(self, poll_interval: float) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.socket, selectors.EVENT_READ, "accept")
        selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        idle: dict[Connection, float] = {}  # connection -> when it is closed if still silent
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
                        connection: Connection = key.data
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

    def _accept(self, selector: selectors.BaseSelector, idle: dict[Connection, float]) -> None:
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
            connection = Connection(sock, address, self)
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

    def _unpark(self, selector: selectors.BaseSelector, idle: dict[Connection, float]) -> None:
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

    def _dispatch(self, connection: Connection) -> None:
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

    def _run(self, connection: Connection) -> None:
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

    def _closed(self, connection: Connection, linger: bool) -> None:
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
        # shutdown() has woken the loop and it does nothing that blocks, so it returns at once;
        # the bound only matters if it is stuck.
        self._loop_done.wait(timeout=5.0)
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
        """Stop serving and close every connection; returns once the accept loop has ended.

        Safe from any thread but the one running ``serve_forever()``, and more than once.
        """
        self._server.shutdown()  # also wakes handlers waiting out an injected delay
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server.close()
