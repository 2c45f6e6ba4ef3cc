"""The emulated service as pure code: a request in, an answer out.

``Rules`` holds the service's checks, the scenarios and faults a test declares, and the record of
what it received. The loopback server (``ncp_cfr.testing.server``) and the in-process transport
(``ncp_cfr.testing.transport``) both hand every request to ``Rules.handle`` and only differ
in how they wait (``Answer.delay``) and how they drop a connection (``Answer.drop``), so the two
behave the same by construction.

This module also re-exports the wire helpers (the error envelopes, ``make_face``,
``make_celebrity``, ``frontal_landmarks``, ``parse_multipart``, ``MAX_BODY_BYTES``) from a private
module beside it: import them from here.
"""

from __future__ import annotations

import io
import json
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Union

from PIL import Image

from ncp_cfr.errors import ImageError, InvalidArgumentError
from ncp_cfr.images import sniff_format
from ncp_cfr.models import CelebrityResult, FaceResult
from ncp_cfr.protocol import HEADER_KEY, HEADER_KEY_ID, Endpoint, redact_headers
from ncp_cfr.testing._wire import (
    MAX_BODY_BYTES,
    cfr_error,
    error_envelope,
    frontal_landmarks,
    gateway_error,
    legacy_error,
    make_celebrity,
    make_face,
    parse_multipart,
)

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_IMAGE_BYTES",
    "Answer",
    "RecordedRequest",
    "Rules",
    "cfr_error",
    "error_envelope",
    "frontal_landmarks",
    "gateway_error",
    "legacy_error",
    "make_celebrity",
    "make_face",
    "parse_multipart",
]

#: The emulator refuses images over this many bytes with ER04 (the SDK's own limit; see
#: docs/protocol.md, "Limits").
MAX_IMAGE_BYTES = 2_000_000

JSONBody = Union[Mapping[str, Any], Sequence[Any]]


