"""Clients waiting for a payment to change (long-poll, server-sent events, /settle), woken by
the store's change notices instead of each polling the database.

A waiter registers BEFORE it reads the payment, so a change committed between its read and
its wait still wakes it. The number of waiters per process is bounded: past the bound a
request is answered at once with what is known (the client may ask again)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any
from uuid import UUID

from payfirst.ports.store import Store


class TooManyWaiters(Exception):
    """The process already holds `max_waiters` waiting clients."""


class PaymentWaiters:
    def __init__(self, max_waiters: int) -> None:
        self.max_waiters = max_waiters
        self._events: dict[UUID, set[asyncio.Event]] = {}
        self._count = 0
        self._watching: asyncio.Future[None] | None = None

    @property
    def count(self) -> int:
        return self._count

    async def start(self, store: Store) -> None:
        """Subscribe to the store's change notices (once; concurrent callers share it)."""
        if self._watching is None:
            self._watching = asyncio.ensure_future(store.watch_payment_changes(self.changed))
        try:
            await asyncio.shield(self._watching)
        except Exception:
            self._watching = None  # retried by the next waiter
            raise

    def changed(self, payment_id: UUID | None) -> None:
        """A store notice: wake that payment's waiters (None: wake everyone)."""
        if payment_id is None:
            for events in self._events.values():
                for event in events:
                    event.set()
            return
        for event in self._events.get(payment_id, ()):
            event.set()

    @contextlib.contextmanager
    def waiting(self, payment_id: UUID) -> Iterator[asyncio.Event]:
        """An event set whenever the payment may have changed; clear it before each read."""
        if self._count >= self.max_waiters:
            raise TooManyWaiters
        event = asyncio.Event()
        self._events.setdefault(payment_id, set()).add(event)
        self._count += 1
        try:
            yield event
        finally:
            self._count -= 1
            events = self._events.get(payment_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._events[payment_id]


async def wait_for(
    event: asyncio.Event, timeout_s: float, *, gone: asyncio.Future[None] | None = None
) -> bool:
    """Wait until `event` is set, `timeout_s` passes or `gone` (the client hung up) is
    done; True if the event was set."""
    if timeout_s <= 0 or event.is_set():
        return event.is_set()
    waiting: asyncio.Future[Any] = asyncio.ensure_future(event.wait())
    watched: set[asyncio.Future[Any]] = {waiting} if gone is None else {waiting, gone}
    try:
        await asyncio.wait(watched, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
    return event.is_set()
