"""Payouts and balances, without HTTP: who may ask for a payout or see one, what a payout
request and a provider's payout terms may hold. The routes (payfirst.api.payouts,
`PATCH /v1/accounts/{id}`) and the command line (`payfirst payouts`) share it.

A provider acts for itself only; the operator for any provider (naming it). Another
provider's payout or balance is answered like one that does not exist."""

from __future__ import annotations

import re
from typing import Final
from uuid import UUID

from payfirst.domain.accounts import Account, Role
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.payouts import (
    MAX_PAYOUT_INTERVAL_S,
    MIN_PAYOUT_INTERVAL_S,
    Balance,
    Payout,
    PayoutRequest,
    PayoutTerms,
    PayoutTrigger,
    TermsChange,
)
from payfirst.domain.reasons import Reason
from payfirst.ports.store import Store
from payfirst.usecases.accounts import (
    Page,
    check_fee_bps,
    check_payout_address,
    may_act_for,
)
from payfirst.usecases.deps import ServedNetworks

#: An amount in atomic units: a positive integer, as a JSON number or a string of digits.
_DIGITS: Final = re.compile(r"[0-9]{1,78}", re.ASCII)
_ADDRESS: Final = re.compile(r"0x[0-9a-fA-F]{40}", re.ASCII)
_CAIP2: Final = re.compile(r"eip155:([1-9][0-9]{0,17})", re.ASCII)
MAX_AMOUNT: Final = 2**256 - 1


def _invalid(message: str) -> PaymentRejected:
    return PaymentRejected(Reason.INVALID_REQUEST, message)


def check_amount(value: object, what: str = "amount") -> int | None:
    """None, or a positive integer of atomic units (a JSON integer or a string of digits)."""
    if value is None:
        return None
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise _invalid(f"{what} must be a positive integer of atomic units (a string of digits)")
    if not 0 < number <= MAX_AMOUNT:
        raise _invalid(f"{what} must be a positive integer of atomic units")
    return number


def check_interval(value: object) -> int | None:
    if value is None:
        return None
    low, high = MIN_PAYOUT_INTERVAL_S, MAX_PAYOUT_INTERVAL_S
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _invalid(f"payout_interval_s must be an integer {low}..{high} (seconds)")
    return value


def check_asset(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
        raise _invalid("asset must be a 0x address of 40 hex digits")
    return value


def _unknown_payout() -> PaymentRejected:
    return PaymentRejected(Reason.UNKNOWN_PAYOUT, "no such payout")


def _unknown_account() -> PaymentRejected:
    return PaymentRejected(Reason.UNKNOWN_ACCOUNT, "no such account")


class Payouts:
    def __init__(self, store: Store, networks: ServedNetworks | None = None) -> None:
        """`networks`: the served networks a `network` name is looked up in (None: a
        CAIP-2 id, `eip155:<chain id>`, names any chain)."""
        self._store = store
        self._networks = networks

    def provider_of(self, principal: Account, provider_id: UUID | None) -> UUID:
        """The provider a request acts for: the caller itself, or the one the operator
        names (required). Another's is unknown_account."""
        if principal.role is Role.OPERATOR:
            if provider_id is None:
                raise _invalid("provider_id is required (the provider to act for)")
            return provider_id
        if provider_id is not None and not may_act_for(principal, provider_id):
            raise _unknown_account()
        return principal.id

    def chain_id_of(self, network: object) -> int | None:
        if network is None:
            return None
        if not isinstance(network, str) or len(network) > 64:
            raise _invalid("network must be a network id such as eip155:8453")
        if self._networks is not None:
            served = self._networks.get(network)
            if served is None:
                raise _invalid(f"network {network[:64]!r} is not served here")
            return served.network.chain_id
        match = _CAIP2.fullmatch(network)
        if match is None:
            raise _invalid("network must be a CAIP-2 id such as eip155:8453")
        return int(match.group(1))

    async def request(
        self,
        principal: Account,
        *,
        provider_id: UUID | None = None,
        network: object = None,
        asset: object = None,
        amount: object = None,
    ) -> Payout:
        """An on-demand payout: `amount` (None: all that is available) of `asset` on
        `network`; either may be left out when the provider has money in one asset on one
        chain only. Refused (nothing written) above the available balance."""
        provider = self.provider_of(principal, provider_id)
        chain_id = self.chain_id_of(network)
        asset_address = check_asset(asset)
        wanted = check_amount(amount)
        if chain_id is None or asset_address is None:
            balances = [
                b
                for b in await self._store.provider_balances(provider)
                if b.available > 0
                and (chain_id is None or b.chain_id == chain_id)
                and (asset_address is None or b.asset.lower() == asset_address.lower())
            ]
            if not balances:
                raise PaymentRejected(Reason.INSUFFICIENT_BALANCE, "nothing available to pay out")
            if len(balances) > 1:
                raise _invalid("money is available in several assets or networks: name both")
            chain_id, asset_address = balances[0].chain_id, balances[0].asset
        return await self._store.create_payout(
            PayoutRequest(provider, asset_address, chain_id, wanted, PayoutTrigger.ON_DEMAND)
        )

    async def payout(self, principal: Account, payout_id: UUID) -> Payout:
        found = await self._store.get_payout(payout_id)
        if found is None or not may_act_for(principal, found.provider_id):
            raise _unknown_payout()
        return found

    async def payouts(
        self,
        principal: Account,
        limit: int,
        *,
        provider_id: UUID | None = None,
        before: UUID | None = None,
    ) -> Page[Payout]:
        """A provider's own payouts; the operator's: everyone's, or one provider's."""
        if principal.role is not Role.OPERATOR:
            provider_id = self.provider_of(principal, provider_id)
        rows = await self._store.list_payouts(provider_id, limit + 1, before=before)
        return Page(rows[:limit], len(rows) > limit)

    async def balances(self, principal: Account, provider_id: UUID | None = None) -> list[Balance]:
        provider = self.provider_of(principal, provider_id)
        account = await self._store.get_account(provider)
        if account is None or account.role is not Role.PROVIDER:
            raise _unknown_account()
        return await self._store.provider_balances(provider)

    async def update_terms(
        self, principal: Account, account_id: UUID, fields: dict[str, object]
    ) -> tuple[Account, PayoutTerms]:
        """Set an account's payout_address, payout_threshold, payout_interval_s (its own,
        a provider's) and fee_bps (the operator only); null clears one."""
        if not may_act_for(principal, account_id):
            raise _unknown_account()
        if not fields:
            raise _invalid("nothing to change")
        if "fee_bps" in fields and principal.role is not Role.OPERATOR:
            raise PaymentRejected(Reason.FORBIDDEN, "only the operator sets fee_bps")
        address = check_payout_address(fields.get("payout_address"))
        if address is not None and int(address, 16) == 0:
            raise _invalid("payout_address must not be the zero address (a transfer there fails)")
        change = TermsChange(
            payout_address=address,
            payout_threshold=check_amount(fields.get("payout_threshold"), "payout_threshold"),
            payout_interval_s=check_interval(fields.get("payout_interval_s")),
            fee_bps=check_fee_bps(fields.get("fee_bps")),
            given=frozenset(fields),
        )
        account = await self._store.get_account(account_id)
        if account is None:
            raise _unknown_account()
        if account.role is not Role.PROVIDER:
            raise _invalid("payout terms and fee_bps are a provider's only")
        updated = await self._store.update_account_terms(account_id, change)
        if updated is None:
            raise _unknown_account()
        return updated
