"""The clients against the emulator over real loopback HTTP, each test on both shells."""

from __future__ import annotations

import email.utils
import io
import logging
import socket
import time
from datetime import timedelta
from pathlib import Path

import anyio
import httpx
import pytest
from PIL import Image

from ncp_cfr import (
    APIConnectionError,
    APITimeoutError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    CelebrityResult,
    CFRError,
    Client,
    FaceResult,
    ImageTooLargeError,
    InvalidImageError,
    NotFoundError,
    PermissionDeniedError,
    PreparedImage,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    Transform,
    __version__,
)
from ncp_cfr.protocol import Endpoint, Settings
from ncp_cfr.testing import FAKE_CLIENT_SECRET, Emulator, make_celebrity, make_face

from .conftest import FakeClock, Runner, jpeg_bytes


def _prepared(data: bytes, fmt: str = "JPEG") -> PreparedImage:
    """Bytes sent exactly as given, to make the service's own checks fire."""
    with Image.open(io.BytesIO(data)) as img:
        w, h = img.size
    return PreparedImage(
        data=data,
        content_type=f"image/{fmt.lower()}",
        format=fmt,
        width=w,
        height=h,
        source_width=w,
        source_height=h,
        transform=Transform(1.0, 1.0),
        reencoded=False,
        quality=None,
    )


# -- the happy path ------------------------------------------------------------------------------


def test_detect_faces_sends_multipart_image_with_keys_and_user_agent(
    shell: Runner, emu: Emulator, hopper_path: Path
) -> None:
    emu.reply(
        "face",
        faces=[make_face(100, 120, 200, 220, gender="female", age="40~44", emotion="neutral")],
    )
    result = shell("detect_faces", hopper_path)
    assert isinstance(result, FaceResult)
    face = result.faces[0]
    assert face.gender is not None and face.gender.value == "female"
    assert face.age is not None and (face.age.low, face.age.high) == (40, 44)
    [request] = emu.requests
    assert request.path == "/vision/v1/face" and request.multipart
    assert request.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert request.headers["User-Agent"].startswith(f"ncp_cfr/{__version__}")
    assert request.headers["X-NCP-APIGW-API-KEY"] == "<redacted>"
    assert request.headers["X-NCP-APIGW-API-KEY-ID"] == "<redacted>"
    assert request.image_bytes == hopper_path.read_bytes()  # compliant JPEG: sent byte for byte
    assert request.part_content_type == "image/jpeg"


def test_recognize_celebrities(shell: Runner, emu: Emulator, hopper_bytes: bytes) -> None:
    emu.reply("celebrity", faces=[make_celebrity("이다희", 0.61), make_celebrity("송중기", 0.2)])
    result = shell("recognize_celebrities", hopper_bytes)
    assert isinstance(result, CelebrityResult)
    assert result.names() == ["이다희", "송중기"]
    assert result.info.face_count == 2
    assert emu.requests[0].path == "/vision/v1/celebrity"


def test_no_face_is_an_empty_result_not_an_error(
    shell: Runner, emu: Emulator, hopper_bytes: bytes
) -> None:
    result = shell("detect_faces", hopper_bytes)
    assert result.faces == [] and result.info.face_count == 0
    assert (result.info.size.width, result.info.size.height) == (512, 600)


@pytest.mark.parametrize("kind", ["path", "str", "bytes", "file", "pil"])
def test_image_kinds(shell: Runner, emu: Emulator, hopper_path: Path, kind: str) -> None:
    source = {
        "path": lambda: hopper_path,
        "str": lambda: str(hopper_path),
        "bytes": lambda: hopper_path.read_bytes(),
        "file": lambda: open(hopper_path, "rb"),  # noqa: SIM115
        "pil": lambda: Image.open(hopper_path).convert("RGB"),
    }[kind]()
    emu.reply("face", faces=[make_face(10, 10, 100, 100)])
    result = shell("detect_faces", source)
    assert len(result.faces) == 1
    assert emu.requests[0].format in ("JPEG", "PNG")


