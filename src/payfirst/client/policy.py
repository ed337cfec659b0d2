"""Spending policy of a paying client: what it may pay, checked before anything is signed.

Every limit is optional. Amounts are atomic units of the payment asset (USDC: 6 decimals,
so 10_000 = 0.01 USDC). `max_per_payment` and `max_per_day` take either one number for
every asset or a mapping asset address -> number; with a mapping, an asset the mapping
does not name is refused (there is no limit for it, so it is not allowed).

The daily limit is a rolling 24-hour window kept in memory by a `SpendingLedger` (one per
`PayingClient` unless you share one): only payments the server accepted (a 2xx answer
after paying) count as spent. A payment in flight holds a reservation against the daily
limit until the answer arrives, so concurrent payments cannot together exceed it; a
refused or failed payment releases its reservation. The ledger starts empty with the
process (it is not persisted).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Final

from payfirst.x402 import chain_id_of

DAY_S: Final = 24 * 60 * 60


class PaymentRefused(Exception):
    """The spending policy refused a payment; nothing was signed or sent.

    `rule` names the rule (`max_per_payment`, `max_per_day`, `allowed_networks`,
    `allowed_assets`, `allowed_pay_to`, or `no_acceptable_requirements`); `amount` is what
    was asked, `limit` the limit it broke (None for the allow-lists) and `spent` what was
    already spent (or reserved) in the last 24 h (daily rule only)."""

    def __init__(
        self,
        rule: str,
        message: str,
        *,
        amount: int | None = None,
        limit: int | None = None,
        spent: int | None = None,
        asset: str | None = None,
        network: str | None = None,
        pay_to: str | None = None,
    ) -> None:
        super().__init__(f"payment refused by spending policy ({rule}): {message}")
        self.rule = rule
        self.amount = amount
        self.limit = limit
        self.spent = spent
        self.asset = asset
        self.network = network
        self.pay_to = pay_to


@dataclass(frozen=True)
class Quote:
    """One payment the server asks for, as the policy sees it."""

    amount: int
    asset: str
    network: str
    pay_to: str


def _limits(value: int | Mapping[str, int] | None, name: str) -> int | dict[str, int] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        out: dict[str, int] = {}
        for asset, limit in value.items():
            out[asset.lower()] = _non_negative(limit, name)
        return out
    return _non_negative(value, name)


def _non_negative(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer of atomic units, not {value!r}")
    return value


def _chain_ids(networks: Collection[str] | None) -> frozenset[int] | None:
    if networks is None:
        return None
    if isinstance(networks, str):
        networks = (networks,)
    return frozenset(chain_id_of(n) for n in networks)  # ValueError for an unknown name


def _lowered(addresses: Collection[str] | None) -> frozenset[str] | None:
    if addresses is None:
        return None
    if isinstance(addresses, str):
        addresses = (addresses,)
    return frozenset(a.lower() for a in addresses)


@dataclass(frozen=True, init=False)
class SpendingPolicy:
    """Limits checked before a payment is signed. Every one is optional (None: no limit).

    - `max_per_payment`: most one payment may cost (int: any asset; mapping: per asset)
    - `max_per_day`: most spent in any rolling 24 h (int or per-asset mapping)
    - `allowed_networks`: v1 names (`base`) or CAIP-2 ids (`eip155:8453`), matched by chain
    - `allowed_assets`, `allowed_pay_to`: addresses, any case
    """

    max_per_payment: int | dict[str, int] | None
    max_per_day: int | dict[str, int] | None
    allowed_networks: frozenset[int] | None
    allowed_assets: frozenset[str] | None
    allowed_pay_to: frozenset[str] | None

    def __init__(
        self,
        *,
        max_per_payment: int | Mapping[str, int] | None = None,
        max_per_day: int | Mapping[str, int] | None = None,
        allowed_networks: Collection[str] | None = None,
        allowed_assets: Collection[str] | None = None,
        allowed_pay_to: Collection[str] | None = None,
    ) -> None:
        object.__setattr__(self, "max_per_payment", _limits(max_per_payment, "max_per_payment"))
        object.__setattr__(self, "max_per_day", _limits(max_per_day, "max_per_day"))
        object.__setattr__(self, "allowed_networks", _chain_ids(allowed_networks))
        object.__setattr__(self, "allowed_assets", _lowered(allowed_assets))
        object.__setattr__(self, "allowed_pay_to", _lowered(allowed_pay_to))

    def check(self, quote: Quote, spent_today: int = 0) -> None:
        """Raise PaymentRefused when `quote` breaks a rule; `spent_today` is what was
        spent (and reserved) in that asset in the last 24 h."""
        if self.allowed_networks is not None:
            try:
                chain_id: int | None = chain_id_of(quote.network)
            except ValueError:
                chain_id = None
            if chain_id not in self.allowed_networks:
                allowed = ", ".join(f"eip155:{c}" for c in sorted(self.allowed_networks))
                raise _refused(
                    "allowed_networks",
                    f"network {quote.network} is not allowed (allowed: {allowed})",
                    quote,
                )
        if self.allowed_assets is not None and quote.asset.lower() not in self.allowed_assets:
            allowed = ", ".join(sorted(self.allowed_assets))
            raise _refused(
                "allowed_assets", f"asset {quote.asset} is not allowed (allowed: {allowed})", quote
            )
        if self.allowed_pay_to is not None and quote.pay_to.lower() not in self.allowed_pay_to:
            allowed = ", ".join(sorted(self.allowed_pay_to))
            raise _refused(
                "allowed_pay_to", f"payTo {quote.pay_to} is not allowed (allowed: {allowed})", quote
            )
        per_payment = _limit_for(self.max_per_payment, quote.asset)
        if per_payment is not None and quote.amount > per_payment:
            raise _refused(
                "max_per_payment",
                f"{quote.amount} of asset {quote.asset} is more than the limit of "
                f"{per_payment} per payment",
                quote,
                limit=per_payment,
            )
        per_day = _limit_for(self.max_per_day, quote.asset)
        if per_day is not None and spent_today + quote.amount > per_day:
            raise _refused(
                "max_per_day",
                f"{quote.amount} of asset {quote.asset} on top of {spent_today} spent in the "
                f"last 24 h makes {spent_today + quote.amount}, more than the limit of "
                f"{per_day} per day",
                quote,
                limit=per_day,
                spent=spent_today,
            )


def _refused(
    rule: str, message: str, quote: Quote, *, limit: int | None = None, spent: int | None = None
) -> PaymentRefused:
    what = f"{quote.amount} of asset {quote.asset} to {quote.pay_to} on {quote.network}"
    return PaymentRefused(
        rule,
        f"{message} (payment asked: {what})",
        amount=quote.amount,
        limit=limit,
        spent=spent,
        asset=quote.asset,
        network=quote.network,
        pay_to=quote.pay_to,
    )


def _limit_for(limits: int | dict[str, int] | None, asset: str) -> int | None:
    """The limit for `asset`: None means no limit; an asset missing from a per-asset
    mapping gets 0 (nothing may be spent in it)."""
    if limits is None or isinstance(limits, int):
        return limits
    return limits.get(asset.lower(), 0)


@dataclass
class _Entry:
    at: float
    asset: str
    amount: int


@dataclass
class SpendingLedger:
    """In-memory record of what was spent per asset, for the rolling 24 h limit.

    Thread-safe. `reserve` before signing, then `commit` (the server accepted the
    payment) or `release` (it did not)."""

    clock: Callable[[], float] = time.time
    window_s: float = DAY_S
    _spent: deque[_Entry] = field(default_factory=deque, repr=False)
    _reserved: dict[int, _Entry] = field(default_factory=dict, repr=False)
    _next_id: int = field(default=0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _prune(self, now: float) -> None:
        while self._spent and self._spent[0].at <= now - self.window_s:
            self._spent.popleft()

    def spent(self, asset: str) -> int:
        """Spent in `asset` (accepted payments only) in the last 24 h."""
        with self._lock:
            self._prune(self.clock())
            key = asset.lower()
            return sum(e.amount for e in self._spent if e.asset == key)

    def reserve(self, policy: SpendingPolicy, quote: Quote) -> int:
        """Check `quote` against `policy` counting what was spent and what is in flight,
        and hold its amount; returns a reservation id. Raises PaymentRefused."""
        with self._lock:
            self._prune(self.clock())
            key = quote.asset.lower()
            held = sum(e.amount for e in self._spent if e.asset == key) + sum(
                e.amount for e in self._reserved.values() if e.asset == key
            )
            policy.check(quote, held)
            self._next_id += 1
            self._reserved[self._next_id] = _Entry(self.clock(), key, quote.amount)
            return self._next_id

    def commit(self, reservation: int) -> None:
        """The server accepted the payment: count it as spent now."""
        with self._lock:
            entry = self._reserved.pop(reservation, None)
            if entry is not None:
                self._spent.append(_Entry(self.clock(), entry.asset, entry.amount))

    def release(self, reservation: int) -> None:
        """The payment was not accepted: forget the reservation."""
        with self._lock:
            self._reserved.pop(reservation, None)
