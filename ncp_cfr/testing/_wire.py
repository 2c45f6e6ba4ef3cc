"""What travels on the wire: the emulator's error envelopes, face and celebrity entries, and the
multipart/form-data bodies it reads.

Pure data helpers with no state: [`Rules`][ncp_cfr.testing.rules.Rules] answers with these
envelopes, scenarios build their bodies with ``make_face`` and ``make_celebrity``, and the
loopback server refuses what it cannot read with the gateway's envelope. All are re-exported by
``ncp_cfr.testing.rules``, their documented home.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ncp_cfr.errors import InvalidArgumentError

__all__ = [
    "MAX_BODY_BYTES",
    "cfr_error",
    "error_envelope",
    "frontal_landmarks",
    "gateway_error",
    "legacy_error",
    "make_celebrity",
    "make_face",
    "parse_multipart",
]

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
