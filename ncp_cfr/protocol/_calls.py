"""One logical call with its retries, as a state machine over plain values.

The retry rules are in the docs' Protocol page, "Retries".
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Union

from ncp_cfr.errors import (
    APIConnectionError,
    APITimeoutError,
    CFRError,
    RateLimitError,
    ServerError,
)
from ncp_cfr.models import EndpointResult
from ncp_cfr.protocol._answers import error_from_response, header, lowered, parse_result
from ncp_cfr.protocol._requests import Request, build_request, redact_headers
from ncp_cfr.protocol._settings import Endpoint, Settings

log = logging.getLogger("ncp_cfr")

_BACKOFF_BASE = 0.5
_BACKOFF_MAX = 8.0


def _retry_after(headers: Mapping[str, str], now: datetime) -> float | None:
    value = header(headers, "retry-after")
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
    """Whether ``error`` is transient: rate limits, server and network trouble.

    The docs' Protocol page, "Retries", lists which answers these are.
    """
    return isinstance(error, (RateLimitError, ServerError, APIConnectionError))


def backoff(attempt: int, rng: Callable[[], float] = random.random) -> float:
    """Seconds before retry number ``attempt`` (1-based): exponential, capped, with jitter."""
    delay = min(_BACKOFF_BASE * 2.0 ** (attempt - 1), _BACKOFF_MAX)
    return delay * (1 - 0.25 * rng())


@dataclass(frozen=True)
class Done:
    """The call succeeded: ``result`` is in the upload's pixels, as the service answered."""

    result: EndpointResult


@dataclass(frozen=True)
class Retry:
    """Sleep ``delay`` seconds, then send [`Call.request`][ncp_cfr.protocol.Call.request] again."""

    delay: float
    error: CFRError


@dataclass(frozen=True)
class Fail:
    """The call failed for good: raise ``error``."""

    error: CFRError


#: What [`Call`][ncp_cfr.protocol.Call] decides after each attempt.
Decision = Union[Done, Retry, Fail]


class Call:
    """One logical call (with its retries) as a state machine over plain values.

    ``data`` is the upload (a JPEG or PNG of ``content_type``); ``rng``, ``clock`` (the current
    time, for ``Retry-After`` dates) and ``monotonic`` (for the time the attempts took) are
    injectable so that tests decide what time it is.

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
        data: bytes,
        content_type: str,
        *,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.endpoint = endpoint
        self.attempt = 0
        self._rng = rng
        self._clock = clock
        self._monotonic = monotonic
        self._started: float | None = None
        self._request = build_request(settings, endpoint, data, content_type)

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
            "request %s %s attempt %d headers=%s image=%s %d bytes",
            self._request.method,
            self._request.url,
            self.attempt,
            redact_headers(self._request.headers),
            self._request.content_type,
            len(self._request.data),
        )

    def on_response(self, status: int, headers: Mapping[str, str], body: bytes) -> Decision:
        """Decide what an HTTP answer means."""
        headers = lowered(headers)  # once: parsing, errors and Retry-After all look names up
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
            return Done(result)
        return self._after_failure(error_from_response(status, headers, body), headers)

    def on_transport_error(self, error: APIConnectionError | ServerError) -> Decision:
        """Decide what a failed attempt without a usable answer means.

        ``error`` is a connection failure or timeout, or a [`ServerError`][ncp_cfr.ServerError]
        for an answer that could not be read (too large, undecodable).
        """
        if log.isEnabledFor(logging.DEBUG):
            log.debug("attempt %d of %s failed: %s", self.attempt, self.endpoint.value, error)
        return self._after_failure(error, {})

    def _after_failure(self, error: CFRError, headers: Mapping[str, str]) -> Decision:
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
