"""One relayer key's loops: start-up recovery, then its sender, confirmer and mint loops,
and on the network treasury's key its payout loop (payfirst.pipeline.payouts).

Settings (`payfirst.domain.settings.RuntimeSettings`) are read at every tick, so an
operator's change (`payfirst settings set`) takes effect without a restart; a value out of
its bounds is logged and its default used. Each loop sleeps for its interval, or less when
woken: the API wakes the sender when it queues a payment (in the same process), the sender
wakes the confirmer when it broadcasts, the confirmer wakes the mint loop when it
completes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from payfirst.domain.settings import RuntimeSettings
from payfirst.pipeline.broadcaster import Broadcaster
from payfirst.pipeline.confirmer import Confirmer
from payfirst.pipeline.minter import Minter
from payfirst.pipeline.payouts import MAX_PAYOUTS_PER_TICK, PayoutSender
from payfirst.pipeline.relayer import Relayer
from payfirst.pipeline.sender import Sender
from payfirst.pipeline.settings import SettingsReader
from payfirst.ports.chain import Chain, ChainUnavailable
from payfirst.ports.store import Store

log = logging.getLogger("payfirst.relayer_loops")

# While the chain is unreachable each loop retries after a delay that doubles from
# BACKOFF_FIRST_S up to BACKOFF_MAX_S (wake-ups do not cut it short: every queued payment
# wakes the sender), and the outage is logged when it starts, when it ends and every
# OUTAGE_LOG_EVERY_S in between.
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
OUTAGE_LOG_EVERY_S = 60.0


def next_backoff(previous: float) -> float:
    """The delay after one more failure: doubled from BACKOFF_FIRST_S, capped."""
    return min(BACKOFF_MAX_S, max(BACKOFF_FIRST_S, previous * 2))


class ChainOutage:
    """One relayer's view of an RPC outage, shared by its loops, so that it is logged once
    when it starts and once when it ends (and rarely in between), not at every attempt."""

    def __init__(self, relayer: str) -> None:
        self.relayer = relayer
        self.since: float | None = None  # monotonic start of the current outage
        self.failures = 0
        self._last_log = 0.0

    def failed(self, loop: str, exc: Exception) -> None:
        now = time.monotonic()
        self.failures += 1
        if self.since is None:
            self.since = self._last_log = now
            log.warning(
                "chain unreachable (relayer %s, %s): %s; backing off up to %.0fs",
                self.relayer,
                loop,
                exc,
                BACKOFF_MAX_S,
            )
        elif now - self._last_log >= OUTAGE_LOG_EVERY_S:
            self._last_log = now
            log.warning(
                "chain still unreachable after %.0fs (%d failed attempts): %s",
                now - self.since,
                self.failures,
                exc,
            )
        else:
            log.debug("%s: chain unreachable: %s", loop, exc)

    def succeeded(self, answered_at: float) -> None:
        """The chain answered at `answered_at` (monotonic): ends an outage begun before."""
        if self.since is None or answered_at <= self.since:
            return
        log.warning(
            "chain reachable again (relayer %s) after %.1fs, %d failed attempts",
            self.relayer,
            time.monotonic() - self.since,
            self.failures,
        )
        self.since = None
        self.failures = 0


class RelayerLoops:
    """The sender, confirmer and mint loops of ONE relayer key, sharing its broadcaster."""

    def __init__(
        self,
        store: Store,
        chain: Chain,
        relayer: Relayer,
        *,
        settler: str | None = None,
        confirmation_depth: int | None = None,
        treasury: str | None = None,
    ) -> None:
        """The loops settle on the network `relayer` signs for (`relayer.chain_id`: its
        payments, its relayer state). `confirmation_depth`: the network's own; None: the
        confirmation_depth setting. `treasury`: the network's; when it is this relayer's
        address, the payout loop runs here too."""
        self.store = store
        self.settings = SettingsReader(store)
        self.broadcaster = Broadcaster(store, chain, relayer)
        # With a BatchSettler, payments settle many to a tx (setting payment_tx_batching).
        self.sender = Sender(self.broadcaster, settler)
        self.confirmer = Confirmer(self.broadcaster, depth=confirmation_depth)
        self.minter = Minter(self.broadcaster)
        self.payouts: PayoutSender | None = None
        if treasury is not None and treasury.lower() == relayer.address.lower():
            self.payouts = PayoutSender(self.broadcaster)
        self.payouts_wanted = asyncio.Event()  # payments completed: a threshold may be reached
        self.payment_queued = asyncio.Event()
        self.txs_sent = asyncio.Event()
        self.payments_completed = asyncio.Event()
        self.outage = ChainOutage(relayer.address)
        self._tasks: list[asyncio.Task[None]] = []

    async def recover(self) -> None:
        """Resync the relayer's nonce with the chain and re-send, in nonce order, every
        signed transaction the chain has not consumed yet (a crash may have struck before
        or after its broadcast; re-sending the same bytes is harmless either way)."""
        relayer = self.broadcaster.relayer.address
        async with self.broadcaster.lock:
            next_nonce = await self.broadcaster.sync_nonce()
            result = await self.broadcaster.broadcast_unconfirmed(resend_sent=True)
        log.info(
            "recovered relayer %s: next nonce %d, %d unsent txs broadcast",
            relayer,
            next_nonce,
            result.accepted,
        )

    async def start(self) -> None:
        backoff = 0.0
        while True:
            try:
                await self.recover()
                self.outage.succeeded(self.broadcaster.chain.answered_at)
                break
            except ChainUnavailable as exc:
                self.outage.failed("start-up recovery", exc)
                backoff = next_backoff(backoff)
                await asyncio.sleep(backoff)
        self._tasks = [
            asyncio.create_task(self._loop("sender", self._send, self.payment_queued)),
            asyncio.create_task(self._loop("confirmer", self._confirm, self.txs_sent)),
            asyncio.create_task(self._loop("minter", self._mint, self.payments_completed)),
        ]
        if self.payouts is not None:
            self._tasks.append(
                asyncio.create_task(self._loop("payouts", self._pay_out, self.payouts_wanted))
            )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _send(self, settings: RuntimeSettings) -> tuple[bool, int]:
        size = settings.payment_batch_size
        signed = await self.sender.run_once(size, batching=settings.payment_tx_batching)
        if signed:
            self.txs_sent.set()
        return signed >= size, settings.payment_batch_interval_ms

    async def _confirm(self, settings: RuntimeSettings) -> tuple[bool, int]:
        done = await self.confirmer.run_once(settings)
        if done:
            self.payments_completed.set()
            self.payouts_wanted.set()
        return done >= settings.confirmation_batch_size, settings.confirmation_interval_ms

    async def _mint(self, settings: RuntimeSettings) -> tuple[bool, int]:
        size = settings.mint_batch_size
        done = await self.minter.run_once(size, self.confirmer.depth(settings))
        if done:
            self.txs_sent.set()
        return done >= size, settings.mint_interval_ms

    async def _pay_out(self, settings: RuntimeSettings) -> tuple[bool, int]:
        assert self.payouts is not None
        signed = await self.payouts.run_once()
        if signed:
            self.txs_sent.set()
        return signed >= MAX_PAYOUTS_PER_TICK, settings.payout_interval_ms

    async def _loop(
        self,
        name: str,
        step: Callable[[RuntimeSettings], Awaitable[tuple[bool, int]]],
        wake: asyncio.Event,
    ) -> None:
        backoff = 0.0
        while True:
            interval_ms = 1000
            more = False
            try:
                settings = await self.settings.read()
                wake.clear()
                more, interval_ms = await step(settings)
                backoff = 0.0
                self.outage.succeeded(self.broadcaster.chain.answered_at)
            except ChainUnavailable as exc:
                self.outage.failed(name, exc)
                backoff = next_backoff(backoff)
                await asyncio.sleep(backoff)  # not cut short by wake-ups
                continue
            except Exception:
                log.exception("%s: tick failed, retrying", name)
            if more:
                continue  # a full tick: there is probably more right now
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a
            # cancellation that lands as the event is set, and stop() then waits forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_ms / 1000):
                    await wake.wait()
