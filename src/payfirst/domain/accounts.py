"""Accounts and their API keys: who may call the admin routes (`/v1/...`).

An account has one role: the operator runs the instance (everything), a provider sells
through it (its own endpoints, payments, balance, webhooks), an agent pays through it (its
own payer addresses and policies). It acts through API keys; a key is shown once when it is
created and only its hash is kept (payfirst.usecases.api_keys)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Final
from uuid import UUID

#: An account's or a key's name, in characters.
MAX_NAME_CHARS: Final = 100
#: A provider's fee in basis points (10,000: all of it).
MAX_FEE_BPS: Final = 10_000


class Role(StrEnum):
    OPERATOR = "operator"
    PROVIDER = "provider"
    AGENT = "agent"


@dataclass(frozen=True, slots=True)
class Account:
    id: UUID
    role: Role
    name: str
    created_at: datetime
    revoked_at: datetime | None = None
    # A provider's terms, for the issues that charge and pay out; None until set.
    fee_bps: int | None = None
    payout_address: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key: its visible prefix and the hash of the whole key, never the key."""

    id: UUID
    account_id: UUID
    prefix: str  # e.g. pf_live_ab12CD34: not secret, shown in listings and logs
    secret_hash: bytes = field(repr=False)
    name: str | None
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    def usable_at(self, now: datetime) -> bool:
        """Neither revoked nor expired at `now`."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True, slots=True)
class Credential:
    """A key with the account it belongs to, as authentication reads them in one query."""

    key: ApiKey
    account: Account
