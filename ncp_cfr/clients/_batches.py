"""A batch in progress, whichever shell runs it: inputs read lazily, the result store consulted
before any call, calls counted against a budget, the run stopped at the quota, and the summary.

The shells only decide how items run side by side; every decision about one item (answer it from
the store, send it, store its answer, report it as not attempted) is made here, inside the item's
plan, so both shells make it the same way and in a worker thread.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass, field
from typing import Any, Protocol

from ncp_cfr.batches import Batch, BatchItem, BatchSummary
from ncp_cfr.clients._base import ImageInput, Progress, check_concurrency, progress_hook
from ncp_cfr.clients._ratelimit import RateLimiter
from ncp_cfr.errors import (
    CFRError,
    ImageError,
    InvalidArgumentError,
    InvalidImageError,
    NotAttempted,
    QuotaExceededError,
)
from ncp_cfr.images import PreparedImage, content_of
from ncp_cfr.models import RESULTS_BY_OPERATION
from ncp_cfr.pipelines import Plan
from ncp_cfr.store import ResultStore, StoredResult, request_key

#: Inputs of a batch in progress at once, per concurrent call: enough to prepare the next images
#: while calls are out, few enough that a long batch does not hold many images in memory.
WINDOW_PER_SLOT = 2

#: Failures that belong to the photo, not to the moment: remembered, not paid for again.
_PERMANENT = (ImageError, InvalidImageError)


@dataclass(frozen=True)
class StoreOptions:
    """Where and how a batch remembers its answers."""

    store: ResultStore
    operation: str
    #: The options that change the answer (upload size, margin, scales...), part of the key.
    options: Mapping[str, object]
    base_url: str
    retry_failed: bool = False


def check_max_calls(max_calls: int | None) -> int | None:
    """``max_calls`` if it is ``None`` or a whole number >= 0.

    Raises:
        InvalidArgumentError: anything else.
    """
    if max_calls is not None and (
        isinstance(max_calls, bool) or not isinstance(max_calls, int) or max_calls < 0
    ):
        raise InvalidArgumentError(f"max_calls is a whole number >= 0, got {max_calls!r}")
    return max_calls


class Gate(Protocol):
    """Who else admits a batch's requests: limits shared beyond this process (a cluster's rate,
    budget and quota stop, as ``ncp_cfr.ray`` keeps them in an actor).

    ``admit`` may block (a remote call): the async shell asks it from a worker thread.
    """

    def admit(self, retry: bool) -> float | str:
        """Book one request: the seconds to wait before sending it, or why nothing more may be
        sent (``"quota"``, ``"max_calls"``).
        """

    def stop(self, reason: str) -> None:
        """Tell every other holder of the gate to send nothing new (``reason``: ``"quota"``)."""


@dataclass
class _Counters:
    summary: BatchSummary = field(default_factory=BatchSummary)
    lock: threading.Lock = field(default_factory=threading.Lock)


class BatchRun:
    """The bookkeeping of one batch: its inputs, its limits, its store and its summary."""

    def __init__(
        self,
        images: Iterable[ImageInput],
        concurrency: int,
        rate_limit: float | None,
        progress: Progress,
        *,
        store: StoreOptions | None = None,
        max_calls: int | None = None,
        owned_store: ResultStore | None = None,
        gate: Gate | None = None,
    ) -> None:
        check_concurrency(concurrency)
        check_max_calls(max_calls)
        self.concurrency = concurrency
        self.window = WINDOW_PER_SLOT * concurrency
        self.rate = RateLimiter(rate_limit) if rate_limit is not None else None
        self.store = store
        self._owned_store = owned_store  # opened from a path for this batch: closed with it
        self.max_calls = max_calls
        self.gate = gate
        # Read lazily: a generator of 100,000 paths is never held whole.
        self._inputs = iter(images)
        self.total = len(images) if isinstance(images, Sized) else None
        self._update, self._close = progress_hook(progress, self.total or 0)
        self._counters = _Counters()
        self._started = time.monotonic()
        self._hook_failed = False
        self._reported = 0  # items handed to the consumer, in the order it got them
        self._in_progress: dict[str, threading.Event] = {}  # store keys being answered now
        self._final: BatchSummary | None = None
        #: Set when the batch is abandoned (an interrupt, a bug): send nothing, wake sleepers.
        self.halted = threading.Event()

    # -- inputs and outcomes ----------------------------------------------------------------------

    def sources(self) -> Iterator[tuple[int, ImageInput]]:
        """The inputs with their positions, read one at a time as the shell asks."""
        return enumerate(self._inputs)

    @property
    def stopped(self) -> str | None:
        """Why nothing new may be sent (``"quota"``, ``"max_calls"``), or ``None``."""
        return self._counters.summary.stopped

    def not_attempted(self, index: int, source: ImageInput) -> BatchItem[Any]:
        """The item of an input the run stopped before."""
        return self._finish(BatchItem(index, _given(source), error=self._not_attempted_error()))

    def item_plan(
        self, index: int, source: ImageInput, plans: Callable[[ImageInput], Plan[Any]]
    ) -> Plan[BatchItem[Any]]:
        """The plan of one input: from the store if it knows the answer, else the calls; its
        outcome (a CFRError included) becomes the item, and a new answer is stored at once.
        """
        given = _given(source)
        try:
            if self.stopped:
                raise self._not_attempted_error()
            if self.store is None:
                result = yield from plans(source)
                return self._finish(BatchItem(index, given, result=result))
            data, key, sha = self._keyed(source)
            first = self._claim(key)  # a copy of the photo already in progress is waited for
            try:
                known = self.store.store.get(key)
                if known is not None and (known.ok or not self.store.retry_failed or not first):
                    return self._finish(_remembered(index, given, known, self.store.operation))
                result = yield from plans(data)
                self._save(key, sha, given, result=result)
                return self._finish(BatchItem(index, given, result=result))
            finally:
                self._release(key, first)
        except NotAttempted as error:
            return self._finish(BatchItem(index, given, error=error))
        except CFRError as error:
            if self.store is not None and isinstance(error, _PERMANENT):
                self._save_failure(source, given, error)
            return self._finish(BatchItem(index, given, error=error))

    def record(self, item: BatchItem[Any]) -> BatchItem[Any]:
        """Report an item's progress (in the consumer's thread); a failing hook stops the batch."""
        self._reported += 1
        if not self._hook_failed:
            try:
                self._update(self._reported, self.total or 0)
            except BaseException:
                self._hook_failed = True
                self.halted.set()
                raise
        return item

    # -- calls ------------------------------------------------------------------------------------

    def admit(self, retry: bool, now: float) -> float:
        """Count a request about to be sent and book its slot: the seconds to wait before sending
        it. Refused when the run has stopped or a budget is spent, here or at the gate.

        Args:
            retry: the request is a retry.
            now: the clock's monotonic time.

        Raises:
            NotAttempted: nothing more may be sent.
        """
        if self.stopped is not None:
            raise self._not_attempted_error()
        # The gate first: a request it refuses is not counted here.
        shared = self.gate.admit(retry) if self.gate is not None else 0.0
        if isinstance(shared, str):
            self.stop(shared, share=False)
            raise self._not_attempted_error()
        with self._counters.lock:
            summary = self._counters.summary
            budget = self.max_calls
            spent = budget is not None and summary.calls >= budget
            if spent and summary.stopped is None:
                summary.stopped = "max_calls"
            # A request the gate has just admitted is sent even if another one of this batch was
            # refused meanwhile: its slot of the shared budget is booked and would be lost.
            if spent or (
                summary.stopped is not None and (self.gate is None or self.halted.is_set())
            ):
                raise self._not_attempted_error()
            summary.calls += 1
            summary.retries += retry
        local = self.rate.reserve(now) if self.rate is not None else 0.0
        return max(shared, local)

    # -- the end ----------------------------------------------------------------------------------

    @property
    def summary(self) -> BatchSummary:
        """The counts so far; once the batch is closed, its final counts (calls abandoned in
        flight that end later do not change them).
        """
        return self._final if self._final is not None else self._counters.summary

    def stop(self, reason: str, *, share: bool = True) -> None:
        """Send nothing new (``reason``: ``"quota"``); calls in flight finish. With a gate, its
        other holders stop too (``share=False``: the gate is where the stop came from).
        """
        with self._counters.lock:
            self._counters.summary.stopped = self._counters.summary.stopped or reason
        if share and self.gate is not None:
            self.gate.stop(reason)

    def halt(self) -> None:
        """Abandon the batch: send nothing more; the rest is not attempted."""
        with self._counters.lock:
            self._counters.summary.stopped = self._counters.summary.stopped or "interrupted"
        self.halted.set()

    def close(self) -> None:
        """End the batch: the elapsed time, the progress bar closed."""
        self._counters.summary.elapsed = time.monotonic() - self._started
        with self._counters.lock:
            self._final = dataclasses.replace(self._counters.summary)
        try:
            self._close()
        finally:
            if self._owned_store is not None:
                self._owned_store.close()

    def in_order(self, items: Iterable[BatchItem[Any]]) -> Batch[Any]:
        """A stream's items in input order, with the summary: what ``*_many`` returns."""
        batch: Batch[Any] = Batch(sorted(items, key=lambda item: item.index))
        batch.summary = self.summary
        return batch

    # -- helpers ----------------------------------------------------------------------------------

    def _finish(self, item: BatchItem[Any]) -> BatchItem[Any]:
        with self._counters.lock:
            summary = self._counters.summary
            summary.photos += 1
            if isinstance(item.error, NotAttempted):
                summary.not_attempted += 1
            elif item.error is not None:
                summary.failed += 1
                if isinstance(item.error, QuotaExceededError) and summary.stopped is None:
                    summary.stopped = "quota"  # nothing new: every later call would be refused
            elif item.from_store:
                summary.from_store += 1
            else:
                summary.answered += 1
        return item

    def _claim(self, key: str) -> bool:
        """Take ``key`` for this item; if another item of the batch has it (a copy of the same
        photo), wait until that one is done. Whether this item is the first with the key.
        """
        with self._counters.lock:
            busy = self._in_progress.get(key)
            if busy is None:
                self._in_progress[key] = threading.Event()
                return True
        busy.wait()
        return False

    def _release(self, key: str, first: bool) -> None:
        if first:
            with self._counters.lock:
                done = self._in_progress.pop(key)
            done.set()

    def _not_attempted_error(self) -> NotAttempted:
        # A budget refused by the gate is the job's, shared with other processes.
        budget = (
            "the shared max_calls budget was spent"
            if self.max_calls is None
            else f"max_calls={self.max_calls} calls were spent"
        )
        reason = {
            "quota": "the service's call quota is spent",
            "max_calls": budget,
        }.get(self.stopped or "", "the batch was interrupted")
        return NotAttempted(f"not sent: {reason}; run the same batch again to resume")

    def _keyed(self, source: ImageInput) -> tuple[ImageInput, str, str]:
        """What to send for ``source`` (its bytes once read), its store key and content hash.

        A file the store has hashed before, unchanged since (same size and modification time),
        is not read here: on a stored answer it is not read at all.
        """
        assert self.store is not None
        store, data = self.store.store, source
        sha: str | None
        if isinstance(source, PreparedImage):
            sha = _hash_prepared(source)
        elif isinstance(source, (str, os.PathLike)):
            path = os.path.abspath(source)
            try:
                stat = os.stat(path)
            except OSError:
                stat = None  # content_of says why, in its own words
            sha = None if stat is None else store.file_hash(path, stat.st_size, stat.st_mtime_ns)
            if sha is None:
                data, sha = content_of(source)
                if stat is not None:
                    store.remember_file_hash(path, stat.st_size, stat.st_mtime_ns, sha)
        else:
            data, sha = content_of(source)
        assert sha is not None
        options = self.store
        key = request_key(sha, options.operation, options.options, options.base_url)
        return data, key, sha

    def _save(self, key: str, sha: str, given: object, *, result: Any) -> None:
        self._remember(
            key,
            sha,
            given,
            result_json=result.model_dump_json(by_alias=True),
            raw_json=_raw_json(result),
            request_id=getattr(result, "request_id", None),
        )

    def _save_failure(self, source: ImageInput, given: object, error: CFRError) -> None:
        try:
            _, key, sha = self._keyed(source)
        except CFRError:
            return  # unreadable: no content to key it by, so nothing to remember
        self._remember(
            key,
            sha,
            given,
            request_id=getattr(error, "request_id", None),
            error=error,
        )

    def _remember(
        self,
        key: str,
        sha: str,
        given: object,
        *,
        result_json: str | None = None,
        raw_json: str | None = None,
        request_id: str | None = None,
        error: CFRError | None = None,
    ) -> None:
        """Store one photo's outcome: its answer, or the permanent failure it ended with."""
        assert self.store is not None
        self.store.store.put(
            StoredResult(
                key=key,
                sha256=sha,
                operation=self.store.operation,
                source=given if isinstance(given, str) else "",
                ok=error is None,
                result_json=result_json,
                raw_json=raw_json,
                request_id=request_id,
                error_type=None if error is None else type(error).__name__,
                error_message=None if error is None else str(error),
                calls=0 if error is not None else 1,
                stored_at=time.time(),
            )
        )


