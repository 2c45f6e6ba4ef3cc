"""The sync client's whole-attempt deadline: watches, the watchdog thread, the watched transport.

Deadlines here are short (0.05 s and up) and only their lower bounds are exact; upper bounds are
loose enough for a loaded CI machine, and far below what a missed deadline would take.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ncp_cfr import APITimeoutError
from ncp_cfr.clients._deadline import WATCHDOG, Watch, Watchdog, watched_transport
from ncp_cfr.testing import Emulator

from .conftest import jpeg_bytes

#: Far longer than any wait here should take; only reached when something is broken.
PATIENCE = 5.0


class FakeStream:
    """Just enough of an httpcore network stream for a watch: its socket."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock

    def get_extra_info(self, info: str) -> Any:
        return self.sock if info == "socket" else None


class RecordingSocket:
    """A socket stand-in that records its shutdown in ``log`` and sets ``done``."""

    def __init__(self, name: str, log: list[str], done: threading.Event | None = None) -> None:
        self.name = name
        self.log = log
        self.done = done

    def shutdown(self, how: int) -> None:
        assert how == socket.SHUT_RDWR
        self.log.append(self.name)
        if self.done is not None:
            self.done.set()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.settimeout(PATIENCE)  # a read the shutdown failed to end fails the test, not hangs it
    b.settimeout(PATIENCE)
    yield a, b
    a.close()
    b.close()


def assert_shut(ours: socket.socket, peer: socket.socket) -> None:
    """``ours`` was shut down both ways: reads end at once, and the peer sees the end too."""
    assert ours.recv(1) == b""
    assert peer.recv(1) == b""
    with pytest.raises(OSError):
        ours.send(b"x")


# -- Watch -----------------------------------------------------------------------------------------


