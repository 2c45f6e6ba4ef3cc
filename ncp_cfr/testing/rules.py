"""The emulated service as pure code: a request in, an answer out.

The loopback server (``ncp_cfr.testing.server``) and the in-process transport
(``ncp_cfr.testing.transport``) both hand every request to ``Rules.handle`` and only differ
in how they wait (``Answer.delay``) and how they drop a connection (``Answer.drop``), so the two
behave the same by construction.
"""

from __future__ import annotations

import io
import json
import re
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

__all__ = [
    "MAX_IMAGE_BYTES",
    "Answer",
    "RecordedRequest",
    "Rules",
    "cfr_error",
    "error_envelope",
    "gateway_error",
    "legacy_error",
    "make_celebrity",
    "make_face",
]

#: The emulator refuses images over this many bytes with ER04 (the SDK's own limit; see
#: docs/protocol.md, "Limits").
MAX_IMAGE_BYTES = 2_000_000
#: Bodies over this are refused by the "gateway" (413/430) without being read whole.
MAX_BODY_BYTES = 10 * 1024 * 1024

_CFR_ERRORS: dict[str, tuple[int, str]] = {
    "ER01": (400, "Image parameter is missing (이미지 파라미터가 없습니다.)"),
    "ER02": (400, "Failed to receive image content (이미지 내용을 받지 못했습니다.)"),
    "ER03": (400, "Bad request (잘못된 요청입니다.)"),
    "ER04": (400, "Image size is too large (너무 큰 이미지 입니다.)"),
    "ER11": (400, "Unrecognized image format (인식할 수 없는 이미지 형식입니다.)"),
    "ER12": (400, "Abnormal width/height ratio (이미지의 가로/세로 비율이 비정상입니다.)"),
    "ER13": (400, "Image width is too small (이미지 너비가 너무 작습니다.)"),
    "ER14": (400, "Image height is too small (이미지 높이가 너무 작습니다.)"),
    "ER15": (400, "Failed to analyze the image (이미지 분석에 실패했습니다.)"),
    "ER21": (400, "Server timeout (서버 시간 초과입니다.)"),
    "ER22": (400, "Server is too busy (서버가 너무 바쁩니다.)"),
    "ER92": (500, "Failed to make JSON (JSON 생성에 실패했습니다.)"),
    "ER99": (500, "Internal server error (내부 서버 오류입니다.)"),
}
_GATEWAY_ERRORS: dict[str, tuple[int, str, str | None]] = {
    "100": (400, "Bad Request Exception", None),
    "200": (401, "Authentication Failed", "Invalid authentication information."),
    "210": (401, "Permission Denied", "A subscription to the API is required."),
    "230": (403, "Forbidden", None),
    "300": (404, "Not Found Exception", None),
    "400": (429, "Quota Exceeded", "Quota exceeded."),
    "410": (429, "Throttle Limited", "Throttle limited."),
    "420": (429, "Rate Limited", "Rate limited."),
    "430": (413, "Request Entity Too Large", None),
    "500": (503, "Endpoint Error", None),
    "510": (504, "Endpoint Timeout", None),
    "520": (503, "Unknown Endpoint Domain", None),
    "530": (503, "Connection Closed By Endpoint", None),
    "900": (500, "Unexpected Error", None),
}
_LEGACY_ERRORS: dict[str, tuple[int, str]] = {
    "024": (401, "Authentication failed (인증에 실패하였습니다.)"),
    "010": (429, "Exceeded the daily limit (일일 호출 한도를 초과했습니다.)"),
}

JSONBody = Union[Mapping[str, Any], Sequence[Any]]


def cfr_error(code: str) -> tuple[int, dict[str, Any]]:
    """The status and body the CFR service sends for ``code`` (``"ER04"`` ...)."""
    status, message = _CFR_ERRORS[code]
    return status, {"errorCode": code, "errorMessage": message}


def gateway_error(code: str | int, *, int_code: bool = False) -> tuple[int, dict[str, Any]]:
    """The status and body NCP's API gateway sends for ``code`` (``"210"`` ...).

    ``int_code=True`` sends the code as a JSON number, as some gateway answers do.
    """
    status, message, details = _GATEWAY_ERRORS[str(code)]
    error_code: str | int = int(code) if int_code else str(code)
    return status, {"error": {"errorCode": error_code, "message": message, "details": details}}


def legacy_error(code: str) -> tuple[int, dict[str, Any]]:
    """The status and body of the legacy NAVER Developers channel (``"024"`` ...)."""
    status, message = _LEGACY_ERRORS[code]
    return status, {"errorMessage": message, "errorCode": code}