def _given(source: object) -> object:
    return str(source) if isinstance(source, os.PathLike) else source


def _hash_prepared(prepared: PreparedImage) -> str:
    import hashlib

    return hashlib.sha256(prepared.data).hexdigest()


def _raw_json(result: Any) -> str | None:
    """The service's answer as received: its own bytes when the result still has them (not
    parsed only to be written out again), else the parsed answer (``analyze``'s), else none.
    """
    body = getattr(result, "_raw_body", None)
    if isinstance(body, bytes):
        return body.decode("utf-8", "replace")
    raw = getattr(result, "raw", None)
    if raw is None:
        return None
    import json

    return json.dumps(raw, ensure_ascii=False, separators=(",", ":"))


def _remembered(index: int, given: object, known: StoredResult, operation: str) -> BatchItem[Any]:
    """The item of an answer the store already holds: a result, or a permanent failure."""
    if known.ok and known.result_json is not None:
        result = RESULTS_BY_OPERATION[operation].model_validate_json(known.result_json)
        if hasattr(result, "_request_id"):
            result._request_id = known.request_id
            result._raw_body = None if known.raw_json is None else known.raw_json.encode()
        return BatchItem(index, given, result=result, from_store=True)
    message = f"{known.error_message} (remembered by the store; retry_failed=True sends it again)"
    error: CFRError = (
        InvalidImageError(message, status_code=400, request_id=known.request_id)
        if known.error_type == "InvalidImageError"
        else ImageError(message)
    )
    return BatchItem(index, given, error=error, from_store=True)
