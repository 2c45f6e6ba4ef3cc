"""The two clients: thin I/O shells around [`ncp_cfr.protocol.Call`][ncp_cfr.protocol.Call].

[`Client`][ncp_cfr.Client] sends with ``httpx.Client`` and sleeps with ``time.sleep``;
[`AsyncClient`][ncp_cfr.AsyncClient] sends with ``httpx.AsyncClient`` and sleeps with
``anyio.sleep``. Everything else (what to send, what an answer means, whether to retry) is decided
once, in [`ncp_cfr.protocol`][ncp_cfr.protocol].
"""

from __future__ import annotations

import importlib.util
import io
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from types import TracebackType
from typing import Any, Literal, NoReturn, TypeVar, Union

import anyio
import httpx
from PIL import Image

from ncp_cfr import protocol
from ncp_cfr.errors import (
    APIConnectionError,
    CFRError,
    ImageError,
    InvalidArgumentError,
    ServerError,
)
from ncp_cfr.images import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_SIDE,
    ImageSource,
    PreparedImage,
    Transform,
    open_image,
    prepare_image,
    rereadable,
)
from ncp_cfr.models import Analysis, CelebrityResult, FaceResult, Lookalike
from ncp_cfr.pipelines import (
    DEFAULT_MARGIN,
    DEFAULT_MATCH_CONFIDENCE,
    DEFAULT_MIN_FACE,
    DEFAULT_SCALES,
    Batch,
    BatchItem,
    Job,
    Outcome,
    Pending,
    Plan,
    RateLimiter,
    advance,
    analyze_plan,
    call_plan,
    lookalike_plan,
)
from ncp_cfr.protocol import Call, Done, Endpoint, Fail, Request, Settings

__all__ = ["AsyncClient", "BatchItem", "ChannelOrder", "Client", "Progress"]

ChannelOrder = Literal["rgb", "bgr"]
#: ``progress=`` of the ``*_many`` methods: a tqdm bar (``True``), none, or ``hook(done, total)``.
Progress = Union[bool, Callable[[int, int], object], None]
_Self = TypeVar("_Self", bound="_ClientBase")
_T = TypeVar("_T")
_NOT_GIVEN: Any = object()
#: Crop calls of one ``analyze`` / sizes of one ``find_lookalike`` sent at the same time.
_DEFAULT_FAN_OUT = 4
#: Inputs of a batch in progress at once, per concurrent call: enough to prepare the next images
#: while calls are out, few enough that a long batch does not hold every image in memory.
_WINDOW_PER_SLOT = 2


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

    # -- plans: the pure pipelines, fed with this client's image options ---------------------------
    #
    # Each is a generator, so nothing is read or encoded until the plan is first advanced: the
    # async shell does that in a worker thread, and a bad input fails its own batch item.

    def _call_plan(
        self, endpoint: Endpoint, image: ImageSource | PreparedImage, channel_order: ChannelOrder
    ) -> Plan[protocol.Result]:
        return (yield from call_plan(endpoint, self._prepare(image, channel_order)))

    def _face_plan(
        self, image: ImageSource | PreparedImage, channel_order: ChannelOrder
    ) -> Plan[FaceResult]:
        result = yield from self._call_plan(Endpoint.FACE, image, channel_order)
        assert isinstance(result, FaceResult)
        return result

    def _celebrity_plan(
        self, image: ImageSource | PreparedImage, channel_order: ChannelOrder
    ) -> Plan[CelebrityResult]:
        result = yield from self._call_plan(Endpoint.CELEBRITY, image, channel_order)
        assert isinstance(result, CelebrityResult)
        return result

    def _analyze_plan(
        self,
        image: ImageSource | PreparedImage,
        channel_order: ChannelOrder,
        margin: float,
        min_face: int,
        min_confidence: float,
    ) -> Plan[Analysis]:
        # analyze reads its input twice (the upload, the pixels to crop): a stream only once.
        if not isinstance(image, PreparedImage):
            image = rereadable(image)
        prepared = self._prepare(image, channel_order)
        pixels, transform = _pixels(image, prepared, channel_order)
        return (
            yield from analyze_plan(
                pixels, prepared, margin=margin, min_face=min_face,
                min_confidence=min_confidence, max_bytes=self._max_bytes,
                max_side=self._max_side, pixels=transform,
            )
        )  # fmt: skip

    def _lookalike_plan(
        self,
        image: ImageSource | PreparedImage,
        channel_order: ChannelOrder,
        scales: Sequence[float],
        min_confidence: float,
        match_confidence: float = DEFAULT_MATCH_CONFIDENCE,
    ) -> Plan[Lookalike]:
        if isinstance(image, PreparedImage):
            pixels = _decode_upload(image)
        else:
            pixels = open_image(image, channel_order=channel_order)
        return (
            yield from lookalike_plan(
                pixels,
                scales=scales,
                min_confidence=min_confidence,
                match_confidence=match_confidence,
                max_bytes=self._max_bytes,
            )
        )