def error_envelope(code: str) -> tuple[int, dict[str, Any]]:
    """Any known code: ``"ER21"`` (CFR), ``"410"`` (gateway), ``"legacy:024"`` (legacy)."""
    if code.startswith("legacy:"):
        return legacy_error(code.removeprefix("legacy:"))
    if code.startswith("gateway:"):
        return gateway_error(code.removeprefix("gateway:"))
    if code in _CFR_ERRORS:
        return cfr_error(code)
    if code in _GATEWAY_ERRORS:
        return gateway_error(code)
    raise InvalidArgumentError(
        f"unknown error code {code!r}: use a CFR code (ER01..ER99), a gateway code "
        f"({', '.join(_GATEWAY_ERRORS)}) or legacy:024"
    )


def make_face(
    x: int,
    y: int,
    width: int,
    height: int,
    *,
    landmark: Mapping[str, Mapping[str, int]] | str | None = "auto",
    gender: str | None = None,
    age: str | None = None,
    emotion: str | None = None,
    pose: str = "frontal_face",
    confidence: float = 0.9,
) -> dict[str, Any]:
    """A face entry in the service's JSON, in the upload's pixels, for scenarios.

    ``landmark="auto"`` places the five points where a frontal face has them inside the box;
    ``None`` sends ``null``. Attributes left ``None`` are sent as ``"unknown"`` with confidence 0,
    so a test states every value it relies on.
    """
    if landmark == "auto":
        landmark = frontal_landmarks(x, y, width, height)

    def attr(value: str | None) -> dict[str, Any]:
        return {"value": value or "unknown", "confidence": confidence if value else 0.0}

    return {
        "roi": {"x": x, "y": y, "width": width, "height": height},
        "landmark": landmark,
        "gender": attr(gender),
        "age": attr(age),
        "emotion": attr(emotion),
        "pose": {"value": pose, "confidence": confidence},
    }


def frontal_landmarks(x: int, y: int, width: int, height: int) -> dict[str, dict[str, int]]:
    """Where the five points of an upright frontal face sit inside its box."""

    def at(fx: float, fy: float) -> dict[str, int]:
        return {"x": round(x + fx * width), "y": round(y + fy * height)}

    return {
        "leftEye": at(0.32, 0.38),
        "rightEye": at(0.68, 0.38),
        "nose": at(0.5, 0.56),
        "leftMouth": at(0.36, 0.76),
        "rightMouth": at(0.64, 0.76),
    }


def make_celebrity(name: str, confidence: float = 0.9) -> dict[str, Any]:
    """A celebrity entry in the service's JSON, for scenarios."""
    return {"celebrity": {"value": name, "confidence": confidence}}


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


_BOUNDARY = re.compile(r'boundary=(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)
_DISPOSITION_PARAM = re.compile(r'(?<![\w-])(name|filename)="((?:[^"\\]|\\.)*)"', re.IGNORECASE)


def parse_multipart(
    content_type: str, body: bytes
) -> dict[str, tuple[str | None, str | None, bytes]]:
    """``{field: (filename, part content type, data)}`` of a multipart/form-data body.

    A small parser of the shapes HTTP clients send (quoted ``name``/``filename`` parameters):
    ``email.message`` would do the same at several times the cost per request.
    """
    if content_type.split(";", 1)[0].strip().lower() != "multipart/form-data":
        return {}
    found = _BOUNDARY.search(content_type)
    if found is None:
        return {}
    delimiter = b"--" + (found.group(1) or found.group(2)).encode("latin-1")
    parts: dict[str, tuple[str | None, str | None, bytes]] = {}
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        headers: dict[str, str] = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        params = {
            key.lower(): value.replace('\\"', '"')
            for key, value in _DISPOSITION_PARAM.findall(headers.get("content-disposition", ""))
        }
        if "name" in params:
            parts[params["name"]] = (
                params.get("filename"),
                headers.get("content-type"),
                data.removesuffix(b"\r\n"),
            )
    return parts


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
        answer = self._answer(method, endpoint, lower, record)
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
        fault = self._take(self._faults, endpoint, record)
        if fault is not None and (fault.status or fault.drop):
            return Answer(fault.status, fault.body, fault.headers, fault.delay, fault.drop)
        answer = self._checked(endpoint, record)
        if fault is not None:  # a pure delay: the normal answer, late
            answer = Answer(answer.status, answer.body, answer.headers, answer.delay + fault.delay)
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
