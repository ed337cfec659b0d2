"""Buying mints with an x402 payment: answer the requirements, or verify the payment and
queue it.

No chain RPC happens here (SPEC §2 rule 5): verification is local and the payment is
settled later by the sender loop."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from eth_utils.address import is_address, to_checksum_address

from payfirst.domain.errors import PaymentRejected
from payfirst.domain.models import NewPayment, Token
from payfirst.domain.networks import caip2_id
from payfirst.domain.reasons import Reason
from payfirst.domain.statuses import PaymentType
from payfirst.metrics import metrics
from payfirst.ports.store import Store
from payfirst.usecases.deps import Clock, RateLimit, ServedNetworks, TokenLookup
from payfirst.usecases.idempotency import payment_id_of
from payfirst.x402 import mint_requirements_for, parse_payment_header, verify_exact_evm

log = logging.getLogger("payfirst.api")

PAYMENT_REQUIRED = "payment required"


@dataclass(frozen=True, slots=True)
class MintOrder:
    token_address: str
    quantity: int
    #: The URL bought, named in the requirements and kept with the payment.
    resource: str
    #: The request's headers: the x402 payment (PAYMENT-SIGNATURE or X-PAYMENT) and
    #: Idempotency-Key are read from them.
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class PaymentNeeded:
    """No payment, or one that does not verify: the requirements for `quantity` mints of
    `token` are to be offered (again). `refusal` says what was wrong with the payment."""

    token: Token
    quantity: int
    resource: str
    refusal: PaymentRejected | None = None

    @property
    def reason(self) -> str:
        return self.refusal.reason if self.refusal is not None else PAYMENT_REQUIRED

    @property
    def message(self) -> str:
        return self.refusal.message if self.refusal is not None else ""


@dataclass(frozen=True, slots=True)
class Queued:
    """The payment is queued; `created` is False when this exact payment already was."""

    payment_id: uuid.UUID
    created: bool
    quantity: int
    held: bool = False  # above its payer's approval threshold: awaiting_approval


@dataclass(frozen=True, slots=True)
class MintSales:
    store: Store
    tokens: TokenLookup
    clock: Clock
    per_payer: RateLimit
    #: Wakes an in-process sender at once (a no-op in separate API processes).
    on_payment_queued: Callable[[], None]
    #: The networks settled here: a token on any other is not sold (None: no check).
    networks: ServedNetworks | None = None

    async def accept(self, order: MintOrder) -> PaymentNeeded | Queued:
        """Raises PaymentRejected for an unknown token, a malformed payment header, a
        zero-value payment, a payer over its rate limit, or what queueing refuses (sold
        out, a reused authorization or payment id)."""
        token = await find_token(self.tokens, order.token_address)
        if self.networks is not None and self.networks.by_chain_id(token.chain_id) is None:
            raise PaymentRejected(
                Reason.INVALID_NETWORK,
                f"{token.address} is sold on {caip2_id(token.chain_id)}, which is not settled "
                f"here (payfirst settles on {self.networks.describe()})",
            )
        payload = parse_payment_header(order.headers)
        if payload is None:
            return PaymentNeeded(token, order.quantity, order.resource)
        requirements = mint_requirements_for(payload, token, order.quantity, order.resource)
        try:
            authorization = verify_exact_evm(payload, requirements, int(self.clock()))
        except PaymentRejected as exc:
            return PaymentNeeded(token, order.quantity, order.resource, exc)
        if authorization.value <= 0:
            # A token priced at zero is not sold through payments: nothing would pay the gas.
            raise PaymentRejected(
                Reason.INVALID_PAYMENT_REQUIREMENTS, "zero-value payments are refused"
            )
        self.per_payer.take(authorization.from_)
        # The payer's spending policy is applied by the queueing itself, in its transaction
        # (payfirst_queue_payments_v4): no read of its own on the accept path.
        queued = await self.store.queue_payment(
            NewPayment(
                id=uuid.uuid4(),
                payment_type=PaymentType.MINT,
                payer=authorization.from_,
                amount=authorization.value,
                payment_asset=token.payment_asset,
                pay_to=token.address,
                quantity=order.quantity,
                authorization=authorization,
                metadata={"x402Version": payload.x402_version, "resource": order.resource},
                idempotency_key=payment_id_of(order.headers, payload),
                chain_id=token.chain_id,
            )
        )
        if queued.held:
            log.info("x402 payment %s awaits its payer's owner's approval", queued.payment_id)
        if queued.created:
            metrics().payments_accepted.labels("mint", f"eip155:{token.chain_id}").inc()
        if queued.created and not queued.held:
            log.debug(
                "x402 payment queued: %s (%dx mint will be created after payment confirms)",
                queued.payment_id,
                order.quantity,
            )
            self.on_payment_queued()
        return Queued(queued.payment_id, queued.created, order.quantity, queued.held)


@functools.lru_cache(maxsize=1024)
def _token_address(text: str) -> str | None:
    return to_checksum_address(text) if is_address(text) else None


async def find_token(lookup: TokenLookup, address: str) -> Token:
    """The token at `address` (any case); raises PaymentRejected when it is not an
    address or not a token payfirst sells."""
    checksummed = _token_address(address)
    if checksummed is None:
        raise PaymentRejected(Reason.INVALID_TOKEN_ADDRESS, f"{address!r} is not an address")
    token = await lookup(checksummed)
    if token is None:
        raise PaymentRejected(Reason.UNKNOWN_TOKEN, f"payfirst does not sell {address}")
    return token
