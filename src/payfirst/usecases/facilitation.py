"""Facilitating x402 payments for resource servers: verify a payment against its
requirements, and settle it through the same queue, batches and confirmation as mints.

A settlement is answered once the payment is confirmed on chain, or after `settle_timeout_s`
as pending with the tx hash so far. Settling the same payload again gives that payment's
result: the (payer, nonce) key makes it the same payment, so it is never sent twice."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from payfirst.domain.accounts import Account
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.models import Authorization, NewPayment, Payment
from payfirst.domain.policies import PaymentFacts
from payfirst.domain.reasons import Reason
from payfirst.domain.statuses import PaymentStatus, PaymentType
from payfirst.evm.abi import checksum
from payfirst.metrics import metrics
from payfirst.ports.chain import AuthorizationRef, ChainRejected, ChainUnavailable
from payfirst.ports.store import Store
from payfirst.usecases.deps import (
    CannotWait,
    Clock,
    PaymentChanges,
    RateLimit,
    ServedNetwork,
    ServedNetworks,
    Tokens,
)
from payfirst.usecases.endpoints import EndpointRegistry, Sale
from payfirst.usecases.idempotency import payment_id_of
from payfirst.usecases.policies import PolicyGate
from payfirst.x402 import VerifyRequest, verify_exact_evm

log = logging.getLogger("payfirst.facilitator")


@dataclass(frozen=True, slots=True)
class Valid:
    payer: str


@dataclass(frozen=True, slots=True)
class Invalid:
    reason: Reason
    message: str
    payer: str | None


@dataclass(frozen=True, slots=True)
class Settled:
    """Confirmed on chain, in the transaction `payment.tx_hash`."""

    payment: Payment


@dataclass(frozen=True, slots=True)
class SettleFailed:
    payment: Payment
    reason: Reason


@dataclass(frozen=True, slots=True)
class SettlePending:
    """Not final when the wait ended: `payment.tx_hash` is the transaction so far (if
    any); settling the same payload again later gives the result."""

    payment: Payment


SettleOutcome = Settled | SettleFailed | SettlePending


@dataclass(frozen=True, slots=True)
class Facilitator:
    store: Store
    #: The networks payments may settle on, each with the chain its checks read.
    networks: ServedNetworks
    tokens: Tokens
    clock: Clock
    per_payer: RateLimit
    changes: PaymentChanges
    #: Wakes an in-process sender at once (a no-op in separate API processes).
    on_payment_queued: Callable[[], None]
    #: The pay-to addresses settlements may pay (empty: none), and the smallest amount.
    settle_pay_to: frozenset[str]
    min_settle_amount: int
    settle_timeout_s: float
    #: Providers' paid endpoints: a caller with a key may settle a payment its requirements
    #: name one of (extra.payfirst), at the registry's price. None: no registry.
    endpoints: EndpointRegistry | None = None
    #: Payers' spending policies (None: none checked before queueing; queueing still does).
    policies: PolicyGate | None = None

    async def verify(
        self, request: VerifyRequest, caller: Account | None = None
    ) -> Valid | Invalid:
        """Valid only for an authorization never submitted before. A payload payfirst
        already has is a replay to a resource server (which verifies before serving), even
        when identical; a facilitator client retrying a settlement calls settle, which
        answers that payment's result. `caller`: the account of the API key given (a
        provider or the operator), which may name its paid endpoint."""
        try:
            sale = await self._sale(request, caller)
            authorization = verify_exact_evm(
                request.payment_payload, request.payment_requirements, int(self.clock())
            )
            await self._check_admissible(authorization, sale)
            known = await self.store.find_payment(authorization.from_, authorization.nonce)
            if known is not None:
                raise PaymentRejected(
                    Reason.INVALID_EXACT_EVM_NONCE_ALREADY_USED,
                    f"this authorization was already submitted (payment {known.id})",
                )
            await self._check_on_chain(request, authorization, self._served(request))
            await self._check_policy(request, authorization, sale, with_spent=True)
        except PaymentRejected as exc:
            return Invalid(exc.reason, exc.message, payer_of(request))
        return Valid(authorization.from_)

    async def settle(
        self, request: VerifyRequest, headers: Mapping[str, str], caller: Account | None = None
    ) -> SettleOutcome:
        """Queue the payment (or find it queued) and wait for its outcome. `headers`: the
        request's, for its Idempotency-Key; `caller`: as verify's. Raises PaymentRejected
        when the payment is refused before it is queued."""
        payload = request.payment_payload
        authorization = verify_exact_evm(payload, request.payment_requirements, int(self.clock()))
        existing = await self.store.find_payment(authorization.from_, authorization.nonce)
        if existing is not None and await self._is_retry(existing, authorization, request, caller):
            payment_id_of(headers, payload)  # a malformed Idempotency-Key is refused all the same
            self.per_payer.take(authorization.from_)
            return settle_outcome(await self._wait_for_outcome(existing.id))
        sale = await self._sale(request, caller)
        await self._check_admissible(authorization, sale)
        self.per_payer.take(authorization.from_)
        if existing is not None and existing.authorization == authorization:
            chain_id = existing.chain_id  # the same payment: its outcome, wherever it settles
        else:
            served = self._served(request)
            await self._check_on_chain(request, authorization, served)
            # Its spending policy is applied by the queueing, in its transaction.
            chain_id = served.network.chain_id
        queued = await self.store.queue_payment(
            NewPayment(
                id=uuid.uuid4(),
                payment_type=PaymentType.SETTLE,
                payer=authorization.from_,
                amount=authorization.value,
                payment_asset=checksum(request.payment_requirements.asset),
                pay_to=authorization.to,
                quantity=1,
                authorization=authorization,
                metadata={
                    "x402Version": payload.x402_version,
                    "network": request.payment_requirements.network,
                },
                idempotency_key=payment_id_of(headers, payload),
                chain_id=chain_id,
                endpoint_id=None if sale is None else sale.endpoint.id,
                provider_id=None if sale is None else sale.provider_id,
                fee_bps=None if sale is None else sale.fee_bps,
            )
        )
        if queued.held:
            log.info("x402 settlement %s awaits its payer's owner's approval", queued.payment_id)
        elif queued.created:
            self.on_payment_queued()
            log.debug("x402 settlement queued: %s", queued.payment_id)
        if queued.created:
            metrics().payments_accepted.labels("settle", f"eip155:{chain_id}").inc()
        return settle_outcome(await self._wait_for_outcome(queued.payment_id))

    async def _wait_for_outcome(self, payment_id: uuid.UUID) -> Payment:
        """The payment once terminal, or as it is when the settle timeout passes; woken by
        its change notices (with too many waiters, answered at once)."""
        deadline = time.monotonic() + self.settle_timeout_s
        try:
            async with self.changes.watch(payment_id) as changed:
                while True:
                    changed.clear()
                    payment = await self._payment(payment_id)
                    left = deadline - time.monotonic()
                    if payment.status.is_terminal or left <= 0:
                        return payment
                    if payment.status is PaymentStatus.AWAITING_APPROVAL:
                        return payment  # nothing happens until its owner decides
                    await changed.wait(left)
        except CannotWait:
            return await self._payment(payment_id)

    async def _payment(self, payment_id: uuid.UUID) -> Payment:
        payment = await self.store.get_payment(payment_id)
        assert payment is not None  # queued payments are never deleted
        return payment

    async def _check_policy(
        self,
        request: VerifyRequest,
        authorization: Authorization,
        sale: Sale | None,
        *,
        with_spent: bool = False,
    ) -> None:
        """The payer's spending policy, as far as it is decided before queueing (a
        verification, which reserves nothing, also counts what was spent)."""
        if self.policies is None:
            return
        payment = PaymentFacts(
            amount=authorization.value,
            asset=checksum(request.payment_requirements.asset),
            pay_to=checksum(authorization.to),
            chain_id=self._served(request).network.chain_id,
            provider_id=None if sale is None else sale.endpoint.provider_id,
            endpoint_id=None if sale is None else sale.endpoint.id,
        )
        await self.policies.check(authorization.from_, payment, with_spent=with_spent)

    async def _is_retry(
        self,
        existing: Payment,
        authorization: Authorization,
        request: VerifyRequest,
        caller: Account | None,
    ) -> bool:
        """Whether a settlement is one already queued for a paid endpoint: the same
        authorization, for the endpoint its requirements name, by a caller who may act for
        it. Its outcome is answered as it was priced then, whatever the registry says now
        (a price change or a disabling applies to payments accepted after it)."""
        if caller is None or self.endpoints is None or existing.endpoint_id is None:
            return False
        if existing.authorization != authorization:
            return False
        return await self.endpoints.names_endpoint_of(
            caller, request.payment_requirements, existing.endpoint_id
        )

    async def _sale(self, request: VerifyRequest, caller: Account | None) -> Sale | None:
        """The paid endpoint a keyed caller's requirements name, priced by the registry;
        without a key, none (extra.payfirst is then no one's word)."""
        if caller is None or self.endpoints is None:
            return None
        return await self.endpoints.sale(caller, request.payment_requirements)

    async def _check_admissible(self, authorization: Authorization, sale: Sale | None) -> None:
        """What this facilitator agrees to spend gas on: only pay-to addresses the operator
        allowed (or a keyed provider's paid endpoint, at the registry's price: `sale`),
        never a token payfirst sells by mint (a payment to it buys mints through
        /api/mint, and settling it here would take the buyer's money for nothing), and no
        dust. Checked before anything else, so a stranger can never make the relayer pay."""
        pay_to = checksum(authorization.to)
        if pay_to in {t.address for t in await self.tokens.all()}:
            raise PaymentRejected(
                Reason.INVALID_PAYMENT_REQUIREMENTS,
                f"payments to {pay_to} buy its mints: use POST /api/mint/{pay_to}",
            )
        if sale is None and pay_to not in self.settle_pay_to:
            raise PaymentRejected(
                Reason.INVALID_PAYMENT_REQUIREMENTS,
                f"this facilitator does not settle payments to {pay_to}",
            )
        if authorization.value < max(1, self.min_settle_amount):
            raise PaymentRejected(
                Reason.INVALID_PAYMENT_REQUIREMENTS,
                f"amount {authorization.value} is below the minimum of {self.min_settle_amount}",
            )

    def _served(self, request: VerifyRequest) -> ServedNetwork:
        """The served network the requirements name; INVALID_NETWORK for any other (an
        unknown one, or one known but not configured here)."""
        name = request.payment_requirements.network
        served = self.networks.get(name)
        if served is None:
            raise PaymentRejected(
                Reason.INVALID_NETWORK,
                f"{name} is not settled here (payfirst settles on {self.networks.describe()})",
            )
        return served

    async def _check_on_chain(
        self, request: VerifyRequest, authorization: Authorization, served: ServedNetwork
    ) -> None:
        """The asset, and what only the chain knows: the payer's balance and whether the
        authorization was used. If the chain cannot be reached these two are left to
        settlement (which fails safely), rather than failing the verification."""
        network = served.network
        asset = checksum(request.payment_requirements.asset)
        if network.asset(asset) is None and asset not in {
            t.payment_asset for t in await self.tokens.all() if t.chain_id == network.chain_id
        }:
            raise PaymentRejected(
                Reason.INVALID_PAYMENT_REQUIREMENTS,
                f"asset {asset} is not settled here on {network.caip2}",
            )
        chain = served.chain
        if chain is None:
            return
        payer = authorization.from_
        try:
            (balance,), (used,) = await asyncio.gather(
                chain.balances([(asset, payer)], "latest"),
                chain.authorization_states(
                    [AuthorizationRef(asset, payer, authorization.nonce)], "latest"
                ),
            )
        except (ChainUnavailable, ChainRejected) as exc:
            log.warning("verify: chain checks skipped: %s", exc)
            return
        if balance is not None and balance < authorization.value:
            raise PaymentRejected(Reason.INSUFFICIENT_FUNDS, "the payer's balance is too low")
        if used:
            raise PaymentRejected(
                Reason.INVALID_EXACT_EVM_NONCE_ALREADY_USED, "authorization already used on chain"
            )


def settle_outcome(payment: Payment) -> SettleOutcome:
    if payment.status is PaymentStatus.COMPLETED:
        return Settled(payment)
    if payment.status is PaymentStatus.AWAITING_APPROVAL:
        return SettleFailed(payment, Reason.PAYMENT_AWAITING_APPROVAL)
    if payment.status.is_terminal:
        return SettleFailed(payment, _failure_reason(payment))
    return SettlePending(payment)


def _failure_reason(payment: Payment) -> Reason:
    """The x402 reason of a failed payment: the one its error starts with (the sender
    writes "insufficient_funds: ..."), else by its status."""
    code = (payment.error or "").split(":", 1)[0]
    if code in Reason.__members__.values():
        return Reason(code)
    if payment.status is PaymentStatus.CONFIRMATION_FAILED:
        return Reason.TRANSACTION_FAILED
    return Reason.INVALID_TRANSACTION_STATE


def payer_of(request: VerifyRequest) -> str | None:
    """The payer the payload names, as given (for answers about payloads that do not
    verify)."""
    authorization = request.payment_payload.payload.get("authorization")
    payer = authorization.get("from") if isinstance(authorization, dict) else None
    return payer if isinstance(payer, str) else None
