"""The Chain port: what the pipeline and the API read from, and send to, the EVM chain.

Facts come back as typed, immutable records; what the node did not give is `None` (never a
guess). Many-item methods (a list in, a list out) cost one round trip to the node. Two errors:
`ChainUnavailable` (the node could not be reached or answered garbage: try again later)
and `ChainRejected` (the node answered, and refused the request).

`payfirst.adapters.evm_chain.EvmChain` implements it over JSON-RPC; tests use
`tests.fakes.chain.FakeChain`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from eth_utils.crypto import keccak

__all__ = [
    "AUTHORIZATION_USED_TOPIC",
    "AssetTerms",
    "AuthorizationRef",
    "Block",
    "BlockId",
    "Chain",
    "ChainRejected",
    "ChainUnavailable",
    "Log",
    "MintTokenTerms",
    "Receipt",
]

BlockId = int | str
"""A block number, or a tag such as "latest", "pending", "safe", "finalized"."""

# EIP-3009's `AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce)`.
AUTHORIZATION_USED_TOPIC = "0x" + keccak(text="AuthorizationUsed(address,bytes32)").hex()


class ChainUnavailable(Exception):
    """The chain could not be reached, timed out, or answered something unreadable. The
    request may or may not have reached the node."""


class ChainRejected(Exception):
    """The node answered, refusing the request (a JSON-RPC error object)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"RPC error {code}: {message}")
        self.code = code
        self.message = message
        self.data = data

    @property
    def revert_data(self) -> str | None:
        """The `0x` revert data of a reverted call, when the node sent it."""
        data = self.data
        if isinstance(data, dict):  # some nodes nest it: {"data": "0x..."}
            data = data.get("data")
        if isinstance(data, str) and data.startswith("0x"):
            return data
        return None


@dataclass(frozen=True, slots=True)
class AuthorizationRef:
    """One EIP-3009 authorization: `asset`'s nonce `nonce` (bytes32 hex) of `authorizer`."""

    asset: str
    authorizer: str
    nonce: str

    def normalized(self) -> AuthorizationRef:
        """All lowercase, the form `Receipt.authorizations_used` holds."""
        return AuthorizationRef(self.asset.lower(), self.authorizer.lower(), self.nonce.lower())


@dataclass(frozen=True, slots=True)
class Block:
    number: int
    timestamp: int
    hash: str  # lowercase
    base_fee: int  # 0 on a chain without EIP-1559
    gas_limit: int


@dataclass(frozen=True, slots=True)
class Log:
    address: str
    topics: tuple[str, ...]
    data: str
    block_number: int
    tx_hash: str
    removed: bool = False

    def authorization_used(self) -> AuthorizationRef | None:
        """The authorization an `AuthorizationUsed` log reports (normalized), else None."""
        if len(self.topics) != 3 or self.topics[0].lower() != AUTHORIZATION_USED_TOPIC:
            return None
        authorizer = "0x" + self.topics[1][-40:]
        return AuthorizationRef(self.address, authorizer, self.topics[2]).normalized()


@dataclass(frozen=True, slots=True)
class Receipt:
    tx_hash: str
    block_number: int
    block_hash: str  # lowercase
    success: bool  # status 1
    to: str | None  # the called contract (None: a deployment)
    logs: tuple[Log, ...] = ()

    def authorizations_used(self) -> frozenset[AuthorizationRef]:
        """Every authorization this tx used (normalized); none if it reverted (a reverted
        tx leaves no logs)."""
        if not self.success:
            return frozenset()
        return frozenset(ref for log in self.logs if (ref := log.authorization_used()))

    def used(self, authorization: AuthorizationRef) -> bool:
        return authorization.normalized() in self.authorizations_used()


@dataclass(frozen=True, slots=True)
class MintTokenTerms:
    """What a MintToken contract says it sells, read at one block."""

    address: str  # EIP-55
    name: str
    symbol: str
    mint_amount: int
    max_mint_count: int
    price_per_mint: int
    payment_token: str  # EIP-55
    mint_count: int  # mints done so far
    minter_role: bytes  # MINTER_ROLE()


