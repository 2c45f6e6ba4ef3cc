"""The whole-attempt deadline of the sync client, without a thread per attempt.

httpx's timeouts bound each read and write, so a server that sends one byte at a time can hold
an attempt forever. The async client cancels the attempt as a whole; a blocking read cannot be
cancelled, but it ends at once when its socket is shut down. So each attempt registers a
[`Watch`][ncp_cfr.clients._deadline.Watch] with one process-wide watchdog thread, which shuts
the attempt's socket down if the deadline passes first.

Which socket? A connection the client opens itself is seen through httpx's ``trace`` extension;
a kept-alive one through the transport this module gives the clients' own pools, whose streams
note themselves on the watch of the thread using them. (For a pool you pass in, a kept-alive
connection is known once its answer's headers arrive.)
"""

from __future__ import annotations

import heapq
import itertools
import math
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any

import httpx

_CONNECTED = ("connection.connect_tcp.complete", "connection.start_tls.complete")


class Watch:
    """One attempt's deadline, and the stream it is using when known."""

    __slots__ = ("deadline", "expired", "finished", "stream")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired = False
        self.finished = False
        self.stream: Any = None

    def note(self, stream: Any) -> None:
        """The attempt now reads or writes ``stream``."""
        self.stream = stream
        if self.expired:  # the deadline passed before the stream was known
            _shut(stream)

    def trace(self, event: str, info: Mapping[str, Any]) -> None:
        """httpx's ``trace`` extension: notes the stream of a new connection."""
        if event in _CONNECTED:
            self.note(info.get("return_value"))

    def expire(self) -> None:
        self.expired = True
        stream = self.stream
        if stream is not None:
            _shut(stream)


def _shut(stream: Any) -> None:
    try:
        sock = stream.get_extra_info("socket")
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
    except Exception:  # best effort: the read also ends at httpx's own read timeout
        pass


class Watchdog:
    """Expires watches at their deadlines, in one daemon thread started on first use."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Watch]] = []
        self._order = itertools.count()
        self._wake = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._local = threading.local()
        #: When the thread will look at the heap next (inf: only when notified).
        self._wake_at = -math.inf

    def start(self, seconds: float) -> Watch:
        """Watch an attempt of this thread that must be over in ``seconds``."""
        watch = Watch(time.monotonic() + seconds)
        with self._wake:
            heap = self._heap
            while heap and heap[0][2].finished:  # most attempts end in time: drop them early
                heapq.heappop(heap)
            heapq.heappush(heap, (watch.deadline, next(self._order), watch))
            if self._thread is None or not self._thread.is_alive():  # first use, or a fork
                self._thread = threading.Thread(
                    target=self._run, name="ncp_cfr-deadlines", daemon=True
                )
                self._thread.start()
            elif watch.deadline < self._wake_at:
                # Only when the thread would wake too late: with one timeout for every call it
                # is already waiting for an earlier deadline, so calls cost it no wake-up.
                self._wake.notify()
        self._local.watch = watch
        return watch

    def finish(self, watch: Watch) -> None:
        """The attempt is over: nothing to expire any more."""
        watch.finished = True
        watch.stream = None
        self._local.watch = None

    def current(self) -> Watch | None:
        """The watch of the attempt this thread is running, if any."""
        return getattr(self._local, "watch", None)

    def _run(self) -> None:
        with self._wake:
            while True:
                heap = self._heap
                while heap and heap[0][2].finished:
                    heapq.heappop(heap)
                now = time.monotonic()
                if heap and heap[0][0] <= now:
                    heapq.heappop(heap)[2].expire()
                    continue
                # Sleep until the earliest deadline known, even if its attempt ends before: a
                # later watch then needs no notify (see start).
                self._wake_at = heap[0][0] if heap else math.inf
                self._wake.wait(None if not heap else self._wake_at - now)
                self._wake_at = -math.inf  # awake: start() need not notify


WATCHDOG = Watchdog()


class _NotingStream:
    """A network stream that tells the current attempt's watch it is in use."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        watch = WATCHDOG.current()
        if watch is not None and watch.stream is not self._stream:
            watch.note(self._stream)
        data: bytes = self._stream.read(max_bytes, timeout)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        watch = WATCHDOG.current()
        if watch is not None and watch.stream is not self._stream:
            watch.note(self._stream)
        self._stream.write(buffer, timeout)

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, *args: Any, **kwargs: Any) -> _NotingStream:
        return _NotingStream(self._stream.start_tls(*args, **kwargs))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _NotingBackend:
    """httpcore's network backend, handing out streams that note themselves."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    def connect_tcp(self, *args: Any, **kwargs: Any) -> _NotingStream:
        return _NotingStream(self._backend.connect_tcp(*args, **kwargs))

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> _NotingStream:
        return _NotingStream(self._backend.connect_unix_socket(*args, **kwargs))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def watched_transport() -> httpx.HTTPTransport:
    """httpx's transport, with streams the watchdog can find on kept-alive connections."""
    transport = httpx.HTTPTransport()
    # httpcore's pool takes a network backend, but httpx does not pass one through: set it on
    # the pool httpx built. Should a future httpcore rename it, the transport works as before
    # and only kept-alive connections are known later (once their headers arrive).
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if backend is not None:
        pool._network_backend = _NotingBackend(backend)  # type: ignore[union-attr]
    return transport
