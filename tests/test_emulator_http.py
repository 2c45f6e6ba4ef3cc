"""The loopback emulator over raw sockets: malformed requests get the gateway's envelope, stalled
clients are dropped, and the threads it uses stay bounded whatever the clients do."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from ncp_cfr import NotFoundError
from ncp_cfr.protocol import error_from_response
from ncp_cfr.testing import Emulator
from ncp_cfr.testing.rules import MAX_BODY_BYTES, Rules
from ncp_cfr.testing.server import LoopbackServer

from .conftest import jpeg_bytes

KEYS = "X-NCP-APIGW-API-KEY-ID: fake-client-id\r\nX-NCP-APIGW-API-KEY: fake-client-secret\r\n"


@pytest.fixture
def quick() -> Iterator[Emulator]:
    """A scripted emulator with a short read timeout and a small pool, as the tests need."""
    with Emulator(detector="none", read_timeout=0.4, max_workers=4) as emulator:
        yield emulator


def connect(emu: Emulator) -> socket.socket:
    host, port = emu.base_url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=3)


def read_answer(sock: socket.socket, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
    """One HTTP answer from ``sock``: status, headers (lower-case names), body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed without an answer (got {data!r})"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    length = 0 if head_only else int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        rest += chunk
    assert len(rest) == length, f"unexpected bytes after the answer: {rest[length:]!r}"
    return int(lines[0].split()[1]), headers, rest