@dataclass(frozen=True, slots=True)
class AssetTerms:
    """A payment asset at one block: its EIP-712 domain (what payers sign), its decimals,
    and whether it answers EIP-3009's `authorizationState`. `domain_chain_id` and
    `verifying_contract` come from EIP-5267's `eip712Domain()`; None when the asset has
    none (the name and version then come from `name()` and `version()`)."""

    address: str  # EIP-55
    name: str
    version: str
    decimals: int
    eip3009: bool
    domain_chain_id: int | None = None
    verifying_contract: str | None = None


class Chain(Protocol):
    @property
    def answered_at(self) -> float:
        """When (time.monotonic()) the chain last answered: an outage ends only when it
        answers again."""
        ...

    async def chain_id(self) -> int: ...

    async def block_number(self) -> int:
        """The head."""
        ...

    async def get_block(self, block: BlockId = "latest") -> Block | None: ...

    async def get_blocks(self, numbers: Sequence[int]) -> list[Block | None]: ...

    async def latest_base_fee(self) -> int: ...

    async def get_transaction_count(self, address: str, block: BlockId = "pending") -> int:
        """The account's nonce: how many of its transactions `block` holds."""
        ...

    async def get_transaction_counts(
        self, addresses: Sequence[str], block: BlockId
    ) -> list[int]: ...

    async def get_receipts(self, tx_hashes: Sequence[str]) -> list[Receipt | None]:
        """Each tx's receipt at any height, None while it is not mined (or unknown)."""
        ...

    async def authorization_states(
        self, authorizations: Sequence[AuthorizationRef], block: BlockId
    ) -> list[bool | None]:
        """`authorizationState(authorizer, nonce)` of each asset at `block` (True: used),
        None where the node gave no readable answer."""
        ...

    async def balances(
        self, holdings: Sequence[tuple[str, str]], block: BlockId
    ) -> list[int | None]:
        """`balanceOf(holder)` of each (asset, holder) at `block`, None where unknown."""
        ...

    async def native_balances(self, holders: Sequence[str], block: BlockId) -> list[int | None]:
        """Each holder's balance of the chain's own coin (what gas is paid in, in wei) at
        `block`, None where unknown."""
        ...

    async def has_minted(self, mints: Sequence[tuple[str, str]], block: BlockId) -> list[bool]:
        """`hasMinted(mint_id)` of each (token, mint id) at `block`; raises if any is
        unknown."""
        ...

    async def authorization_logs(
        self, authorization: AuthorizationRef, from_block: int, to_block: int
    ) -> list[Log]:
        """The asset's `AuthorizationUsed` logs for this authorization in the range."""
        ...

    async def has_code(self, address: str, block: BlockId) -> bool:
        """Whether a contract is deployed at `address` at `block`."""
        ...

    async def mint_token_terms(self, token: str, block: BlockId) -> MintTokenTerms | None:
        """A MintToken's name, symbol, MINT_AMOUNT, MAX_MINT_COUNT, PRICE_PER_MINT,
        PAYMENT_TOKEN, mintCount and MINTER_ROLE at `block`, in one round trip; None when
        any of them reverts or answers something unreadable (no MintToken there)."""
        ...

    async def asset_terms(self, asset: str, block: BlockId) -> AssetTerms | None:
        """A payment asset's EIP-712 domain (EIP-5267 `eip712Domain()` when it has it,
        else `name()` and `version()`) and `decimals()` at `block`, in one round trip; None
        when they cannot be read."""
        ...

    async def have_role(
        self, contract: str, role: bytes, accounts: Sequence[str], block: BlockId
    ) -> list[bool | None]:
        """AccessControl `hasRole(role, account)` of each account at `block`, None where
        the node gave no readable answer."""
        ...

    async def send_raw_transaction(self, raw_tx: str) -> str:
        """Broadcasts a signed transaction; returns its hash (lowercase)."""
        ...

    async def send_raw_transactions(self, raw_txs: Sequence[str]) -> list[str | ChainRejected]:
        """Broadcasts many in one round trip, in order: each one's hash, or the node's
        refusal of it."""
        ...
