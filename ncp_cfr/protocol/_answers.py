"""What an answer means: its body read within a cap, a 200 parsed, anything else a typed error.

The envelopes and the code table are in the docs' Protocol page, "Answers" and "Errors".
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from typing import Any, Final

from pydantic import ValidationError

from ncp_cfr.errors import (
    APIError,
    APITimeoutError,
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
from ncp_cfr.models import CelebrityResult, EndpointResult, FaceResult
from ncp_cfr.protocol._settings import (
    DEFAULT_BASE_URL,
    ENV_BASE_URL,
    ENV_CLIENT_ID,
    ENV_CLIENT_SECRET,
    Endpoint,
)

MAX_ANSWER_BYTES: Final = 10_000_000
"""The most bytes of an answer the client reads, after decompression: 10 MB.

CFR answers are a few kilobytes (a JSON document per image). An answer past this is not from the
service (a misconfigured ``base_url``, a proxy's error page gone wrong, a hostile server): reading
stops there and the call fails with a [`ServerError`][ncp_cfr.ServerError] instead of filling
memory.
"""
#: How much of an error answer's body an APIError keeps (``.body``).
_BODY_LIMIT = 2000
_REQUEST_ID_HEADERS = ("x-ncp-trace-id", "x-request-id", "x-ncp-request-id")

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


class Lowered(dict[str, str]):
    """Headers with lower-case names: made once per answer, then every lookup is a dict's."""


def lowered(headers: Mapping[str, str]) -> Lowered:
    """``headers`` with lower-case names (the same object if it already is)."""
    if isinstance(headers, Lowered):
        return headers
    return Lowered((name.lower(), value) for name, value in headers.items())


def header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header ``name`` (lower case) in any mapping, whatever its keys' case."""
    return lowered(headers).get(name)


def _text_or_none(value: object) -> str | None:
    if value is None:
        return None
    return str(value)


def error_from_response(status: int, headers: Mapping[str, str], body: bytes) -> APIError:
    """The typed error for an error answer, whatever its envelope (CFR, gateway, legacy, none)."""
    headers = lowered(headers)
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
        content_type = header(headers, "content-type") or "no content type"
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
    return cls(
        message,
        status_code=status,
        code=code,
        details=details,
        request_id=request_id(headers),
        body=text[:_BODY_LIMIT],
        hint=hint,
        code_kind=code_kind,
    )


_RESULT_TYPES: dict[Endpoint, type[FaceResult] | type[CelebrityResult]] = {
    Endpoint.FACE: FaceResult,
    Endpoint.CELEBRITY: CelebrityResult,
}


def parse_result(
    endpoint: Endpoint, status: int, headers: Mapping[str, str], body: bytes
) -> EndpointResult:
    """Parse a 200 answer, in the upload's pixels, with the answer's request id.

    An unreadable answer is a [`ServerError`][ncp_cfr.ServerError] (and so is retried).
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
    result._request_id = request_id(headers)
    return result


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
        #: The answer's headers, names in lower case.
        self.headers = headers = lowered(headers)
        self._url = url
        self._limit = limit
        self._chunks: list[bytes] = []
        self._size = 0
        self._fresh = True
        length = (header(headers, "content-length") or "").strip()
        if length.isdigit() and int(length) > limit:
            raise self._too_large(f"it announced {int(length):,} bytes")
        coding = "" if decoded else (header(headers, "content-encoding") or "").strip().lower()
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
            request_id=request_id(self.headers),
        )

    def _undecodable(self, why: str) -> ServerError:
        return ServerError(
            f"the answer{self._from()} could not be decoded ({why})",
            status_code=self.status,
            request_id=request_id(self.headers),
        )

    def _from(self) -> str:
        return f" from {self._url}" if self._url else ""


_DECODE_STEP = 1 << 16


def request_id(headers: Mapping[str, str]) -> str | None:
    """The service's id of a request, from the answer's headers, for support tickets."""
    return next((v for h in _REQUEST_ID_HEADERS if (v := header(headers, h))), None)


def attempt_timeout_error(url: str, timeout: float, what: str = "") -> APITimeoutError:
    """The error of one attempt that ran out of time (``what`` names the phase, if known)."""
    detail = f" ({what})" if what else ""
    return APITimeoutError(
        f"no answer from {url} within timeout={timeout:g} s{detail}; raise timeout= or check "
        "the network",
        url=url,
    )
