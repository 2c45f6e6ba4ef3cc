"""`ncp_cfr.protocol.Call` on its own: every retry decision, with time and jitter injected.

No sockets and no sleeping: a test plays the server (status, headers, body) and the clocks.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pytest

from ncp_cfr.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    CFRError,
    InvalidImageError,
    RateLimitError,
    ServerError,
)
from ncp_cfr.models import CelebrityResult, FaceResult
from ncp_cfr.protocol import Call, Decision, Done, Endpoint, Fail, Retry, Settings
from ncp_cfr.testing import make_celebrity, make_face
from ncp_cfr.testing.rules import error_envelope

# Distinctive fakes, so that a leak into a log line cannot match anything else.
CLIENT_ID = "test-id-7f3a"
CLIENT_SECRET = "test-secret-91c2"
URL = "https://cfr.test/vision/v1/face"
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
FACE_BODY = json.dumps(
    {
        "info": {"size": {"width": 200, "height": 160}, "faceCount": 1},
        "faces": [make_face(10, 20, 60, 70, gender="female")],
    }
).encode()


class Monotonic:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 100.0) -> None:
        self.time = start

    def __call__(self) -> float:
        return self.time


def make_call(
    *,
    max_retries: int = 3,
    rng: float = 0.0,
    monotonic: Monotonic | None = None,
    endpoint: Endpoint = Endpoint.FACE,
    **settings: Any,
) -> Call:
    return Call(
        Settings(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            base_url="https://cfr.test",
            max_retries=max_retries,
            **settings,
        ),
        endpoint,
        b"\xff\xd8fake jpeg\xff\xd9",
        "image/jpeg",
        rng=lambda: rng,
        clock=lambda: NOW,
        monotonic=monotonic or Monotonic(),
    )


def answer(code: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """The service's own error answer for ``code`` (as the emulator sends it)."""
    status, envelope = error_envelope(code)
    return (
        status,
        {"Content-Type": "application/json", **(headers or {})},
        json.dumps(envelope).encode(),
    )


def attempt(call: Call, status: int, headers: dict[str, str], body: bytes) -> Decision:
    call.request()
    return call.on_response(status, headers, body)


# -- requests --------------------------------------------------------------------------------------


def test_every_attempt_sends_the_same_request_and_counts_it() -> None:
    call = make_call()
    assert call.attempt == 0
    first = call.request()
    assert call.attempt == 1
    assert (first.method, first.url, first.content_type) == ("POST", URL, "image/jpeg")
    assert first.headers["X-NCP-APIGW-API-KEY-ID"] == CLIENT_ID
    assert first.headers["X-NCP-APIGW-API-KEY"] == CLIENT_SECRET
    assert first.data == b"\xff\xd8fake jpeg\xff\xd9"
    assert call.request() is first  # built once: a retry re-sends it, never re-encodes it
    assert call.attempt == 2


# -- success ---------------------------------------------------------------------------------------


def test_a_200_is_done_with_the_parsed_result_and_its_request_id() -> None:
    call = make_call()
    decision = attempt(call, 200, {"X-Ncp-Trace-Id": "trace-0042"}, FACE_BODY)
    assert isinstance(decision, Done)
    result = decision.result
    assert isinstance(result, FaceResult)
    assert result.request_id == "trace-0042"  # header names are matched in any case
    assert result.info.face_count == 1
    assert result.faces[0].roi.x == 10 and result.faces[0].roi.width == 60
    assert result.faces[0].gender is not None and result.faces[0].gender.value == "female"


def test_a_celebrity_200_is_a_celebrity_result() -> None:
    body = json.dumps(
        {
            "info": {"size": {"width": 200, "height": 160}, "faceCount": 1},
            "faces": [make_celebrity("이다희", 0.61)],
        },
        ensure_ascii=False,
    ).encode()
    call = make_call(endpoint=Endpoint.CELEBRITY)
    assert call.request().url == "https://cfr.test/vision/v1/celebrity"
    decision = call.on_response(200, {"x-request-id": "req-7"}, body)
    assert isinstance(decision, Done) and isinstance(decision.result, CelebrityResult)
    assert decision.result.names() == ["이다희"]
    assert decision.result.request_id == "req-7"


def test_a_success_after_a_retry_is_done() -> None:
    call = make_call()
    assert isinstance(attempt(call, *answer("ER21")), Retry)
    decision = attempt(call, 200, {}, FACE_BODY)
    assert isinstance(decision, Done) and call.attempt == 2
    assert decision.result.request_id is None  # no id header: None, not an error


