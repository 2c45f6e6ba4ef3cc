"""Everything the two clients share that is not I/O, below their methods.

Settings and options (`ClientBase`), the clock they sleep on, one call's attempts as a generator
of actions (``_exchange``: what to send, how long to wait), and the reading of an HTTP answer.
The sync and async shells take what this decides and only send, sleep and wait, each in its own
way; a change of behaviour is made here, once.
"""

from __future__ import annotations

import importlib.util
import random
import threading
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeVar, Union

import httpx

from ncp_cfr import protocol
from ncp_cfr._types import NOT_GIVEN, NotGiven
from ncp_cfr.errors import (
    APIConnectionError,
    CFRError,
    InvalidArgumentError,
    NotAttempted,
    QuotaExceededError,
    ServerError,
)
from ncp_cfr.images import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_SIDE,
    ImageSource,
    PreparedImage,
)
from ncp_cfr.models import EndpointResult
from ncp_cfr.pipelines import Job
from ncp_cfr.protocol import Call, Done, Request, Retry, Settings

if TYPE_CHECKING:  # the batch drives calls through the base; the base only names it
    from ncp_cfr.clients._batches import BatchRun

#: ``progress=`` of the ``*_many`` methods: a tqdm bar (``True``), none, or ``hook(done, total)``.
Progress = Union[bool, Callable[[int, int], object], None]
#: Any image argument of the clients.
ImageInput = Union[ImageSource, PreparedImage]
HttpT = TypeVar("HttpT", httpx.Client, httpx.AsyncClient)
T = TypeVar("T")
_Self = TypeVar("_Self", bound="ClientBase[Any]")

#: Crop calls of one ``analyze`` / sizes of one ``find_lookalike`` sent at the same time.
DEFAULT_FAN_OUT = 4
#: Calls in flight at once in a ``*_many`` batch.
DEFAULT_BATCH_CONCURRENCY = 8


class Clock:
    """The time the clients see: the one place they read clocks and sleep.

    Injectable (``client._clock``), so that tests decide what time it is and never sleep for
    real: retries, ``Retry-After`` and rate limits all go through it.
    """

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (``time.monotonic``)."""
        return time.monotonic()

    def now(self) -> datetime:
        """The current UTC time, for ``Retry-After`` dates."""
        return datetime.now(timezone.utc)

    def random(self) -> float:
        """A number in [0, 1), for the jitter of backoff."""
        return random.random()

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> bool:
        """Sleep ``seconds``; with ``stop``, wake early when it is set. Whether it was set."""
        if stop is not None:
            return stop.wait(seconds) if seconds > 0 else stop.is_set()
        if seconds > 0:
            time.sleep(seconds)
        return False

    async def asleep(self, seconds: float) -> None:
        """Sleep ``seconds`` in the event loop (cancellable)."""
        import anyio  # here: sync programs never load it

        await anyio.sleep(seconds)


SYSTEM_CLOCK = Clock()


# --- one call: the attempts as a generator of actions ---------------------------------------------


@dataclass(frozen=True)
class Send:
    """Send ``request``; answer with ``(status, headers, body)`` or the transport's CFRError."""

    request: Request


@dataclass(frozen=True)
class Sleep:
    """Wait ``seconds`` (a backoff, a ``Retry-After`` or a rate-limit slot); answer ``None``."""

    seconds: float


@dataclass(frozen=True)
class Finished(Generic[T]):
    """The exchange is over: ``value`` is its result."""

    value: T


Answer = tuple[int, Mapping[str, str], bytes]
#: What a shell sends back into an exchange: an answer, a transport failure, or nothing.
Reply = Union[Answer, APIConnectionError, ServerError, None]
Exchange = Generator[Union[Send, Sleep], Reply, EndpointResult]


def next_action(exchange: Exchange, reply: Reply) -> Send | Sleep | Finished[EndpointResult]:
    """The exchange's next action once it has ``reply`` (``None`` to start it)."""
    try:
        return exchange.send(reply)
    except StopIteration as stop:
        return Finished(stop.value)


# --- batches -------------------------------------------------------------------------------------


def check_concurrency(concurrency: int) -> None:
    """Refuse a ``concurrency`` that is not a whole number >= 1."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidArgumentError(f"concurrency must be a whole number >= 1, got {concurrency!r}")


def progress_hook(
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


def reraise_single(error: Exception) -> NoReturn:
    """Raise a task group's only error unwrapped; any other error as it is."""
    # A task group wraps a task's exception in an ExceptionGroup (a builtin only since 3.11,
    # hence no isinstance), and nested groups wrap it again: a single error reads better
    # unwrapped, whatever its depth.
    found: Exception = error
    while True:
        inner = getattr(found, "exceptions", None)
        if not (isinstance(inner, tuple) and len(inner) == 1 and isinstance(inner[0], Exception)):
            break
        found = inner[0]
    if found is error:
        raise error
    raise found from None


# --- reading an HTTP answer ---------------------------------------------------------------------

