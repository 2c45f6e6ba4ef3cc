"""[`AsyncClient`][ncp_cfr.AsyncClient]: the base's decisions, sent with ``httpx.AsyncClient``.

What differs from the sync shell is only how: an attempt bounded by cancellation
(``anyio.fail_after``), ``Clock.asleep``, task groups with a capacity limiter for calls side by
side, and image work (a plan's steps) in worker threads so the event loop never blocks on it.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

import anyio
import httpx

from ncp_cfr import protocol
from ncp_cfr.batches import BatchItem
from ncp_cfr.clients import _base as base
from ncp_cfr.clients._base import BatchRun, ImageInput, T
from ncp_cfr.clients._methods import Many, Methods, Single
from ncp_cfr.clients._ratelimit import RateLimiter
from ncp_cfr.errors import APIConnectionError, CFRError, ServerError
from ncp_cfr.models import EndpointResult
from ncp_cfr.pipelines import Job, JobOutcome, Pending, Plan, advance
from ncp_cfr.protocol import Request

__all__ = ["AsyncClient"]


class AsyncClient(Methods[httpx.AsyncClient]):
    """Asynchronous CFR client: the same methods as [`Client`][ncp_cfr.Client], awaitable.

    Takes the same arguments as [`Client`][ncp_cfr.Client], with ``http_client`` an
    ``httpx.AsyncClient``. Image preparation runs in a worker thread so a large photo does not block
    the event loop. Use ``async with``, or ``await client.aclose()``.
    """

    def _new_http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient()

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

    async def _perform(self, work: Single[Any] | Many[Any]) -> Any:
        """Run what a public method asked for: one plan, or a batch."""
        if isinstance(work, Single):
            return await self._drive(work.plan, work.concurrency)
        return await self._many(work.run, work.plans, light_finish=work.light_finish)

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
            base.reraise_single(failed)
        finally:
            run.close()
        return run.batch()

    async def _execute(self, job: Job, rate: RateLimiter | None = None) -> EndpointResult:
        """One call with its retries; cancelling the task ends it."""
        exchange = self._exchange(job, rate)
        reply: base.Reply = None
        while not isinstance(action := base.next_action(exchange, reply), base.Finished):
            if isinstance(action, base.Send):
                reply = await self._send(action.request)
            else:
                reply = None
                await self._clock.asleep(action.seconds)
        return action.value

    async def _send(self, request: Request) -> base.Reply:
        """One attempt, over within ``timeout`` whatever the server does: the answer, or the
        CFRError it failed with (the exchange decides whether to retry).
        """
        timeout = self._settings.timeout
        status: int | None = None
        try:
            # Cancellation bounds the attempt as a whole: connect, send, headers and body.
            with anyio.fail_after(timeout):
                async with self._http.stream(**self._stream_args(request)) as response:
                    status = response.status_code
                    reader, streaming = base.answer_reader(response, request.url)
                    if streaming:
                        async for chunk in response.aiter_raw():
                            reader.feed(chunk)
                    return status, reader.headers, reader.body()
        except TimeoutError:
            return protocol.attempt_timeout_error(request.url, timeout)
        except (APIConnectionError, ServerError) as error:  # an answer too large or undecodable
            return error
        except base.IO_ERRORS as exc:
            return base.transport_error(exc, request, timeout, status)


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
            base.reraise_single(failed)
        return [outcomes[i] for i in range(len(jobs))]

    async def _one(self, job: Job) -> JobOutcome:
        async with self._slots:
            try:
                return await self._client._execute(job, self._rate)
            except CFRError as error:
                return error
