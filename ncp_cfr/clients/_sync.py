"""[`Client`][ncp_cfr.Client]: the base's decisions, sent with ``httpx.Client`` in threads.

What differs from the async shell is only how: a blocking send bounded by the watchdog
([`_deadline`][ncp_cfr.clients._deadline]), ``Clock.sleep`` that a batch can cut short, and a
thread pool with a semaphore for calls side by side.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from types import TracebackType
from typing import Any

import httpx

from ncp_cfr import protocol
from ncp_cfr.batches import BatchItem, BatchSummary
from ncp_cfr.clients import _base as base
from ncp_cfr.clients._base import ImageInput, T
from ncp_cfr.clients._batches import BatchRun
from ncp_cfr.clients._deadline import WATCHDOG, watched_transport
from ncp_cfr.clients._methods import Many, Methods, Single
from ncp_cfr.errors import APIConnectionError, CFRError, ServerError
from ncp_cfr.models import EndpointResult
from ncp_cfr.pipelines import Job, JobOutcome, Pending, Plan, advance
from ncp_cfr.protocol import Request

__all__ = ["BatchStream", "Client"]


#: Seconds an interrupted batch waits for the answers in flight, so that they are stored.
_GRACE = 1.0


class _Stopped(Exception):
    """A batch was abandoned (an interrupt or a failure elsewhere): send nothing more."""


class Client(Methods[httpx.Client]):
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

    def _perform(self, work: Single[Any] | Many[Any]) -> Any:
        """Run what a public method asked for: one plan, or a batch (in input order)."""
        if isinstance(work, Single):
            return self._drive(work.plan, work.concurrency)
        return work.run.in_order(self._stream(work.run, work.plans))

    def _open_stream(self, work: Many[Any]) -> BatchStream:
        return BatchStream(self._stream(work.run, work.plans), work.run)

    def _drive(self, plan: Plan[T], concurrency: int = 1) -> T:
        """Run ``plan`` here, its calls side by side in up to ``concurrency`` threads."""
        if concurrency <= 1:  # one call at a time: no pool, no hand-off to another thread
            return _Jobs(self, None, 1).drive(plan)
        with ThreadPoolExecutor(concurrency, thread_name_prefix="ncp_cfr") as pool:
            return _Jobs(self, pool, concurrency).drive(plan)

    def _stream(
        self, run: BatchRun, plans: Callable[[ImageInput], Plan[Any]]
    ) -> Iterator[BatchItem[Any]]:
        """Each input's item as it finishes, at most ``run.window`` inputs in progress."""
        # Inputs are prepared by item workers; a plan's fan-out (analyze crops) goes to the call
        # pool; the jobs' semaphore bounds the HTTP calls of both together.
        items = ThreadPoolExecutor(run.window, thread_name_prefix="ncp_cfr-item")
        calls = ThreadPoolExecutor(run.concurrency, thread_name_prefix="ncp_cfr-call")
        jobs = _Jobs(self, calls, run.concurrency, run)
        pending: set[Future[BatchItem[Any]]] = set()
        try:
            for index, source in run.sources():
                if run.stopped:
                    yield run.record(run.not_attempted(index, source))
                    continue
                pending.add(items.submit(jobs.drive, run.item_plan(index, source, plans)))
                while len(pending) >= run.window:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    yield from (run.record(future.result()) for future in done)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (run.record(future.result()) for future in done)
        except BaseException:
            # Ctrl-C, a bug, or the consumer stopped early: send nothing new and drop what is
            # queued. Answers already on their way get a moment to arrive and be stored (a rerun
            # then need not pay for them), not the whole timeout.
            run.halt()
            items.shutdown(wait=False, cancel_futures=True)
            calls.shutdown(wait=False, cancel_futures=True)
            if run.store is not None and pending:
                wait(pending, timeout=_GRACE)
            raise
        finally:
            run.close()
        items.shutdown()
        calls.shutdown()

    def _execute(self, job: Job, run: BatchRun | None = None) -> EndpointResult:
        """One call with its retries, in this thread; an abandoned batch ends it early."""
        stop = None if run is None else run.halted
        exchange = self._exchange(job, run)
        reply: base.Reply = None
        while not isinstance(action := base.next_action(exchange, reply), base.Finished):
            if stop is not None and stop.is_set():
                raise _Stopped
            if isinstance(action, base.Send):
                reply = self._send(action.request)
            else:
                reply = None
                if self._clock.sleep(action.seconds, stop):
                    raise _Stopped
        return action.value

    def _send(self, request: Request) -> base.Reply:
        """One attempt, over within ``timeout`` whatever the server does: the answer, or the
        CFRError it failed with (the exchange decides whether to retry).
        """
        timeout = self._settings.timeout
        watch = WATCHDOG.start(timeout)
        status: int | None = None
        # The SDK's own pool reports its streams itself; a pool passed in is traced.
        trace = None if self._pool_is_ours else {"trace": watch.trace}
        try:
            with self._http.stream(**self._stream_args(request), extensions=trace) as response:
                status = response.status_code
                stream = response.extensions.get("network_stream")
                if stream is not None:
                    watch.note(stream)
                reader, streaming = base.answer_reader(response, request.url)
                for chunk in response.iter_raw() if streaming else ():
                    reader.feed(chunk)
                    if watch.expired:  # a slow drip: chunks keep coming, time is up
                        break
                if watch.expired:
                    return protocol.attempt_timeout_error(request.url, timeout)
                return status, reader.headers, reader.body()
        except (APIConnectionError, ServerError) as error:  # an answer too large or undecodable
            return error
        except base.IO_ERRORS as exc:
            if watch.expired:  # the watchdog shut the socket: that is what ended the read
                return protocol.attempt_timeout_error(request.url, timeout)
            return base.transport_error(exc, request, timeout, status)
        finally:
            WATCHDOG.finish(watch)


class BatchStream:
    """The items of a batch as each finishes (``Client.stream``); ``summary`` once it is over.

    An iterator; ``with client.stream(...) as results:`` stops the batch cleanly if the loop
    ends early (a ``break``, an exception): nothing new is sent, and a store opened from a path
    is closed.
    """

    def __init__(self, items: Iterator[BatchItem[Any]], run: BatchRun) -> None:
        self._items = items
        self._run = run

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> BatchItem[Any]:
        return next(self._items)

    def __enter__(self) -> BatchStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the batch: nothing new is sent; what is in flight is abandoned."""
        close = getattr(self._items, "close", None)
        if close is not None:
            close()

    @property
    def summary(self) -> BatchSummary:
        """What the batch did so far (final once the stream is exhausted or closed)."""
        return self._run.summary


class _Jobs:
    """Runs plans for a [`Client`][ncp_cfr.Client]: at most ``slots`` calls at once, in ``pool``
    (``None``: one at a time, in this thread), within a batch's ``run``.
    """

    def __init__(
        self,
        client: Client,
        pool: ThreadPoolExecutor | None,
        slots: int,
        run: BatchRun | None = None,
    ) -> None:
        self._client = client
        self._pool = pool
        self._slots = threading.BoundedSemaphore(slots)
        self._run_of_batch = run

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
                return self._client._execute(job, self._run_of_batch)
            except CFRError as error:
                return error