def closed(sock: socket.socket, within: float = 2.0) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) within ``within`` seconds."""
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def multipart(image: bytes) -> tuple[str, bytes]:
    boundary = "b0undary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return f"multipart/form-data; boundary={boundary}", body


def gateway_code(body: bytes) -> str:
    return str(json.loads(body)["error"]["errorCode"])


# -- malformed requests get an envelope -----------------------------------------------------------


@pytest.mark.parametrize("length", ["abc", "-5", "+5", "1e3", "5, 6", "٥"])
def test_a_bad_content_length_is_a_400_envelope(
    quick: Emulator, length: str, capfd: pytest.CaptureFixture[str]
) -> None:
    with connect(quick) as sock:
        sock.sendall(
            f"POST /vision/v1/face HTTP/1.1\r\nHost: x\r\n{KEYS}Content-Length: {length}\r\n\r\n"
            "hello".encode()
        )
        status, headers, body = read_answer(sock)
        assert status == 400 and gateway_code(body) == "100"
        assert headers["content-type"].startswith("application/json")
        assert headers["connection"] == "close" and closed(sock)
    assert "Traceback" not in capfd.readouterr().err


def test_two_different_content_lengths_are_refused(quick: Emulator) -> None:
    with connect(quick) as sock:
        sock.sendall(
            b"POST /vision/v1/face HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
            b"Content-Length: 2\r\n\r\nab"
        )
        status, _, body = read_answer(sock)
    assert status == 400 and gateway_code(body) == "100"


@pytest.mark.parametrize("method", ["PATCH", "OPTIONS", "GET", "DELETE", "BREW"])
def test_other_methods_get_the_gateway_404(quick: Emulator, method: str) -> None:
    with connect(quick) as sock:
        for _ in range(2):  # the connection stays usable
            sock.sendall(f"{method} /vision/v1/face HTTP/1.1\r\nHost: x\r\n{KEYS}\r\n".encode())
            status, headers, body = read_answer(sock)
            assert status == 404 and headers["content-type"].startswith("application/json")
            assert json.loads(body) == {
                "error": {"errorCode": "300", "message": "Not Found Exception", "details": None}
            }


def test_head_gets_the_404_headers_without_a_body(quick: Emulator) -> None:
    with connect(quick) as sock:
        sock.sendall(f"HEAD /vision/v1/face HTTP/1.1\r\nHost: x\r\n{KEYS}\r\n".encode())
        status, headers, _ = read_answer(sock, head_only=True)
        assert status == 404 and int(headers["content-length"]) > 0
        # No body followed: the next answer on the connection starts right away.
        sock.sendall(f"PATCH /vision/v1/face HTTP/1.1\r\nHost: x\r\n{KEYS}\r\n".encode())
        assert read_answer(sock)[0] == 404


def test_the_sdk_reads_the_404_envelope() -> None:
    body = b'{"error":{"errorCode":"300","message":"Not Found Exception","details":null}}'
    error = error_from_response(404, {"Content-Type": "application/json"}, body)
    assert isinstance(error, NotFoundError) and error.code == "300"


@pytest.mark.parametrize("line", [b"GARBAGE\r\n", b"POST /vision/v1/face HTTP/9.9\r\n"])
def test_a_malformed_request_line_is_a_json_envelope(quick: Emulator, line: bytes) -> None:
    with connect(quick) as sock:
        sock.sendall(line + b"Host: x\r\n\r\n")
        status, headers, body = read_answer(sock)
    assert status in (400, 505) and headers["content-type"].startswith("application/json")
    assert gateway_code(body) == "100"


def test_a_failing_detector_is_a_500_envelope_not_a_dropped_connection(
    quick: Emulator, capfd: pytest.CaptureFixture[str]
) -> None:
    def broken(image: object) -> list[dict[str, object]]:
        raise RuntimeError("detector bug")

    quick.rules.detector = broken
    with quick.client(max_retries=0) as client, pytest.raises(Exception, match="ER99"):
        client.detect_faces(jpeg_bytes())
    assert "detector bug" in capfd.readouterr().err  # the bug is shown, not swallowed


# -- chunked bodies --------------------------------------------------------------------------------


def test_a_chunked_upload_is_read(quick: Emulator) -> None:
    image = jpeg_bytes((120, 100))
    content_type, body = multipart(image)
    pieces = iter([body[:10], body[10:500], body[500:]])  # an iterator: httpx sends it chunked
    headers = {
        "X-NCP-APIGW-API-KEY-ID": "fake-client-id",
        "X-NCP-APIGW-API-KEY": "fake-client-secret",
        "Content-Type": content_type,
    }
    response = httpx.post(f"{quick.base_url}/vision/v1/face", content=pieces, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["info"]["size"] == {"width": 120, "height": 100}
    [request] = quick.requests
    assert request.headers["Transfer-Encoding"] == "chunked" and request.image_bytes == image


def test_raw_chunked_body_with_extensions_and_trailers(quick: Emulator) -> None:
    content_type, body = multipart(jpeg_bytes())
    chunks = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(part), part) for part in (body[:7], body[7:]))
    with connect(quick) as sock:
        sock.sendall(
            f"POST /vision/v1/face HTTP/1.1\r\nHost: x\r\n{KEYS}Content-Type: {content_type}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
            + chunks
            + b"0\r\nX-Trailer: yes\r\n\r\n"
        )
        status, _, answer = read_answer(sock)
    assert status == 200 and json.loads(answer)["faces"] == []


@pytest.mark.parametrize(
    ("chunks", "status", "code"),
    [
        (b"zz\r\nhello\r\n0\r\n\r\n", 400, "100"),  # not a hex size
        (b"5\r\nhelloXX0\r\n\r\n", 400, "100"),  # data not followed by CRLF
        (b"%x\r\n" % (MAX_BODY_BYTES + 1), 413, "430"),  # refused before reading it
    ],
)
def test_bad_or_oversized_chunks_are_refused(
    quick: Emulator, chunks: bytes, status: int, code: str
) -> None:
    with connect(quick) as sock:
        sock.sendall(
            f"POST /vision/v1/face HTTP/1.1\r\nHost: x\r\n{KEYS}"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
            + chunks
        )
        got, _, body = read_answer(sock)
        assert (got, gateway_code(body)) == (status, code)
        assert closed(sock)


def test_an_unsupported_transfer_encoding_is_refused(quick: Emulator) -> None:
    with connect(quick) as sock:
        sock.sendall(
            b"POST /vision/v1/face HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        )
        status, _, body = read_answer(sock)
    assert status == 400 and gateway_code(body) == "100"


def test_pipelined_requests_are_answered_in_order(quick: Emulator) -> None:
    with connect(quick) as sock:
        sock.sendall(
            f"PATCH /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /vision/v1/face HTTP/1.1\r\nHost: x\r\n"
            f"{KEYS}Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := sock.recv(65536):  # the second answer closes the connection
            data += chunk
    first, second = data.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"404 ") and second.startswith(b"400 ")
    assert json.loads(second.partition(b"\r\n\r\n")[2])["errorCode"] == "ER01"


# -- stalled clients -------------------------------------------------------------------------------


def test_a_body_stalled_mid_way_is_dropped_after_the_read_timeout(quick: Emulator) -> None:
    with connect(quick) as sock:
        sock.sendall(
            f"POST /vision/v1/face HTTP/1.1\r\nHost: x\r\n{KEYS}Content-Length: 100\r\n\r\n"
            "0123456789".encode()
        )
        start = time.monotonic()
        assert closed(sock, within=2.0)
    assert 0.3 < time.monotonic() - start < 1.5


def test_a_dripping_client_is_bounded_by_the_whole_request_deadline(quick: Emulator) -> None:
    """One byte every 0.1 s: a per-read timeout (0.4 s) alone would keep it alive for ever."""
    request = f"POST /vision/v1/face HTTP/1.1\r\nHost: x\r\n{KEYS}Content-Length: 10\r\n\r\n"
    with connect(quick) as sock:
        start = time.monotonic()
        try:
            for byte in request.encode():
                sock.sendall(bytes([byte]))
                time.sleep(0.1)
                if time.monotonic() - start > 2.0:
                    pytest.fail("the server kept a dripping client for 2 s")
        except (BrokenPipeError, ConnectionResetError):
            pass  # dropped while we were still sending
        else:
            assert closed(sock)
    assert time.monotonic() - start < 1.5


def test_a_silent_connection_is_closed_after_the_read_timeout(quick: Emulator) -> None:
    with connect(quick) as sock:
        start = time.monotonic()
        assert closed(sock, within=2.0)
    assert 0.3 < time.monotonic() - start < 1.5


def test_stalled_clients_cannot_hold_more_threads_than_the_pool(quick: Emulator) -> None:
    before = threading.active_count()
    silent = [connect(quick) for _ in range(60)]  # connected, nothing sent: no thread at all
    stalled = [connect(quick) for _ in range(6)]  # mid-body: a worker each, until the timeout
    for sock in stalled:
        head = f"POST /vision/v1/face HTTP/1.1\r\nHost: x\r\n{KEYS}Content-Length: 50\r\n\r\n"
        sock.sendall(head.encode() + b"ab")
    try:
        # A real request still gets through, once a worker is free (at most 2 rounds of 0.4 s).
        with quick.client(max_retries=0, timeout=3) as client:
            assert client.detect_faces(jpeg_bytes()).faces == []
        assert threading.active_count() - before <= 4  # the pool (4); the reactor predates it
        assert all(closed(sock) for sock in stalled)
    finally:
        for sock in silent + stalled:
            sock.close()


def test_connections_over_the_limit_are_refused_at_once() -> None:
    server = LoopbackServer(Rules("id", "key"), max_connections=2, read_timeout=1.0)
    server.start()
    host, port = server.base_url.removeprefix("http://").split(":")
    try:
        held = [socket.create_connection((host, int(port)), timeout=3) for _ in range(2)]
        time.sleep(0.1)  # let the reactor accept them
        with socket.create_connection((host, int(port)), timeout=3) as extra:
            status, headers, body = read_answer(extra)
            assert status == 503 and gateway_code(body) == "500"
            assert headers["connection"] == "close"
        for sock in held:
            sock.close()
    finally:
        server.stop()


def test_a_burst_of_64_clients_uses_at_most_the_pool() -> None:
    """The memory bound's mechanism: 64 concurrent clients are served by the 4 pooled threads."""
    data = jpeg_bytes()
    errors: list[BaseException] = []
    # A read timeout far above `quick`'s 0.4 s: on a loaded machine a client thread may take
    # longer than that to send its request, and this test is about the pool, not the timeout.
    with Emulator(detector="none", read_timeout=10, max_workers=4) as emu:

        def call() -> None:
            try:
                with emu.client(max_retries=0, timeout=20) as client:
                    client.detect_faces(data)
            except BaseException as exc:  # collected for the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=call) for _ in range(64)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors and emu.calls() == 64
        assert emu._server is not None and emu._server.threads <= 4