# -- what is retried, and how long to wait ---------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "cls"),
    [
        pytest.param((429, {}, b""), RateLimitError, id="429-no-body"),
        pytest.param(answer("420"), RateLimitError, id="gateway-420"),
        pytest.param(answer("410"), RateLimitError, id="gateway-410"),
        pytest.param(answer("500"), ServerError, id="gateway-500-as-503"),
        pytest.param(
            (502, {"Content-Type": "text/html"}, b"<h1>Bad Gateway</h1>"),
            ServerError,
            id="502-html",
        ),
        pytest.param(answer("ER21"), ServerError, id="ER21-as-400"),
    ],
)
def test_transient_answers_are_retried_after_the_backoff(
    reply: tuple[int, dict[str, str], bytes], cls: type[CFRError]
) -> None:
    decision = attempt(make_call(), *reply)
    assert isinstance(decision, Retry)
    assert type(decision.error) is cls
    assert decision.delay == 0.5  # attempt 1, no jitter (rng 0)


@pytest.mark.parametrize(
    ("rng", "delays"),
    [
        # 0.5 s doubling, capped at 8 s.
        (0.0, [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]),
        # The most jitter takes a quarter off.
        (1.0, [0.375, 0.75, 1.5, 3.0, 6.0, 6.0]),
    ],
)
def test_backoff_is_exponential_capped_and_jittered(rng: float, delays: list[float]) -> None:
    call = make_call(max_retries=6, rng=rng)
    seen = []
    for _ in delays:
        decision = attempt(call, *answer("ER21"))
        assert isinstance(decision, Retry)
        seen.append(decision.delay)
    assert seen == pytest.approx(delays)
    assert isinstance(attempt(call, *answer("ER21")), Fail)  # the 7th attempt is the last


@pytest.mark.parametrize(("value", "delay"), [("2", 2.0), ("0", 0.0), (" 1.5 ", 1.5), ("60", 60.0)])
def test_retry_after_seconds_replace_the_backoff(value: str, delay: float) -> None:
    decision = attempt(make_call(rng=0.5), *answer("410", {"Retry-After": value}))
    assert isinstance(decision, Retry) and isinstance(decision.error, RateLimitError)
    assert decision.delay == delay


@pytest.mark.parametrize(("offset", "delay"), [(3, 3.0), (0, 0.0), (-30, 0.0)])
def test_retry_after_date_is_read_against_the_injected_clock(offset: int, delay: float) -> None:
    # A date in the past means "now": no negative wait.
    when = format_datetime(NOW + timedelta(seconds=offset), usegmt=True)
    decision = attempt(make_call(), *answer("ER21", {"retry-after": when}))
    assert isinstance(decision, Retry)
    assert decision.delay == delay


def test_an_unreadable_retry_after_falls_back_to_the_backoff() -> None:
    decision = attempt(make_call(max_retries=1), *answer("420", {"Retry-After": "soon"}))
    assert isinstance(decision, Retry) and decision.delay == 0.5


def test_retry_after_over_the_cap_fails_at_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ncp_cfr")
    call = make_call(max_retry_after=60.0)
    decision = attempt(call, *answer("410", {"Retry-After": "61"}))
    assert isinstance(decision, Fail) and isinstance(decision.error, RateLimitError)
    assert call.attempt == 1
    assert "asked to wait 61 s (more than 60 s)" in caplog.text
    later = format_datetime(NOW + timedelta(minutes=2), usegmt=True)
    decision = attempt(make_call(), *answer("ER21", {"Retry-After": later}))
    assert isinstance(decision, Fail) and isinstance(decision.error, ServerError)


@pytest.mark.parametrize(
    ("reply", "cls"),
    [
        pytest.param((401, {}, b""), AuthenticationError, id="401"),
        pytest.param(answer("200"), AuthenticationError, id="gateway-200"),
        pytest.param(answer("ER11"), InvalidImageError, id="ER11"),
    ],
)
def test_permanent_answers_fail_at_once(
    reply: tuple[int, dict[str, str], bytes], cls: type[CFRError]
) -> None:
    # Retry-After on a permanent error must not turn it into a retry.
    status, headers, body = reply
    call = make_call(max_retries=5)
    decision = attempt(call, status, {**headers, "Retry-After": "1"}, body)
    assert isinstance(decision, Fail) and type(decision.error) is cls
    assert call.attempt == 1


def test_retries_stop_after_max_retries_with_the_last_error() -> None:
    call = make_call(max_retries=2)
    assert isinstance(attempt(call, *answer("ER21")), Retry)
    assert isinstance(attempt(call, *answer("420")), Retry)
    decision = attempt(call, *answer("ER21", {"X-NCP-TRACE-ID": "last"}))
    assert isinstance(decision, Fail) and isinstance(decision.error, ServerError)
    assert decision.error.code == "ER21" and decision.error.request_id == "last"
    assert call.attempt == 3


