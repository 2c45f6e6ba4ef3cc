"""The loopback server itself, over raw sockets: keep-alive, chunked bodies, the envelopes for
requests it refuses unread, the connection cap and shutdown.

tests/test_emulator_http.py covers the rest through ``Emulator`` (bad Content-Length values,
malformed request lines, bad chunks, pipelining, stalled and silent clients, the worker pool);
these tests build ``LoopbackServer`` alone and do not repeat those cases.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from ncp_cfr.errors import InvalidArgumentError
from ncp_cfr.testing.rules import MAX_BODY_BYTES, Rules
from ncp_cfr.testing.server import LoopbackServer

from .conftest import jpeg_bytes

CLIENT_ID = "test-id"
CLIENT_SECRET = "test-secret"
KEYS = f"X-NCP-APIGW-API-KEY-ID: {CLIENT_ID}\r\nX-NCP-APIGW-API-KEY: {CLIENT_SECRET}\r\n"
BOUNDARY = "b0undary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def rules() -> Rules:
    return Rules(CLIENT_ID, CLIENT_SECRET)


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    srv = LoopbackServer(rules(), read_timeout=1.0, max_workers=2)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def address(srv: LoopbackServer) -> tuple[str, int]:
    host, port = srv.base_url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def connect(srv: LoopbackServer, timeout: float = 3.0) -> socket.socket:
    return socket.create_connection(address(srv), timeout=timeout)


def multipart(image: bytes) -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def post(body: bytes, path: str = "/vision/v1/face", keys: str = KEYS, extra: str = "") -> bytes:
    """A complete POST of ``body`` with a Content-Length."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\n{keys}Content-Type: {MULTIPART}\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


def read_answers(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """``count`` HTTP answers in a row: status, headers (lower-case names), body; nothing more."""
    data = b""
    answers = []

    def more() -> bytes:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed without a whole answer (got {data!r})"
        return chunk

    for _ in range(count):
        while b"\r\n\r\n" not in data:
            data += more()
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])
        }
        length = int(headers.get("content-length", "0"))
        while len(data) < length:
            data += more()
        answers.append((int(lines[0].split()[1]), headers, data[:length]))
        data = data[length:]
    assert not data, f"unexpected bytes after the answers: {data!r}"
    return answers


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    return read_answers(sock, 1)[0]


