"""[`AsyncClient`][ncp_cfr.AsyncClient]: the base's decisions, sent with ``httpx.AsyncClient``.

What differs from the sync shell is only how: an attempt bounded by cancellation
(``anyio.fail_after``), ``Clock.asleep``, task groups with a capacity limiter for calls side by
side, and image work (a plan's steps) in worker threads so the event loop never blocks on it.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import httpx

from ncp_cfr import protocol
from ncp_cfr.batches import BatchItem, BatchSummary
from ncp_cfr.clients import _base as base
from ncp_cfr.clients._base import T
from ncp_cfr.clients._batches import BatchRun
from ncp_cfr.clients._methods import Many, Methods, Single
from ncp_cfr.errors import APIConnectionError, CFRError, ServerError
from ncp_cfr.models import EndpointResult
from ncp_cfr.pipelines import Job, JobOutcome, Pending, Plan, advance
from ncp_cfr.protocol import Request

__all__ = ["AsyncBatchStream", "AsyncClient"]


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
        """Run what a public method asked for: one plan, or a batch (in input order)."""
        if isinstance(work, Single):
            return await self._drive(work.plan, work.concurrency)
        async with self._open_stream(work) as stream:
            return work.run.in_order([item async for item in stream])

    def _open_stream(self, work: Many[Any]) -> AsyncBatchStream:
        return AsyncBatchStream(self, work)

    async def _drive(self, plan: Plan[T], concurrency: int = 1) -> T:
        """Run ``plan``, its calls side by side in up to ``concurrency`` tasks."""
        return await _Jobs(self, concurrency).drive(plan)

    async def _execute(self, job: Job, run: BatchRun | None = None) -> EndpointResult:
        """One call with its retries; cancelling the task ends it."""
        exchange = self._exchange(job, run)
        reply: base.Reply = None
        # A gate's admission may be a remote call: then the exchange steps in a worker thread.
        gated = run is not None and run.gate is not None
        while True:
            if gated:
                action = await anyio.to_thread.run_sync(base.next_action, exchange, reply)
            else:
                action = base.next_action(exchange, reply)
            if isinstance(action, base.Finished):
                break
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


class AsyncBatchStream:
    """The items of a batch as each finishes (``AsyncClient.stream``); ``summary`` once it is
    over. Use it as ``async with client.stream(...) as results: async for item in results``:
    leaving the block early (a ``break``, an exception, a cancellation) stops the batch.
    """

    def __init__(self, client: AsyncClient, work: Many[Any]) -> None:
        self._client = client
        self._work = work
        # Bounds the inputs read and not yet handed over; the jobs' limiter bounds the calls.
        self._window = anyio.Semaphore(work.run.window)
        self._send, self._receive = anyio.create_memory_object_stream[BatchItem[Any]](
            work.run.window
        )
        self._group: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> AsyncBatchStream:
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        self._group.start_soon(self._produce)
        return self

    async def __aexit__(self, *exc: Any) -> bool | None:
        assert self._group is not None
        run = self._work.run
        if exc[0] is not None or not self._finished:
            run.halt()  # left early: send nothing new
            self._group.cancel_scope.cancel()
        try:
            return await self._group.__aexit__(*exc)
        except Exception as failed:  # a task's error, not the caller's
            base.reraise_single(failed)
        finally:
            self._receive.close()
            run.close()

    _finished = False

    def __aiter__(self) -> AsyncBatchStream:
        return self

    async def __anext__(self) -> BatchItem[Any]:
        if self._group is None:
            raise RuntimeError("use the stream in `async with client.stream(...) as results:`")
        try:
            item = await self._receive.receive()
        except anyio.EndOfStream:
            self._finished = True
            raise StopAsyncIteration from None
        self._window.release()
        return self._work.run.record(item)

    @property
    def summary(self) -> BatchSummary:
        """What the batch did so far (final once the stream is exhausted)."""
        return self._work.run.summary

    async def _produce(self) -> None:
        work, run = self._work, self._work.run
        jobs = _Jobs(
            self._client, run.concurrency, run, light_finish=work.light_finish, shared=work.slots
        )

        async def one(index: int, source: Any, send: Any) -> None:
            async with send:
                await send.send(await jobs.drive(run.item_plan(index, source, work.plans)))

        async with self._send, anyio.create_task_group() as group:
            for index, source in run.sources():
                # A slot per input until the consumer has its item: finished items waiting to
                # be read count too, so inputs are read no further ahead than the window.
                await self._window.acquire()
                if run.stopped:
                    await self._send.send(run.not_attempted(index, source))
                    continue
                group.start_soon(one, index, source, self._send.clone())


class _Jobs:
    """Runs plans for an [`AsyncClient`][ncp_cfr.AsyncClient]: at most ``slots`` calls at once,
    within a batch's ``run``.

    Plans are advanced in a worker thread: a step may crop and encode images. With
    ``light_finish`` (single-call plans, whose last step only maps the result back) the step
    after the calls runs in the event loop: one thread hop less per image in a batch.
    """

    def __init__(
        self,
        client: AsyncClient,
        slots: int,
        run: BatchRun | None = None,
        *,
        light_finish: bool = False,
        shared: anyio.CapacityLimiter | None = None,
    ) -> None:
        self._client = client
        self._slots = shared if shared is not None else anyio.CapacityLimiter(slots)
        self._run_of_batch = run
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
                return await self._client._execute(job, self._run_of_batch)
            except CFRError as error:
                return error
