"""Every error envelope of cfr-api.md §3 becomes the typed exception design.md names."""

from __future__ import annotations

import json
import pickle

import pytest

from ncp_cfr import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ImageTooLargeError,
    InvalidImageError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
)
from ncp_cfr.protocol import error_from_response, is_retryable
from ncp_cfr.testing import cfr_error, gateway_error, legacy_error

CFR_CASES = [
    ("ER01", BadRequestError, False),
    ("ER02", BadRequestError, False),
    ("ER03", BadRequestError, False),
    ("ER04", ImageTooLargeError, False),
    ("ER11", InvalidImageError, False),
    ("ER12", InvalidImageError, False),
    ("ER13", InvalidImageError, False),
    ("ER14", InvalidImageError, False),
    ("ER15", InvalidImageError, False),
    ("ER21", ServerError, True),
    ("ER22", ServerError, True),
    ("ER92", ServerError, True),
    ("ER99", ServerError, True),
]
GATEWAY_CASES = [
    ("100", BadRequestError, False),
    ("200", AuthenticationError, False),
    ("210", PermissionDeniedError, False),
    ("230", PermissionDeniedError, False),
    ("300", NotFoundError, False),
    ("400", QuotaExceededError, False),
    ("410", RateLimitError, True),
    ("420", RateLimitError, True),
    ("430", ImageTooLargeError, False),
    ("500", ServerError, True),
    ("510", ServerError, True),
    ("520", ServerError, True),
    ("530", ServerError, True),
    ("900", ServerError, True),
]


def _encode(body: dict) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


@pytest.mark.parametrize(("code", "cls", "retryable"), CFR_CASES)
def test_cfr_codes(code: str, cls: type, retryable: bool) -> None:
    status, body = cfr_error(code)
    error = error_from_response(status, {"x-ncp-trace-id": "trace-1"}, _encode(body))
    assert type(error) is cls
    assert (error.status_code, error.code) == (status, code)
    assert error.message == body["errorMessage"]
    assert error.request_id == "trace-1"
    assert is_retryable(error) is retryable


@pytest.mark.parametrize("int_code", [False, True])
@pytest.mark.parametrize(("code", "cls", "retryable"), GATEWAY_CASES)
def test_gateway_codes_as_string_or_int(
    code: str, cls: type, retryable: bool, int_code: bool
) -> None:
    status, body = gateway_error(code, int_code=int_code)
    error = error_from_response(status, {}, _encode(body))
    assert type(error) is cls
    assert error.code == code  # always a string
    assert error.message == body["error"]["message"]
    assert error.details == body["error"]["details"]
    assert is_retryable(error) is retryable


def test_quota_exceeded_is_not_a_rate_limit() -> None:
    status, body = gateway_error("400")
    error = error_from_response(status, {}, _encode(body))
    assert isinstance(error, QuotaExceededError) and not isinstance(error, RateLimitError)
    assert "does not help" in str(error)


def test_legacy_channel_auth_failure() -> None:
    status, body = legacy_error("024")
    error = error_from_response(status, {}, _encode(body))
    assert type(error) is AuthenticationError
    assert error.code == "024" and "인증" in error.message


def test_permission_denied_says_how_to_enable_the_service() -> None:
    status, body = gateway_error("210")
    error = error_from_response(status, {}, _encode(body))
    assert "Enable CLOVA Face Recognition" in str(error)
    assert "A subscription to the API is required." in str(error)


@pytest.mark.parametrize(
    ("status", "headers", "body", "cls"),
    [
        (502, {"content-type": "text/html"}, b"<html><body>Bad Gateway</body></html>", ServerError),
        (500, {}, b"", ServerError),
        (503, {}, b"{not json", ServerError),
        (401, {}, b"", AuthenticationError),
        (403, {}, b"<html>Forbidden</html>", PermissionDeniedError),
        (404, {}, b"", NotFoundError),
        (
            413,
            {"content-type": "text/html"},
            b"<html>413 Request Entity Too Large</html>",
            ImageTooLargeError,
        ),
        (429, {}, b"", RateLimitError),
        (418, {}, b"", BadRequestError),
        (400, {}, b'{"unexpected": true}', BadRequestError),
    ],
)
def test_bodies_without_an_envelope_map_by_status(
    status: int, headers: dict, body: bytes, cls: type
) -> None:
    error = error_from_response(status, headers, body)
    assert type(error) is cls
    assert error.status_code == status and error.code is None
    assert str(status) in str(error)
    assert ("empty response body" in error.message) == (body == b"")


def test_not_found_hints_at_the_base_url() -> None:
    error = error_from_response(404, {}, _encode(gateway_error("300")[1]))
    assert "base_url" in str(error)


def test_errors_survive_pickling() -> None:
    status, body = gateway_error("410")
    error = error_from_response(status, {"x-ncp-trace-id": "t"}, _encode(body))
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is RateLimitError
    assert (clone.status_code, clone.code, clone.request_id, str(clone)) == (
        429,
        "410",
        "t",
        str(error),
    )


def test_every_api_error_is_a_cfr_error() -> None:
    from ncp_cfr import CFRError, ImageError

    assert issubclass(APIError, CFRError)
    assert issubclass(ImageError, ValueError) and issubclass(ImageError, CFRError)


def test_legacy_daily_limit_is_a_quota_never_retried() -> None:
    # Regression: legacy 010 (HTTP 429) fell back to the status and became a retried RateLimitError.
    status, body = legacy_error("010")
    error = error_from_response(status, {}, _encode(body))
    assert type(error) is QuotaExceededError and not is_retryable(error)
    assert error.code == "010" and "Retrying does not help" in str(error)


@pytest.mark.parametrize(
    ("make", "code", "head"),
    [
        (gateway_error, "200", "HTTP 401, gateway code 200: Authentication Failed"),
        (gateway_error, "410", "HTTP 429, gateway code 410: "),
        (cfr_error, "ER04", "HTTP 400, CFR code ER04: "),
        (legacy_error, "024", "HTTP 401, legacy code 024: Authentication failed"),
        (legacy_error, "010", "HTTP 429, legacy code 010: "),
    ],
)
def test_messages_say_which_kind_of_code(make: object, code: str, head: str) -> None:
    # Regression: "HTTP 401 200" read as two statuses.
    status, body = make(code)  # type: ignore[operator]
    error = error_from_response(status, {}, _encode(body))
    assert str(error).startswith(head)
    assert pickle.loads(pickle.dumps(error)).code_kind == error.code_kind


def test_errors_built_by_hand_label_their_code() -> None:
    assert str(ServerError("busy", status_code=400, code="ER22")).startswith(
        "HTTP 400, CFR code ER22: busy"
    )
    assert str(ServerError("odd", status_code=500, code="77")) == "HTTP 500, code 77: odd"
    assert str(ServerError("empty", status_code=502)) == "HTTP 502: empty"
