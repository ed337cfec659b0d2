"""Per-key token buckets for the accept paths: per client address and per payer.

Each bucket holds one minute's worth of requests and refills continuously, so a launch
burst passes and only a sustained flood is refused (429). The limits are per API process
(several processes multiply them); the table of buckets is bounded: the least recently
seen keys are forgotten first, so a flood of fresh keys cannot grow memory."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from payfirst.domain.errors import PaymentRejected
from payfirst.domain.reasons import Reason

MAX_TRACKED_KEYS = 100_000


class RateLimiter:
    def __init__(
        self,
        per_minute: int,
        *,
        what: str,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_TRACKED_KEYS,
    ) -> None:
        self._capacity = float(per_minute)
        self._per_second = per_minute / 60.0
        self._what = what
        self._clock = clock
        self._max_keys = max_keys
        # key -> (tokens left, when they were counted)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self._capacity > 0

    def take(self, key: str) -> None:
        """Count one request of `key`; raise TooManyRequests when its bucket is empty."""
        if not self.enabled:
            return
        now = self._clock()
        tokens, then = self._buckets.pop(key, (self._capacity, now))
        tokens = min(self._capacity, tokens + (now - then) * self._per_second)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            wait_s = max(1, int((1.0 - tokens) / self._per_second + 0.999))
            raise TooManyRequests(self._what, wait_s)
        self._buckets[key] = (tokens - 1.0, now)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)


class TooManyRequests(PaymentRejected):
    def __init__(self, what: str, retry_after_s: int) -> None:
        super().__init__(
            Reason.RATE_LIMITED, f"too many payment requests for this {what}; retry later"
        )
        self.retry_after_s = retry_after_s
