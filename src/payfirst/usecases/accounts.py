"""Accounts and API keys, without HTTP: whose a key is, creating and revoking accounts and
keys, and who may see what. The HTTP routes (payfirst.api.accounts) and the command line
(`payfirst accounts|keys`) share it, and its checks of what a caller gives."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, Generic, TypeVar
from uuid import UUID, uuid4

from payfirst.domain.accounts import (
    MAX_FEE_BPS,
    MAX_NAME_CHARS,
    Account,
    ApiKey,
    Credential,
    Role,
)
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.reasons import Reason
from payfirst.evm.abi import checksum
from payfirst.ports.store import Store
from payfirst.usecases.api_keys import KeyMode, generate_key, key_prefix, matches

#: A key's use is recorded at most this often (never a write per request).
TOUCH_INTERVAL: Final = timedelta(minutes=1)
MIN_EXPIRY: Final = timedelta(minutes=1)
MAX_EXPIRY: Final = timedelta(days=3650)
MAX_PAGE: Final = 100
DEFAULT_PAGE: Final = 50
#: The name of the operator account a dev instance creates for itself.
DEV_OPERATOR_NAME: Final = "dev operator"

_ADDRESS: Final = re.compile(r"0x[0-9a-fA-F]{40}", re.ASCII)

Now = Callable[[], datetime]
T = TypeVar("T")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key just created: `text` is shown once; only `key` (prefix and hash) is kept."""

    key: ApiKey
    text: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    has_more: bool


# --- checks of what a caller gives (PaymentRejected(INVALID_REQUEST) says what is wrong) ---


def _invalid(message: str) -> PaymentRejected:
    return PaymentRejected(Reason.INVALID_REQUEST, message)


def check_role(value: object) -> Role:
    if isinstance(value, str) and value in {r.value for r in Role}:
        return Role(value)
    raise _invalid(f"role must be one of {', '.join(r.value for r in Role)}")


def check_name(value: object, what: str = "name") -> str:
    """1..100 printable characters, surrounding spaces dropped."""
    if not isinstance(value, str):
        raise _invalid(f"{what} must be a string")
    name = value.strip()
    if not 1 <= len(name) <= MAX_NAME_CHARS:
        raise _invalid(f"{what} must be 1..{MAX_NAME_CHARS} characters")
    if not name.isprintable():
        raise _invalid(f"{what} must hold printable characters only")
    return name


def check_key_name(value: object) -> str | None:
    return None if value is None else check_name(value, "the key's name")


