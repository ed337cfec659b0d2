"""The worker process: holds leases on relayer keys and runs one `RelayerLoops` (sender,
confirmer, mint loops) for each key it holds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket

from payfirst.pipeline.relayer import Relayer
from payfirst.pipeline.relayer_loops import RelayerLoops
from payfirst.ports.chain import Chain
from payfirst.ports.store import Store

log = logging.getLogger("payfirst.worker")


class Worker:
    """What `payfirst worker` runs: one RelayerLoops for every relayer key this process
    holds a lease on.

    A key is held by a lease row renewed every third of its time-to-live; a worker that
    dies stops renewing, and once the lease expires another process takes the key over
    (its recovery re-sends the dead worker's persisted txs and its confirmer settles them).
    Nonces stay safe even in the overlap: they are assigned under the relayer row's lock
    in the database, never from memory."""

    def __init__(
        self,
        store: Store,
        chain: Chain,
        relayers: list[Relayer],
        *,
        holder: str | None = None,
        lease_ttl_s: float = 15.0,
        settler: str | None = None,
        confirmation_depth: int | None = None,
        treasury: str | None = None,
    ) -> None:
        """One network's worker: `chain` and `relayers` are that network's (each relayer's
        chain id is the network's: its leases, nonces and payments are that chain's), and
        `confirmation_depth` its own (None: the confirmation_depth setting). `treasury`: the
        network's; the relayer whose key it is runs the payout loop."""
        self.store = store
        self.chain = chain
        self.relayers = relayers
        self.settler = settler  # the BatchSettler every relayer's sender batches through (or None)
        self.confirmation_depth = confirmation_depth
        self.treasury = treasury
        if treasury is not None and all(r.address.lower() != treasury.lower() for r in relayers):
            log.warning(
                "the treasury %s is not one of this network's relayer keys: payouts wait "
                "(a payout is a transfer signed by the treasury's key)",
                treasury,
            )
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.lease_ttl_s = lease_ttl_s
        self.relayer_loops: dict[str, RelayerLoops] = {}
        self._starting: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def wake(self) -> None:
        for loops in self.relayer_loops.values():
            loops.payment_queued.set()

    async def start(self) -> None:
        await self.store.watch_new_payments(self.wake)
        self._tasks = [asyncio.create_task(self._hold(r)) for r in self.relayers]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for address in list(self.relayer_loops):
            await self._drop(address)

    async def _hold(self, relayer: Relayer) -> None:
        address = relayer.address
        name = f"{address} (chain {relayer.chain_id})"  # one key may relay on several chains
        while True:
            try:
                held = await self.store.acquire_relayer_lease(
                    address, self.holder, self.lease_ttl_s, chain_id=relayer.chain_id
                )
            except Exception as exc:  # the database is unreachable: we cannot prove the lease
                log.warning("relayer %s: lease not renewed: %s", name, exc)
                held = False
            if held and address not in self.relayer_loops:
                loops = RelayerLoops(
                    self.store,
                    self.chain,
                    relayer,
                    settler=self.settler,
                    confirmation_depth=self.confirmation_depth,
                    treasury=self.treasury,
                )
                self.relayer_loops[address] = loops
                self._starting[address] = asyncio.create_task(loops.start())
                log.info("relayer %s: lease taken by %s, its loops starting", name, self.holder)
            elif not held and address in self.relayer_loops:
                log.warning("relayer %s: lease lost, its loops stopped", name)
                await self._drop(address, release=False)
            await asyncio.sleep(self.lease_ttl_s / 3)

    async def _drop(self, address: str, *, release: bool = True) -> None:
        starting = self._starting.pop(address, None)
        if starting is not None:
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
        loops = self.relayer_loops.pop(address)
        await loops.stop()
        if release:
            with contextlib.suppress(Exception):
                await self.store.release_relayer_lease(
                    address, self.holder, chain_id=loops.broadcaster.chain_id
                )