def _decode_upload(prepared: PreparedImage) -> Image.Image:
    try:
        with Image.open(io.BytesIO(prepared.data)) as img:
            img.load()
            pixels: Image.Image = img.copy()
            return pixels
    except Exception as exc:  # any decoder failure: the bytes are not an image we can crop
        raise ImageError(f"the PreparedImage's data cannot be decoded: {exc}") from None


def _pixels(
    image: ImageSource | PreparedImage, prepared: PreparedImage, channel_order: ChannelOrder
) -> tuple[Image.Image, Transform]:
    """The pixels to crop faces from, and the map from the caller's pixels onto them."""
    if isinstance(image, PreparedImage):
        # Only the upload exists: crop from it, through the upload's own transform.
        return _decode_upload(image), image.transform
    return open_image(image, channel_order=channel_order), Transform.IDENTITY


def _as_given(source: object) -> object:
    return str(source) if isinstance(source, os.PathLike) else source


def _check_concurrency(concurrency: int) -> None:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidArgumentError(f"concurrency must be a whole number >= 1, got {concurrency!r}")


def _progress_hook(
    progress: Progress, total: int
) -> tuple[Callable[[int, int], object], Callable[[], object]]:
    """``(update(done, total), close())`` for a ``progress=`` argument."""
    if progress is None or progress is False:
        return (lambda done, total: None), (lambda: None)
    if progress is True:
        try:
            # tqdm.auto picks notebook widgets inside Jupyter, and without ipywidgets it warns
            # "IProgress not found" (or, in older tqdm, fails): the terminal bar works anywhere.
            if importlib.util.find_spec("ipywidgets") is not None:
                from tqdm.auto import tqdm  # lazy: an optional extra, and slow to import
            else:
                from tqdm.std import tqdm
        except ImportError as exc:
            raise CFRError(
                'progress=True needs tqdm: pip install "clova-face[progress]", or pass a '
                "callable(done, total)"
            ) from exc
        bar = tqdm(total=total, unit="image")

        def update(done: int, total: int) -> None:
            bar.update(done - bar.n)

        return update, bar.close
    if callable(progress):
        return progress, lambda: None
    raise InvalidArgumentError(
        f"progress is True, False or a callable(done, total), got {progress!r}"
    )


class _Stopped(Exception):
    """A batch was abandoned (an interrupt or a failure elsewhere): send nothing more."""


#: What an attempt's I/O may raise that is about the network or the answer, never a bug of
#: ours: httpx's errors (h11 and httpcore protocol errors surface as these), stream misuse after
#: an aborted read, and the OS's socket errors from custom transports.
_IO_ERRORS = (httpx.HTTPError, httpx.StreamError, OSError)


def _transport_error(
    exc: BaseException, request: Request, timeout: float, status: int | None = None
) -> APIConnectionError | ServerError:
    """The CFRError for an exception of an attempt's I/O (``status``: the answer's, if any)."""
    # httpx's text can name the host and port, never the headers: safe to keep.
    if isinstance(exc, (httpx.TimeoutException, TimeoutError)):
        return protocol.attempt_timeout_error(request.url, timeout, type(exc).__name__)
    if isinstance(exc, httpx.DecodingError):
        return ServerError(
            f"the answer from {request.url} could not be decoded ({exc})",
            status_code=status if status is not None else 0,
        )
    if status is not None:
        return APIConnectionError(
            f"the answer from {request.url} broke off: {exc or type(exc).__name__}",
            url=request.url,
        )
    return APIConnectionError(
        f"could not reach {request.url}: {exc or type(exc).__name__}; check the network and "
        "base_url",
        url=request.url,
    )


_Answer = tuple[int, httpx.Headers, bytes]


def _answer_reader(response: httpx.Response, url: str) -> tuple[protocol.AnswerReader, bool]:
    """A reader for ``response``'s body, and whether the raw stream is still to be read."""
    # A transport answering from memory (httpx.MockTransport, the emulator's in-process one)
    # hands over a body httpx has already read and decoded: only the cap is left to check.
    done = response.is_stream_consumed
    reader = protocol.AnswerReader(response.status_code, response.headers, url=url, decoded=done)
    if done:
        reader.feed(response.content)
    return reader, not done


