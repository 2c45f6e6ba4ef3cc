"""[`AsyncClient`][ncp_cfr.AsyncClient]: the base's decisions, sent with ``httpx.AsyncClient``.

What differs from the sync shell is only how: an attempt bounded by cancellation
(``anyio.fail_after``), ``Clock.asleep``, task groups with a capacity limiter for calls side by
side, and image work (a plan's steps) in worker threads so the event loop never blocks on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from types import TracebackType

import anyio
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
    reraise_single,
    transport_error,
)
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

__all__ = ["AsyncClient"]


class AsyncClient(ClientBase[httpx.AsyncClient]):
    """Asynchronous CFR client: the same methods as [`Client`][ncp_cfr.Client], awaitable.

    Takes the same arguments as [`Client`][ncp_cfr.Client], with ``http_client`` an
    ``httpx.AsyncClient``. Image preparation runs in a worker thread so a large photo does not block
    the event loop. Use ``async with``, or ``await client.aclose()``.
    """

    def _new_http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient()

    async def detect_faces(
        self, image: ImageInput, *, channel_order: ChannelOrder = "rgb"
    ) -> FaceResult:
        """Find faces; see [`Client.detect_faces`][ncp_cfr.Client.detect_faces]."""
        return await self._drive(self._face_plans(channel_order)(image))

    async def recognize_celebrities(
        self, image: ImageInput, *, channel_order: ChannelOrder = "rgb"
    ) -> CelebrityResult:
        """Name the most similar celebrity per face; see
        [`Client.recognize_celebrities`][ncp_cfr.Client.recognize_celebrities].
        """
        return await self._drive(self._celebrity_plans(channel_order)(image))

    async def analyze(
        self,
        image: ImageInput,
        *,
        margin: float = DEFAULT_MARGIN,
        min_face: int = DEFAULT_MIN_FACE,
        min_confidence: float = 0.0,
        concurrency: int = DEFAULT_FAN_OUT,
        channel_order: ChannelOrder = "rgb",
    ) -> Analysis:
        """Faces with their attributes and each face's own lookalike; see
        [`Client.analyze`][ncp_cfr.Client.analyze].

        Cropping and encoding run in worker threads, the calls in a task group.
        """
        check_concurrency(concurrency)
        plans = self._analyze_plans(channel_order, margin, min_face, min_confidence)
        return await self._drive(plans(image), concurrency)

    async def find_lookalike(
        self,
        image: ImageInput,
        *,
        scales: Sequence[float] = DEFAULT_SCALES,
        min_confidence: float = 0.0,
        match_confidence: float = DEFAULT_MATCH_CONFIDENCE,
        concurrency: int = DEFAULT_FAN_OUT,
        channel_order: ChannelOrder = "rgb",
    ) -> Lookalike:
        """Names voted across upload sizes; see
        [`Client.find_lookalike`][ncp_cfr.Client.find_lookalike].
        """
        check_concurrency(concurrency)
        plans = self._lookalike_plans(channel_order, scales, min_confidence, match_confidence)
        return await self._drive(plans(image), concurrency)

    async def detect_faces_many(
        self,
        images: Iterable[ImageInput],
        *,
        concurrency: int = DEFAULT_BATCH_CONCURRENCY,
        rate_limit: float | None = None,
        progress: Progress = False,
        channel_order: ChannelOrder = "rgb",
    ) -> list[BatchItem[FaceResult]]:
        """[`detect_faces`][ncp_cfr.AsyncClient.detect_faces] for many images; see
        [`Client.detect_faces_many`][ncp_cfr.Client.detect_faces_many].

        The calls run in one task group: cancelling the awaiting task cancels every call in
        flight and sends nothing more. ``progress`` callables run in the event loop.
        """
        plans = self._face_plans(channel_order)
        run = BatchRun(images, concurrency, rate_limit, progress)
        return await self._many(run, plans, light_finish=True)

    async def recognize_celebrities_many(
        self,
        images: Iterable[ImageInput],
        *,
        concurrency: int = DEFAULT_BATCH_CONCURRENCY,
        rate_limit: float | None = None,
        progress: Progress = False,
        channel_order: ChannelOrder = "rgb",
    ) -> list[BatchItem[CelebrityResult]]:
        """[`recognize_celebrities`][ncp_cfr.AsyncClient.recognize_celebrities] for many images; see
        [`Client.detect_faces_many`][ncp_cfr.Client.detect_faces_many].
        """
        plans = self._celebrity_plans(channel_order)
        run = BatchRun(images, concurrency, rate_limit, progress)
        return await self._many(run, plans, light_finish=True)

    async def analyze_many(
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
        """[`analyze`][ncp_cfr.AsyncClient.analyze] for many images; see
        [`Client.analyze_many`][ncp_cfr.Client.analyze_many].
        """
        run: BatchRun = BatchRun(images, concurrency, rate_limit, progress)
        return await self._many(
            run, self._analyze_plans(channel_order, margin, min_face, min_confidence)
        )

    async def find_lookalike_many(
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
        """[`find_lookalike`][ncp_cfr.AsyncClient.find_lookalike] for many images; see
        [`Client.find_lookalike_many`][ncp_cfr.Client.find_lookalike_many].
        """
        run: BatchRun = BatchRun(images, concurrency, rate_limit, progress)
        return await self._many(
            run, self._lookalike_plans(channel_order, scales, min_confidence, match_confidence)
        )

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

    # -- running plans ----------------------------------------------------------------------------

    async def _drive(self, plan: Plan[T], concurrency: int = 1) -> T:
        """Run ``plan``, its calls side by side in up to ``concurrency`` tasks."""
        return await _Jobs(self, concurrency).drive(plan)

    async def _many(
        self,
        run: BatchRun,
        plans: Callable[[ImageInput], Plan[T]],
        *,
        light_finish: bool = False,
    ) -> list[BatchItem[T]]:
        jobs = _Jobs(self, run.concurrency, run.rate, light_finish=light_finish)
        # Bounds the images read and held at once; the jobs' limiter bounds the calls.
        window = anyio.CapacityLimiter(run.window)

        async def one(index: int) -> None:
            async with window:
                try:
                    item = run.outcome(index, result=await jobs.drive(plans(run.sources[index])))
                except CFRError as error:
                    item = run.outcome(index, error=error)
            run.record(item)

        try:
            async with anyio.create_task_group() as group:
                for index in range(run.total):
                    group.start_soon(one, index)
        except Exception as failed:
            reraise_single(failed)
        finally:
            run.close()
        return run.batch()

    async def _execute(self, job: Job, rate: RateLimiter | None = None) -> EndpointResult:
        """One call with its retries."""
        exchange = self._exchange(job, rate)
        reply: Reply = None
        while not isinstance(action := next_action(exchange, reply), Finished):
            reply = None
            if not isinstance(action, Send):
                await self._clock.asleep(action.seconds)
                continue
            try:
                reply = await self._send(action.request)
            except (APIConnectionError, ServerError) as error:
                reply = error
        return action.value

    async def _send(self, request: Request) -> Answer:
        """One attempt, over within ``timeout`` whatever the server does."""
        timeout = self._settings.timeout
        status: int | None = None
        try:
            # Cancellation bounds the attempt as a whole: connect, send, headers and body.
            with anyio.fail_after(timeout):
                async with self._http.stream(
                    request.method,
                    request.url,
                    headers=request.headers,
                    files=request.files,
                    timeout=self._httpx_timeout(),
                ) as response:
                    status = response.status_code
                    reader, streaming = answer_reader(response, request.url)
                    if streaming:
                        async for chunk in response.aiter_raw():
                            reader.feed(chunk)
                    return status, response.headers, reader.body()
        except TimeoutError:
            raise protocol.attempt_timeout_error(request.url, timeout) from None
        except IO_ERRORS as exc:
            raise transport_error(exc, request, timeout, status) from None


class _Jobs:
    """Runs plans for an [`AsyncClient`][ncp_cfr.AsyncClient]: at most ``slots`` calls at once,
    paced by ``rate``.

    Plans are advanced in a worker thread: a step may crop and encode images. With
    ``light_finish`` (single-call plans, whose last step only maps the result back) the step
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

    async def drive(self, plan: Plan[T]) -> T:
        step = await anyio.to_thread.run_sync(advance, plan, None)
        while isinstance(step, Pending):
            outcomes = await self._run(step.jobs)
            if self._light_finish:
                step = advance(plan, outcomes)
            else:
                step = await anyio.to_thread.run_sync(advance, plan, outcomes)
        return step.value

    async def _run(self, jobs: list[Job]) -> list[JobOutcome]:
        if len(jobs) <= 1:
            return [await self._one(job) for job in jobs]
        outcomes: dict[int, JobOutcome] = {}

        async def one(index: int, job: Job) -> None:
            outcomes[index] = await self._one(job)

        try:
            async with anyio.create_task_group() as group:
                for index, job in enumerate(jobs):
                    group.start_soon(one, index, job)
        except Exception as failed:
            reraise_single(failed)
        return [outcomes[i] for i in range(len(jobs))]

    async def _one(self, job: Job) -> JobOutcome:
        async with self._slots:
            try:
                return await self._client._execute(job, self._rate)
            except CFRError as error:
                return error