def check_fee_bps(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_FEE_BPS:
        raise _invalid(f"fee_bps must be an integer 0..{MAX_FEE_BPS} (basis points)")
    return value


def check_payout_address(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
        raise _invalid("payout_address must be a 0x address of 40 hex digits")
    return checksum(value)


def check_expires_in(seconds: object) -> timedelta | None:
    if seconds is None:
        return None
    low, high = int(MIN_EXPIRY.total_seconds()), int(MAX_EXPIRY.total_seconds())
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not low <= seconds <= high:
        raise _invalid(f"expires_in_s must be an integer {low}..{high} (seconds)")
    return timedelta(seconds=seconds)


def check_limit(value: object) -> int:
    if value is None:
        return DEFAULT_PAGE
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PAGE:
        raise _invalid(f"limit must be an integer 1..{MAX_PAGE}")
    return value


def check_id(value: object, what: str) -> UUID:
    if isinstance(value, str) and len(value) <= 36:
        try:
            return UUID(value)
        except ValueError:
            pass
    raise _invalid(f"{what} must be a UUID")


def may_act_for(principal: Account, account_id: UUID) -> bool:
    """An operator acts for every account; any other account for itself only."""
    return principal.role is Role.OPERATOR or principal.id == account_id


def _unknown_account() -> PaymentRejected:
    # The same answer for an account that does not exist and one the caller may not see.
    return PaymentRejected(Reason.UNKNOWN_ACCOUNT, "no such account")


def _unknown_key() -> PaymentRejected:
    return PaymentRejected(Reason.UNKNOWN_API_KEY, "no such API key")


class Accounts:
    def __init__(self, store: Store, now: Now = utc_now) -> None:
        self._store = store
        self._now = now

    async def authenticate(self, text: str) -> Credential | None:
        """The key and the account it acts for; None for a malformed, unknown, revoked or
        expired key or a revoked account, all alike."""
        prefix = key_prefix(text)
        if prefix is None:
            return None
        found = await self._store.find_api_key_by_prefix(prefix)
        # Compared even when the prefix is unknown (against a fixed hash): the same cost.
        stored = None if found is None else found.key.secret_hash
        if not matches(text, stored) or found is None:
            return None
        now = self._now()
        if not found.key.usable_at(now) or not found.account.active:
            return None
        last = found.key.last_used_at
        if last is None or now - last >= TOUCH_INTERVAL:
            await self._store.touch_api_key(found.key.id, now)
        return found

    async def create_account(
        self,
        role: Role,
        name: str,
        *,
        fee_bps: int | None = None,
        payout_address: str | None = None,
        mode: KeyMode = KeyMode.LIVE,
        key_name: str | None = None,
        not_after: datetime | None = None,
    ) -> tuple[Account, IssuedKey]:
        """A new account and its first key (checked values: see the check_ functions);
        `not_after`: as issue_key's."""
        if role is not Role.PROVIDER and (fee_bps is not None or payout_address is not None):
            raise _invalid("fee_bps and payout_address are a provider's only")
        now = self._now()
        account = Account(uuid4(), role, name, now, fee_bps=fee_bps, payout_address=payout_address)
        issued = _issue(account.id, key_name, None, mode, now, not_after)
        await self._store.create_account(account, issued.key)
        return account, issued

    async def account(self, principal: Account, account_id: UUID) -> Account:
        """An account the principal may see (unknown_account for any other)."""
        if not may_act_for(principal, account_id):
            raise _unknown_account()
        found = await self._store.get_account(account_id)
        if found is None:
            raise _unknown_account()
        return found

    async def accounts(self, limit: int, after: UUID | None = None) -> Page[Account]:
        rows = await self._store.list_accounts(limit + 1, after=after)
        return Page(rows[:limit], len(rows) > limit)

    async def revoke_account(self, account_id: UUID, *, by: Account | None = None) -> Account:
        """Revoke an account (`by`: the operator asking, who may not revoke itself, so an
        instance always keeps an operator the API can reach)."""
        if by is not None and by.id == account_id:
            raise _invalid("an account cannot revoke itself")
        revoked = await self._store.revoke_account(account_id, self._now())
        if revoked is None:
            raise _unknown_account()
        return revoked

    async def issue_key(
        self,
        account_id: UUID,
        *,
        name: str | None = None,
        expires_in: timedelta | None = None,
        mode: KeyMode = KeyMode.LIVE,
        not_after: datetime | None = None,
    ) -> IssuedKey:
        """A new key of an existing, active account (unknown_account otherwise).
        `not_after` (the issuing key's expiry) caps its own: a key never outlives the key
        that made it."""
        now = self._now()
        issued = _issue(account_id, name, expires_in, mode, now, not_after)
        # A prefix already taken (one chance in 62^8) fails on the unique key: never reused.
        if not await self._store.create_api_key(issued.key):
            raise _unknown_account()
        return issued

    async def keys(self, account_id: UUID, limit: int, after: UUID | None = None) -> Page[ApiKey]:
        rows = await self._store.list_api_keys(account_id, limit + 1, after=after)
        return Page(rows[:limit], len(rows) > limit)

    async def revoke_key(self, key_id: UUID, *, owner: UUID | None = None) -> ApiKey:
        """Revoke a key (`owner`: only one of that account; unknown_api_key otherwise)."""
        revoked = await self._store.revoke_api_key(key_id, self._now(), account_id=owner)
        if revoked is None:
            raise _unknown_key()
        return revoked

    async def key_by_prefix(self, prefix: str) -> ApiKey:
        found = await self._store.find_api_key_by_prefix(prefix)
        if found is None:
            raise _unknown_key()
        return found.key

    async def ensure_operator(self, mode: KeyMode) -> IssuedKey | None:
        """A dev instance's first start: with no active operator account, create one and
        return its key (to print once); None when one exists."""
        if await self._store.active_operator_exists():
            return None
        _, issued = await self.create_account(
            Role.OPERATOR, DEV_OPERATOR_NAME, mode=mode, key_name="created at start-up"
        )
        return issued


def _issue(
    account_id: UUID,
    name: str | None,
    expires_in: timedelta | None,
    mode: KeyMode,
    now: datetime,
    not_after: datetime | None = None,
) -> IssuedKey:
    new = generate_key(mode)
    expires_at = None if expires_in is None else now + expires_in
    if not_after is not None and (expires_at is None or expires_at > not_after):
        expires_at = not_after
    key = ApiKey(
        id=uuid4(),
        account_id=account_id,
        prefix=new.prefix,
        secret_hash=new.secret_hash,
        name=name,
        created_at=now,
        expires_at=expires_at,
    )
    return IssuedKey(key, new.text)
