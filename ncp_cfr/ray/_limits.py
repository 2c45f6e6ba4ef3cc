"""Limits for a whole Ray job: one rate, one budget and one quota stop for every worker.

[`LimitsState`][ncp_cfr.ray.LimitsState] is plain state, the body of a named actor; each worker's
batches reach it through a [`Gate`][ncp_cfr.clients._batches.Gate] that asks the actor before
every request. [`ClusterLimits`][ncp_cfr.ray.ClusterLimits] is the driver's handle on that actor.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ncp_cfr.batches import BatchSummary
from ncp_cfr.clients._batches import check_max_calls
from ncp_cfr.clients._ratelimit import RateLimiter
from ncp_cfr.errors import CFRError

__all__ = ["ClusterLimits", "LimitsState"]

#: The counts a worker reports after each batch (the calls are the actor's own count).
_REPORTED = ("photos", "answered", "from_store", "failed", "not_attempted")


class LimitsState:
    """One job's shared limits and counts: what the limits actor holds.

    Every request of every worker is booked here first ([`admit`][ncp_cfr.ray.LimitsState.admit]),
    so the rate, the budget and a stop hold across the cluster. Not thread-safe: an actor runs
    one method at a time.

    Args:
        rate_limit: at most this many requests per second over the whole job (``None``: no limit).
        max_calls: at most this many requests (retries included) over the whole job.
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        rate_limit: float | None = None,
        max_calls: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = RateLimiter(rate_limit) if rate_limit is not None else None
        self._max_calls = check_max_calls(max_calls)
        self._clock = clock
        self._started = clock()
        self._summary = BatchSummary()

    def admit(self, retry: bool) -> float | str:
        """Book one request: the seconds to wait before sending it, or why nothing more may be
        sent (``"quota"``, ``"max_calls"``).
        """
        summary = self._summary
        budget = self._max_calls
        if summary.stopped is None and budget is not None and summary.calls >= budget:
            summary.stopped = "max_calls"
        if summary.stopped is not None:
            return summary.stopped
        summary.calls += 1
        summary.retries += retry
        return 0.0 if self._rate is None else self._rate.reserve(self._clock())

    def stop(self, reason: str) -> None:
        """Admit nothing more (``reason``: ``"quota"``); the first reason given stays."""
        self._summary.stopped = self._summary.stopped or reason

    def record(self, counts: dict[str, int]) -> None:
        """Add a finished batch's counts (``photos``, ``answered``, ``failed``...)."""
        for name in _REPORTED:
            setattr(self._summary, name, getattr(self._summary, name) + int(counts.get(name, 0)))

    def summary(self) -> BatchSummary:
        """The job so far: the photos the workers reported, every call admitted, and the time
        since the limits were made.
        """
        return replace(self._summary, elapsed=self._clock() - self._started)


class ClusterLimits:
    """The shared limits of one Ray job, held by a named actor: pass it to every
    [`Annotator`][ncp_cfr.ray.Annotator] of the job.

    ```python
    limits = ClusterLimits(rate_limit=10, max_calls=50_000)
    rows = ds.map_batches(Annotator, fn_constructor_kwargs={"operation": "face", "limits": limits},
                          compute=ray.data.ActorPoolStrategy(size=4), num_cpus=0.25)
    rows.write_parquet("out/")
    print(limits.summary())   # photos, answered, failed, not attempted, calls, stopped
    ```

    All workers together send at most ``rate_limit`` requests per second and ``max_calls``
    requests (retries included); a quota answer on any worker stops them all (the rows not yet
    sent come out as ``NotAttempted``). The actor uses no CPU slot, lives as long as the driver
    that made it, and holds no credentials: this handle can be pickled into any task.

    Args:
        rate_limit: requests per second for the whole job (``None``: no limit).
        max_calls: requests for the whole job (``None``: no budget).
        name: the actor's name (default: a new unique one), to find it with
            ``ray.get_actor(name)``.

    Raises:
        InvalidArgumentError: a limit that is not a positive number.
        CFRError: Ray is not installed, or not started (``ray.init()``) and cannot be.
    """

    def __init__(
        self,
        *,
        rate_limit: float | None = None,
        max_calls: int | None = None,
        name: str | None = None,
    ) -> None:
        LimitsState(rate_limit, max_calls)  # the arguments checked here, on the driver
        ray = import_ray()
        self.name = name or f"ncp_cfr-limits-{uuid.uuid4().hex[:12]}"
        self.rate_limit = rate_limit
        self.max_calls = max_calls
        actor_class = ray.remote(num_cpus=0, max_concurrency=1)(LimitsState)
        self._actor: Any = actor_class.options(name=self.name).remote(rate_limit, max_calls)

    def summary(self) -> BatchSummary:
        """What the job did so far, over every worker (final once the dataset is written)."""
        summary: BatchSummary = import_ray().get(self._actor.summary.remote())
        return summary

    @property
    def stopped(self) -> str | None:
        """Why the job stopped sending (``"quota"``, ``"max_calls"``), or ``None``."""
        return self.summary().stopped

    def gate(self) -> ActorGate:
        """The gate a worker's batches ask before each request."""
        return ActorGate(self._actor)

    def record(self, summary: BatchSummary) -> None:
        """Add a worker's finished batch to the job's counts (without waiting)."""
        self._actor.record.remote({name: getattr(summary, name) for name in _REPORTED})

    def __repr__(self) -> str:
        return (
            f"ClusterLimits(name={self.name!r}, rate_limit={self.rate_limit!r}, "
            f"max_calls={self.max_calls!r})"
        )


class ActorGate:
    """A worker's side of the limits actor: one blocking call per request admitted."""

    def __init__(self, actor: Any) -> None:
        self._actor = actor

    def admit(self, retry: bool) -> float | str:
        answer: float | str = import_ray().get(self._actor.admit.remote(retry))
        return answer

    def stop(self, reason: str) -> None:
        self._actor.stop.remote(reason)  # not waited for: the next admission sees it


def import_ray() -> Any:
    """The ``ray`` module, or a CFRError that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise CFRError(
            f'ncp_cfr.ray needs Ray Data ({exc}): pip install "clova-face[ray]"'
        ) from None
    return ray
