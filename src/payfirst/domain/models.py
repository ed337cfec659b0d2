"""Records payfirst keeps. Addresses are EIP-55 checksummed strings, nonces and hashes are
lowercase 0x-hex, amounts are integers in the asset's smallest unit."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from payfirst.domain.statuses import MintStatus, PaymentStatus, PaymentType


@dataclass(frozen=True, slots=True)
class Authorization:
    """An EIP-3009 TransferWithAuthorization message and its signature."""

    from_: str
    to: str
    value: int
    valid_after: int
    valid_before: int
    nonce: str
    signature: str

    def to_json(self) -> dict[str, str]:
        """The x402 wire form (all integers as decimal strings)."""
        return {
            "from": self.from_,
            "to": self.to,
            "value": str(self.value),
            "validAfter": str(self.valid_after),
            "validBefore": str(self.valid_before),
            "nonce": self.nonce,
            "signature": self.signature,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Authorization:
        return cls(
            from_=str(data["from"]),
            to=str(data["to"]),
            value=int(data["value"]),
            valid_after=int(data["validAfter"]),
            valid_before=int(data["validBefore"]),
            nonce=str(data["nonce"]),
            signature=str(data["signature"]),
        )


@dataclass(frozen=True, slots=True)
class SignedTx:
    """A signed transaction, ready for eth_sendRawTransaction."""

    raw: str  # 0x hex
    hash: str  # lowercase 0x hex


@dataclass(frozen=True, slots=True)
class Token:
    """A mintable token payfirst sells, and the asset it is paid in."""

    address: str
    chain_id: int
    name: str
    symbol: str
    payment_asset: str
    asset_name: str  # EIP-712 domain name of the payment asset ("USDC", "USD Coin")
    asset_version: str  # EIP-712 domain version of the payment asset ("2")
    asset_decimals: int
    price_per_mint: int
    mint_amount: int
    max_mint_count: int
    reserved_count: int = 0

    @property
    def remaining(self) -> int:
        return self.max_mint_count - self.reserved_count


@dataclass(frozen=True, slots=True)
class NewPayment:
    """A verified payment about to be queued."""

    id: UUID
    payment_type: PaymentType
    payer: str
    amount: int
    payment_asset: str
    pay_to: str  # the authorization's payee: for a mint, the token contract
    quantity: int
    authorization: Authorization
    metadata: dict[str, Any] = field(default_factory=dict)
    # A client-chosen payment id (Idempotency-Key or the x402 payment-identifier
    # extension), unique per payer.
    idempotency_key: str | None = None
    # The chain it settles on; None: the default network (a mint: its token's chain).
    chain_id: int | None = None
    # A payment to a provider's paid endpoint (payfirst.domain.endpoints): the endpoint; when
    # the platform collects it (payTo is the treasury), the provider credited and the fee,
    # fixed now.
    endpoint_id: UUID | None = None
    provider_id: UUID | None = None
    fee_bps: int | None = None


@dataclass(frozen=True, slots=True)
class Payment:
    id: UUID
    payment_type: PaymentType
    payer: str
    amount: int
    payment_asset: str
    pay_to: str  # the authorization's payee: for a mint, the token contract
    quantity: int
    authorization: Authorization
    metadata: dict[str, Any]
    status: PaymentStatus
    tx_hash: str | None
    tx_nonce: int | None  # the relayer nonce of the tx settling it (auth nonce: authorization)
    relayer: str | None
    raw_tx: str | None
    error: str | None
    created_at: datetime
    processed_at: datetime | None
    result: dict[str, Any] | None
    chain_id: int | None = None  # None: the default network
    endpoint_id: UUID | None = None  # the provider's paid endpoint it paid for, if any


@dataclass(frozen=True, slots=True)
class MintItem:
    id: UUID
    payment_id: UUID
    payer: str
    token_address: str
    mint_id: str
    payment_tx_hash: str
    status: MintStatus
    tx_hash: str | None
    error_message: str | None
    created_at: datetime
    updated_at: datetime
    # the relayer tx that mints it (one batchMint tx carries several items)
    tx_nonce: int | None = None
    relayer: str | None = None
    raw_tx: str | None = None
    attempts: int = 0
