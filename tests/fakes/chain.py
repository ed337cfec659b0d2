"""`FakeChain`: an in-memory chain implementing the Chain port (payfirst.ports.chain).

Tests drive it: `mine_blocks` moves the head, `mine` puts a receipt in the head block (its
`AuthorizationUsed` logs, when it succeeds, use those authorizations from that block on),
`set_nonce` sets an account's transaction count from a block on, `reorg` replaces every
block from a height up (new hashes; what they held is gone) and `forget_receipt` makes
the node lose a receipt it should have, `keep_receipt` answer one a reorg removed. Block n is `BLOCK_TIME_S * n` seconds after
`GENESIS_TIME`. Every read answers as of the block asked for, except the contracts' terms
(`mint_tokens`, `assets`, `roles`, `code`), which hold at every block."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from payfirst.ports.chain import (
    AUTHORIZATION_USED_TOPIC,
    AssetTerms,
    AuthorizationRef,
    Block,
    BlockId,
    ChainRejected,
    ChainUnavailable,
    Log,
    MintTokenTerms,
    Receipt,
)

GENESIS_TIME = 1_700_000_000
BLOCK_TIME_S = 2
GAS_LIMIT = 30_000_000


@dataclass
class _History:
    """Values that hold from a block on: (from block, value), in order."""

    entries: list[tuple[int, int]] = field(default_factory=list)

    def at(self, block: int) -> int | None:
        found = None
        for start, value in self.entries:
            if start <= block:
                found = value
        return found

    def drop_from(self, height: int) -> None:
        self.entries = [(s, v) for s, v in self.entries if s < height]


class FakeChain:
    def __init__(self, chain_id: int = 31337, head: int = 100) -> None:
        self.id = chain_id
        self.head = head
        self.base_fee = 10**9
        self.answered_at = 0.0
        self.unavailable = False  # every call raises ChainUnavailable
        self.reject_log_lookups = False  # `authorization_logs` raises ChainRejected
        self.unknown_states: set[AuthorizationRef] = set()  # normalized: answered None
        self.balances_of: dict[tuple[str, str], int] = {}  # (asset, holder), lowercase
        self.native_balances_of: dict[str, int] = {}  # holder (lowercase): wei
        # Contracts, by lowercase address (their terms hold at every block).
        self.code: set[str] = set()  # contracts that are neither of the two below
        self.mint_tokens: dict[str, MintTokenTerms] = {}
        self.assets: dict[str, AssetTerms] = {}
        self.roles: set[tuple[str, bytes, str]] = set()  # (contract, role, account)
        self.sent: list[str] = []  # raw txs broadcast, in order
        self._receipts: dict[str, Receipt] = {}
        self._hidden: set[str] = set()  # receipts the node does not give
        self._generation: dict[int, int] = {}  # reorgs a height went through
        self._nonces: dict[str, _History] = {}
        self._used: dict[AuthorizationRef, tuple[int, str]] = {}  # -> (block, tx)
        self._minted: dict[tuple[str, str], int] = {}  # (token, mint id) -> block

    # -- driving it ---------------------------------------------------------------------

    def mine_blocks(self, count: int = 1) -> int:
        self.head += count
        return self.head

    def block_hash(self, number: int) -> str:
        seed = f"{number}:{self._generation.get(number, 0)}".encode()
        return "0x" + hashlib.sha256(seed).hexdigest()

    def mine(
        self,
        tx_hash: str,
        *,
        to: str,
        success: bool = True,
        uses: Sequence[AuthorizationRef] = (),
        mints: Sequence[tuple[str, str]] = (),
    ) -> Receipt:
        """A receipt in a new head block; a successful tx uses `uses` and mints `mints`."""
        block = self.mine_blocks()
        tx_hash = tx_hash.lower()
        logs: list[Log] = []
        if success:
            for ref in uses:
                self.use_authorization(ref, tx_hash, block)
                logs.append(_authorization_log(ref, block, tx_hash))
            for token, mint_id in mints:
                self._minted[(token.lower(), mint_id.lower())] = block
        receipt = Receipt(
            tx_hash=tx_hash,
            block_number=block,
            block_hash=self.block_hash(block),
            success=success,
            to=to,
            logs=tuple(logs),
        )
        self._receipts[tx_hash] = receipt
        return receipt

    def use_authorization(self, ref: AuthorizationRef, tx_hash: str, block: int) -> None:
        """`ref` used by `tx_hash` in `block` (any sender's tx: its log is findable)."""
        self._used[ref.normalized()] = (block, tx_hash.lower())

    def set_nonce(self, address: str, count: int, block: int | None = None) -> None:
        history = self._nonces.setdefault(address.lower(), _History())
        history.entries.append((self.head if block is None else block, count))

    def forget_receipt(self, tx_hash: str) -> None:
        self._hidden.add(tx_hash.lower())

    def keep_receipt(self, receipt: Receipt) -> None:
        """The node answers `receipt` again (a lagging node, after a reorg removed it)."""
        self._receipts[receipt.tx_hash] = receipt

    def reorg(self, height: int) -> None:
        """Blocks from `height` up to the head are replaced by empty ones."""
        for number in range(height, self.head + 1):
            self._generation[number] = self._generation.get(number, 0) + 1
        self._receipts = {h: r for h, r in self._receipts.items() if r.block_number < height}
        self._used = {ref: u for ref, u in self._used.items() if u[0] < height}
        self._minted = {k: b for k, b in self._minted.items() if b < height}
        for history in self._nonces.values():
            history.drop_from(height)

    # -- the Chain port -------------------------------------------------------------------

    async def chain_id(self) -> int:
        self._answer()
        return self.id

    async def block_number(self) -> int:
        self._answer()
        return self.head

    async def get_block(self, block: BlockId = "latest") -> Block | None:
        self._answer()
        return self._block(self._number(block))

    async def get_blocks(self, numbers: Sequence[int]) -> list[Block | None]:
        self._answer()
        return [self._block(n) for n in numbers]

    async def latest_base_fee(self) -> int:
        self._answer()
        return self.base_fee

    async def get_transaction_count(self, address: str, block: BlockId = "pending") -> int:
        self._answer()
        return self._nonce(address, self._number(block))

    async def get_transaction_counts(self, addresses: Sequence[str], block: BlockId) -> list[int]:
        self._answer()
        return [self._nonce(a, self._number(block)) for a in addresses]

    async def get_receipts(self, tx_hashes: Sequence[str]) -> list[Receipt | None]:
        self._answer()
        return [
            None if h.lower() in self._hidden else self._receipts.get(h.lower()) for h in tx_hashes
        ]

    async def authorization_states(
        self, authorizations: Sequence[AuthorizationRef], block: BlockId
    ) -> list[bool | None]:
        self._answer()
        number = self._number(block)
        return [
            None
            if ref.normalized() in self.unknown_states
            else (used := self._used.get(ref.normalized())) is not None and used[0] <= number
            for ref in authorizations
        ]

    async def balances(
        self, holdings: Sequence[tuple[str, str]], block: BlockId
    ) -> list[int | None]:
        self._answer()
        return [self.balances_of.get((a.lower(), h.lower())) for a, h in holdings]

    async def native_balances(self, holders: Sequence[str], block: BlockId) -> list[int | None]:
        self._answer()
        return [self.native_balances_of.get(h.lower()) for h in holders]

    async def has_minted(self, mints: Sequence[tuple[str, str]], block: BlockId) -> list[bool]:
        self._answer()
        number = self._number(block)
        return [
            (at := self._minted.get((t.lower(), m.lower()))) is not None and at <= number
            for t, m in mints
        ]

    async def authorization_logs(
        self, authorization: AuthorizationRef, from_block: int, to_block: int
    ) -> list[Log]:
        self._answer()
        if self.reject_log_lookups:
            raise ChainRejected(-32005, "query returned more than 10000 results")
        used = self._used.get(authorization.normalized())
        if used is None or not from_block <= used[0] <= to_block:
            return []
        return [_authorization_log(authorization, *used)]

    async def has_code(self, address: str, block: BlockId) -> bool:
        self._answer()
        wanted = address.lower()
        return wanted in self.code or wanted in self.mint_tokens or wanted in self.assets

    async def mint_token_terms(self, token: str, block: BlockId) -> MintTokenTerms | None:
        self._answer()
        return self.mint_tokens.get(token.lower())

    async def asset_terms(self, asset: str, block: BlockId) -> AssetTerms | None:
        self._answer()
        return self.assets.get(asset.lower())

    async def have_role(
        self, contract: str, role: bytes, accounts: Sequence[str], block: BlockId
    ) -> list[bool | None]:
        self._answer()
        return [(contract.lower(), role, a.lower()) in self.roles for a in accounts]

    async def send_raw_transaction(self, raw_tx: str) -> str:
        self._answer()
        self.sent.append(raw_tx)
        return _hash(raw_tx)

    async def send_raw_transactions(self, raw_txs: Sequence[str]) -> list[str | ChainRejected]:
        self._answer()
        self.sent += raw_txs
        return [_hash(raw) for raw in raw_txs]

    # -- internals ------------------------------------------------------------------------

    def _answer(self) -> None:
        if self.unavailable:
            raise ChainUnavailable("fake chain: unreachable")
        self.answered_at = time.monotonic()

    def _number(self, block: BlockId) -> int:
        return block if isinstance(block, int) else self.head

    def _block(self, number: int) -> Block | None:
        if number > self.head:
            return None
        return Block(
            number=number,
            timestamp=GENESIS_TIME + BLOCK_TIME_S * number,
            hash=self.block_hash(number),
            base_fee=self.base_fee,
            gas_limit=GAS_LIMIT,
        )

    def _nonce(self, address: str, block: int) -> int:
        history = self._nonces.get(address.lower())
        return (history.at(block) if history else None) or 0


def _authorization_log(ref: AuthorizationRef, block: int, tx_hash: str) -> Log:
    return Log(
        address=ref.asset,
        topics=(
            AUTHORIZATION_USED_TOPIC,
            "0x" + ref.authorizer[2:].lower().rjust(64, "0"),
            ref.nonce.lower(),
        ),
        data="0x",
        block_number=block,
        tx_hash=tx_hash,
    )


def _hash(raw_tx: str) -> str:
    return "0x" + hashlib.sha256(raw_tx.encode()).hexdigest()
