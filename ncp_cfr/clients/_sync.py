"""[`Client`][ncp_cfr.Client]: the base's decisions, sent with ``httpx.Client`` in threads.

What differs from the async shell is only how: a blocking send bounded by the watchdog
([`_deadline`][ncp_cfr.clients._deadline]), ``Clock.sleep`` that a batch can cut short, and a
thread pool with a semaphore for calls side by side.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from types import TracebackType

import httpx

from ncp_cfr import protocol
from ncp_cfr.batches import BatchItem
from ncp_cfr.clients._base import (
    DEFAULT_BATCH_CONCURRENCY,
    DEFAULT_FAN_OUT,
    IO_ERRORS,
    Answer,
    BatchRun,
    ClientBase,
    Finished,
    ImageInput,
    Progress,
    Reply,
    Send,
    T,
    answer_reader,
    check_concurrency,
    next_action,
    transport_error,
)
from ncp_cfr.clients._deadline import WATCHDOG, watched_transport
from ncp_cfr.clients._ratelimit import RateLimiter
from ncp_cfr.errors import APIConnectionError, CFRError, ServerError
from ncp_cfr.images import ChannelOrder
from ncp_cfr.models import Analysis, CelebrityResult, EndpointResult, FaceResult, Lookalike
from ncp_cfr.pipelines import (
    DEFAULT_MARGIN,
    DEFAULT_MATCH_CONFIDENCE,
    DEFAULT_MIN_FACE,
    DEFAULT_SCALES,
    Job,
    JobOutcome,
    Pending,
    Plan,
    advance,
)
from ncp_cfr.protocol import Request

__all__ = ["Client"]


class _Stopped(Exception):
    """A batch was abandoned (an interrupt or a failure elsewhere): send nothing more."""


class Client(ClientBase[httpx.Client]):
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

    def _new_http(self) -> httpx.Client:
        return httpx.Client(transport=watched_transport())

    def detect_faces(self, image: ImageInput, *, channel_order: ChannelOrder = "rgb") -> FaceResult:
        """Find faces: box, five landmarks, gender, age, emotion and pose of each.

        Args:
            image: a path, bytes, a binary file object, a ``PIL.Image``, a NumPy-style array
                (``channel_order="bgr"`` for OpenCV) or a [`PreparedImage`][ncp_cfr.PreparedImage].
            channel_order: the channel order of an array ``image``.

        Returns:
            The faces, with coordinates in the pixels of ``image`` as you see it, and the
            service's ``request_id``.

        Raises:
            ImageError: the image could not be prepared (nothing was sent).
            APIError: the service refused the request (a subclass says why).
            APIConnectionError: no answer (``APITimeoutError`` if out of time).
        """
        return self._drive(self._face_plans(channel_order)(image))

    def recognize_celebrities(
        self, image: ImageInput, *, channel_order: ChannelOrder = "rgb"
    ) -> CelebrityResult:
        """Name the most similar celebrity for each face (no positions: see ``analyze``).

        Takes the same ``image`` kinds and raises the same errors as
        [`detect_faces`][ncp_cfr.Client.detect_faces].
        """
        return self._drive(self._celebrity_plans(channel_order)(image))

    def analyze(
        self,
        image: ImageInput,
        *,
        margin: float = DEFAULT_MARGIN,
        min_face: int = DEFAULT_MIN_FACE,
        min_confidence: float = 0.0,
        concurrency: int = DEFAULT_FAN_OUT,
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
        check_concurrency(concurrency)
        plans = self._analyze_plans(channel_order, margin, min_face, min_confidence)
        return self._drive(plans(image), concurrency)

    def find_lookalike(
        self,
        image: ImageInput,
        *,
        scales: Sequence[float] = DEFAULT_SCALES,
        min_confidence: float = 0.0,
        match_confidence: float = DEFAULT_MATCH_CONFIDENCE,
        concurrency: int = DEFAULT_FAN_OUT,
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
            (``per_scale``, each with its ``request_id``). A size that failed is recorded there.

        Raises:
            ImageError: the image could not be read.
            CFRError: every size failed (the last size's error), or a bad argument.
        """
        check_concurrency(concurrency)
        plans = self._lookalike_plans(channel_order, scales, min_confidence, match_confidence)
        return self._drive(plans(image), concurrency)

    def detect_faces_many(
        self,
        images: Iterable[ImageInput],
        *,
        concurrency: int = DEFAULT_BATCH_CONCURRENCY,
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
            The list is a [`Batch`][ncp_cfr.Batch], a `list` that Jupyter shows as a table.

        Raises:
            CFRError: a bad argument. Exceptions other than ``CFRError`` (and
                ``KeyboardInterrupt``) stop the batch: nothing new is sent, queued images are
                dropped, and the exception propagates.
        """
        plans = self._face_plans(channel_order)
        run = BatchRun(images, concurrency, rate_limit, progress)
        return self._many(run, plans)

    def recognize_celebrities_many(
        self,
        images: Iterable[ImageInput],
        *,
        concurrency: int = DEFAULT_BATCH_CONCURRENCY,
        rate_limit: float | None = None,
        progress: Progress = False,
        channel_order: ChannelOrder = "rgb",
    ) -> list[BatchItem[CelebrityResult]]:
        """[`recognize_celebrities`][ncp_cfr.Client.recognize_celebrities] for many images; see
        [`detect_faces_many`][ncp_cfr.Client.detect_faces_many].
        """
        plans = self._celebrity_plans(channel_order)
        run = BatchRun(images, concurrency, rate_limit, progress)
        return self._many(run, plans)

    def analyze_many(
        self,
        images: Iterable[ImageInput],
        *,
        margin: float = DEFAULT_MARGIN,
        min_face: int = DEFAULT_MIN_FACE,
        min_confidence: float = 0.0,
        concurrency: int = DEFAULT_BATCH_CONCURRENCY,
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
        plans = self._analyze_plans(channel_order, margin, min_face, min_confidence)
        run = BatchRun(images, concurrency, rate_limit, progress)
        return self._many(run, plans)

    def find_lookalike_many(
        self,
        images: Iterable[ImageInput],
        *,
        scales: Sequence[float] = DEFAULT_SCALES,
        min_confidence: float = 0.0,
        match_confidence: float = DEFAULT_MATCH_CONFIDENCE,
        concurrency: int = DEFAULT_BATCH_CONCURRENCY,
        rate_limit: float | None = None,
        progress: Progress = False,
        channel_order: ChannelOrder = "rgb",
    ) -> list[BatchItem[Lookalike]]:
        """[`find_lookalike`][ncp_cfr.Client.find_lookalike] for many images; see
        [`detect_faces_many`][ncp_cfr.Client.detect_faces_many].

        ``concurrency`` and ``rate_limit`` count every call: the sizes of all images share
        them. ``scales``, ``min_confidence`` and ``match_confidence`` are
        [`find_lookalike`][ncp_cfr.Client.find_lookalike]'s.
        """
        run: BatchRun = BatchRun(images, concurrency, rate_limit, progress)
        return self._many(
            run, self._lookalike_plans(channel_order, scales, min_confidence, match_confidence)
        )

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

    # -- running plans ----------------------------------------------------------------------------

    def _drive(self, plan: Plan[T], concurrency: int = 1) -> T:
        """Run ``plan`` here, its calls side by side in up to ``concurrency`` threads."""
        if concurrency <= 1:  # one call at a time: no pool, no hand-off to another thread
            return _Jobs(self, None, 1).drive(plan)
        with ThreadPoolExecutor(concurrency, thread_name_prefix="ncp_cfr") as pool:
            return _Jobs(self, pool, concurrency).drive(plan)

    def _many(self, run: BatchRun, plans: Callable[[ImageInput], Plan[T]]) -> list[BatchItem[T]]:
        concurrency = run.concurrency
        stop = threading.Event()
        # Inputs are prepared by item workers; a plan's fan-out (analyze crops) goes to the call
        # pool; the jobs' semaphore bounds the HTTP calls of both together.
        items = ThreadPoolExecutor(run.window, thread_name_prefix="ncp_cfr-item")
        calls = ThreadPoolExecutor(concurrency, thread_name_prefix="ncp_cfr-call")
        jobs = _Jobs(self, calls, concurrency, run.rate, stop)

        def one(index: int) -> BatchItem[T]:
            if stop.is_set():
                raise _Stopped
            try:
                return run.outcome(index, result=jobs.drive(plans(run.sources[index])))
            except CFRError as error:
                return run.outcome(index, error=error)

        try:
            futures = [items.submit(one, index) for index in range(run.total)]
            for future in as_completed(futures):
                run.record(future.result())
        except BaseException:
            # Ctrl-C or a bug: send nothing new, drop what is queued, do not wait for it.
            stop.set()
            items.shutdown(wait=False, cancel_futures=True)
            calls.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            run.close()
        items.shutdown()
        calls.shutdown()
        return run.batch()

    def _execute(
        self, job: Job, rate: RateLimiter | None = None, stop: threading.Event | None = None
    ) -> EndpointResult:
        """One call with its retries, in this thread."""
        exchange = self._exchange(job, rate)
        reply: Reply = None
        while not isinstance(action := next_action(exchange, reply), Finished):
            if not isinstance(action, Send):
                reply = None
                if self._clock.sleep(action.seconds, stop):
                    raise _Stopped
            elif stop is not None and stop.is_set():
                raise _Stopped
            else:
                try:
                    reply = self._send(action.request)
                except (APIConnectionError, ServerError) as error:
                    reply = error
        return action.value

    def _send(self, request: Request) -> Answer:
        """One attempt, over within ``timeout`` whatever the server does."""
        timeout = self._settings.timeout
        watch = WATCHDOG.start(timeout)
        status: int | None = None
        try:
            with self._http.stream(
                request.method,
                request.url,
                headers=request.headers,
                files=request.files,
                timeout=self._httpx_timeout(),
                extensions={"trace": watch.trace},
            ) as response:
                status = response.status_code
                stream = response.extensions.get("network_stream")
                if stream is not None:
                    watch.note(stream)
                reader, streaming = answer_reader(response, request.url)
                for chunk in response.iter_raw() if streaming else ():
                    reader.feed(chunk)
                    if watch.expired:  # a slow drip: chunks keep coming, time is up
                        raise protocol.attempt_timeout_error(request.url, timeout)
                if watch.expired:
                    raise protocol.attempt_timeout_error(request.url, timeout)
                return status, response.headers, reader.body()
        except IO_ERRORS as exc:
            if watch.expired:  # the watchdog shut the socket: that is what ended the read
                raise protocol.attempt_timeout_error(request.url, timeout) from None
            raise transport_error(exc, request, timeout, status) from None
        finally:
            WATCHDOG.finish(watch)


class _Jobs:
    """Runs plans for a [`Client`][ncp_cfr.Client]: at most ``slots`` calls at once, in ``pool``
    (``None``: one at a time, in this thread), paced by ``rate``.
    """

    def __init__(
        self,
        client: Client,
        pool: ThreadPoolExecutor | None,
        slots: int,
        rate: RateLimiter | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self._client = client
        self._pool = pool
        self._slots = threading.BoundedSemaphore(slots)
        self._rate = rate
        self._stop = stop

    def drive(self, plan: Plan[T]) -> T:
        step = advance(plan, None)
        while isinstance(step, Pending):
            step = advance(plan, self._run(step.jobs))
        return step.value

    def _run(self, jobs: list[Job]) -> list[JobOutcome]:
        if len(jobs) <= 1 or self._pool is None:
            return [self._one(job) for job in jobs]
        futures = [self._pool.submit(self._one, job) for job in jobs]
        try:
            return [future.result() for future in futures]
        finally:
            for future in futures:  # after an interrupt: drop the ones not started
                future.cancel()

    def _one(self, job: Job) -> JobOutcome:
        with self._slots:
            try:
                return self._client._execute(job, self._rate, self._stop)
            except CFRError as error:
                return error
