"""Agents' payers and spending policies, without HTTP: proving control of a payer address,
setting its policy, deciding held payments, and the policy check of the accept paths.

The HTTP routes (payfirst.api.policies) and the command line (`payfirst payers|approvals`)
share it. An agent acts for its own payers; the operator for every agent's. Another agent's
payer (or payment) is answered as one that does not exist.

The accept paths read policies from `PolicyCache`: one per API process, told at once of
every change made by any process (PostgreSQL NOTIFY through `Store.watch_policy_changes`),
never only a TTL. The cache refuses early; the database decides (payfirst_queue_payment_v4
re-checks everything and counts the amounts over time in the transaction that queues)."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final
from uuid import UUID

from eth_account import Account as EthAccount
from eth_account.messages import encode_defunct

from payfirst.domain.accounts import Account, Role
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.models import Payment
from payfirst.domain.policies import (
    ANY_ASSET,
    CHALLENGE_TTL_S,
    AgentPayer,
    Limits,
    PayerChallenge,
    PaymentFacts,
    SpendingPolicy,
    challenge_text,
    spent_refusal,
    static_refusal,
)
from payfirst.domain.reasons import Reason
from payfirst.evm.abi import checksum
from payfirst.ports.store import Store
from payfirst.usecases.accounts import Now, check_id, utc_now
from payfirst.x402 import chain_id_of

log = logging.getLogger("payfirst.policies")

_ADDRESS: Final = re.compile(r"0x[0-9a-fA-F]{40}", re.ASCII)
_AMOUNT: Final = re.compile(r"[0-9]{1,78}", re.ASCII)
_SIGNATURE: Final = re.compile(r"0x[0-9a-fA-F]{130}", re.ASCII)
MAX_LIST: Final = 100
MAX_ASSETS: Final = 20
POLICY_FIELDS: Final = frozenset(
    {
        "max_per_payment",
        "max_per_day",
        "max_per_month",
        "approval_threshold",
        "allowed_providers",
        "allowed_endpoints",
        "allowed_pay_to",
        "allowed_networks",
    }
)
REJECTED_ERROR: Final = f"{Reason.PAYMENT_REJECTED}: the payer's owner rejected it"


def _invalid(message: str) -> PaymentRejected:
    return PaymentRejected(Reason.INVALID_REQUEST, message)


def _unknown_payer() -> PaymentRejected:
    return PaymentRejected(Reason.UNKNOWN_PAYER, "no such payer")


# --- checks of what a caller gives ------------------------------------------------------


def check_address(value: object, what: str = "address") -> str:
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
        raise _invalid(f"{what} must be a 0x address of 40 hex digits")
    return checksum(value)


def check_limits(value: object, what: str) -> dict[str, int] | None:
    """null; an amount string (every asset); or {asset address or "*": amount string}."""
    if value is None:
        return None
    if isinstance(value, str):
        value = {ANY_ASSET: value}
    if not isinstance(value, dict) or not 1 <= len(value) <= MAX_ASSETS:
        raise _invalid(
            f"{what} must be null, an amount, or an object of 1..{MAX_ASSETS} "
            'asset addresses (or "*") -> amounts'
        )
    limits: dict[str, int] = {}
    for asset, amount in value.items():
        key = ANY_ASSET if asset == ANY_ASSET else check_address(asset, f"{what}'s asset")
        if not isinstance(amount, str) or not _AMOUNT.fullmatch(amount):
            raise _invalid(f"{what}: amounts are strings of atomic units (digits)")
        if key in limits:
            raise _invalid(f"{what} names asset {key} twice")
        limits[key] = int(amount)
    return limits


def _check_list(value: object, what: str) -> list[Any] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_LIST:
        raise _invalid(f"{what} must be null or a list of at most {MAX_LIST}")
    return value


def check_policy(payer: str, body: Mapping[str, Any]) -> SpendingPolicy:
    """The whole policy a PUT gives (a field left out: no limit)."""
    unknown = sorted(set(body) - POLICY_FIELDS)
    if unknown:
        raise _invalid(
            f"unknown field {unknown[0][:40]!r} (fields: {', '.join(sorted(POLICY_FIELDS))})"
        )
    providers = _check_list(body.get("allowed_providers"), "allowed_providers")
    endpoints = _check_list(body.get("allowed_endpoints"), "allowed_endpoints")
    pay_to = _check_list(body.get("allowed_pay_to"), "allowed_pay_to")
    networks = _check_list(body.get("allowed_networks"), "allowed_networks")
    return SpendingPolicy(
        payer=payer,
        max_per_payment=check_limits(body.get("max_per_payment"), "max_per_payment"),
        max_per_day=check_limits(body.get("max_per_day"), "max_per_day"),
        max_per_month=check_limits(body.get("max_per_month"), "max_per_month"),
        approval_threshold=check_limits(body.get("approval_threshold"), "approval_threshold"),
        allowed_providers=None
        if providers is None
        else frozenset(check_id(v, "allowed_providers' items") for v in providers),
        allowed_endpoints=None
        if endpoints is None
        else frozenset(check_id(v, "allowed_endpoints' items") for v in endpoints),
        allowed_pay_to=None
        if pay_to is None
        else frozenset(check_address(v, "allowed_pay_to's items") for v in pay_to),
        allowed_networks=None if networks is None else frozenset(_chain(v) for v in networks),
    )


def _chain(value: object) -> int:
    """A network: a CAIP-2 id (eip155:8453), a v1 name (base) or a chain id."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63:
        return value
    if isinstance(value, str) and len(value) <= 64:
        try:
            return chain_id_of(value)
        except ValueError:
            pass
    raise _invalid("allowed_networks' items are CAIP-2 ids (eip155:8453), v1 names or chain ids")


