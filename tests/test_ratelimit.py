"""The batch rate limiter, driven by explicit times: the caller passes ``now``, nothing sleeps."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from ncp_cfr import CFRError, InvalidArgumentError
from ncp_cfr.clients import RateLimiter, _ratelimit


def test_the_public_name_is_the_implementation() -> None:
    assert RateLimiter is _ratelimit.RateLimiter


def test_requests_at_the_same_moment_are_spaced_evenly() -> None:
    limiter = RateLimiter(20)
    assert [round(limiter.reserve(10.0), 3) for _ in range(4)] == [0.0, 0.05, 0.1, 0.15]
    # After an idle spell there is no credit beyond the burst.
    assert limiter.reserve(100.0) == 0.0
    assert limiter.reserve(100.0) == pytest.approx(0.05)


def test_a_caller_who_waited_its_turn_goes_at_once() -> None:
    limiter = RateLimiter(10)
    assert limiter.reserve(5.0) == 0.0
    assert limiter.reserve(5.04) == pytest.approx(0.06)  # its slot is 5.1
    assert limiter.reserve(5.2) == pytest.approx(0.0)  # the 5.2 slot is free: no wait
    assert limiter.reserve(5.25) == pytest.approx(0.05)  # the next one is 5.3


def test_a_fractional_rate_spaces_by_its_interval() -> None:
    limiter = RateLimiter(0.5)
    assert [limiter.reserve(0.0) for _ in range(3)] == pytest.approx([0.0, 2.0, 4.0])


def test_burst() -> None:
    limiter = RateLimiter(10, burst=3)
    waits = [limiter.reserve(0.0) for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2])


def test_burst_credit_comes_back_at_the_rate_and_never_beyond_the_burst() -> None:
    limiter = RateLimiter(10, burst=3)
    assert [limiter.reserve(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    # 0.1 s later one request's worth of credit is back, and only one.
    assert limiter.reserve(0.1) == pytest.approx(0.0)
    assert limiter.reserve(0.1) == pytest.approx(0.1)
    # A long idle spell refills the burst, not more.
    assert [limiter.reserve(60.0) for _ in range(4)] == pytest.approx([0.0, 0.0, 0.0, 0.1])


def test_every_thread_gets_its_own_slot() -> None:
    limiter = RateLimiter(1000)
    slots: list[float] = []
    lock = threading.Lock()

    def book() -> None:
        for _ in range(100):
            wait = limiter.reserve(0.0)
            with lock:
                slots.append(wait)

    threads = [threading.Thread(target=book) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 800 bookings at the same instant: 800 distinct slots, 1 ms apart, none lost or shared.
    assert sorted(round(s * 1000) for s in slots) == list(range(800))


@pytest.mark.parametrize("rate", [0, -1, True, "5", None])
def test_refuses_a_rate_that_is_not_a_positive_number(rate: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="rate_limit"):
        RateLimiter(rate)


@pytest.mark.parametrize("burst", [0, -1, 2.5, "3"])
def test_refuses_a_burst_that_is_not_a_whole_number_from_one(burst: Any) -> None:
    with pytest.raises(CFRError, match="burst"):
        RateLimiter(5, burst=burst)
