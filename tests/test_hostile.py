"""Hostile servers cannot hold or flood the client (issue 10, part 5).

Each case runs a small raw-socket server on 127.0.0.1 that misbehaves in one way, and checks
on both shells that the call ends in a typed CFRError within attempts x timeout + backoff, that
memory stays bounded, and that the secret shows up in no log record, repr or message.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest

from ncp_cfr import (
    APIConnectionError,
    APITimeoutError,
    AsyncClient,
    CFRError,
    Client,
    ServerError,
    protocol,
)
from ncp_cfr.protocol import MAX_ANSWER_BYTES, AnswerReader

from .conftest import HOPPER, FakeClock, jpeg_bytes

SECRET = "fake-secret-HOSTILE-do-not-leak"
CLIENT_ID = "fake-client-id-hostile"
TIMEOUT = 0.3
RETRIES = 1
BACKOFF = 0.0  # the clients sleep on a fake clock here: these tests are about timeouts
SLACK = 0.6  # thread start-up and scheduling on a loaded 2-core machine
GOOD = json.dumps(
    {"info": {"size": {"width": 200, "height": 160}, "faceCount": 0}, "faces": []}
).encode()

Behaviour = Callable[[socket.socket, threading.Event], None]


# -- the servers -----------------------------------------------------------------------------------


def _read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return
        body += chunk


def _answer(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    lines = [f"HTTP/1.1 {status}", "Connection: close", *headers]
    if not any(h.lower().startswith("content-length") for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _drip(conn: socket.socket, stop: threading.Event, head: bytes, byte: bytes) -> None:
    conn.sendall(head)
    give_up = time.monotonic() + 5  # a client that never gives up fails the test, not hangs it
    while not stop.wait(0.02) and time.monotonic() < give_up:
        conn.sendall(byte)  # a byte every 20 ms: each read gets data well within timeout


def silent(conn: socket.socket, stop: threading.Event) -> None:
    """Accepts the request and never answers."""
    _read_request(conn)
    stop.wait()


def header_drip(conn: socket.socket, stop: threading.Event) -> None:
    """Sends its header bytes one by one, forever."""
    _read_request(conn)
    _drip(conn, stop, b"HTTP/1.1 200 OK\r\nX-Drip: ", b"a")


def body_drip(conn: socket.socket, stop: threading.Event) -> None:
    """Sends its headers, then the body one byte at a time."""
    _read_request(conn)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
    _drip(conn, stop, head, b" ")


def _flood(conn: socket.socket, stop: threading.Event, head: bytes) -> None:
    conn.sendall(head)
    block = b" " * (1 << 20)
    for _ in range(200):  # 200 MB, unless the client hangs up first
        if stop.is_set():
            return
        conn.sendall(block)


def huge(conn: socket.socket, stop: threading.Event) -> None:
    """A 200 MB body, announced as such."""
    _read_request(conn)
    _flood(conn, stop, b"HTTP/1.1 200 OK\r\nContent-Length: 209715200\r\n\r\n")


def huge_unannounced(conn: socket.socket, stop: threading.Event) -> None:
    """A 200 MB body with no Content-Length: the size shows only while reading."""
    _read_request(conn)
    _flood(conn, stop, b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")


@functools.cache
def _bomb() -> bytes:
    # 64 MB of spaces in 64 KB of gzip: one network read decompresses past the cap.
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b" " * (1 << 20)
    return b"".join(packer.compress(block) for _ in range(64)) + packer.flush()


def gzip_bomb(conn: socket.socket, stop: threading.Event) -> None:
    _read_request(conn)
    conn.sendall(_answer(_bomb(), "Content-Encoding: gzip", "Content-Type: application/json"))


def bad_gzip(conn: socket.socket, stop: threading.Event) -> None:
    """Says gzip, sends plain JSON."""
    _read_request(conn)
    conn.sendall(_answer(GOOD, "Content-Encoding: gzip", "Content-Type: application/json"))


def garbage_status(conn: socket.socket, stop: threading.Event) -> None:
    _read_request(conn)
    conn.sendall(b"HTTP/1.1 two hundred OK\r\nContent-Length: 2\r\n\r\n{}")


def bad_length(conn: socket.socket, stop: threading.Event) -> None:
    _read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n{}")


class HostileServer:
    """Serves each connection with the next of ``behaviours`` (the last one from then on).

    Every answer closes its connection, so each request is a new connection.
    """

    def __init__(self, *behaviours: Behaviour) -> None:
        self._behaviours = list(behaviours)
        self.requests = 0
        self._stop = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.base_url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                index = min(self.requests, len(self._behaviours) - 1)
                self.requests += 1
            thread = threading.Thread(
                target=self._serve, args=(conn, self._behaviours[index]), daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket, behaviour: Behaviour) -> None:
        # An OSError: the client hung up, which is what these tests want.
        with conn, contextlib.suppress(OSError):
            behaviour(conn, self._stop)

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        for thread in self._threads:
            thread.join(5)


@pytest.fixture
def hostile() -> Iterator[Callable[..., HostileServer]]:
    servers: list[HostileServer] = []

    def start(*behaviours: Behaviour) -> HostileServer:
        server = HostileServer(*behaviours)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture(autouse=True)
def _no_real_backoff(fake_clock: FakeClock) -> FakeClock:
    return fake_clock


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _call(
    kind: str,
    base_url: str,
    method: str = "detect_faces",
    *args: Any,
    call_kwargs: dict[str, Any] | None = None,
    **opts: Any,
) -> Any:
    """Run ``method`` on a fresh client of ``kind``; return its result or the error it raised."""
    kwargs = call_kwargs or {}
    options: dict[str, Any] = {"base_url": base_url, "timeout": TIMEOUT, "max_retries": RETRIES}
    options.update(opts)
    image = args or (jpeg_bytes(),)
    if kind == "sync":
        with Client(CLIENT_ID, SECRET, **options) as client:
            assert SECRET not in repr(client)
            try:
                return getattr(client, method)(*image, **kwargs)
            except CFRError as error:
                return error

    async def go() -> Any:
        async with AsyncClient(CLIENT_ID, SECRET, **options) as client:
            assert SECRET not in repr(client)
            try:
                return await getattr(client, method)(*image, **kwargs)
            except CFRError as error:
                return error

    return anyio.run(go)


def _assert_no_secret(error: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    assert SECRET not in str(error) and SECRET not in repr(error)
    assert CLIENT_ID not in str(error)
    for record in caplog.records:
        text = record.getMessage() + repr(record.args) + repr(record.__dict__)
        assert SECRET not in text and CLIENT_ID not in text


#: Calls allowed: attempts x timeout + the backoff between them + slack.
BOUND = (RETRIES + 1) * TIMEOUT + RETRIES * BACKOFF + SLACK


# -- each hostile case, on both shells -------------------------------------------------------------


@pytest.mark.parametrize("behaviour", [silent, header_drip, body_drip], ids=lambda b: b.__name__)
def test_slow_servers_cannot_hold_an_attempt_past_its_timeout(
    kind: str,
    behaviour: Behaviour,
    hostile: Callable[..., HostileServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Regression: httpx's read timeout restarts at every byte, so a drip held each attempt for
    # as long as the server liked (79.5 s for timeout=2, max_retries=2).
    caplog.set_level(logging.DEBUG)
    server = hostile(behaviour)
    start = time.monotonic()
    error = _call(kind, server.base_url)
    elapsed = time.monotonic() - start
    assert isinstance(error, APITimeoutError), error
    assert elapsed <= BOUND, f"{elapsed:.2f} s"
    assert server.requests == RETRIES + 1
    assert f"in {RETRIES + 1} attempts over" in str(error)
    assert f"timeout={TIMEOUT:g} s per attempt" in str(error)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == RETRIES and "attempt 1 of 2 failed" in warnings[0].getMessage()
    _assert_no_secret(error, caplog)
    # The sync shell's helper threads do not outlive the attempts: their sockets were shut.
    for _ in range(50):
        if not any(t.name == "ncp_cfr-attempt" for t in threading.enumerate()):
            break
        time.sleep(0.02)
    assert not any(t.name == "ncp_cfr-attempt" for t in threading.enumerate())


@pytest.mark.parametrize("behaviour", [huge, huge_unannounced, gzip_bomb], ids=lambda b: b.__name__)
def test_oversized_answers_stop_at_the_cap(
    kind: str,
    behaviour: Behaviour,
    hostile: Callable[..., HostileServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Regression: a 200 MB body was read whole (651 MB RSS); a gzip bomb was inflated whole.
    caplog.set_level(logging.DEBUG)
    server = hostile(behaviour)
    if behaviour is gzip_bomb:
        _bomb()  # compress outside the measured call
    tracemalloc.start()
    try:
        start = time.monotonic()
        error = _call(kind, server.base_url, timeout=5.0)
        elapsed = time.monotonic() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(error, ServerError), error
    assert f"larger than {MAX_ANSWER_BYTES:,} bytes" in str(error)
    assert "larger than any CFR answer" in str(error)
    assert server.requests == RETRIES + 1  # an unreadable answer is retried like others
    assert peak < 3 * MAX_ANSWER_BYTES, f"peak {peak / 1e6:.0f} MB"
    assert elapsed < 5.0
    _assert_no_secret(error, caplog)


def test_bad_gzip_is_a_server_error_and_retried(
    kind: str, hostile: Callable[..., HostileServer], caplog: pytest.LogCaptureFixture
) -> None:
    # Regression: a raw httpx.DecodingError escaped (not a CFRError).
    caplog.set_level(logging.DEBUG)
    server = hostile(bad_gzip)
    error = _call(kind, server.base_url)
    assert isinstance(error, ServerError), error
    assert error.status_code == 200 and "could not be decoded" in str(error)
    assert server.requests == RETRIES + 1
    _assert_no_secret(error, caplog)


def test_bad_gzip_then_a_good_answer_succeeds(
    kind: str, hostile: Callable[..., HostileServer]
) -> None:
    good = _answer(GOOD, "Content-Type: application/json")

    def fine(conn: socket.socket, stop: threading.Event) -> None:
        _read_request(conn)
        conn.sendall(good)

    server = hostile(bad_gzip, fine)
    result = _call(kind, server.base_url)
    assert not isinstance(result, CFRError), result
    assert result.faces == [] and server.requests == 2


@pytest.mark.parametrize("behaviour", [garbage_status, bad_length], ids=lambda b: b.__name__)
def test_protocol_garbage_is_a_connection_error(
    kind: str, behaviour: Behaviour, hostile: Callable[..., HostileServer]
) -> None:
    server = hostile(behaviour)
    error = _call(kind, server.base_url)
    assert isinstance(error, APIConnectionError), error
    assert not isinstance(error, APITimeoutError)
    assert server.requests == RETRIES + 1 and f"{RETRIES + 1} attempts over" in str(error)


def test_one_bad_answer_is_one_items_error_in_a_batch(
    kind: str, hostile: Callable[..., HostileServer]
) -> None:
    # Regression: one undecodable answer in 50 ended detect_faces_many with no results at all.
    good = _answer(GOOD, "Content-Type: application/json")

    def fine(conn: socket.socket, stop: threading.Event) -> None:
        _read_request(conn)
        conn.sendall(good)

    server = hostile(bad_gzip, fine)
    images = [jpeg_bytes() for _ in range(4)]
    items = _call(
        kind,
        server.base_url,
        "detect_faces_many",
        images,
        max_retries=0,
        call_kwargs={"concurrency": 1},
    )
    # Which image meets the bad answer depends on which was prepared first: exactly one does.
    assert len(items) == 4 and [item.index for item in items] == [0, 1, 2, 3]
    failed = [item for item in items if not item.ok]
    assert len(failed) == 1 and sum(item.ok for item in items) == 3
    assert isinstance(failed[0].error, ServerError)
    assert "could not be decoded" in str(failed[0].error)


def test_cli_prints_a_json_line_and_the_retry_notices_not_a_traceback(
    hostile: Callable[..., HostileServer],
) -> None:
    server = hostile(bad_gzip)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NCP_CFR_")}
    env.update(
        NCP_CFR_BASE_URL=server.base_url,
        NCP_CFR_CLIENT_ID=CLIENT_ID,
        NCP_CFR_CLIENT_SECRET=SECRET,
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ncp_cfr",
            "face",
            str(HOPPER),
            "--jsonl",
            "--max-retries",
            "1",
            "--timeout",
            "5",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert "Traceback" not in done.stderr, done.stderr
    [line] = done.stdout.splitlines()
    record = json.loads(line)
    assert record["result"] is None
    assert record["error"]["type"] == "ServerError"
    assert "could not be decoded" in record["error"]["message"]
    assert "attempt 1 of 2 failed" in done.stderr and "retrying in" in done.stderr
    assert done.returncode == 1
    assert SECRET not in done.stdout + done.stderr


# -- the reader alone -----------------------------------------------------------------------------


def _read(body: bytes, limit: int = 1000, **headers: str) -> bytes:
    reader = AnswerReader(200, {k.replace("_", "-"): v for k, v in headers.items()}, limit=limit)
    for start in range(0, len(body), 7):  # small chunks: decoding must carry state across them
        reader.feed(body[start : start + 7])
    return reader.body()


def test_reader_decodes_gzip_and_both_deflates() -> None:
    text = b'{"faces": []}' * 20
    gz = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert _read(gz.compress(text) + gz.flush(), content_encoding="gzip") == text
    assert _read(zlib.compress(text), content_encoding="deflate") == text
    assert _read(raw.compress(text) + raw.flush(), content_encoding="deflate") == text
    assert _read(text, content_encoding="identity") == text
    assert _read(b"", content_encoding="gzip") == b""


def test_reader_cap_is_exact() -> None:
    assert len(_read(b"x" * 1000)) == 1000
    with pytest.raises(ServerError, match="larger than 1,000 bytes"):
        _read(b"x" * 1001)
    with pytest.raises(ServerError, match="announced 1,001 bytes"):
        AnswerReader(200, {"Content-Length": "1001"}, limit=1000)
    packed = zlib.compress(b" " * 1001)
    with pytest.raises(ServerError, match="larger than 1,000 bytes"):
        _read(packed, content_encoding="deflate")


@pytest.mark.parametrize(
    ("body", "encoding", "why"),
    [
        (b"plain text", "gzip", "gzip"),
        (zlib.compress(b"{}" * 50)[:-6], "deflate", "ends early"),
        (b"{}", "br", "never asks for"),
        (b"{}", "gzip, gzip", "never asks for"),
    ],
)
def test_reader_refuses_what_it_cannot_decode(body: bytes, encoding: str, why: str) -> None:
    with pytest.raises(ServerError, match="could not be decoded") as info:
        _read(body, content_encoding=encoding)
    assert why in str(info.value)


def test_client_asks_only_for_codings_it_decodes() -> None:
    from ncp_cfr.images import prepare_image

    settings = protocol.resolve_settings("fake-id", "fake-secret")
    upload = prepare_image(jpeg_bytes())
    request = protocol.build_request(
        settings, protocol.Endpoint.FACE, upload.data, upload.content_type
    )
    assert request.headers["Accept-Encoding"] == "gzip, deflate"
