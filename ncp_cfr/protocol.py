"""The CFR protocol as pure code: settings, requests, responses, errors and retries.

Nothing here touches a socket, a clock or an event loop. The sync and async clients
([`ncp_cfr.client`][ncp_cfr.client]) drive a [`Call`][ncp_cfr.protocol.Call] and only differ in how
they send and sleep, so every decision about what to send, what an answer means and whether to try
again is made once, here.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from enum import Enum
from typing import Any, Final, TypeVar, Union

from pydantic import ValidationError

from ncp_cfr._version import __version__
from ncp_cfr.errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    CFRError,
    ImageTooLargeError,
    InvalidArgumentError,
    InvalidImageError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
)
from ncp_cfr.images import PreparedImage, Transform
from ncp_cfr.models import CelebrityResult, FaceResult, Point, UploadInfo

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "ENV_BASE_URL",
    "ENV_CLIENT_ID",
    "ENV_CLIENT_SECRET",
    "MAX_ANSWER_BYTES",
    "AnswerReader",
    "Call",
    "Done",
    "Endpoint",
    "Fail",
    "Request",
    "Retry",
    "Settings",
    "attempt_timeout_error",
    "build_request",
    "error_from_response",
    "map_to_caller",
    "parse_result",
    "redact_headers",
    "resolve_settings",
]

log = logging.getLogger("ncp_cfr")

DEFAULT_BASE_URL: Final = "https://naveropenapi.apigw.ntruss.com"
ENV_CLIENT_ID: Final = "NCP_CFR_CLIENT_ID"
ENV_CLIENT_SECRET: Final = "NCP_CFR_CLIENT_SECRET"
ENV_BASE_URL: Final = "NCP_CFR_BASE_URL"

#: Seconds one attempt may take from connecting to the last byte of the answer.
DEFAULT_TIMEOUT: Final = 30.0
#: Seconds to establish the connection.
DEFAULT_CONNECT_TIMEOUT: Final = 5.0
DEFAULT_MAX_RETRIES: Final = 2
#: A ``Retry-After`` longer than this is not waited for: the error is raised instead.
MAX_RETRY_AFTER: Final = 60.0
MAX_ANSWER_BYTES: Final = 10_000_000
"""The most bytes of an answer the client reads, after decompression: 10 MB.

