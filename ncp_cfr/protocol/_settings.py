"""Where and how patiently to call the service: endpoints, settings, credentials.

The contract is described in the docs' Protocol page (``docs/protocol.md``, "Endpoints").
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Final

from ncp_cfr.errors import CFRError, InvalidArgumentError

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