def check_signature(value: object) -> str:
    if not isinstance(value, str) or not _SIGNATURE.fullmatch(value):
        raise _invalid("signature must be a 65-byte 0x hex string (EIP-191 personal_sign)")
    return value


def recovers_to(message: str, signature: str, address: str) -> bool:
    """Whether `signature` is `address`'s EIP-191 personal_sign of `message`."""
    try:
        signer = EthAccount.recover_message(encode_defunct(text=message), signature=signature)
    except Exception:  # malformed v, r, s: not a signature of anyone
        return False
    return bool(signer.lower() == address.lower())


# --- payers, policies, approvals ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Policies:
    store: Store
    now: Now = utc_now
    #: Named in the challenge text, so a signature for another service is not one for us.
    service: str = "payfirst"

    async def agent_of(self, caller: Account, account_id: UUID | None) -> UUID:
        """The agent the caller acts for: itself, or (the operator) the one it names."""
        if caller.role is not Role.OPERATOR:
            if account_id is not None and account_id != caller.id:
                raise PaymentRejected(Reason.UNKNOWN_ACCOUNT, "no such account")
            return caller.id
        if account_id is None:
            raise _invalid("account_id is required: the agent account the payer is for")
        account = await self.store.get_account(account_id)
        if account is None or account.role is not Role.AGENT or account.revoked_at is not None:
            raise PaymentRejected(Reason.UNKNOWN_ACCOUNT, "no such active agent account")
        return account_id

    async def challenge(
        self, caller: Account, address: str, account_id: UUID | None = None
    ) -> PayerChallenge:
        agent = await self.agent_of(caller, account_id)
        nonce = secrets.token_hex(16)
        expires_at = self.now() + timedelta(seconds=CHALLENGE_TTL_S)
        challenge = PayerChallenge(
            nonce=nonce,
            account_id=agent,
            address=address,
            message=challenge_text(agent, address, nonce, expires_at, self.service),
            expires_at=expires_at,
        )
        await self.store.create_payer_challenge(challenge)
        return challenge

    async def register(
        self, caller: Account, address: str, signature: str, account_id: UUID | None = None
    ) -> tuple[AgentPayer, bool]:
        """(the payer, created). Raises INVALID_PAYER_PROOF when no open challenge of the
        agent for the address is what the signature signs, PAYER_TAKEN for another agent's."""
        agent = await self.agent_of(caller, account_id)
        now = self.now()
        for challenge in await self.store.open_payer_challenges(agent, address, now):
            if not recovers_to(challenge.message, signature, address):
                continue
            created, existing = await self.store.register_payer(challenge.nonce, now)
            if created is not None:
                log.info("payer %s attached to agent %s", address, agent)
                return created, True
            if existing is not None:
                if existing.account_id == agent:
                    return existing, False
                raise PaymentRejected(Reason.PAYER_TAKEN, "this address is another agent's payer")
            break  # used or expired meanwhile
        raise PaymentRejected(
            Reason.INVALID_PAYER_PROOF,
            "the signature is not the address's signature of an open challenge "
            "(POST /v1/payers/challenge; a challenge is used once and expires)",
        )

    async def payer(self, caller: Account, address: str) -> AgentPayer:
        """The payer, if the caller may see it (its own agent's; the operator: any)."""
        payer = await self.store.get_agent_payer(address)
        if payer is None or (caller.role is not Role.OPERATOR and payer.account_id != caller.id):
            raise _unknown_payer()
        return payer

    async def payers(
        self, caller: Account, limit: int, after: str | None, account_id: UUID | None = None
    ) -> list[AgentPayer]:
        owner = caller.id if caller.role is not Role.OPERATOR else account_id
        return await self.store.list_agent_payers(owner, limit, after=after)

    async def remove_payer(self, caller: Account, address: str) -> AgentPayer:
        payer = await self.payer(caller, address)
        owner = None if caller.role is Role.OPERATOR else caller.id
        if not await self.store.delete_agent_payer(address, owner):
            raise _unknown_payer()
        return payer

    async def set_policy(
        self, caller: Account, address: str, body: Mapping[str, Any]
    ) -> SpendingPolicy:
        await self.payer(caller, address)
        policy = check_policy(address, body)
        await self.store.put_spending_policy(policy, self.now())
        stored = await self.store.get_spending_policy(address)
        if stored is None:  # the payer was removed meanwhile (its policy with it)
            raise _unknown_payer()
        return stored

    async def policy(self, caller: Account, address: str) -> SpendingPolicy:
        await self.payer(caller, address)
        policy = await self.store.get_spending_policy(address)
        if policy is None:
            raise PaymentRejected(Reason.NOT_FOUND, "this payer has no spending policy")
        return policy

    async def remove_policy(self, caller: Account, address: str) -> SpendingPolicy:
        policy = await self.policy(caller, address)
        if not await self.store.delete_spending_policy(address):
            raise PaymentRejected(Reason.NOT_FOUND, "this payer has no spending policy")
        return policy

    async def awaiting_approval(self, caller: Account, limit: int) -> list[Payment]:
        owner = None if caller.role is Role.OPERATOR else caller.id
        return await self.store.list_awaiting_approval(owner, limit)

    async def decide(self, caller: Account, payment_id: UUID, *, approve: bool) -> Payment:
        """Approve (-> pending) or reject (-> failed) a held payment of the caller's payer."""
        owner = None if caller.role is Role.OPERATOR else caller.id
        if approve:
            done = await self.store.approve_payment(payment_id, owner)
        else:
            done = await self.store.reject_payment(payment_id, owner, REJECTED_ERROR)
        if not done:
            raise PaymentRejected(
                Reason.UNKNOWN_PAYMENT, "no such payment awaiting approval (or not your payer's)"
            )
        payment = await self.store.get_payment(payment_id)
        assert payment is not None  # never deleted
        log.info("payment %s %s", payment_id, "approved" if approve else "rejected")
        return payment