def test_an_expired_watch_shuts_down_its_streams_socket(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    watch = Watch(deadline=0.0)
    watch.note(FakeStream(ours))
    peer.sendall(b"still open")  # noting alone changes nothing
    assert ours.recv(10) == b"still open"
    watch.expire()
    assert watch.expired
    assert_shut(ours, peer)


def test_a_stream_noted_after_the_deadline_is_shut_at_once(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # The deadline can pass while the connection is still being made: the stream must not
    # escape because it was not known yet.
    ours, peer = pair
    watch = Watch(deadline=0.0)
    watch.expire()
    watch.note(FakeStream(ours))
    assert_shut(ours, peer)


def test_trace_notes_the_stream_of_a_new_connection_only(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    watch = Watch(deadline=0.0)
    stream = FakeStream(ours)
    watch.trace("connection.send_request_headers.complete", {"return_value": None})
    assert watch.stream is None
    watch.trace("connection.connect_tcp.complete", {"return_value": stream})
    assert watch.stream is stream
    watch.expire()
    assert_shut(ours, peer)


@pytest.mark.parametrize(
    "stream",
    [FakeStream(None), FakeStream(object()), object()],
    ids=["no-socket", "not-a-socket", "not-a-stream"],
)
def test_expiring_is_best_effort_and_never_raises(stream: Any) -> None:
    # The read still ends at httpx's own timeout; the watchdog thread must not die of it.
    watch = Watch(deadline=0.0)
    watch.note(stream)
    watch.expire()
    assert watch.expired


# -- Watchdog --------------------------------------------------------------------------------------


def test_the_watchdog_expires_watches_in_deadline_order() -> None:
    dog = Watchdog()
    log: list[str] = []
    last = threading.Event()
    start = time.monotonic()
    # Started out of order: the deadlines decide, not the order of start().
    for seconds, name in ((0.15, "c"), (0.10, "b"), (0.05, "a")):
        dog.start(seconds).note(
            FakeStream(RecordingSocket(name, log, last if name == "c" else None))
        )
    assert last.wait(PATIENCE)
    elapsed = time.monotonic() - start
    assert log == ["a", "b", "c"]
    assert 0.15 <= elapsed < PATIENCE


class SeenWait(threading.Condition):
    """The watchdog's condition, telling when its thread settles into a long wait."""

    def __init__(self) -> None:
        super().__init__(threading.Lock())
        self.long_wait = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is not None and timeout > 10:
            self.long_wait.set()  # the lock is still held: start() cannot run before the wait
        return super().wait(timeout)


def test_an_earlier_deadline_wakes_a_watchdog_waiting_for_a_later_one() -> None:
    dog = Watchdog()
    dog._wake = wake = SeenWait()
    log: list[str] = []
    done = threading.Event()
    late = dog.start(60.0)
    assert wake.long_wait.wait(PATIENCE)
    start = time.monotonic()
    soon = dog.start(0.05)
    soon.note(FakeStream(RecordingSocket("soon", log, done)))
    assert done.wait(PATIENCE)
    elapsed = time.monotonic() - start
    assert 0.05 <= elapsed < 2.0  # not the 60 s the thread was waiting for
    assert soon.expired and not late.expired
    dog.finish(late)


def test_a_finished_watch_is_never_expired() -> None:
    dog = Watchdog()
    log: list[str] = []
    done = threading.Event()
    finished = dog.start(0.05)
    finished.note(FakeStream(RecordingSocket("finished", log)))
    dog.finish(finished)
    # A later watch expiring proves the watchdog went past the finished one's deadline.
    dog.start(0.1).note(FakeStream(RecordingSocket("later", log, done)))
    assert done.wait(PATIENCE)
    assert log == ["later"]
    assert not finished.expired and finished.stream is None


def test_current_is_this_threads_running_watch() -> None:
    dog = Watchdog()
    assert dog.current() is None
    watch = dog.start(60.0)
    assert dog.current() is watch
    elsewhere: list[Watch | None] = []
    thread = threading.Thread(target=lambda: elsewhere.append(dog.current()))
    thread.start()
    thread.join(PATIENCE)
    assert elsewhere == [None]  # another thread's reads are not this attempt's
    dog.finish(watch)
    assert dog.current() is None


# -- the watched transport -------------------------------------------------------------------------


def face_post(http: httpx.Client, emu: Emulator, **kwargs: Any) -> httpx.Response:
    return http.post(
        emu.base_url + "/vision/v1/face",
        headers={
            "X-NCP-APIGW-API-KEY-ID": emu.client_id,
            "X-NCP-APIGW-API-KEY": emu.client_secret,
        },
        files={"image": ("image.jpg", jpeg_bytes(), "image/jpeg")},
        **kwargs,
    )


def test_watched_transport_notes_a_kept_alive_connection_on_the_threads_watch(
    emu: Emulator,
) -> None:
    transport = watched_transport()
    assert isinstance(transport, httpx.HTTPTransport)
    with httpx.Client(transport=transport) as http:
        first = face_post(http, emu)  # no watch on this thread: the transport just works
        assert first.status_code == 200
        sock = first.extensions["network_stream"].get_extra_info("socket")
        watch = WATCHDOG.start(60.0)
        try:
            # No trace extension and no answer yet: only the transport can have noted it.
            assert face_post(http, emu).status_code == 200
            assert watch.stream is not None
            assert watch.stream.get_extra_info("socket") is sock  # the same, kept-alive one
        finally:
            WATCHDOG.finish(watch)


def test_a_stall_on_a_kept_alive_connection_is_cut_off_at_the_timeout(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    sockets: list[object] = []
    finish = WATCHDOG.finish

    def finish_and_record(watch: Watch) -> None:
        stream = watch.stream
        sockets.append(stream.get_extra_info("socket") if stream is not None else None)
        finish(watch)

    monkeypatch.setattr(WATCHDOG, "finish", finish_and_record)
    with emu.client(timeout=0.5, max_retries=0) as client:
        # httpx's per-read timeout equals the attempt's, so it would end this read at the same
        # moment: make it long, so that only the watchdog can cut the stall short.
        client._timeouts = httpx.Timeout(30.0, connect=5.0)
        client.detect_faces(jpeg_bytes())
        emu.inject(delay=5.0)  # the second request waits 5 s before any byte of an answer
        start = time.monotonic()
        with pytest.raises(APITimeoutError, match=r"timeout=0\.5 s per attempt"):
            client.detect_faces(jpeg_bytes())
        elapsed = time.monotonic() - start
    assert 0.5 <= elapsed < 3.0  # untracked, it would have waited out the 5 s
    assert emu.calls() == 2
    first, second = sockets
    assert first is not None and second is first  # the stalled request used the kept-alive one
