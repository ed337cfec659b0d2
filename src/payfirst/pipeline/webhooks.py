"""The webhook dispatcher: one per worker process (not per network). It claims due
deliveries under a lease (several workers may run: a delivery is never sent by two at once,
and a killed worker's claims come due again when their lease runs out), sends each with
the Sender port (signed, SSRF-guarded: payfirst.adapters.webhook_http), at most
`concurrency` at a time, and records each attempt. Woken by the database's notice when
messages are written; otherwise it looks for due retries every `idle_s`. Once a minute it
disables the endpoints failing for DISABLE_AFTER and tells their owners."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from payfirst.domain.webhooks import (
    DISABLE_AFTER,
    AttemptResult,
    DueDelivery,
    next_attempt,
)
from payfirst.ports.store import Store

log = logging.getLogger("payfirst.webhooks")

#: How long a claim holds a delivery: longer than a send can take (15 s) with room.
LEASE_S = 60.0
DISABLE_CHECK_EVERY_S = 60.0


class Sender(Protocol):
    async def send(self, delivery: DueDelivery) -> AttemptResult:
        """One signed attempt; never raises (the result carries an error)."""

    async def aclose(self) -> None: ...


class WebhookDispatcher:
    def __init__(
        self,
        store: Store,
        sender: Sender,
        *,
        concurrency: int = 64,
        idle_s: float = 1.0,
        lease_s: float = LEASE_S,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.sender = sender
        self.concurrency = concurrency
        self.idle_s = idle_s
        self.lease_s = lease_s
        self.now = now
        self.woken = asyncio.Event()
        self.delivered = 0
        self.failed_attempts = 0
        self._slot_freed = asyncio.Event()
        # Attempts waiting to be recorded: one transaction records all those waiting.
        self._outcomes: list[tuple[DueDelivery, AttemptResult, datetime | None]] = []
        self._recorded: list[asyncio.Future[bool]] = []
        self._to_record = asyncio.Event()
        self._recorder: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._last_disable_check = 0.0

    def wake(self) -> None:
        self.woken.set()

    async def start(self) -> None:
        await self.store.watch_webhook_messages(self.wake)
        self._recorder = asyncio.create_task(self._record_loop())
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for task in list(self._in_flight):
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        if self._recorder is not None:
            self._recorder.cancel()
            await asyncio.gather(self._recorder, return_exceptions=True)
            self._recorder = None
        await self.sender.aclose()

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            self.woken.clear()
            try:
                await self.disable_failing()
                claimed = await self.tick()
                backoff = 0.5
            except Exception as exc:  # the database is unreachable: try again later
                log.warning("webhook dispatcher: %s; retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(30.0, backoff * 2)
                continue
            if claimed:
                continue  # more may be due: look again at once (bounded by the slots)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.woken.wait(), self.idle_s)

    async def tick(self) -> int:
        """Claim as many due deliveries as there are free slots and start sending them;
        how many were claimed."""
        # Claim in batches: a claim is a write transaction, one per freed slot would be
        # the bottleneck under load.
        batch = max(1, self.concurrency // 4)
        while self._in_flight and self.concurrency - len(self._in_flight) < batch:
            self._slot_freed.clear()
            await self._slot_freed.wait()
        due = await self.store.claim_webhook_deliveries(
            self.concurrency - len(self._in_flight), self.lease_s
        )
        for delivery in due:
            task = asyncio.create_task(self._deliver(delivery))
            self._in_flight.add(task)
            task.add_done_callback(self._done)
        return len(due)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._slot_freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook delivery crashed: %r", task.exception())

    async def _deliver(self, delivery: DueDelivery) -> None:
        result = await self.sender.send(delivery)
        retry_at = None
        if not result.delivered:
            self.failed_attempts += 1
            retry_at = next_attempt(delivery.started_at, self.now(), delivery.attempts + 1)
            log.info(
                "webhook %s to %s: attempt %d failed (%s)%s",
                delivery.message_id,
                delivery.url,
                delivery.attempts + 1,
                result.error or f"HTTP {result.status}",
                "" if retry_at else "; giving up",
            )
        held = await self._record(delivery, result, retry_at)
        if result.delivered and held:
            self.delivered += 1

    async def _record(
        self, delivery: DueDelivery, result: AttemptResult, retry_at: datetime | None
    ) -> bool:
        """Hand the attempt to the recorder; whether its lease still held."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._outcomes.append((delivery, result, retry_at))
        self._recorded.append(done)
        self._to_record.set()
        return await done

    async def _record_loop(self) -> None:
        """Record every attempt waiting in one transaction, retrying while the database is
        away (the leases keep the deliveries ours meanwhile; if one runs out, the delivery
        is sent again: at least once)."""
        delay = 0.2
        while True:
            await self._to_record.wait()
            self._to_record.clear()
            outcomes, futures = self._outcomes, self._recorded
            self._outcomes, self._recorded = [], []
            while True:
                try:
                    held = await self.store.record_webhook_attempts(outcomes)
                    break
                except Exception as exc:
                    log.warning("webhook attempts not recorded yet: %s", exc)
                    await asyncio.sleep(delay)
                    delay = min(5.0, delay * 2)
            delay = 0.2
            for future, ok in zip(futures, held, strict=True):
                if not future.done():
                    future.set_result(ok)

    async def disable_failing(self, *, force: bool = False) -> int:
        """Disable the endpoints failing for DISABLE_AFTER (once a minute unless `force`)."""
        clock = time.monotonic()
        if not force and clock - self._last_disable_check < DISABLE_CHECK_EVERY_S:
            return 0
        self._last_disable_check = clock
        days = DISABLE_AFTER.total_seconds() / 86400
        disabled = await self.store.disable_failing_webhook_endpoints(
            self.now() - DISABLE_AFTER, f"no successful delivery for {days:g} days"
        )
        for endpoint in disabled:
            log.warning(
                "webhook endpoint %s (%s, account %s) disabled: failing since %s",
                endpoint.id,
                endpoint.url,
                endpoint.account_id,
                endpoint.failing_since,
            )
        return len(disabled)

    async def drain(self) -> None:
        """Wait for the sends in flight (tests, the benchmark)."""
        while self._in_flight:
            await asyncio.gather(*list(self._in_flight), return_exceptions=True)