# --- the accept paths' check -------------------------------------------------------------


@dataclass
class PolicyCache:
    """Payers' policies (None: no policy) for the accept paths, in this process.

    An entry is dropped as soon as any process changes that payer or its policy (its
    NOTIFY); all are dropped when the notices may have been lost. A read that started
    before a change is not kept (the generation moved), so the cache never keeps a policy
    older than a notice it got. Until it listens, nothing is kept."""

    store: Store
    max_entries: int = 100_000
    _entries: dict[str, SpendingPolicy | None] = field(default_factory=dict)
    _generation: int = 0
    _listening: bool = False
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def get(self, payer: str) -> SpendingPolicy | None:
        if payer in self._entries:
            return self._entries[payer]
        await self._listen()
        generation = self._generation
        policy = await self.store.get_spending_policy(payer)
        if self._listening and generation == self._generation:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[payer] = policy
        return policy

    def invalidate(self, payer: str | None) -> None:
        self._generation += 1
        if payer is None:
            self._entries.clear()
        else:
            self._entries.pop(payer, None)

    async def _listen(self) -> None:
        if self._listening:
            return
        async with self._lock:
            if self._listening:
                return
            try:
                await self.store.watch_policy_changes(self.invalidate)
            except Exception as exc:  # read through until the notices can be heard
                log.warning("policy changes not watched (policies read uncached): %s", exc)
                return
            self._listening = True