#: What an attempt's I/O may raise that is about the network or the answer, never a bug of
#: ours: httpx's errors (h11 and httpcore protocol errors surface as these), stream misuse after
#: an aborted read, and the OS's socket errors from custom transports.
IO_ERRORS = (httpx.HTTPError, httpx.StreamError, OSError)


def transport_error(
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


def answer_reader(response: httpx.Response, url: str) -> tuple[protocol.AnswerReader, bool]:
    """A reader for ``response``'s body, and whether the raw stream is still to be read.

    The reader's ``headers`` are the answer's as a plain dict with lower-case names, made once:
    what the protocol looks names up in (httpx's own mapping decodes on every lookup).
    """
    headers = protocol.Lowered(
        (name.decode("latin-1").lower(), value.decode("latin-1"))
        for name, value in response.headers.raw
    )
    # A transport answering from memory (httpx.MockTransport, the emulator's in-process one)
    # hands over a body httpx has already read and decoded: only the cap is left to check.
    done = response.is_stream_consumed
    reader = protocol.AnswerReader(response.status_code, headers, url=url, decoded=done)
    if done:
        reader.feed(response.content)
    return reader, not done


# --- the client base -----------------------------------------------------------------------------


class ClientBase(Generic[HttpT]):
    """Settings, options and plans of a client; the shells add sending, sleeping and waiting."""

    _settings: Settings
    _max_bytes: int
    _max_side: int | None
    _http: HttpT
    _owns_http: bool
    _pool_is_ours: bool
    _timeouts: httpx.Timeout
    _clock: Clock = SYSTEM_CLOCK

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
        http_client: HttpT | None = None,
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
        # Made here: closed by close(), and its connections are the SDK's to watch.
        self._pool_is_ours = self._owns_http = http_client is None
        self._http = http_client if http_client is not None else self._new_http()
        self._timeouts = self._httpx_timeout()

    def _new_http(self) -> HttpT:
        """The connection pool a client makes for itself."""
        raise NotImplementedError

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
        timeout: float | NotGiven = NOT_GIVEN,
        connect_timeout: float | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        base_url: str | NotGiven = NOT_GIVEN,
        default_headers: Mapping[str, str] | NotGiven = NOT_GIVEN,
        max_bytes: int | NotGiven = NOT_GIVEN,
        max_side: int | NotGiven | None = NOT_GIVEN,
    ) -> _Self:
        """A client with some options changed, sharing this one's connection pool.

        ``client.with_options(timeout=5, max_retries=0).detect_faces(img)`` changes them for
        one call; closing the copy leaves the pool open.
        """
        given = {
            "timeout": timeout,
            "connect_timeout": connect_timeout,
            "max_retries": max_retries,
            "base_url": base_url,
            "default_headers": default_headers,
        }
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone._settings = self._settings.replace(
            **{k: v for k, v in given.items() if not isinstance(v, NotGiven)}
        )
        if not isinstance(max_bytes, NotGiven):
            clone._max_bytes = max_bytes
        if not isinstance(max_side, NotGiven):
            clone._max_side = max_side
        clone._owns_http = False  # the parent's pool: closing the copy must not close it
        clone._timeouts = clone._httpx_timeout()
        return clone

    def _exchange(self, job: Job, run: BatchRun | None = None) -> Exchange:
        """One call with its retries: yields what to send and how long to wait, returns the
        result in the upload's pixels, raises the error the call ends with.

        In a batch, every attempt (retries included) is a request the rate limit paces and the
        batch counts, and none is sent once the batch has stopped.
        """
        clock = self._clock
        call = Call(
            self._settings,
            job.endpoint,
            job.image.data,
            job.image.content_type,
            rng=clock.random,
            clock=clock.now,
            monotonic=clock.monotonic,
        )
        retry = False
        while True:
            if run is not None:
                delay = run.admit(retry, clock.monotonic())
                if delay > 0:
                    yield Sleep(delay)
            reply = yield Send(call.request())
            if run is not None and run.halted.is_set():
                # The batch was abandoned while this call was out: whatever came back (often
                # the error of a pool being closed) is nobody's to retry or to log.
                raise NotAttempted("not finished: the batch was interrupted")
            if isinstance(reply, CFRError):
                decision = call.on_transport_error(reply)
            else:
                assert reply is not None
                decision = call.on_response(*reply)
            if isinstance(decision, Retry):
                retry = True
                yield Sleep(decision.delay)
            elif isinstance(decision, Done):
                return decision.result
            else:
                if run is not None and isinstance(decision.error, QuotaExceededError):
                    run.stop("quota")  # at once: the calls about to start would be refused too
                raise decision.error

    def _stream_args(self, request: Request) -> dict[str, Any]:
        """The arguments of ``http.stream()`` for ``request``, in both shells."""
        return {
            "method": request.method,
            "url": request.url,
            "headers": request.headers,
            "files": request.files,
            "timeout": self._timeouts,
        }

    def _httpx_timeout(self) -> httpx.Timeout:
        s = self._settings
        return httpx.Timeout(s.timeout, connect=min(s.connect_timeout, s.timeout))
