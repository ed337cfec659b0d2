"""The storage port: everything payfirst keeps goes through this Protocol. The PostgreSQL
and SQLite adapters both implement it and pass the same conformance tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from payfirst.domain.models import NewPayment, Payment, Token

DEFAULT_SETTINGS: dict[str, int] = {
    "payment_batch_size": 50,
    "payment_batch_interval_ms": 4000,
    "confirmation_interval_ms": 2000,
    "confirmation_batch_size": 20,
    "confirmation_timeout_s": 300,
    "mint_batch_size": 10,
    "mint_interval_ms": 3000,
}


@dataclass(frozen=True, slots=True)
class QueuedPayment:
    """The answer to queueing a payment: its id, and whether this call created it
    (False when the identical authorization was already queued)."""

    payment_id: UUID
    created: bool


class Store(Protocol):
    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""

    # tokens
    async def upsert_token(self, token: Token) -> None:
        """Insert or update a token's configuration; never touches reserved_count of an
        existing row."""

    async def get_token(self, address: str) -> Token | None: ...

    async def list_tokens(self) -> list[Token]: ...

    # settings
    async def get_settings(self) -> dict[str, int]:
        """All settings, the seed defaults (DEFAULT_SETTINGS) filled in."""

    async def set_setting(self, name: str, value: int) -> None: ...

    # relayers
    async def get_relayer_nonce(self, address: str) -> int | None: ...

    async def set_relayer_nonce(self, address: str, next_nonce: int) -> None: ...

    # payments
    async def queue_payment(self, payment: NewPayment) -> QueuedPayment:
        """In one transaction: if (payer, authorization nonce) is already queued, return
        that payment's id with created=False when the authorization is identical, or raise
        PaymentRejected(409, "invalid_exact_evm_nonce_already_used") when it differs;
        otherwise reserve `quantity` mints under the token's cap (raise
        PaymentRejected(409, "sold_out") if they do not fit, PaymentRejected(404,
        "unknown_token") if the token is unknown) and insert the payment as pending.
        Nothing is written when it raises."""

    async def get_payment(self, payment_id: UUID) -> Payment | None: ...

    async def count_payments_by_status(self) -> dict[str, int]: ...

    async def count_mints_by_status(self) -> dict[str, int]: ...
