"""The accept paths' token buckets: a minute's worth up front, refilled continuously,
bounded in memory."""

from __future__ import annotations

import pytest

from payfirst.api.rate_limits import RateLimiter, TooManyRequests
from payfirst.api.responses import status_of


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_of_one_minutes_worth_passes_then_429_until_refilled() -> None:
    clock = Clock()
    limiter = RateLimiter(60, what="payer", clock=clock)
    for _ in range(60):
        limiter.take("a")
    with pytest.raises(TooManyRequests) as refused:
        limiter.take("a")
    assert status_of(refused.value.reason) == 429
    assert refused.value.reason == "rate_limited"
    assert refused.value.retry_after_s == 1
    limiter.take("b")  # other keys have buckets of their own
    clock.now += 1.0  # 60 per minute: one more after a second
    limiter.take("a")
    with pytest.raises(TooManyRequests):
        limiter.take("a")


def test_zero_turns_the_limit_off() -> None:
    limiter = RateLimiter(0, what="client")
    assert not limiter.enabled
    for _ in range(10_000):
        limiter.take("a")


def test_the_table_of_buckets_is_bounded() -> None:
    clock = Clock()
    limiter = RateLimiter(1, what="client", clock=clock, max_keys=3)
    limiter.take("a")
    for key in ("b", "c", "d"):
        limiter.take(key)
    # "a" was forgotten (least recently seen): it starts with a full bucket again.
    limiter.take("a")
    with pytest.raises(TooManyRequests):
        limiter.take("d")