_CONNECTED = ("connection.connect_tcp.complete", "connection.start_tls.complete")


class _SyncAttempt:
    """One HTTP exchange of a [Client][ncp_cfr.Client], run in a helper thread.

    httpx's timeouts bound each read, so a server that sends one byte at a time can hold a
    read forever. The caller waits for this thread at most ``timeout`` and then gives up; to
    free the thread too, it shuts the attempt's socket down, which ends a blocked read at once.
    The socket is known from httpx's ``trace`` extension (new connections) or the answer's
    ``network_stream`` (any connection, once the headers are in).
    """

    def __init__(self, http: httpx.Client, request: Request, timeout: httpx.Timeout) -> None:
        self._http = http
        self._request = request
        self._timeout = timeout
        self._stream: Any = None
        self._abandoned = False
        self.status: int | None = None
        self.answer: _Answer | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        request = self._request
        try:
            with self._http.stream(
                request.method, request.url, headers=request.headers, files=request.files,
                timeout=self._timeout, extensions={"trace": self._trace},
            ) as response:  # fmt: skip
                self._stream = response.extensions.get("network_stream", self._stream)
                self.status = response.status_code
                reader, streaming = _answer_reader(response, request.url)
                for chunk in response.iter_raw() if streaming else ():
                    if self._abandoned:
                        return
                    reader.feed(chunk)
                self.answer = (response.status_code, response.headers, reader.body())
        except BaseException as exc:  # handed to the waiting caller, which maps it
            self.error = exc
        finally:
            self.done.set()

    def _trace(self, event: str, info: Mapping[str, Any]) -> None:
        if event in _CONNECTED:
            self._stream = info.get("return_value")

    def abandon(self) -> None:
        """Stop the exchange: the caller has given up on it."""
        self._abandoned = True
        stream = self._stream
        if self.done.is_set() or stream is None:
            return
        try:
            sock = stream.get_extra_info("socket")
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
        except Exception:  # best effort: the read also ends at httpx's own read timeout
            pass


