"""Requests as plain values: the multipart upload and its headers, ready for any HTTP library.

See the docs' Protocol page, "Requests".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from ncp_cfr._version import __version__
from ncp_cfr.protocol._settings import Endpoint, Settings

ACCEPT_ENCODING: Final = "gzip, deflate"

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


def build_request(
    settings: Settings, endpoint: Endpoint, data: bytes, content_type: str
) -> Request:
    """The request for ``endpoint`` uploading ``data`` (a JPEG or PNG of ``content_type``)."""
    headers = {
        "User-Agent": USER_AGENT,
        "Accept": "application/json",
        "Accept-Encoding": ACCEPT_ENCODING,
        **settings.default_headers,
        HEADER_KEY_ID: settings.client_id,
        HEADER_KEY: settings.client_secret,
    }
    extension = "png" if content_type == "image/png" else "jpg"
    return Request(
        method="POST",
        url=settings.url(endpoint),
        headers=headers,
        filename=f"image.{extension}",
        data=data,
        content_type=content_type,
    )


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` with credential values replaced, for logs and recordings."""
    return {k: ("<redacted>" if k.lower() in _SECRET_HEADERS else v) for k, v in headers.items()}