CFR answers are a few kilobytes (a JSON document per image). An answer past this is not from the
service (a misconfigured ``base_url``, a proxy's error page gone wrong, a hostile server): reading
stops there and the call fails with a [`ServerError`][ncp_cfr.ServerError] instead of filling
memory.
"""
#: The content codings the client asks for; it decodes them itself, within MAX_ANSWER_BYTES.
ACCEPT_ENCODING: Final = "gzip, deflate"
_BACKOFF_BASE = 0.5
_BACKOFF_MAX = 8.0

HEADER_KEY_ID: Final = "X-NCP-APIGW-API-KEY-ID"
HEADER_KEY: Final = "X-NCP-APIGW-API-KEY"
_SECRET_HEADERS = frozenset(
    h.lower()
    for h in (
        HEADER_KEY_ID,
        HEADER_KEY,
        "X-Naver-Client-Id",
        "X-Naver-Client-Secret",
        "Authorization",
    )
)
_REQUEST_ID_HEADERS = ("x-ncp-trace-id", "x-request-id", "x-ncp-request-id")
_BODY_LIMIT = 2000


class Endpoint(str, Enum):
    """The two CFR endpoints; the value is the last segment of the path."""

    FACE = "face"
    CELEBRITY = "celebrity"

    @property
    def path(self) -> str:
        return f"/vision/v1/{self.value}"


@dataclass(frozen=True)
class Settings:
    """Everything a client needs to call the service. ``repr`` never shows the secrets."""

    client_id: str = field(repr=False)
    client_secret: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    timeout: float = DEFAULT_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    max_retry_after: float = MAX_RETRY_AFTER
    default_headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Settings may be built directly: normalise here too, so no path ever gets "//".
        if isinstance(self.base_url, str):
            object.__setattr__(self, "base_url", _normalise_base_url(self.base_url))
        _check_positive("timeout", self.timeout)
        _check_positive("connect_timeout", self.connect_timeout)
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise InvalidArgumentError(
                f"max_retries must be a whole number >= 0, got {self.max_retries!r}"
            )
        if not isinstance(self.base_url, str) or not self.base_url.startswith(
            ("http://", "https://")
        ):
            raise InvalidArgumentError(
                f"base_url must start with http:// or https://, got {self.base_url!r}; "
                f"the service's is {DEFAULT_BASE_URL}"
            )

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (validated and normalised, as on construction)."""
        return replace(self, **changes)

    def url(self, endpoint: Endpoint) -> str:
        """The URL of ``endpoint``: the base URL's path prefix (if any) is kept."""
        return self.base_url + endpoint.path  # normalised on construction: no trailing "/"


def _check_positive(name: str, value: object) -> None:
    if value is None:
        raise InvalidArgumentError(
            f"{name}=None would let a request wait forever; pass a number of seconds "
            f"(the default is {DEFAULT_TIMEOUT if name == 'timeout' else DEFAULT_CONNECT_TIMEOUT})"
        )
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise InvalidArgumentError(f"{name} must be a positive number of seconds, got {value!r}")


def _normalise_base_url(url: str) -> str:
    url = url.strip().rstrip("/")
    # People paste the full endpoint URL; accept it and keep the host part.
    for suffix in ("/vision/v1/face", "/vision/v1/celebrity", "/vision/v1"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
            break
    return url


def resolve_settings(
    client_id: str | None = None,
    client_secret: str | None = None,
    base_url: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    **options: Any,
) -> Settings:
    """Settings from arguments, falling back to the ``NCP_CFR_*`` environment variables."""
    env = os.environ if environ is None else environ
    client_id = client_id or env.get(ENV_CLIENT_ID) or None
    client_secret = client_secret or env.get(ENV_CLIENT_SECRET) or None
    missing = [
        f"client_{what} (or {var})"
        for what, var, value in (
            ("id", ENV_CLIENT_ID, client_id),
            ("secret", ENV_CLIENT_SECRET, client_secret),
        )
        if not value
    ]
    if missing:
        raise CFRError(
            f"No credentials: pass {' and '.join(missing)}. Set {ENV_CLIENT_ID} and "
            f"{ENV_CLIENT_SECRET} to the Client ID and Client Secret of your NCP application "
            "(console > AI·NAVER API > Application), or test offline with ncp_cfr.testing.Emulator."
        )
    assert client_id is not None and client_secret is not None
    url = base_url or env.get(ENV_BASE_URL) or DEFAULT_BASE_URL  # Settings normalises it
    return Settings(client_id=client_id, client_secret=client_secret, base_url=url, **options)


# --- requests ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One HTTP request, ready for any HTTP library: multipart with the single field ``image``."""

    method: str
    url: str
    headers: Mapping[str, str] = field(repr=False)
    filename: str
    data: bytes = field(repr=False)
    content_type: str

    @property
    def files(self) -> dict[str, tuple[str, bytes, str]]:
        """The ``files=`` argument for httpx/requests: the encoder writes the boundary."""
        return {"image": (self.filename, self.data, self.content_type)}


USER_AGENT: Final = f"ncp_cfr/{__version__} (python)"


def build_request(settings: Settings, endpoint: Endpoint, prepared: PreparedImage) -> Request:
    """The request for ``endpoint`` carrying ``prepared``'s bytes."""
    headers = {
        "User-Agent": USER_AGENT,
        "Accept": "application/json",
        "Accept-Encoding": ACCEPT_ENCODING,
        **settings.default_headers,
        HEADER_KEY_ID: settings.client_id,
        HEADER_KEY: settings.client_secret,
    }
    extension = "png" if prepared.format == "PNG" else "jpg"
    return Request(
        method="POST",
        url=settings.url(endpoint),
        headers=headers,
        filename=f"image.{extension}",
        data=prepared.data,
        content_type=prepared.content_type,
    )


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` with credential values replaced, for logs and recordings."""
    return {k: ("<redacted>" if k.lower() in _SECRET_HEADERS else v) for k, v in headers.items()}


# --- responses -----------------------------------------------------------------------------------

_CFR_CODES: dict[str, type[APIError]] = {
    "ER01": BadRequestError,
    "ER02": BadRequestError,
    "ER03": BadRequestError,
    "ER04": ImageTooLargeError,
    "ER11": InvalidImageError,
    "ER12": InvalidImageError,
    "ER13": InvalidImageError,
    "ER14": InvalidImageError,
    "ER15": InvalidImageError,
    "ER21": ServerError,
    "ER22": ServerError,
    "ER92": ServerError,
    "ER99": ServerError,
}
_GATEWAY_CODES: dict[str, type[APIError]] = {
    "100": BadRequestError,
    "200": AuthenticationError,
    "210": PermissionDeniedError,
    "230": PermissionDeniedError,
    "300": NotFoundError,
    "400": QuotaExceededError,
    "410": RateLimitError,
    "420": RateLimitError,
    "430": ImageTooLargeError,
    "500": ServerError,
    "510": ServerError,
    "520": ServerError,
    "530": ServerError,
    "900": ServerError,
}
_LEGACY_CODES: dict[str, type[APIError]] = {
    "024": AuthenticationError,
    # The legacy channel's daily limit: a quota, not a burst, so waiting seconds does not help.
    "010": QuotaExceededError,
}

_HINTS: dict[type[APIError], str] = {
    AuthenticationError: (
        f"Check {ENV_CLIENT_ID} / {ENV_CLIENT_SECRET}: they must be the Client ID and Client "
        "Secret of an NCP AI·NAVER API application"
    ),
    PermissionDeniedError: (
        "Enable CLOVA Face Recognition for this application in the NCP console "
        "(AI·NAVER API > Application > Edit), or check the key's subscription"
    ),
    NotFoundError: f"Check base_url / {ENV_BASE_URL}; the service's is {DEFAULT_BASE_URL}",
    ImageTooLargeError: (
        "Uploads must stay under 2 MB: pass the image itself and let the SDK prepare it, "
        "or lower max_bytes"
    ),
    QuotaExceededError: (
        "The application's call quota is used up; raise it in the NCP console or wait for the "
        "period to reset. Retrying does not help"
    ),
    RateLimitError: "Too many calls per second; lower concurrency or set rate_limit",
}
_CODE_HINTS: dict[str, str] = {
    "ER11": "Send a JPEG or PNG: the SDK converts other formats if you pass the image itself",
    "ER12": "The width must be under 4x the height; the SDK pads such images when it prepares them",
    "ER13": "The image must be at least 50 px wide; the SDK upscales small images it prepares",
    "ER14": "The image must be at least 50 px high; the SDK upscales small images it prepares",
    "ER15": "The service could not analyse this image; try a clearer or larger photo",
    "010": (
        "The legacy NAVER Developers channel allows a fixed number of calls a day: wait for the "
        "next day or use the NCP API gateway. Retrying does not help"
    ),
}


def _status_class(status: int) -> type[APIError]:
    if status == 401:
        return AuthenticationError
    if status == 403:
        return PermissionDeniedError
    if status == 404:
        return NotFoundError
    if status == 413:
        return ImageTooLargeError
    if status == 429:
        return RateLimitError
    if status >= 500:
        return ServerError
    if status >= 400:
        return BadRequestError
    return APIError


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _text_or_none(value: object) -> str | None:
    if value is None:
        return None
    return str(value)


def error_from_response(status: int, headers: Mapping[str, str], body: bytes) -> APIError:
    """The typed error for an error answer, whatever its envelope (CFR, gateway, legacy, none)."""
    text = body.decode("utf-8", "replace")
    code: str | None = None
    message: str | None = None
    details: str | None = None
    cls: type[APIError] | None = None
    code_kind: str | None = None
    try:
        payload: Any = json.loads(text) if text.strip() else None
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        gateway = payload.get("error")
        if isinstance(gateway, dict):
            code = _text_or_none(gateway.get("errorCode"))
            message = _text_or_none(gateway.get("message"))
            details = _text_or_none(gateway.get("details"))
            cls = _GATEWAY_CODES.get(code or "")
            code_kind = "gateway"
        elif "errorCode" in payload or "errorMessage" in payload:
            code = _text_or_none(payload.get("errorCode"))
            message = _text_or_none(payload.get("errorMessage"))
            cls = _CFR_CODES.get(code or "") or _LEGACY_CODES.get(code or "")
            if code is not None:
                code_kind = "cfr" if code.upper().startswith("ER") else "legacy"
    if message is None:
        content_type = _header(headers, "content-type") or "no content type"
        message = (
            "empty response body"
            if not text.strip()
            else f"unexpected response body ({content_type}, {len(body)} bytes)"
        )
    if cls is None:
        cls = _status_class(status)
    hint = _CODE_HINTS.get(code or "") or _HINTS.get(cls)
    if cls is NotFoundError or status in (301, 302, 307, 308):
        hint = _HINTS[NotFoundError]
    request_id = _request_id(headers)
    return cls(
        message,
        status_code=status,
        code=code,
        details=details,
        request_id=request_id,
        body=text[:_BODY_LIMIT],
        hint=hint,
        code_kind=code_kind,
    )


ResultT = TypeVar("ResultT", bound=Union[FaceResult, CelebrityResult])
Result = Union[FaceResult, CelebrityResult]
_RESULT_TYPES: dict[Endpoint, type[FaceResult] | type[CelebrityResult]] = {
    Endpoint.FACE: FaceResult,
    Endpoint.CELEBRITY: CelebrityResult,
}


def parse_result(
    endpoint: Endpoint, status: int, headers: Mapping[str, str], body: bytes
) -> Result:
    """Parse a 200 answer. An unreadable one is a [`ServerError`][ncp_cfr.ServerError] (and so is
    retried).
    """
    try:
        # Straight from bytes to models (pydantic parses the JSON itself): no dict in between.
        result = _RESULT_TYPES[endpoint].model_validate_json(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        if err["type"] == "json_invalid":
            reason = "is not JSON"
        else:
            reason = f"does not fit the contract: {'.'.join(str(p) for p in err['loc'])}: "
            reason += err["msg"]
        error = error_from_response(status, headers, body)
        raise ServerError(
            f"the {endpoint.value} answer {reason}",
            status_code=status,
            request_id=error.request_id,
            body=error.body,
        ) from None
    result._raw_body = body
    return result


def map_to_caller(result: ResultT, prepared: PreparedImage) -> ResultT:
    """Move ``result`` into the caller's pixels, in place, and attach the ``upload`` facts.

    The service answers in the uploaded image's pixels; the caller wants the pixels of the image
    they passed (upright for files). ``prepared.transform`` says how the two relate. ``result``
    must be freshly parsed ([`parse_result`][ncp_cfr.protocol.parse_result]): its ``raw`` JSON is a
    separate object and keeps the service's own numbers.
    """
    result.info.size.width = prepared.source_width
    result.info.size.height = prepared.source_height
    # Our own numbers, already typed: no validation pass needed.
    result.upload = UploadInfo.model_construct(
        width=prepared.width,
        height=prepared.height,
        bytes=len(prepared.data),
        format=prepared.format,
        scale=prepared.scale,
        reencoded=prepared.reencoded,
        quality=prepared.quality,
    )
    if isinstance(result, FaceResult) and prepared.transform != Transform.IDENTITY:
        _map_faces(result, prepared)
    return result


def _map_faces(result: FaceResult, prepared: PreparedImage) -> None:
    transform = prepared.transform
    for face in result.faces:
        roi = face.roi
        roi.x, roi.y, roi.width, roi.height = transform.box_to_source(
            roi.x, roi.y, roi.width, roi.height
        )
        if face.landmark is not None:
            for name, point in face.landmark.points().items():
                x, y = transform.to_source(point.x, point.y)
                setattr(face.landmark, name, Point(x=round(x), y=round(y)))


# --- reading an answer ----------------------------------------------------------------------------


class AnswerReader:
    """Collects an answer's body as it arrives, decoding it and stopping at a size cap.

    Both shells feed it the raw bytes off the wire (``iter_raw``), so the cap holds for what
    the server sent and for what it decompresses to: a gzip bomb is decoded at most
    ``limit + 1`` bytes at a time and abandoned at the cap. ``gzip`` and ``deflate`` (what the
    client asks for) are decoded; any other coding is an answer that could not be decoded.
    ``decoded=True`` is for a body the HTTP library already read and decoded (an in-memory
    transport): only the cap is checked.

    Raises:
        ServerError: the answer is larger than ``limit`` or could not be decoded.
    """

    def __init__(
        self,
        status: int,
        headers: Mapping[str, str],
        *,
        url: str = "",
        limit: int = MAX_ANSWER_BYTES,
        decoded: bool = False,
    ) -> None:
        self.status = status
        self._headers = headers
        self._url = url
        self._limit = limit
        self._chunks: list[bytes] = []
        self._size = 0
        self._fresh = True
        length = (_header(headers, "content-length") or "").strip()
        if length.isdigit() and int(length) > limit:
            raise self._too_large(f"it announced {int(length):,} bytes")
        coding = "" if decoded else (_header(headers, "content-encoding") or "").strip().lower()
        self._coding = "" if coding == "identity" else coding
        self._decoder: Any = None
        if self._coding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self._coding == "deflate":
            self._decoder = zlib.decompressobj()
        elif self._coding:
            raise self._undecodable(f"Content-Encoding {coding!r}, which the client never asks for")

    def feed(self, chunk: bytes) -> None:
        """Add the next raw bytes of the body."""
        if self._decoder is None:
            self._add(chunk)
            return
        data = chunk
        while data:
            try:
                # Small steps, never past the cap (the byte after it fails the answer): a bomb
                # never has more than the cap and one step in memory.
                step = min(self._limit - self._size + 1, _DECODE_STEP)
                out = self._decoder.decompress(data, step)
            except zlib.error as exc:
                if self._coding == "deflate" and self._fresh:
                    # Servers send "deflate" both zlib-wrapped and raw: try raw once.
                    self._decoder = zlib.decompressobj(-zlib.MAX_WBITS)
                    self._fresh = False
                    continue
                raise self._undecodable(f"{self._coding}: {exc}") from None
            self._fresh = False
            self._add(out)
            data = self._decoder.unconsumed_tail

    def body(self) -> bytes:
        """The whole decoded body, once the last chunk was fed."""
        if self._decoder is not None:
            if not self._decoder.eof and (self._size or not self._fresh):
                raise self._undecodable(f"the {self._coding} stream ends early")
            self._add(self._decoder.flush())
        return b"".join(self._chunks)

    def _add(self, data: bytes) -> None:
        if not data:
            return
        self._size += len(data)
        if self._size > self._limit:
            self._chunks.clear()
            raise self._too_large("reading stopped there")
        self._chunks.append(data)

    def _too_large(self, what: str) -> ServerError:
        return ServerError(
            f"the answer{self._from()} is larger than {self._limit:,} bytes ({what}), larger than "
            "any CFR answer: check that base_url points at the CFR service",
            status_code=self.status,
            request_id=_request_id(self._headers),
        )

    def _undecodable(self, why: str) -> ServerError:
        return ServerError(
            f"the answer{self._from()} could not be decoded ({why})",
            status_code=self.status,
            request_id=_request_id(self._headers),
        )

    def _from(self) -> str:
        return f" from {self._url}" if self._url else ""


_DECODE_STEP = 1 << 16


def _request_id(headers: Mapping[str, str]) -> str | None:
    return next((v for h in _REQUEST_ID_HEADERS if (v := _header(headers, h))), None)


def attempt_timeout_error(url: str, timeout: float, what: str = "") -> APITimeoutError:
    """The error of one attempt that ran out of time (``what`` names the phase, if known)."""
    detail = f" ({what})" if what else ""
    return APITimeoutError(
        f"no answer from {url} within timeout={timeout:g} s{detail}; raise timeout= or check "
        "the network",
        url=url,
    )


# --- retries -------------------------------------------------------------------------------------


def _retry_after(headers: Mapping[str, str], now: datetime) -> float | None:
    value = _header(headers, "retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - now).total_seconds())


def is_retryable(error: CFRError) -> bool:
    """Whether ``error`` is transient (cfr-api.md §3): rate limits, server and network trouble."""
    return isinstance(error, (RateLimitError, ServerError, APIConnectionError))


def backoff(attempt: int, rng: Callable[[], float] = random.random) -> float:
    """Seconds before retry number ``attempt`` (1-based): exponential, capped, with jitter."""
    delay = min(_BACKOFF_BASE * 2.0 ** (attempt - 1), _BACKOFF_MAX)
    return delay * (1 - 0.25 * rng())


@dataclass(frozen=True)
class Done:
    """The call succeeded: ``result`` is in the caller's pixels."""

    result: Result


@dataclass(frozen=True)
class Retry:
    """Sleep ``delay`` seconds, then send [`Call.request`][ncp_cfr.protocol.Call.request] again."""

    delay: float
    error: CFRError


@dataclass(frozen=True)
class Fail:
    """The call failed for good: raise ``error``."""

    error: CFRError


Outcome = Union[Done, Retry, Fail]


class Call:
    """One logical call (with its retries) as a state machine over plain values.

    A shell loops: send [`request`][ncp_cfr.protocol.Call.request]; feed the answer to
    [`on_response`][ncp_cfr.protocol.Call.on_response] (or a transport failure to
    [`on_transport_error`][ncp_cfr.protocol.Call.on_transport_error]); on
    [`Retry`][ncp_cfr.protocol.Retry] sleep and loop, on [`Done`][ncp_cfr.protocol.Done] return, on
    [`Fail`][ncp_cfr.protocol.Fail] raise.
    """

    def __init__(
        self,
        settings: Settings,
        endpoint: Endpoint,
        prepared: PreparedImage,
        *,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.endpoint = endpoint
        self.prepared = prepared
        self.attempt = 0
        self._rng = rng
        self._clock = clock
        self._monotonic = monotonic
        self._started: float | None = None
        self._request = build_request(settings, endpoint, prepared)

    def request(self) -> Request:
        """The request to send for the next attempt."""
        self.attempt += 1
        if self._started is None:
            self._started = self._monotonic()
        if log.isEnabledFor(logging.DEBUG):  # redacting and formatting cost more than the call
            self._log_request()
        return self._request

    def _log_request(self) -> None:
        log.debug(
            "request %s %s attempt %d headers=%s image=%s %dx%d %d bytes",
            self._request.method,
            self._request.url,
            self.attempt,
            redact_headers(self._request.headers),
            self.prepared.format,
            self.prepared.width,
            self.prepared.height,
            len(self.prepared.data),
        )

    def on_response(self, status: int, headers: Mapping[str, str], body: bytes) -> Outcome:
        """Decide what an HTTP answer means."""
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "response %s %d headers=%s body=%s",
                self.endpoint.value,
                status,
                redact_headers(headers),
                body[:500].decode("utf-8", "replace"),
            )
        if status == 200:
            try:
                result = parse_result(self.endpoint, status, headers, body)
            except ServerError as error:
                return self._after_failure(error, headers)
            return Done(map_to_caller(result, self.prepared))
        return self._after_failure(error_from_response(status, headers, body), headers)

    def on_transport_error(self, error: APIConnectionError | ServerError) -> Outcome:
        """Decide what a failed attempt without a usable answer means.

        ``error`` is a connection failure or timeout, or a [`ServerError`][ncp_cfr.ServerError]
        for an answer that could not be read (too large, undecodable).
        """
        if log.isEnabledFor(logging.DEBUG):
            log.debug("attempt %d of %s failed: %s", self.attempt, self.endpoint.value, error)
        return self._after_failure(error, {})

    def _after_failure(self, error: CFRError, headers: Mapping[str, str]) -> Outcome:
        if not is_retryable(error):
            return Fail(error)
        if self.attempt > self.settings.max_retries:
            return Fail(self._summary(error))
        delay = backoff(self.attempt, self._rng)
        asked = _retry_after(headers, self._clock())
        if asked is not None:
            if asked > self.settings.max_retry_after:
                log.info(
                    "not retrying %s: the service asked to wait %.0f s (more than %.0f s)",
                    self.endpoint.value,
                    asked,
                    self.settings.max_retry_after,
                )
                return Fail(error)
            delay = asked
        # WARNING: a retry costs the caller time (up to a timeout each); it must not be silent.
        log.warning(
            "%s: attempt %d of %d failed: %s; retrying in %.1f s",
            self.endpoint.value,
            self.attempt,
            self.settings.max_retries + 1,
            error,
            delay,
        )
        return Retry(delay, error)

    def _summary(self, error: CFRError) -> CFRError:
        """The last error of a call that got no answer, saying what the attempts cost."""
        if not isinstance(error, APIConnectionError):
            return error
        elapsed = self._monotonic() - (self._started or self._monotonic())
        tried = f"{self.attempt} attempt{'s' if self.attempt != 1 else ''} over {elapsed:.1f} s"
        url = error.url or self._request.url
        if isinstance(error, APITimeoutError):
            return APITimeoutError(
                f"no answer from {url} in {tried} (timeout={self.settings.timeout:g} s per "
                "attempt); raise timeout= or check the network",
                url=url,
            )
        return type(error)(f"{error.message} ({tried})", url=error.url)