def test_max_retries_zero_fails_on_the_first_transient_error() -> None:
    decision = attempt(make_call(max_retries=0), *answer("ER21"))
    assert isinstance(decision, Fail) and decision.error.code == "ER21"  # type: ignore[attr-defined]


# -- unreadable answers and transport errors -------------------------------------------------------


@pytest.mark.parametrize("body", [b"{truncated", b'{"faces": "nope"}', b""])
def test_an_unreadable_200_is_a_retried_server_error(body: bytes) -> None:
    call = make_call(max_retries=1)
    decision = attempt(call, 200, {"X-NCP-TRACE-ID": "t-1"}, body)
    assert isinstance(decision, Retry) and decision.delay == 0.5
    error = decision.error
    assert isinstance(error, ServerError) and error.status_code == 200
    assert error.request_id == "t-1"
    assert "the face answer" in str(error)
    final = attempt(call, 200, {}, body)
    assert isinstance(final, Fail) and isinstance(final.error, ServerError)


def test_an_answer_that_could_not_be_read_is_retried() -> None:
    call = make_call(max_retries=1)
    call.request()
    too_large = ServerError("the answer is larger than 10,000,000 bytes", status_code=200)
    decision = call.on_transport_error(too_large)
    assert isinstance(decision, Retry) and decision.error is too_large
    call.request()
    final = call.on_transport_error(too_large)
    assert isinstance(final, Fail) and final.error is too_large  # no "attempts over" summary


def test_the_final_timeout_says_how_many_attempts_over_how_long() -> None:
    clock = Monotonic(100.0)
    call = make_call(max_retries=2, timeout=0.4, monotonic=clock)
    timed_out = APITimeoutError(f"no answer from {URL} within timeout=0.4 s", url=URL)
    for now, after in ((100.0, 100.4), (101.0, 101.4), (103.0, 103.45)):
        clock.time = now
        call.request()
        clock.time = after
        decision = call.on_transport_error(timed_out)
    assert isinstance(decision, Fail)
    error = decision.error
    assert type(error) is APITimeoutError and error.url == URL
    # From the first request to the last failure, on the injected clock.
    assert str(error) == (
        f"no answer from {URL} in 3 attempts over 3.5 s (timeout=0.4 s per attempt); "
        "raise timeout= or check the network"
    )


def test_the_final_timeout_names_the_request_url_when_the_error_has_none() -> None:
    clock = Monotonic(7.0)
    call = make_call(max_retries=0, timeout=2, monotonic=clock)
    call.request()
    clock.time = 9.0
    decision = call.on_transport_error(APITimeoutError("read timed out"))
    assert isinstance(decision, Fail) and isinstance(decision.error, APITimeoutError)
    assert decision.error.url == URL
    assert f"no answer from {URL} in 1 attempt over 2.0 s (timeout=2 s" in str(decision.error)


def test_the_final_connection_error_keeps_its_text_and_adds_the_attempts() -> None:
    clock = Monotonic(50.0)
    call = make_call(max_retries=1, monotonic=clock)
    refused = APIConnectionError(f"could not reach {URL}: connection refused", url=URL)
    call.request()
    first = call.on_transport_error(refused)
    assert isinstance(first, Retry) and first.delay == 0.5 and first.error is refused
    clock.time = 50.75
    call.request()
    decision = call.on_transport_error(refused)
    assert isinstance(decision, Fail)
    error = decision.error
    assert type(error) is APIConnectionError and error.url == URL
    assert str(error) == f"could not reach {URL}: connection refused (2 attempts over 0.8 s)"


# -- logging ---------------------------------------------------------------------------------------


def test_a_retry_is_a_warning_and_no_log_line_shows_the_keys(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="ncp_cfr")
    call = make_call(max_retries=3)
    attempt(call, *answer("ER21"))
    call.request()
    call.on_transport_error(APIConnectionError(f"could not reach {URL}: reset", url=URL))
    attempt(call, 200, {}, FACE_BODY)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert warnings[0].startswith("face: attempt 1 of 4 failed: HTTP 400, CFR code ER21: ")
    assert warnings[0].endswith("; retrying in 0.5 s")
    assert warnings[1] == (
        f"face: attempt 2 of 4 failed: could not reach {URL}: reset; retrying in 1.0 s"
    )
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "request POST" in text and "<redacted>" in text  # the DEBUG lines were written
    assert CLIENT_ID not in text and CLIENT_SECRET not in text
