"""Sign x402 `exact` EVM payments (EIP-3009 TransferWithAuthorization) locally."""

from __future__ import annotations

import os
import time

from coincurve import PrivateKey
from eth_account import Account

from payfirst.x402 import (
    PaymentPayloadV1,
    PaymentPayloadV2,
    PaymentRequirementsV1,
    PaymentRequirementsV2,
    ResourceInfo,
    chain_id_of,
    digest,
    encode_header,
    wire,
)

# validAfter a little in the past tolerates clock skew between payer and chain.
VALID_AFTER_SKEW_S = 60


class Payer:
    """A payer key that signs x402 exact-EVM payments."""

    def __init__(self, private_key: str) -> None:
        self._key = PrivateKey(bytes.fromhex(private_key.removeprefix("0x")))
        self.address: str = Account.from_key(private_key).address

    def authorize(
        self,
        requirements: PaymentRequirementsV1 | PaymentRequirementsV2,
        now: int | None = None,
        nonce: str | None = None,
    ) -> dict[str, object]:
        """The `payload` object ({signature, authorization}) for these requirements, with
        a fresh random nonce unless one is given."""
        now = int(time.time()) if now is None else now
        extra = requirements.extra or {}
        nonce = nonce or "0x" + os.urandom(32).hex()
        authorization = {
            "from": self.address,
            "to": requirements.pay_to,
            "value": requirements.amount,
            "validAfter": str(now - VALID_AFTER_SKEW_S),
            "validBefore": str(now + requirements.max_timeout_seconds),
            "nonce": nonce,
        }
        message_hash = digest(
            asset=requirements.asset,
            chain_id=chain_id_of(requirements.network),
            name=str(extra.get("name", "")),
            version=str(extra.get("version", "")),
            from_=self.address,
            to=requirements.pay_to,
            value=int(requirements.amount),
            valid_after=now - VALID_AFTER_SKEW_S,
            valid_before=now + requirements.max_timeout_seconds,
            nonce=nonce,
        )
        rsv = self._key.sign_recoverable(message_hash, hasher=None)
        signature = "0x" + rsv[:64].hex() + f"{rsv[64] + 27:02x}"
        return {"signature": signature, "authorization": authorization}

    def pay_v1(self, requirements: PaymentRequirementsV1, now: int | None = None) -> str:
        """An `X-PAYMENT` header value."""
        payload = PaymentPayloadV1(
            scheme=requirements.scheme,
            network=requirements.network,
            payload=self.authorize(requirements, now),
        )
        return encode_header(wire(payload))

    def pay_v2(
        self,
        requirements: PaymentRequirementsV2,
        resource: ResourceInfo | None = None,
        now: int | None = None,
    ) -> str:
        """A `PAYMENT-SIGNATURE` header value."""
        payload = PaymentPayloadV2(
            resource=resource, accepted=requirements, payload=self.authorize(requirements, now)
        )
        return encode_header(wire(payload))