def test_coordinates_come_back_in_the_callers_pixels(shell: Runner, emu: Emulator) -> None:
    # 3000x2000 is over the default max side: the upload is smaller, the answer is scaled back.
    big = Image.new("RGB", (3000, 2000), (90, 120, 150))
    emu.reply("face", faces=[make_face(100, 50, 200, 100)])
    result = shell("detect_faces", big)
    upload = emu.requests[0]
    assert upload.width is not None and upload.width < 3000
    scale = 3000 / upload.width
    roi = result.faces[0].roi
    assert abs(roi.x - 100 * scale) <= 1 and abs(roi.width - 200 * scale) <= 1
    assert (result.info.size.width, result.info.size.height) == (3000, 2000)
    assert result.upload is not None and result.upload.width == upload.width
    assert result.raw["faces"][0]["roi"]["x"] == 100  # the service's own numbers stay reachable
    assert "upload" not in result.model_dump(by_alias=True)


# -- credentials and configuration ----------------------------------------------------------------


def test_missing_credentials_name_both_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NCP_CFR_CLIENT_ID", raising=False)
    monkeypatch.delenv("NCP_CFR_CLIENT_SECRET", raising=False)
    for cls in (Client, AsyncClient):
        with pytest.raises(CFRError) as info:
            cls()
        assert "NCP_CFR_CLIENT_ID" in str(info.value) and "NCP_CFR_CLIENT_SECRET" in str(info.value)


def test_credentials_and_base_url_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, emu: Emulator, hopper_bytes: bytes
) -> None:
    for name, value in emu.env().items():
        monkeypatch.setenv(name, value)
    with Client() as client:
        assert client.base_url == emu.base_url
        client.detect_faces(hopper_bytes)
    assert emu.calls("face") == 1


def test_full_endpoint_url_as_base_url_is_accepted(emu: Emulator, hopper_bytes: bytes) -> None:
    with Client(emu.client_id, emu.client_secret, base_url=emu.base_url + "/vision/v1/face/") as c:
        assert c.base_url == emu.base_url
        c.detect_faces(hopper_bytes)


@pytest.mark.parametrize(
    ("base_url", "sent_to"),
    [
        ("https://host", "https://host/vision/v1/face"),
        ("https://host/", "https://host/vision/v1/face"),
        ("https://host///", "https://host/vision/v1/face"),
        ("https://proxy/cfr/", "https://proxy/cfr/vision/v1/face"),
        ("https://proxy/cfr//", "https://proxy/cfr/vision/v1/face"),
        ("http://127.0.0.1:8080/a/b/", "http://127.0.0.1:8080/a/b/vision/v1/face"),
    ],
)
def test_base_url_and_path_are_joined_with_one_slash(
    base_url: str, sent_to: str, hopper_bytes: bytes
) -> None:
    # Regression: "https://host/" sent to "https://host//vision/v1/face".
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(
            200, json={"info": {"size": {"width": 1, "height": 1}, "faceCount": 0}, "faces": []}
        )

    http = httpx.Client(transport=httpx.MockTransport(answer))
    with Client("fake-id", "fake-secret", base_url=base_url, http_client=http) as client:
        client.detect_faces(hopper_bytes)
        client.with_options(base_url=base_url).detect_faces(hopper_bytes)
    assert seen == [sent_to, sent_to]
    settings = Settings(client_id="fake-id", client_secret="fake-secret", base_url=base_url)
    assert settings.url(Endpoint.FACE) == sent_to
    http.close()


@pytest.mark.parametrize("bad", [None, 0, -1, "30"])
def test_timeout_none_or_nonsense_is_refused(bad: object) -> None:
    with pytest.raises(CFRError, match="timeout"):
        Client("fake-id", "fake-secret", timeout=bad)  # type: ignore[arg-type]


def test_repr_and_errors_never_show_the_secret(emu: Emulator, hopper_bytes: bytes) -> None:
    secret = "fake-secret-DO-NOT-LEAK"
    client = Client("fake-id-x", secret, base_url=emu.base_url, max_retries=0)
    assert secret not in repr(client) and "fake-id-x" not in repr(client)
    with pytest.raises(AuthenticationError) as info:
        client.detect_faces(hopper_bytes)
    assert secret not in str(info.value) and secret not in repr(info.value)
    assert secret not in (info.value.body or "")
    client.close()