def closed_silently(sock: socket.socket, within: float = 3.0) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) within ``within`` s without sending."""
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def error_code(body: bytes) -> str:
    payload = json.loads(body)
    return str(payload["error"]["errorCode"] if "error" in payload else payload["errorCode"])


def until_served(srv: LoopbackServer, within: float = 3.0) -> tuple[int, socket.socket]:
    """Connect and ask until the server stops refusing (503): the status and the connection."""
    deadline = time.monotonic() + within
    while True:
        sock = connect(srv)
        sock.sendall(post(multipart(jpeg_bytes())))
        status = read_answer(sock)[0]
        if status != 503 or time.monotonic() > deadline:
            return status, sock
        sock.close()
        time.sleep(0.05)


# -- construction ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "limits",
    [
        {"read_timeout": 0.0},
        {"read_timeout": -1.0},
        {"max_workers": 0},
        {"max_connections": 0},
    ],
)
def test_limits_that_would_serve_nobody_are_refused(limits: dict[str, float]) -> None:
    with pytest.raises(InvalidArgumentError, match="read_timeout must be > 0"):
        LoopbackServer(rules(), **limits)  # type: ignore[arg-type]


def test_port_zero_binds_a_free_loopback_port() -> None:
    first, second = LoopbackServer(rules()), LoopbackServer(rules())
    try:
        (host1, port1), (host2, port2) = address(first), address(second)
        assert host1 == host2 == "127.0.0.1"
        assert port1 > 0 and port2 > 0 and port1 != port2
    finally:
        first.stop()
        second.stop()


# -- well-formed requests --------------------------------------------------------------------------


def test_a_multipart_post_gets_a_200_json_answer(server: LoopbackServer) -> None:
    image = jpeg_bytes((120, 100))
    assert server.threads == 0  # no worker until a request arrives
    with connect(server) as sock:
        sock.sendall(post(multipart(image)))
        status, headers, body = read_answer(sock)
    assert status == 200
    assert headers["content-type"].startswith("application/json")
    assert "connection" not in headers  # HTTP/1.1 keep-alive, as the gateway
    assert json.loads(body) == {
        "info": {"size": {"width": 120, "height": 100}, "faceCount": 0},
        "faces": [],
    }
    # Workers start with the first request; how many the pool started for one request depends
    # on timing (the connection goes back to the selector between its requests).
    assert 1 <= server.threads <= 2
    [recorded] = server._server.rules.requests
    assert recorded.image_bytes == image and recorded.filename == "a.jpg"


def test_keep_alive_answers_one_request_after_another_then_drops_the_idle_connection(
    server: LoopbackServer,
) -> None:
    image = multipart(jpeg_bytes())
    with connect(server) as sock:
        sock.sendall(post(image))
        assert read_answer(sock)[0] == 200
        # An error answer does not end the connection either.
        sock.sendall(post(image, keys="X-NCP-APIGW-API-KEY-ID: wrong\r\n"))
        status, headers, body = read_answer(sock)
        assert (status, error_code(body)) == (401, "200") and "connection" not in headers
        sock.sendall(post(image, path="/vision/v1/celebrity"))
        status, _, body = read_answer(sock)
        assert status == 200 and json.loads(body)["faces"] == []
        # Idle after its answers, the connection is closed after read_timeout (1 s), unanswered.
        assert closed_silently(sock)
    assert server._server.rules.handled == 3


def test_the_idle_deadline_restarts_after_each_answer() -> None:
    """A connection reused every 0.5 s outlives read_timeout (1.2 s): only silence ends it."""
    srv = LoopbackServer(rules(), read_timeout=1.2)
    srv.start()
    try:
        with connect(srv) as sock:
            for _ in range(4):  # 1.5 s in all
                sock.sendall(post(multipart(jpeg_bytes())))
                assert read_answer(sock)[0] == 200
                time.sleep(0.5)
    finally:
        srv.stop()


def test_an_idle_keep_alive_connection_does_not_hold_the_only_worker() -> None:
    srv = LoopbackServer(rules(), read_timeout=10.0, max_workers=1)
    srv.start()
    try:
        with connect(srv) as idle, connect(srv) as other:
            idle.sendall(post(multipart(jpeg_bytes())))
            assert read_answer(idle)[0] == 200
            # Were the worker still tied to ``idle``, this would wait its 10 s read timeout and
            # the 3 s socket timeout would fail the read.
            other.sendall(post(multipart(jpeg_bytes())))
            assert read_answer(other)[0] == 200
        assert srv.threads == 1
    finally:
        srv.stop()


def test_a_chunked_body_is_read_whole_and_the_connection_stays_usable(
    server: LoopbackServer,
) -> None:
    image = jpeg_bytes((90, 80))
    body = multipart(image)
    # Single-byte chunks, then one with an upper-case hex size, then the rest.
    pieces = [body[i : i + 1] for i in range(5)] + [body[5:31], body[31:]]
    chunks = b"".join(b"%X\r\n%s\r\n" % (len(p), p) for p in pieces)
    assert b"1A\r\n" in chunks
    head = (
        f"POST /vision/v1/face HTTP/1.1\r\nHost: x\r\n{KEYS}Content-Type: {MULTIPART}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    with connect(server) as sock:
        sock.sendall(head.encode() + chunks + b"0\r\n\r\n")
        status, _, answer = read_answer(sock)
        assert status == 200 and json.loads(answer)["info"]["size"] == {"width": 90, "height": 80}
        sock.sendall(post(multipart(jpeg_bytes())))  # the next request on the same connection
        assert read_answer(sock)[0] == 200
    assert server._server.rules.requests[0].image_bytes == image


def test_transfer_encoding_chunked_overrides_a_content_length(server: LoopbackServer) -> None:
    """Framing by Content-Length (20) would swallow the start of the next request."""
    smuggler = (
        f"POST /vision/v1/face HTTP/1.1\r\nHost: x\r\n{KEYS}Content-Length: 20\r\n"
        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    with connect(server) as sock:
        sock.sendall(smuggler.encode() + post(multipart(jpeg_bytes())))
        (status, _, body), (second, _, _) = read_answers(sock, 2)
    assert (status, error_code(body)) == (400, "ER01")  # an empty body: no image part
    assert second == 200


# -- requests refused unread -----------------------------------------------------------------------


@pytest.mark.parametrize("expect", [False, True])
def test_a_declared_oversize_body_is_refused_before_it_is_sent(
    server: LoopbackServer, expect: bool
) -> None:
    head = (
        f"POST /vision/v1/face HTTP/1.1\r\nHost: x\r\n{KEYS}Content-Type: {MULTIPART}\r\n"
        f"Content-Length: {MAX_BODY_BYTES + 1}\r\n"
        + ("Expect: 100-continue\r\n" if expect else "")
        + "\r\n"
    )
    with connect(server) as sock:
        sock.sendall(head.encode())  # no body: the answer must not wait for it
        status, headers, body = read_answer(sock)  # the first answer: no "100 Continue"
        assert (status, error_code(body)) == (413, "430")
        assert headers["connection"] == "close" and closed_silently(sock)
    assert server._server.rules.handled == 0


def test_expect_100_continue_invites_an_acceptable_body(server: LoopbackServer) -> None:
    body = multipart(jpeg_bytes())
    with connect(server) as sock:
        sock.sendall(post(body, extra="Expect: 100-continue\r\n")[: -len(body)])  # the head
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            chunk = sock.recv(1)
            assert chunk, "closed before inviting the body"
            interim += chunk
        assert interim.startswith(b"HTTP/1.1 100 ")
        sock.sendall(body)
        assert read_answer(sock)[0] == 200


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"POST /vision/v1/face HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400),
        (b"POST /vision/v1/face HTTP/1\r\nHost: x\r\n\r\n", 400),
        (b"POST /vision/v1/face\r\n\r\n", 400),  # HTTP/0.9 has no POST
        (b"POST /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
        (
            b"POST /vision/v1/face HTTP/1.1\r\n"
            + b"".join(b"X-%d: y\r\n" % i for i in range(120))
            + b"\r\n",
            431,
        ),
        (b"POST /vision/v1/face HTTP/1.1\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (
            b"POST /vision/v1/face HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 1100,
            400,
        ),
    ],
    ids=[
        "four-words",
        "bad-version",
        "http09-post",
        "uri-too-long",
        "too-many-headers",
        "header-too-long",
        "chunk-size-line-too-long",
    ],
)
def test_malformed_requests_get_the_gateway_envelope_and_a_close(
    server: LoopbackServer,
    request_bytes: bytes,
    status: int,
    capfd: pytest.CaptureFixture[str],
) -> None:
    with connect(server) as sock:
        sock.sendall(request_bytes)
        got, headers, body = read_answer(sock)
        assert (got, error_code(body)) == (status, "100")
        assert headers["content-type"].startswith("application/json")
        assert json.loads(body)["error"]["message"] == "Bad Request Exception"
        assert headers["connection"] == "close" and closed_silently(sock)
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize(
    "request_bytes",
    [b"GET /vision/v1/face\r\n", b"GET /vision/v1/face\r\n\r\n"],
    ids=["line-alone", "line-then-blank-line"],
)
def test_a_request_line_without_a_version_gets_the_400_envelope_in_http11_at_once(
    request_bytes: bytes,
) -> None:
    """HTTP/0.9 sends no headers: the answer must not wait for them (the read timeout is 30 s,
    the client gives up after 3 s) and must still carry an HTTP/1.1 status line."""
    srv = LoopbackServer(rules(), read_timeout=30.0)
    srv.start()
    try:
        with connect(srv) as sock:
            sock.sendall(request_bytes)
            raw = b""
            while chunk := sock.recv(65536):  # until the server closes the connection
                raw += chunk
    finally:
        srv.stop()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    headers = head.decode("latin-1").lower().split("\r\n")[1:]
    assert "connection: close" in headers
    assert f"content-length: {len(body)}" in headers
    assert error_code(body) == "100"
    assert srv._server.rules.handled == 0


@pytest.mark.parametrize("reset", [False, True])
def test_a_client_gone_mid_body_gets_no_answer_and_the_server_carries_on(
    server: LoopbackServer, reset: bool, capfd: pytest.CaptureFixture[str]
) -> None:
    with connect(server) as sock:
        sock.sendall(post(b"0123456789" * 10)[:-90])  # the head and 10 of the 100 bytes
        if reset:  # an abortive close: RST instead of FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with connect(server) as sock:
        sock.sendall(post(multipart(jpeg_bytes())))
        assert read_answer(sock)[0] == 200
    assert server._server.rules.handled == 1  # the abandoned request was never answered
    assert "Traceback" not in capfd.readouterr().err


# -- the connection cap ----------------------------------------------------------------------------


def test_connections_closed_by_either_side_free_their_slot() -> None:
    srv = LoopbackServer(rules(), max_connections=2, read_timeout=0.5)
    srv.start()
    try:
        held = []
        for _ in range(2):  # answered, so certainly accepted and counted
            sock = connect(srv)
            sock.sendall(post(multipart(jpeg_bytes())))
            assert read_answer(sock)[0] == 200
            held.append(sock)
        with connect(srv) as extra:
            status, _, body = read_answer(extra)
            assert (status, error_code(body)) == (503, "500")
        held[0].close()  # the client leaves: its slot comes back
        status, newcomer = until_served(srv)
        newcomer.close()
        assert status == 200
        assert closed_silently(held[1])  # the server drops an idle one: its slot comes back too
        held[1].close()
        status, newcomer = until_served(srv)
        newcomer.close()
        assert status == 200
    finally:
        srv.stop()


# -- shutdown --------------------------------------------------------------------------------------


def test_stop_is_prompt_closes_every_connection_and_ends_every_thread() -> None:
    before = set(threading.enumerate())
    the_rules = rules()
    srv = LoopbackServer(the_rules, read_timeout=30.0, max_workers=4)
    srv.start()
    host_port = address(srv)
    parked, delayed, stalled, silent = (connect(srv) for _ in range(4))
    try:
        parked.sendall(post(multipart(jpeg_bytes())))
        assert read_answer(parked)[0] == 200  # now an idle keep-alive connection
        the_rules.latency = 30.0  # every answer from here on waits 30 s
        delayed.sendall(post(multipart(jpeg_bytes())))
        stalled.sendall(post(b"x" * 100)[:-50])  # half a body: a worker blocks reading the rest
        deadline = time.monotonic() + 3.0
        while the_rules.in_flight < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert the_rules.in_flight == 2

        start = time.monotonic()
        srv.stop()
        assert time.monotonic() - start < 5.0  # not the 30 s of the delay or the read timeout

        for sock in (parked, delayed, stalled, silent):
            assert closed_silently(sock, within=2.0)
        with pytest.raises(OSError):  # the listening socket is gone
            socket.create_connection(host_port, timeout=2).close()
        started = [
            t
            for t in threading.enumerate()
            if t not in before and t.name.startswith("ncp-cfr-emulator")
        ]
        for thread in started:
            thread.join(timeout=3)
        assert not [t for t in started if t.is_alive()]
    finally:
        srv.stop()  # a second stop is harmless; this one only matters if an assertion failed
        for sock in (parked, delayed, stalled, silent):
            sock.close()


def test_stop_waits_for_serve_forever_in_another_thread_before_closing_its_sockets() -> None:
    """Closing the sockets under a running accept loop fails it with EBADF; stopping before the
    loop has begun must not break it either. One round seldom hits the race, hence 50 rounds."""
    for round_ in range(50):
        srv = LoopbackServer(rules(), read_timeout=1.0)
        failures: list[BaseException] = []

        def serve(srv: LoopbackServer = srv, failures: list[BaseException] = failures) -> None:
            try:
                srv.serve_forever()
            except BaseException as exc:  # what would otherwise vanish with the thread
                failures.append(exc)

        thread = threading.Thread(target=serve)
        thread.start()
        if round_ % 2:  # an answered request: the loop is certainly running
            with connect(srv) as sock:
                sock.sendall(post(multipart(jpeg_bytes())))
                assert read_answer(sock)[0] == 200
        srv.stop()
        thread.join(timeout=5)
        assert not thread.is_alive()
        assert not failures, f"round {round_}: {failures[0]!r}"