@dataclass(frozen=True, slots=True)
class PolicyGate:
    """The accept paths' check of a payment against its payer's policy, before queueing."""

    cache: PolicyCache

    async def check(self, payer: str, payment: PaymentFacts, *, with_spent: bool = False) -> None:
        """Raises PaymentRejected(POLICY_...) for what the cached policy refuses; with
        `with_spent` (for /verify, which reserves nothing) the day and month limits too,
        from what is spent now. Queueing decides the limits exactly."""
        policy = await self.cache.get(checksum(payer))
        if policy is None:
            return
        refusal = static_refusal(policy, payment)
        if refusal is None and with_spent and (policy.max_per_day or policy.max_per_month):
            day, month = await self.cache.store.policy_spent(policy.payer, payment.asset)
            refusal = spent_refusal(policy, payment, day, month)
        if refusal is not None:
            raise PaymentRejected(refusal.reason, refusal.message)


def limits_view(limits: Limits | None) -> dict[str, str] | None:
    return None if limits is None else {asset: str(v) for asset, v in sorted(limits.items())}


def policy_view(policy: SpendingPolicy) -> dict[str, Any]:
    p = policy
    return {
        "payer": p.payer,
        "max_per_payment": limits_view(p.max_per_payment),
        "max_per_day": limits_view(p.max_per_day),
        "max_per_month": limits_view(p.max_per_month),
        "approval_threshold": limits_view(p.approval_threshold),
        "allowed_providers": None
        if p.allowed_providers is None
        else sorted(str(v) for v in p.allowed_providers),
        "allowed_endpoints": None
        if p.allowed_endpoints is None
        else sorted(str(v) for v in p.allowed_endpoints),
        "allowed_pay_to": None if p.allowed_pay_to is None else sorted(p.allowed_pay_to),
        "allowed_networks": None
        if p.allowed_networks is None
        else [f"eip155:{c}" for c in sorted(p.allowed_networks)],
        "updated_at": None if p.updated_at is None else p.updated_at.isoformat(),
    }


def payer_view(payer: AgentPayer) -> dict[str, Any]:
    return {
        "address": payer.address,
        "account_id": str(payer.account_id),
        "verified_at": payer.verified_at.isoformat(),
        "created_at": payer.created_at.isoformat(),
    }


def held_view(payment: Payment) -> dict[str, Any]:
    return {
        "id": str(payment.id),
        "status": payment.status.value,
        "payment_type": payment.payment_type.value,
        "payer": payment.payer,
        "amount": str(payment.amount),
        "asset": payment.payment_asset,
        "pay_to": payment.pay_to,
        "network": None if payment.chain_id is None else f"eip155:{payment.chain_id}",
        "valid_before": payment.authorization.valid_before,
        "error": payment.error,
        "created_at": payment.created_at.isoformat(),
    }


def challenge_view(challenge: PayerChallenge) -> dict[str, Any]:
    return {
        "address": challenge.address,
        "account_id": str(challenge.account_id),
        "message": challenge.message,
        "expires_at": challenge.expires_at.isoformat(),
    }