@dataclass(frozen=True)
class Answer:
    """What the emulator answers: wait ``delay`` seconds, then drop the connection or respond."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False


@dataclass
class RecordedRequest:
    """A request the emulator received, with the key headers redacted."""

    method: str
    path: str
    endpoint: Endpoint | None
    headers: dict[str, str]
    image_bytes: bytes | None
    part_content_type: str | None
    filename: str | None
    multipart: bool
    received_at: float
    status: int = 0
    request_id: str = ""
    """The id the emulator answered with (``X-NCP-TRACE-ID``), as results carry it."""
    width: int | None = None
    height: int | None = None
    format: str | None = None

    @cached_property
    def image(self) -> Image.Image:
        """The uploaded image, decoded (an ``ImageError``, a ``ValueError``, if there was none)."""
        if not self.image_bytes:
            raise ImageError("this request carried no image")
        img: Image.Image = Image.open(io.BytesIO(self.image_bytes))
        img.load()
        return img


Match = Union[bytes, Callable[[RecordedRequest], bool], None]
Detector = Callable[[Image.Image], list[dict[str, Any]]]
Recognizer = Callable[[Image.Image], list[dict[str, Any]]]


@dataclass
class _Reply:
    endpoint: Endpoint | None
    status: int
    body: bytes
    headers: dict[str, str]
    match: Match
    times: int | None  # None: forever
    delay: float = 0.0
    drop: bool = False
    fill_info: bool = False

    def matches(self, endpoint: Endpoint | None, request: RecordedRequest) -> bool:
        if self.endpoint is not None and self.endpoint != endpoint:
            return False
        if self.match is None:
            return True
        if isinstance(self.match, bytes):
            return request.image_bytes == self.match
        return bool(self.match(request))


def _json(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


class Rules:
    """The emulated CFR: checks, scenarios, faults and recording. Thread-safe."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        latency: float = 0.0,
        detector: Detector | None = None,
        recognizer: Recognizer | None = None,
        record_images: bool = True,
        max_recorded: int | None = None,
        quota: int | None = None,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.latency = latency
        self.detector = detector
        self.recognizer = recognizer
        self.record_images = record_images
        #: Keep only the newest this many recorded requests (``None``: all), so a long-running
        #: emulator does not grow without bound.
        self.max_recorded = max_recorded
        self.requests: list[RecordedRequest] = []
        #: Requests handled since construction (not reset, not bounded by ``max_recorded``).
        self.handled = 0
        #: Requests answered 200 since construction (not reset): the calls a customer pays for.
        self.answered = 0
        #: 200 answers since construction or the last ``reset_quota``: what the quota counts.
        self.quota_used = 0
        self._quota = _checked_quota(quota)
        self._ids = 0
        self._faults: list[_Reply] = []
        self._replies: list[_Reply] = []
        self._lock = threading.Lock()
        self._in_flight = 0
        self.max_in_flight = 0

    # -- what tests declare ------------------------------------------------------------------------

    def add_reply(self, reply: _Reply, *, fault: bool) -> None:
        with self._lock:
            (self._faults if fault else self._replies).append(reply)

    @property
    def quota(self) -> int | None:
        """The cap on 200 answers since the last ``reset_quota`` (``None``: no cap)."""
        return self._quota

    def set_quota(self, calls: int | None) -> None:
        """Cap the 200 answers at ``calls``: later calls get the gateway's quota answer.

        The count is not restarted: as on NCP, a cap lowered mid-day counts the calls already
        answered that day (``reset_quota`` starts a new day).
        """
        checked = _checked_quota(calls)
        with self._lock:
            self._quota = checked

    def reset_quota(self) -> None:
        """A new day: the count behind the quota starts again from 0 (the cap stays)."""
        with self._lock:
            self.quota_used = 0

    def reset(self) -> None:
        """Forget recorded requests, scenarios, faults and the in-flight maximum."""
        with self._lock:
            self.requests.clear()
            self._faults.clear()
            self._replies.clear()
            self.max_in_flight = self._in_flight

    # -- in-flight accounting (the shells call these around each request) --------------------------

    def enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def too_large(self) -> Answer:
        """The gateway's answer to a body too large to read (413 / 430)."""
        return self._error(*gateway_error("430"))

    # -- the service ------------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """Answer one request as the service would."""
        lower = {k.lower(): v for k, v in headers.items()}
        endpoint = next((e for e in Endpoint if path.rstrip("/") == e.path), None)
        content_type = lower.get("content-type", "")
        parts = parse_multipart(content_type, body) if body else {}
        image = parts.get("image")
        record = RecordedRequest(
            method=method,
            path=path,
            endpoint=endpoint,
            headers=redact_headers(dict(headers)),
            image_bytes=image[2] if image else None,
            part_content_type=image[1] if image else None,
            filename=image[0] if image else None,
            multipart=bool(parts),
            received_at=time.time(),
        )
        answer = self._counted(self._answer(method, endpoint, lower, record))
        record.status = answer.status
        # Like the gateway, every answer names its request: what users quote in a ticket.
        with self._lock:
            self._ids += 1
            record.request_id = f"emu-{self._ids:08d}"
        if not answer.drop:
            headers = {"X-NCP-TRACE-ID": record.request_id, **answer.headers}
            answer = Answer(answer.status, answer.body, headers, answer.delay, answer.drop)
        if not self.record_images:
            record.image_bytes = None
        with self._lock:
            self.requests.append(record)
            self.handled += 1
            if self.max_recorded is not None and len(self.requests) > self.max_recorded:
                del self.requests[: len(self.requests) - self.max_recorded]
        if self.latency and not answer.drop:
            answer = Answer(answer.status, answer.body, answer.headers, answer.delay + self.latency)
        return answer

    def _answer(
        self,
        method: str,
        endpoint: Endpoint | None,
        headers: Mapping[str, str],
        record: RecordedRequest,
    ) -> Answer:
        if endpoint is None or method != "POST":
            return self._error(*gateway_error("300"))
        if (
            headers.get(HEADER_KEY_ID.lower()) != self.client_id
            or headers.get(HEADER_KEY.lower()) != self.client_secret
        ):
            return self._error(*gateway_error("200"))
        # The gateway refuses over-quota calls before the service (or a fault) sees them.
        if self._quota_spent():
            return self._error(*gateway_error("400"))
        fault = self._take(self._faults, endpoint, record)
        if fault is not None and (fault.status or fault.drop):
            return Answer(fault.status, fault.body, fault.headers, fault.delay, fault.drop)
        answer = self._checked(endpoint, record)
        if fault is not None:  # a pure delay: the normal answer, late
            answer = Answer(answer.status, answer.body, answer.headers, answer.delay + fault.delay)
        return answer

    def _quota_spent(self) -> bool:
        with self._lock:
            return self._quota is not None and self.quota_used >= self._quota

    def _counted(self, answer: Answer) -> Answer:
        """Count a 200 against the quota, or refuse it: calls checked at the same moment may
        all have passed ``_quota_spent``, and only ``quota`` of them may be answered.
        """
        if answer.status != 200 or answer.drop:
            return answer
        with self._lock:
            if self._quota is not None and self.quota_used >= self._quota:
                refused = self._error(*gateway_error("400"))
                return Answer(refused.status, refused.body, refused.headers, answer.delay)
            self.quota_used += 1
            self.answered += 1
        return answer

    def _checked(self, endpoint: Endpoint, record: RecordedRequest) -> Answer:
        data = record.image_bytes
        if data is None:
            return self._error(*cfr_error("ER01"))
        if not data:
            return self._error(*cfr_error("ER02"))
        if len(data) > MAX_IMAGE_BYTES:
            return self._error(*cfr_error("ER04"))
        finder = self.detector if endpoint is Endpoint.FACE else self.recognizer
        decoded = self._decode(data, record, need_pixels=finder is not None)
        if isinstance(decoded, Answer):
            return decoded
        reply = self._take(self._replies, endpoint, record)
        if reply is not None:
            body = reply.body
            if reply.fill_info and reply.status == 200:
                body = self._fill_info(body, record)
            return Answer(reply.status, body, reply.headers, reply.delay, reply.drop)
        return self._default(endpoint, decoded, record)

    def _decode(
        self, data: bytes, record: RecordedRequest, need_pixels: bool
    ) -> Image.Image | Answer:
        """The uploaded image, checked as the service checks it (``need_pixels``: full size)."""
        record.format = sniff_format(data)
        if record.format is None:
            return self._error(*cfr_error("ER11"))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data))
                record.width, record.height = img.size
                if not need_pixels and img.format == "JPEG":
                    # Only proving the data decodes: at 1/8 scale libjpeg still reads every
                    # entropy-coded byte (truncation and corruption show) but skips most of
                    # the inverse DCT. A detector gets the full decode.
                    img.draft(img.mode, (max(1, img.width // 8), max(1, img.height // 8)))
                img.load()
        except Exception:  # any decoder failure is the service's "could not analyse"
            return self._error(*cfr_error("ER15"))
        width, height = record.width, record.height
        if width < 50:
            return self._error(*cfr_error("ER13"))
        if height < 50:
            return self._error(*cfr_error("ER14"))
        if width >= 4 * height:
            return self._error(*cfr_error("ER12"))
        return img

    def _take(
        self, queue: list[_Reply], endpoint: Endpoint, record: RecordedRequest
    ) -> _Reply | None:
        with self._lock:
            for reply in queue:
                if reply.matches(endpoint, record):
                    if reply.times is not None:
                        reply.times -= 1
                        if reply.times <= 0:
                            queue.remove(reply)
                    return reply
        return None

    @staticmethod
    def _error(status: int, body: dict[str, Any]) -> Answer:
        return Answer(status, _json(body), {"Content-Type": "application/json;charset=UTF-8"})

    @staticmethod
    def _fill_info(body: bytes, record: RecordedRequest) -> bytes:
        payload = json.loads(body)
        faces = payload.get("faces", [])
        size = {"width": record.width, "height": record.height}
        return _json({"info": {"size": size, "faceCount": len(faces)}, "faces": faces})

    def _default(self, endpoint: Endpoint, img: Image.Image, record: RecordedRequest) -> Answer:
        # ``img`` is at full size only when there is a finder to look at it (see _decode).
        finder = self.detector if endpoint is Endpoint.FACE else self.recognizer
        faces = finder(img) if finder is not None else []
        payload = {
            "info": {
                "size": {"width": record.width, "height": record.height},
                "faceCount": len(faces),
            },
            "faces": faces,
        }
        # What we send must be what the SDK parses: validate with the SDK's own models.
        (FaceResult if endpoint is Endpoint.FACE else CelebrityResult).model_validate(payload)
        return Answer(200, _json(payload), {"Content-Type": "application/json;charset=UTF-8"})


def _checked_quota(calls: int | None) -> int | None:
    if calls is not None and (isinstance(calls, bool) or not isinstance(calls, int) or calls < 0):
        raise InvalidArgumentError(f"quota is a whole number of calls >= 0 or None, got {calls!r}")
    return calls


def reply_body(
    body: JSONBody | FaceResult | CelebrityResult | bytes | str | None,
    faces: Sequence[Mapping[str, Any]] | None,
) -> tuple[bytes, bool]:
    """Encode a scenario's body; ``(bytes, fill_info)`` where ``info`` is to be computed."""
    if faces is not None:
        return _json({"faces": list(faces)}), True
    if isinstance(body, (FaceResult, CelebrityResult)):
        return _json(body.model_dump(by_alias=True, mode="json")), False
    if isinstance(body, bytes):
        return body, False
    if isinstance(body, str):
        return body.encode("utf-8"), False
    if body is None:
        return b"", False
    if isinstance(body, Mapping) and "info" not in body and "faces" in body:
        return _json(dict(body)), True
    return _json(body), False


def make_reply(
    endpoint: Endpoint | str | None,
    *,
    status: int,
    body: bytes,
    headers: Mapping[str, str] | None,
    match: Match | Image.Image,
    times: int | None,
    delay: float = 0.0,
    drop: bool = False,
    fill_info: bool = False,
) -> _Reply:
    if isinstance(match, Image.Image):
        raise InvalidArgumentError(
            "match= takes the uploaded bytes or a function of the RecordedRequest"
        )
    all_headers = {"Content-Type": "application/json;charset=UTF-8"} if body else {}
    all_headers.update(headers or {})
    return _Reply(
        endpoint=Endpoint(endpoint) if endpoint is not None else None,
        status=status,
        body=body,
        headers=all_headers,
        match=match,
        times=times,
        delay=delay,
        drop=drop,
        fill_info=fill_info,
    )