def test_debug_logs_redact_the_keys(
    emu: Emulator, hopper_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with emu.client() as client:
        client.detect_faces(hopper_bytes)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "request POST" in text and "response face 200" in text
    assert FAKE_CLIENT_SECRET not in text and emu.client_id not in text
    assert "<redacted>" in text


def test_with_options_shares_the_pool_and_keeps_the_parent(
    emu: Emulator, hopper_bytes: bytes
) -> None:
    with emu.client(timeout=30.0, max_retries=2) as client:
        quick = client.with_options(timeout=5, max_retries=0)
        assert (quick.timeout, quick.max_retries) == (5, 0)
        assert (client.timeout, client.max_retries) == (30.0, 2)
        assert quick._http is client._http
        emu.inject("ER22")
        with pytest.raises(ServerError):
            quick.detect_faces(hopper_bytes)
        assert emu.calls() == 1  # max_retries=0 on the copy
        quick.close()  # must not close the parent's pool
        client.detect_faces(hopper_bytes)


def test_user_http_client_is_not_closed(emu: Emulator, hopper_bytes: bytes) -> None:
    http = httpx.Client()
    with Client(emu.client_id, emu.client_secret, base_url=emu.base_url, http_client=http) as c:
        c.detect_faces(hopper_bytes)
    assert not http.is_closed
    http.close()


# -- errors over HTTP -----------------------------------------------------------------------------


def test_wrong_keys_raise_authentication_error_without_retry(
    shell: Runner, emu: Emulator, hopper_bytes: bytes
) -> None:
    with pytest.raises(AuthenticationError) as info:
        shell("detect_faces", hopper_bytes, client_secret="fake-but-wrong-secret")
    assert info.value.status_code == 401 and info.value.code == "200"
    assert "NCP_CFR_CLIENT_ID" in str(info.value)
    assert emu.calls() == 1


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("ER01", BadRequestError),
        ("ER04", ImageTooLargeError),
        ("ER15", InvalidImageError),
        ("210", PermissionDeniedError),
        ("300", NotFoundError),
        ("400", QuotaExceededError),
        ("legacy:024", AuthenticationError),
        ("legacy:010", QuotaExceededError),  # regression: was a retried RateLimitError
    ],
)
def test_permanent_errors_are_raised_at_once(
    shell: Runner, emu: Emulator, hopper_bytes: bytes, code: str, cls: type
) -> None:
    emu.inject(code)
    with pytest.raises(cls):
        shell("detect_faces", hopper_bytes, max_retries=3)
    assert emu.calls() == 1


@pytest.mark.parametrize(
    ("code", "cls"),
    [("ER21", ServerError), ("ER99", ServerError), ("410", RateLimitError), ("510", ServerError)],
)
def test_transient_errors_are_retried_then_succeed(
    shell: Runner, emu: Emulator, hopper_bytes: bytes, code: str, cls: type
) -> None:
    emu.inject(code, times=2, retry_after=0)
    emu.reply("face", faces=[make_face(10, 10, 60, 60)])
    result = shell("detect_faces", hopper_bytes, max_retries=2)
    assert len(result.faces) == 1
    assert emu.calls() == 3


def test_transient_errors_give_up_after_max_retries(
    shell: Runner, emu: Emulator, hopper_bytes: bytes
) -> None:
    emu.inject("ER22", times=None, retry_after=0)
    with pytest.raises(ServerError) as info:
        shell("detect_faces", hopper_bytes, max_retries=2)
    assert info.value.code == "ER22"
    assert emu.calls() == 3


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (502, "<html><h1>502 Bad Gateway</h1></html>"),
        (500, ""),
        (200, "{truncated"),
        (200, '{"faces": "nope"}'),
    ],
)
def test_unreadable_answers_are_server_errors_and_retried(
    shell: Runner, emu: Emulator, hopper_bytes: bytes, status: int, body: str
) -> None:
    emu.inject(
        status=status, body=body, headers={"Content-Type": "text/html"}, retry_after=0, times=None
    )
    with pytest.raises(ServerError) as info:
        shell("detect_faces", hopper_bytes, max_retries=1)
    assert info.value.status_code == status
    assert emu.calls() == 2


