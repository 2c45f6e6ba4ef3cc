"""A request rate shared by every worker of a batch: the one stateful helper the clients pace with.

It keeps no clock of its own: the caller passes the time, so tests decide it.
"""

from __future__ import annotations

import threading

from ncp_cfr.errors import InvalidArgumentError

__all__ = ["RateLimiter"]


class RateLimiter:
    """At most ``rate`` requests per second, shared by every worker (GCRA token bucket).

    [`reserve`][ncp_cfr.clients.RateLimiter.reserve] books the next slot and says how long to wait
    for it; the caller sleeps that long (``time.sleep`` or ``anyio.sleep``), then sends. Booking
    first means two workers never get the same slot. Thread-safe.

    Args:
        rate: requests per second (> 0).
        burst: how many requests may go back to back after an idle spell (default 1: evenly
            spaced).
    """

    def __init__(self, rate: float, burst: int = 1) -> None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
            raise InvalidArgumentError(f"rate_limit is requests per second (> 0), got {rate!r}")
        if isinstance(burst, bool) or not (isinstance(burst, int) and burst >= 1):
            raise InvalidArgumentError(f"burst must be a whole number >= 1, got {burst!r}")
        self.rate = float(rate)
        self.burst = burst
        self._interval = 1.0 / self.rate
        self._tat: float | None = None  # the theoretical arrival time of the next request
        self._lock = threading.Lock()

    def reserve(self, now: float) -> float:
        """Book a slot at or after ``now`` (monotonic seconds); the seconds to wait for it."""
        with self._lock:
            tat = now if self._tat is None else max(self._tat, now)
            start = max(now, tat - (self.burst - 1) * self._interval)
            self._tat = tat + self._interval
            return start - now
