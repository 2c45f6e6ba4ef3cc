"""The two clients: thin I/O shells around :class:`ncp_cfr.protocol.Call`.

:class:`Client` sends with ``httpx.Client`` and sleeps with ``time.sleep``; :class:`AsyncClient`
sends with ``httpx.AsyncClient`` and sleeps with ``anyio.sleep``. Everything else (what to send,
what an answer means, whether to retry) is decided once, in :mod:`ncp_cfr.protocol`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal, TypeVar

import anyio
import httpx

from ncp_cfr import protocol
from ncp_cfr.errors import APIConnectionError, APITimeoutError
from ncp_cfr.images import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_SIDE,
    ImageSource,
    PreparedImage,
    prepare_image,
)
from ncp_cfr.models import CelebrityResult, FaceResult
from ncp_cfr.protocol import Call, Done, Endpoint, Fail, Request, Settings

__all__ = ["AsyncClient", "ChannelOrder", "Client"]

ChannelOrder = Literal["rgb", "bgr"]
_Self = TypeVar("_Self", bound="_ClientBase")
_NOT_GIVEN: Any = object()


class _ClientBase:
    """What both shells share: settings, image preparation options, the deadline of an attempt."""

    _settings: Settings
    _max_bytes: int
    _max_side: int | None
    _owns_http: bool

    def _configure(
        self,
        client_id: str | None,
        client_secret: str | None,
        base_url: str | None,
        timeout: float,
        connect_timeout: float,
        max_retries: int,
        default_headers: Mapping[str, str] | None,
        max_bytes: int,
        max_side: int | None,
    ) -> None:
        self._settings = protocol.resolve_settings(
            client_id,
            client_secret,
            base_url,
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_retries=max_retries,
            default_headers=dict(default_headers or {}),
        )
        self._max_bytes = max_bytes
        self._max_side = max_side

    @property
    def base_url(self) -> str:
        """The service root every request goes to."""
        return self._settings.base_url

    @property
    def timeout(self) -> float:
        """Seconds one attempt may take, from connecting to the last byte of the answer."""
        return self._settings.timeout

    @property
    def max_retries(self) -> int:
        """Extra attempts after a transient failure."""
        return self._settings.max_retries

    def __repr__(self) -> str:
        # Never the key pair: only where the client sends and how patiently.
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, timeout={self.timeout}, "
            f"max_retries={self.max_retries})"
        )

    def with_options(
        self: _Self,
        *,
        timeout: float = _NOT_GIVEN,
        connect_timeout: float = _NOT_GIVEN,
        max_retries: int = _NOT_GIVEN,
        base_url: str = _NOT_GIVEN,
        default_headers: Mapping[str, str] = _NOT_GIVEN,
        max_bytes: int = _NOT_GIVEN,
        max_side: int | None = _NOT_GIVEN,
    ) -> _Self:
        """A client with some options changed, sharing this one's connection pool.

        ``client.with_options(timeout=5, max_retries=0).detect_faces(img)`` changes them for
        one call; closing the copy leaves the pool open.
        """
        given: dict[str, Any] = {
            "timeout": timeout, "connect_timeout": connect_timeout, "max_retries": max_retries,
            "base_url": base_url, "default_headers": default_headers, "max_bytes": max_bytes,
            "max_side": max_side,
        }  # fmt: skip
        changes = {k: v for k, v in given.items() if v is not _NOT_GIVEN}
        image_changes = {k: changes.pop(k) for k in ("max_bytes", "max_side") if k in changes}
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone._settings = self._settings.replace(**changes)
        clone._max_bytes = image_changes.get("max_bytes", self._max_bytes)
        clone._max_side = image_changes.get("max_side", self._max_side)
        clone._owns_http = False  # the parent's pool: closing the copy must not close it
        return clone

    def _prepare(
        self, image: ImageSource | PreparedImage, channel_order: ChannelOrder
    ) -> PreparedImage:
        if isinstance(image, PreparedImage):
            return image
        return prepare_image(
            image, max_bytes=self._max_bytes, max_side=self._max_side, channel_order=channel_order
        )

    def _httpx_timeout(self) -> httpx.Timeout:
        s = self._settings
        return httpx.Timeout(s.timeout, connect=min(s.connect_timeout, s.timeout))


def _transport_error(exc: httpx.TransportError, request: Request) -> APIConnectionError:
    # httpx's text can name the host and port, never the headers: safe to keep.
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(
            f"{request.url} did not answer in time ({type(exc).__name__}); raise timeout= "
            "or check the network",
            url=request.url,
        )
    return APIConnectionError(
        f"could not reach {request.url}: {exc or type(exc).__name__}; check the network and "
        "base_url",
        url=request.url,
    )


def _deadline_error(request: Request, timeout: float) -> APITimeoutError:
    return APITimeoutError(
        f"{request.url} did not finish answering within {timeout:g} s; raise timeout= or check "
        "the network",
        url=request.url,
    )


def _settle(outcome: protocol.Outcome) -> protocol.Result:
    if isinstance(outcome, Done):
        return outcome.result
    assert isinstance(outcome, Fail)
    raise outcome.error


class Client(_ClientBase):
    """Synchronous CFR client.

    Args:
        client_id: the application's Client ID; default ``NCP_CFR_CLIENT_ID``.
        client_secret: the application's Client Secret; default ``NCP_CFR_CLIENT_SECRET``.
        base_url: the service root; default ``NCP_CFR_BASE_URL``, else NCP's API gateway.
        timeout: seconds one attempt may take, from connecting to the last byte (default 30).
            ``None`` is refused: a request must never hang forever.
        connect_timeout: seconds to establish the connection (default 5).
        max_retries: extra attempts after a transient failure (default 2).
        default_headers: extra headers for every request.
        max_bytes: the upload size limit used when preparing images (default 2,000,000).
        max_side: the longest side of an upload (see :func:`ncp_cfr.prepare_image`).
        http_client: your own ``httpx.Client`` (proxies, transports, event hooks); it is not closed
            by :meth:`close`.

    Use it as a context manager, or call :meth:`close`, to release the connection pool.
    """

    def __init__(
        self,
        client_id: str | None = None,
        client_secret: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = protocol.DEFAULT_TIMEOUT,
        connect_timeout: float = protocol.DEFAULT_CONNECT_TIMEOUT,
        max_retries: int = protocol.DEFAULT_MAX_RETRIES,
        default_headers: Mapping[str, str] | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_side: int | None = DEFAULT_MAX_SIDE,
        http_client: httpx.Client | None = None,
    ) -> None:
        self._configure(
            client_id, client_secret, base_url, timeout, connect_timeout, max_retries,
            default_headers, max_bytes, max_side,
        )  # fmt: skip
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.Client()

    def detect_faces(
        self, image: ImageSource | PreparedImage, *, channel_order: ChannelOrder = "rgb"
    ) -> FaceResult:
        """Find faces: box, five landmarks, gender, age, emotion and pose of each.

        Args:
            image: a path, bytes, a binary file object, a ``PIL.Image``, a NumPy-style array
                (``channel_order="bgr"`` for OpenCV) or a :class:`~ncp_cfr.PreparedImage`.
            channel_order: the channel order of an array ``image``.

        Returns:
            The faces, with coordinates in the pixels of ``image`` as you see it.

        Raises:
            ImageError: the image could not be prepared (nothing was sent).
            APIError: the service refused the request (a subclass says why).
            APIConnectionError: no answer (``APITimeoutError`` if out of time).
        """
        result = self._call(Endpoint.FACE, image, channel_order)
        assert isinstance(result, FaceResult)
        return result

    def recognize_celebrities(
        self, image: ImageSource | PreparedImage, *, channel_order: ChannelOrder = "rgb"
    ) -> CelebrityResult:
        """Name the most similar celebrity for each face (no positions: see ``analyze``).

        Takes the same ``image`` kinds and raises the same errors as :meth:`detect_faces`.
        """
        result = self._call(Endpoint.CELEBRITY, image, channel_order)
        assert isinstance(result, CelebrityResult)
        return result

    def _call(
        self, endpoint: Endpoint, image: ImageSource | PreparedImage, channel_order: ChannelOrder
    ) -> protocol.Result:
        call = Call(self._settings, endpoint, self._prepare(image, channel_order))
        while True:
            request = call.request()
            try:
                status, headers, body = self._send(request)
            except APIConnectionError as error:
                outcome = call.on_transport_error(error)
            else:
                outcome = call.on_response(status, headers, body)
            if isinstance(outcome, protocol.Retry):
                time.sleep(outcome.delay)
                continue
            return _settle(outcome)

    def _send(self, request: Request) -> tuple[int, httpx.Headers, bytes]:
        deadline = time.monotonic() + self._settings.timeout
        try:
            with self._http.stream(
                request.method,
                request.url,
                headers=request.headers,
                files=request.files,
                timeout=self._httpx_timeout(),
            ) as response:
                chunks = []
                for chunk in response.iter_bytes():
                    chunks.append(chunk)
                    if time.monotonic() > deadline:
                        raise _deadline_error(request, self._settings.timeout)
                return response.status_code, response.headers, b"".join(chunks)
        except httpx.TransportError as exc:
            raise _transport_error(exc, request) from None

    def close(self) -> None:
        """Release the connection pool (not a pool you passed as ``http_client``)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClient(_ClientBase):
    """Asynchronous CFR client: the same methods as :class:`Client`, awaitable.

    Takes the same arguments as :class:`Client`, with ``http_client`` an ``httpx.AsyncClient``.
    Image preparation runs in a worker thread so a large photo does not block the event loop.
    Use ``async with``, or ``await client.aclose()``.
    """

    def __init__(
        self,
        client_id: str | None = None,
        client_secret: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = protocol.DEFAULT_TIMEOUT,
        connect_timeout: float = protocol.DEFAULT_CONNECT_TIMEOUT,
        max_retries: int = protocol.DEFAULT_MAX_RETRIES,
        default_headers: Mapping[str, str] | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_side: int | None = DEFAULT_MAX_SIDE,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._configure(
            client_id, client_secret, base_url, timeout, connect_timeout, max_retries,
            default_headers, max_bytes, max_side,
        )  # fmt: skip
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.AsyncClient()

    async def detect_faces(
        self, image: ImageSource | PreparedImage, *, channel_order: ChannelOrder = "rgb"
    ) -> FaceResult:
        """Find faces; see :meth:`Client.detect_faces`."""
        result = await self._call(Endpoint.FACE, image, channel_order)
        assert isinstance(result, FaceResult)
        return result

    async def recognize_celebrities(
        self, image: ImageSource | PreparedImage, *, channel_order: ChannelOrder = "rgb"
    ) -> CelebrityResult:
        """Name the most similar celebrity per face; see :meth:`Client.recognize_celebrities`."""
        result = await self._call(Endpoint.CELEBRITY, image, channel_order)
        assert isinstance(result, CelebrityResult)
        return result

    async def _call(
        self, endpoint: Endpoint, image: ImageSource | PreparedImage, channel_order: ChannelOrder
    ) -> protocol.Result:
        prepared = await anyio.to_thread.run_sync(self._prepare, image, channel_order)
        call = Call(self._settings, endpoint, prepared)
        while True:
            request = call.request()
            try:
                status, headers, body = await self._send(request)
            except APIConnectionError as error:
                outcome = call.on_transport_error(error)
            else:
                outcome = call.on_response(status, headers, body)
            if isinstance(outcome, protocol.Retry):
                await anyio.sleep(outcome.delay)
                continue
            return _settle(outcome)

    async def _send(self, request: Request) -> tuple[int, httpx.Headers, bytes]:
        deadline = time.monotonic() + self._settings.timeout
        try:
            async with self._http.stream(
                request.method,
                request.url,
                headers=request.headers,
                files=request.files,
                timeout=self._httpx_timeout(),
            ) as response:
                chunks = []
                async for chunk in response.aiter_bytes():
                    chunks.append(chunk)
                    if time.monotonic() > deadline:
                        raise _deadline_error(request, self._settings.timeout)
                return response.status_code, response.headers, b"".join(chunks)
        except httpx.TransportError as exc:
            raise _transport_error(exc, request) from None

    async def aclose(self) -> None:
        """Release the connection pool (not a pool you passed as ``http_client``)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