def _pause(seconds: float, stop: threading.Event | None) -> None:
    """Sleep; in a batch, wake up and give up as soon as the batch is abandoned."""
    if stop is None:
        if seconds > 0:
            time.sleep(seconds)
    elif stop.wait(seconds) if seconds > 0 else stop.is_set():
        raise _Stopped


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
        max_side: the longest side of an upload (see
            [`ncp_cfr.prepare_image`][ncp_cfr.prepare_image]).
        http_client: your own ``httpx.Client`` (proxies, transports, event hooks); it is not closed
            by [`close`][ncp_cfr.Client.close].

    Use it as a context manager, or call [`close`][ncp_cfr.Client.close], to release the connection
    pool.
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
                (``channel_order="bgr"`` for OpenCV) or a [`PreparedImage`][ncp_cfr.PreparedImage].
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

        Takes the same ``image`` kinds and raises the same errors as
        [`detect_faces`][ncp_cfr.Client.detect_faces].
        """
        result = self._call(Endpoint.CELEBRITY, image, channel_order)
        assert isinstance(result, CelebrityResult)
        return result

    def analyze(
        self,
        image: ImageSource | PreparedImage,
        *,
        margin: float = DEFAULT_MARGIN,
        min_face: int = DEFAULT_MIN_FACE,
        min_confidence: float = 0.0,
        concurrency: int = _DEFAULT_FAN_OUT,
        channel_order: ChannelOrder = "rgb",
    ) -> Analysis:
        """Faces with their attributes, and each face's own lookalike.

        The celebrity endpoint does not say which face a name belongs to, so this detects the
        faces first, then sends a crop around each face to the celebrity endpoint (up to
        ``concurrency`` at a time) and gives each face the name found in its own crop.

        Args:
            image: any image [`detect_faces`][ncp_cfr.Client.detect_faces] takes. Cropping needs the
                caller's pixels; for a [`PreparedImage`][ncp_cfr.PreparedImage] the crops come from
                its (smaller) upload.
            margin: context kept around each face box, as a fraction of its width/height per
                side (default 0.35), clipped to the image.
            min_face: faces narrower or lower than this many pixels (of ``image``) are not sent:
                their ``lookalike`` stays ``None`` and no call is made (default 32).
            min_confidence: a name under this confidence is dropped (``lookalike=None``).
            concurrency: crop calls in flight at once.
            channel_order: the channel order of an array ``image``.

        Returns:
            The [`Analysis`][ncp_cfr.Analysis], in the pixels of ``image`` as you see it. A crop
            call that failed leaves that face with ``lookalike=None`` and ``lookalike_error`` set;
            the other faces keep theirs.

        Raises:
            ImageError: the image could not be prepared (nothing was sent).
            APIError: the face call failed (a subclass says why).
            APIConnectionError: the face call got no answer.
        """
        _check_concurrency(concurrency)
        plan = self._analyze_plan(image, channel_order, margin, min_face, min_confidence)
        with ThreadPoolExecutor(concurrency, thread_name_prefix="ncp_cfr") as pool:
            return _SyncJobs(self, pool, concurrency).drive(plan)

    def find_lookalike(
        self,
        image: ImageSource | PreparedImage,
        *,
        scales: Sequence[float] = DEFAULT_SCALES,
        min_confidence: float = 0.0,
        match_confidence: float = DEFAULT_MATCH_CONFIDENCE,
        concurrency: int = _DEFAULT_FAN_OUT,
        channel_order: ChannelOrder = "rgb",
    ) -> Lookalike:
        """Ask the celebrity endpoint at several upload sizes and rank the names by votes.

        The name the service gives a face changes with the upload's resolution; one call is a
        sample, several are a vote. Each size votes for its most confident name.

        Args:
            image: any image [`detect_faces`][ncp_cfr.Client.detect_faces] takes; best with one face
                (crop group photos first, or use [`analyze`][ncp_cfr.Client.analyze]).
            scales: longest sides in pixels (50 to 2048), or fractions of the image's
                longest side (values in (0, 1]). Sizes above the image's own are capped to it
                and repeats merged, so a small image gets fewer calls; a pixel size above 2048
                (`ncp_cfr.pipelines.MAX_SCALE`: larger uploads would not fit the service's 2 MB
                at the size asked) raises `InvalidArgumentError`, while a fraction of a larger
                image is capped at 2048. Default: 320, 480, 640, 800, 1024, 1280, 1600 and
                2048 px.
            min_confidence: a size whose best name is under this votes for nobody.
            match_confidence: the mean confidence the leading name needs to be the match
                (`best`); see [`Lookalike`][ncp_cfr.Lookalike] for the whole rule.
            concurrency: calls in flight at once.
            channel_order: the channel order of an array ``image``.

        Returns:
            The [`Lookalike`][ncp_cfr.Lookalike]: ``best`` (the match, or `None` when there
            is no clear match), ranked ``candidates``, ``stable`` and what each size said
            (``per_scale``). A size that failed is recorded there.

        Raises:
            ImageError: the image could not be read.
            CFRError: every size failed (the last size's error), or a bad argument.
        """
        _check_concurrency(concurrency)
        plan = self._lookalike_plan(image, channel_order, scales, min_confidence, match_confidence)
        with ThreadPoolExecutor(concurrency, thread_name_prefix="ncp_cfr") as pool:
            return _SyncJobs(self, pool, concurrency).drive(plan)

    def detect_faces_many(
        self,
        images: Iterable[ImageSource | PreparedImage],
        *,
        concurrency: int = 8,
        rate_limit: float | None = None,
        progress: Progress = False,
        channel_order: ChannelOrder = "rgb",
    ) -> list[BatchItem[FaceResult]]:
        """[`detect_faces`][ncp_cfr.Client.detect_faces] for many images, concurrently; one failure
        never stops the rest.

        Args:
            images: the images (any kind [`detect_faces`][ncp_cfr.Client.detect_faces] takes).
            concurrency: calls in flight at once (worker threads).
            rate_limit: at most this many requests per second over the whole batch, retries
                included (``None``: no client-side limit).
            progress: ``True`` for a tqdm bar (needs the ``progress`` extra), or a
                ``callable(done, total)`` called in this thread after each image.
            channel_order: the channel order of array images.

        Returns:
            One [`BatchItem`][ncp_cfr.BatchItem] per image, in input order: ``.result``, or
            ``.error`` (a [`CFRError`][ncp_cfr.CFRError]; an unreadable input is an ``ImageError``).
            The list is a [`Batch`][ncp_cfr.pipelines.Batch], a `list` that Jupyter shows as
            a table.

        Raises:
            CFRError: a bad argument. Exceptions other than ``CFRError`` (and
                ``KeyboardInterrupt``) stop the batch: nothing new is sent, queued images are
                dropped, and the exception propagates.
        """
        return self._many(
            images, lambda image: self._face_plan(image, channel_order),
            concurrency=concurrency, rate_limit=rate_limit, progress=progress,
        )  # fmt: skip

    def recognize_celebrities_many(
        self,
        images: Iterable[ImageSource | PreparedImage],
        *,
        concurrency: int = 8,
        rate_limit: float | None = None,
        progress: Progress = False,
        channel_order: ChannelOrder = "rgb",
    ) -> list[BatchItem[CelebrityResult]]:
        """[`recognize_celebrities`][ncp_cfr.Client.recognize_celebrities] for many images; see
        [`detect_faces_many`][ncp_cfr.Client.detect_faces_many].
        """
        return self._many(
            images, lambda image: self._celebrity_plan(image, channel_order),
            concurrency=concurrency, rate_limit=rate_limit, progress=progress,
        )  # fmt: skip

    def analyze_many(
        self,
        images: Iterable[ImageSource | PreparedImage],
        *,
        margin: float = DEFAULT_MARGIN,
        min_face: int = DEFAULT_MIN_FACE,
        min_confidence: float = 0.0,
        concurrency: int = 8,
        rate_limit: float | None = None,
        progress: Progress = False,
        channel_order: ChannelOrder = "rgb",
    ) -> list[BatchItem[Analysis]]:
        """[`analyze`][ncp_cfr.Client.analyze] for many images; see
        [`detect_faces_many`][ncp_cfr.Client.detect_faces_many].

        ``concurrency`` and ``rate_limit`` count every call: the face calls and the crop calls
        of all images share them. ``margin``, ``min_face`` and ``min_confidence`` are
        [`analyze`][ncp_cfr.Client.analyze]'s.
        """

        def plan(image: ImageSource | PreparedImage) -> Plan[Analysis]:
            return self._analyze_plan(image, channel_order, margin, min_face, min_confidence)

        return self._many(
            images, plan, concurrency=concurrency, rate_limit=rate_limit, progress=progress
        )

    def _many(
        self,
        images: Iterable[ImageSource | PreparedImage],
        make_plan: Callable[[Any], Plan[_T]],
        *,
        concurrency: int,
        rate_limit: float | None,
        progress: Progress,
    ) -> list[BatchItem[_T]]:
        _check_concurrency(concurrency)
        sources = list(images)
        rate = RateLimiter(rate_limit) if rate_limit is not None else None
        update, close = _progress_hook(progress, len(sources))
        stop = threading.Event()
        # Inputs are prepared by item workers; a plan's fan-out (analyze crops) goes to the call
        # pool; the jobs' semaphore bounds the HTTP calls of both together.
        items = ThreadPoolExecutor(
            max(1, min(_WINDOW_PER_SLOT * concurrency, len(sources))),
            thread_name_prefix="ncp_cfr-item",
        )
        calls = ThreadPoolExecutor(concurrency, thread_name_prefix="ncp_cfr-call")
        jobs = _SyncJobs(self, calls, concurrency, rate, stop)

        def run(index: int, source: Any) -> BatchItem[_T]:
            if stop.is_set():
                raise _Stopped
            try:
                return BatchItem(index, _as_given(source), result=jobs.drive(make_plan(source)))
            except CFRError as error:
                return BatchItem(index, _as_given(source), error=error)

        results: list[BatchItem[_T] | None] = [None] * len(sources)
        try:
            futures = {items.submit(run, i, source): i for i, source in enumerate(sources)}
            for done, future in enumerate(as_completed(futures), 1):
                results[futures[future]] = future.result()
                update(done, len(sources))
        except BaseException:
            # Ctrl-C or a bug: send nothing new, drop what is queued, do not wait for it.
            stop.set()
            items.shutdown(wait=False, cancel_futures=True)
            calls.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            close()
        items.shutdown()
        calls.shutdown()
        return Batch(item for item in results if item is not None)

    def _call(
        self, endpoint: Endpoint, image: ImageSource | PreparedImage, channel_order: ChannelOrder
    ) -> protocol.Result:
        return self._execute(endpoint, self._prepare(image, channel_order))

    def _execute(
        self,
        endpoint: Endpoint,
        prepared: PreparedImage,
        rate: RateLimiter | None = None,
        stop: threading.Event | None = None,
    ) -> protocol.Result:
        call = Call(self._settings, endpoint, prepared)
        while True:
            # Every attempt, retries included, is a request the rate limit must count.
            if rate is not None:
                _pause(rate.reserve(time.monotonic()), stop)
            elif stop is not None and stop.is_set():
                raise _Stopped
            request = call.request()
            try:
                status, headers, body = self._send(request)
            except (APIConnectionError, ServerError) as error:
                outcome = call.on_transport_error(error)
            else:
                outcome = call.on_response(status, headers, body)
            if isinstance(outcome, protocol.Retry):
                _pause(outcome.delay, stop)
                continue
            return _settle(outcome)

    def _send(self, request: Request) -> _Answer:
        """One attempt, over within ``timeout`` whatever the server does."""
        timeout = self._settings.timeout
        attempt = _SyncAttempt(self._http, request, self._httpx_timeout())
        worker = threading.Thread(target=attempt.run, name="ncp_cfr-attempt", daemon=True)
        worker.start()
        try:
            finished = attempt.done.wait(timeout)
        except BaseException:  # an interrupt: do not leave the exchange running
            attempt.abandon()
            raise
        if not finished:
            attempt.abandon()
            raise protocol.attempt_timeout_error(request.url, timeout)
        if attempt.error is not None:
            error = attempt.error
            if isinstance(error, (APIConnectionError, ServerError)):
                raise error
            if isinstance(error, _IO_ERRORS):
                raise _transport_error(error, request, timeout, attempt.status) from None
            raise error
        assert attempt.answer is not None
        return attempt.answer

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
    """Asynchronous CFR client: the same methods as [`Client`][ncp_cfr.Client], awaitable.

    Takes the same arguments as [`Client`][ncp_cfr.Client], with ``http_client`` an
    ``httpx.AsyncClient``. Image preparation runs in a worker thread so a large photo does not block
    the event loop. Use ``async with``, or ``await client.aclose()``.
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
        """Find faces; see [`Client.detect_faces`][ncp_cfr.Client.detect_faces]."""
        result = await self._call(Endpoint.FACE, image, channel_order)
        assert isinstance(result, FaceResult)
        return result

    async def recognize_celebrities(
        self, image: ImageSource | PreparedImage, *, channel_order: ChannelOrder = "rgb"
    ) -> CelebrityResult:
        """Name the most similar celebrity per face; see
        [`Client.recognize_celebrities`][ncp_cfr.Client.recognize_celebrities].
        """
        result = await self._call(Endpoint.CELEBRITY, image, channel_order)
        assert isinstance(result, CelebrityResult)
        return result

    async def analyze(
        self,
        image: ImageSource | PreparedImage,
        *,
        margin: float = DEFAULT_MARGIN,
        min_face: int = DEFAULT_MIN_FACE,
        min_confidence: float = 0.0,
        concurrency: int = _DEFAULT_FAN_OUT,
        channel_order: ChannelOrder = "rgb",
    ) -> Analysis:
        """Faces with their attributes and each face's own lookalike; see
        [`Client.analyze`][ncp_cfr.Client.analyze].

        Cropping and encoding run in worker threads, the calls in a task group.
        """
        _check_concurrency(concurrency)
        plan = self._analyze_plan(image, channel_order, margin, min_face, min_confidence)
        return await _AsyncJobs(self, concurrency).drive(plan)

    async def find_lookalike(
        self,
        image: ImageSource | PreparedImage,
        *,
        scales: Sequence[float] = DEFAULT_SCALES,
        min_confidence: float = 0.0,
        match_confidence: float = DEFAULT_MATCH_CONFIDENCE,
        concurrency: int = _DEFAULT_FAN_OUT,
        channel_order: ChannelOrder = "rgb",
    ) -> Lookalike:
        """Names voted across upload sizes; see
        [`Client.find_lookalike`][ncp_cfr.Client.find_lookalike].
        """
        _check_concurrency(concurrency)
        plan = self._lookalike_plan(image, channel_order, scales, min_confidence, match_confidence)
        return await _AsyncJobs(self, concurrency).drive(plan)

    async def detect_faces_many(
        self,
        images: Iterable[ImageSource | PreparedImage],
        *,
        concurrency: int = 8,
        rate_limit: float | None = None,
        progress: Progress = False,
        channel_order: ChannelOrder = "rgb",
    ) -> list[BatchItem[FaceResult]]:
        """[`detect_faces`][ncp_cfr.AsyncClient.detect_faces] for many images; see
        [`Client.detect_faces_many`][ncp_cfr.Client.detect_faces_many].

        The calls run in one task group: cancelling the awaiting task cancels every call in
        flight and sends nothing more. ``progress`` callables run in the event loop.
        """
        return await self._many(
            images, lambda image: self._face_plan(image, channel_order),
            concurrency=concurrency, rate_limit=rate_limit, progress=progress, light_finish=True,
        )  # fmt: skip

    async def recognize_celebrities_many(
        self,
        images: Iterable[ImageSource | PreparedImage],
        *,
        concurrency: int = 8,
        rate_limit: float | None = None,
        progress: Progress = False,
        channel_order: ChannelOrder = "rgb",
    ) -> list[BatchItem[CelebrityResult]]:
        """[`recognize_celebrities`][ncp_cfr.AsyncClient.recognize_celebrities] for many images; see
        [`Client.detect_faces_many`][ncp_cfr.Client.detect_faces_many].
        """
        return await self._many(
            images, lambda image: self._celebrity_plan(image, channel_order),
            concurrency=concurrency, rate_limit=rate_limit, progress=progress, light_finish=True,
        )  # fmt: skip

    async def analyze_many(
        self,
        images: Iterable[ImageSource | PreparedImage],
        *,
        margin: float = DEFAULT_MARGIN,
        min_face: int = DEFAULT_MIN_FACE,
        min_confidence: float = 0.0,
        concurrency: int = 8,
        rate_limit: float | None = None,
        progress: Progress = False,
        channel_order: ChannelOrder = "rgb",
    ) -> list[BatchItem[Analysis]]:
        """[`analyze`][ncp_cfr.AsyncClient.analyze] for many images; see
        [`Client.analyze_many`][ncp_cfr.Client.analyze_many].
        """

        def plan(image: ImageSource | PreparedImage) -> Plan[Analysis]:
            return self._analyze_plan(image, channel_order, margin, min_face, min_confidence)

        return await self._many(
            images, plan, concurrency=concurrency, rate_limit=rate_limit, progress=progress
        )

    async def _many(
        self,
        images: Iterable[ImageSource | PreparedImage],
        make_plan: Callable[[Any], Plan[_T]],
        *,
        concurrency: int,
        rate_limit: float | None,
        progress: Progress,
        light_finish: bool = False,
    ) -> list[BatchItem[_T]]:
        _check_concurrency(concurrency)
        sources = list(images)
        rate = RateLimiter(rate_limit) if rate_limit is not None else None
        update, close = _progress_hook(progress, len(sources))
        jobs = _AsyncJobs(self, concurrency, rate, light_finish=light_finish)
        # Bounds the images read and held at once; the jobs' limiter bounds the calls.
        window = anyio.CapacityLimiter(_WINDOW_PER_SLOT * concurrency)
        results: list[BatchItem[_T] | None] = [None] * len(sources)
        done = 0

        hook_failed = False

        async def run(index: int, source: Any) -> None:
            nonlocal done, hook_failed
            async with window:
                try:
                    item = BatchItem(
                        index, _as_given(source), result=await jobs.drive(make_plan(source))
                    )
                except CFRError as error:
                    item = BatchItem(index, _as_given(source), error=error)
            results[index] = item
            done += 1
            if not hook_failed:  # a failing hook stops the batch once, not once per task
                try:
                    update(done, len(sources))
                except BaseException:
                    hook_failed = True
                    raise

        try:
            async with anyio.create_task_group() as group:
                for index, source in enumerate(sources):
                    group.start_soon(run, index, source)
        except Exception as failed:
            _reraise_single(failed)
        finally:
            close()
        return Batch(item for item in results if item is not None)

    async def _call(
        self, endpoint: Endpoint, image: ImageSource | PreparedImage, channel_order: ChannelOrder
    ) -> protocol.Result:
        prepared = await anyio.to_thread.run_sync(self._prepare, image, channel_order)
        return await self._execute(endpoint, prepared)

    async def _execute(
        self, endpoint: Endpoint, prepared: PreparedImage, rate: RateLimiter | None = None
    ) -> protocol.Result:
        call = Call(self._settings, endpoint, prepared)
        while True:
            # Every attempt, retries included, is a request the rate limit must count.
            if rate is not None:
                delay = rate.reserve(time.monotonic())
                if delay > 0:
                    await anyio.sleep(delay)
            request = call.request()
            try:
                status, headers, body = await self._send(request)
            except (APIConnectionError, ServerError) as error:
                outcome = call.on_transport_error(error)
            else:
                outcome = call.on_response(status, headers, body)
            if isinstance(outcome, protocol.Retry):
                await anyio.sleep(outcome.delay)
                continue
            return _settle(outcome)

    async def _send(self, request: Request) -> _Answer:
        """One attempt, over within ``timeout`` whatever the server does."""
        timeout = self._settings.timeout
        status: int | None = None
        try:
            # Cancellation bounds the attempt as a whole: connect, send, headers and body.
            with anyio.fail_after(timeout):
                async with self._http.stream(
                    request.method, request.url, headers=request.headers, files=request.files,
                    timeout=self._httpx_timeout(),
                ) as response:  # fmt: skip
                    status = response.status_code
                    reader, streaming = _answer_reader(response, request.url)
                    if streaming:
                        async for chunk in response.aiter_raw():
                            reader.feed(chunk)
                    return status, response.headers, reader.body()
        except TimeoutError:
            raise protocol.attempt_timeout_error(request.url, timeout) from None
        except _IO_ERRORS as exc:
            raise _transport_error(exc, request, timeout, status) from None

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


# --- plan drivers --------------------------------------------------------------------------------
#
# A plan (ncp_cfr.pipelines) yields lists of jobs; a driver runs each list side by side and sends
# back the outcomes. The two drivers differ only in how: threads and a semaphore, or a task group
# and a capacity limiter. A job's CFRError becomes its outcome; anything else propagates.


class _SyncJobs:
    """Runs plans for a [`Client`][ncp_cfr.Client]: at most ``slots`` calls at once, paced by
    ``rate``.
    """

    def __init__(
        self,
        client: Client,
        pool: ThreadPoolExecutor,
        slots: int,
        rate: RateLimiter | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self._client = client
        self._pool = pool
        self._slots = threading.BoundedSemaphore(slots)
        self._rate = rate
        self._stop = stop

    def drive(self, plan: Plan[_T]) -> _T:
        step = advance(plan, None)
        while isinstance(step, Pending):
            step = advance(plan, self._run(step.jobs))
        return step.value

    def _run(self, jobs: list[Job]) -> list[Outcome]:
        if len(jobs) <= 1:  # no hand-off to another thread for a single call
            return [self._one(job) for job in jobs]
        futures = [self._pool.submit(self._one, job) for job in jobs]
        try:
            return [future.result() for future in futures]
        finally:
            for future in futures:  # after an interrupt: drop the ones not started
                future.cancel()

    def _one(self, job: Job) -> Outcome:
        with self._slots:
            try:
                return self._client._execute(job.endpoint, job.image, self._rate, self._stop)
            except CFRError as error:
                return error


class _AsyncJobs:
    """Runs plans for an [`AsyncClient`][ncp_cfr.AsyncClient]: at most ``slots`` calls at once,
    paced by ``rate``.

    Plans are advanced in a worker thread: a step may crop and encode images. With
    ``light_finish`` (single-call plans, whose last step only hands the result back) the step
    after the calls runs in the event loop: one thread hop less per image in a batch.
    """

    def __init__(
        self,
        client: AsyncClient,
        slots: int,
        rate: RateLimiter | None = None,
        *,
        light_finish: bool = False,
    ) -> None:
        self._client = client
        self._slots = anyio.CapacityLimiter(slots)
        self._rate = rate
        self._light_finish = light_finish

    async def drive(self, plan: Plan[_T]) -> _T:
        step = await anyio.to_thread.run_sync(advance, plan, None)
        while isinstance(step, Pending):
            outcomes = await self._run(step.jobs)
            if self._light_finish:
                step = advance(plan, outcomes)
            else:
                step = await anyio.to_thread.run_sync(advance, plan, outcomes)
        return step.value

    async def _run(self, jobs: list[Job]) -> list[Outcome]:
        if len(jobs) <= 1:
            return [await self._one(job) for job in jobs]
        outcomes: dict[int, Outcome] = {}

        async def one(index: int, job: Job) -> None:
            outcomes[index] = await self._one(job)

        try:
            async with anyio.create_task_group() as group:
                for index, job in enumerate(jobs):
                    group.start_soon(one, index, job)
        except Exception as failed:
            _reraise_single(failed)
        return [outcomes[i] for i in range(len(jobs))]

    async def _one(self, job: Job) -> Outcome:
        async with self._slots:
            try:
                return await self._client._execute(job.endpoint, job.image, self._rate)
            except CFRError as error:
                return error


def _reraise_single(error: Exception) -> NoReturn:
    # A task group wraps a task's exception in an ExceptionGroup (a builtin only since 3.11,
    # hence no isinstance): a single error reads better unwrapped.
    inner = getattr(error, "exceptions", None)
    if isinstance(inner, tuple) and len(inner) == 1 and isinstance(inner[0], Exception):
        raise inner[0] from None
    raise error