def test_retry_after_seconds_is_honoured(
    shell: Runner, emu: Emulator, hopper_bytes: bytes, fake_clock: FakeClock
) -> None:
    emu.inject("420", retry_after=2)
    shell("detect_faces", hopper_bytes)
    assert fake_clock.slept == [2.0]  # the service's wait, not the 0.5 s backoff
    assert emu.calls() == 2


def test_retry_after_http_date_is_honoured(
    shell: Runner, emu: Emulator, hopper_bytes: bytes, fake_clock: FakeClock
) -> None:
    # The date is read against the client's clock: two seconds after the fake "now".
    when = email.utils.format_datetime(fake_clock.now() + timedelta(seconds=2), usegmt=True)
    emu.inject("410", retry_after=when)
    shell("detect_faces", hopper_bytes)
    assert fake_clock.slept == [2.0]
    assert emu.calls() == 2


def test_retry_after_beyond_the_cap_is_not_waited_for(
    shell: Runner, emu: Emulator, hopper_bytes: bytes, fake_clock: FakeClock
) -> None:
    emu.inject("410", retry_after=3600, times=None)
    with pytest.raises(RateLimitError):
        shell("detect_faces", hopper_bytes, max_retries=2)
    assert fake_clock.slept == []
    assert emu.calls() == 1


def test_retries_are_logged_as_warnings(
    shell: Runner,
    emu: Emulator,
    hopper_bytes: bytes,
    caplog: pytest.LogCaptureFixture,
    fake_clock: FakeClock,
) -> None:
    # Regression: retries were logged at INFO, so a slow failing call was 92 s of silence.
    caplog.set_level(logging.WARNING, logger="ncp_cfr")
    emu.inject("ER21", retry_after=0.1, times=2)
    shell("detect_faces", hopper_bytes, max_retries=2)
    assert fake_clock.slept == [0.1, 0.1]
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert [r.levelno for r in retries] == [logging.WARNING] * 2
    first, second = (r.getMessage() for r in retries)
    assert "ER21" in first and "attempt 1 of 3" in first and "retrying in 0.1 s" in first
    assert "attempt 2 of 3" in second


def test_slow_answer_times_out_and_is_retried(
    shell: Runner, emu: Emulator, hopper_bytes: bytes, fake_clock: FakeClock
) -> None:
    # The timeouts are real (the server really stalls); only the backoff between them is fake.
    emu.inject(delay=3.0, times=None)
    start = time.monotonic()
    with pytest.raises(APITimeoutError) as info:
        shell("detect_faces", hopper_bytes, timeout=0.4, max_retries=1)
    assert time.monotonic() - start < 3.0
    assert emu.calls() == 2
    [backoff] = fake_clock.slept
    assert 0.375 <= backoff <= 0.5  # the first backoff, with its jitter
    # Regression: the final message says what the call cost, not just "did not answer".
    assert "in 2 attempts over " in str(info.value) and "timeout=0.4 s per attempt" in str(
        info.value
    )


def test_a_slow_answer_within_the_timeout_succeeds(
    shell: Runner, emu: Emulator, hopper_bytes: bytes
) -> None:
    emu.inject(delay=0.3)
    emu.reply("face", faces=[make_face(10, 10, 60, 60)])
    assert len(shell("detect_faces", hopper_bytes, timeout=5).faces) == 1


def test_dropped_connection_is_retried(
    shell: Runner, emu: Emulator, hopper_bytes: bytes, fake_clock: FakeClock
) -> None:
    emu.inject(drop=True)
    emu.reply("face", faces=[make_face(10, 10, 60, 60)])
    result = shell("detect_faces", hopper_bytes)
    assert len(result.faces) == 1
    assert emu.calls() == 2
    [backoff] = fake_clock.slept
    assert 0.375 <= backoff <= 0.5


def test_dropped_connection_every_time_raises_connection_error(
    shell: Runner, emu: Emulator, hopper_bytes: bytes, fake_clock: FakeClock
) -> None:
    emu.inject(drop=True, times=None)
    with pytest.raises(APIConnectionError) as info:
        shell("detect_faces", hopper_bytes, max_retries=1)
    assert not isinstance(info.value, APITimeoutError)
    assert emu.calls() == 2
    assert len(fake_clock.slept) == 1  # one backoff between the two attempts, none after


def test_nothing_listening_is_a_connection_error(fake_clock: FakeClock) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with (
        Client("fake-id", "fake-secret", base_url=url, max_retries=1) as c,
        pytest.raises(APIConnectionError, match="could not reach"),
    ):
        c.detect_faces(jpeg_bytes())
    assert len(fake_clock.slept) == 1  # it was retried once


def test_service_checks_reach_the_caller_as_typed_errors(shell: Runner, emu: Emulator) -> None:
    narrow = jpeg_bytes((40, 200))
    with pytest.raises(InvalidImageError) as info:
        shell("detect_faces", _prepared(narrow))
    assert info.value.code == "ER13" and "50 px" in str(info.value)
    with pytest.raises(InvalidImageError) as info:
        shell("detect_faces", _prepared(jpeg_bytes((400, 100))))
    assert info.value.code == "ER12"


def test_a_rate_limited_batch_waits_what_the_limiter_asks(
    shell: Runner, emu: Emulator, hopper_bytes: bytes, fake_clock: FakeClock
) -> None:
    # 2 requests per second, one call at a time: every request after the first waits 0.5 s
    # of fake time. The retried attempt counts as a request too.
    emu.inject("ER21", retry_after=0)
    items = shell(
        "detect_faces_many",
        [hopper_bytes] * 4,
        call_kwargs={"rate_limit": 2.0, "concurrency": 1},
    )
    assert [item.error for item in items] == [None] * 4
    assert emu.calls() == 5
    # The Retry-After of 0 s, then the limiter's slot before each of the 4 other requests.
    assert fake_clock.slept == [0.0, 0.5, 0.5, 0.5, 0.5]


def test_async_client_runs_calls_concurrently(emu: Emulator, hopper_bytes: bytes) -> None:
    emu.latency = 0.3

    async def main() -> float:
        async with emu.async_client() as client:
            start = time.monotonic()
            async with anyio.create_task_group() as tg:
                for _ in range(5):
                    tg.start_soon(client.detect_faces, hopper_bytes)
            return time.monotonic() - start

    elapsed = anyio.run(main)
    assert elapsed < 1.2  # 5 x 0.3 s one after the other would be 1.5 s
    assert emu.max_in_flight >= 2


def test_in_process_transport_follows_the_same_rules(
    hopper_bytes: bytes, fake_clock: FakeClock
) -> None:
    emu = Emulator()  # never started: no socket at all
    with emu.client(in_process=True, max_retries=1) as client:
        emu.inject("ER21", retry_after=0)
        emu.reply("face", faces=[make_face(5, 5, 80, 80, gender="male")])
        result = client.detect_faces(hopper_bytes)
        assert result.faces[0].gender is not None and result.faces[0].gender.value == "male"
        assert emu.calls() == 2
        emu.inject(drop=True, times=None)
        with pytest.raises(APIConnectionError):
            client.detect_faces(hopper_bytes)
        assert emu.calls() == 4
    assert fake_clock.slept[0] == 0.0 and 0.375 <= fake_clock.slept[1] <= 0.5


def test_in_process_async_transport(hopper_bytes: bytes) -> None:
    emu = Emulator()

    async def main() -> int:
        async with emu.async_client(in_process=True) as client:
            emu.reply("celebrity", faces=[make_celebrity("이다희", 0.7)])
            return len((await client.recognize_celebrities(hopper_bytes)).faces)

    assert anyio.run(main) == 1
