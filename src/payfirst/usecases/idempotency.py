"""The client-chosen payment id: an `Idempotency-Key` header or the x402
`payment-identifier` extension of a v2 payload. Same id and payload: the same payment;
same id, another payload: 409."""

from __future__ import annotations

import re
from collections.abc import Mapping

from payfirst.domain.errors import PaymentRejected
from payfirst.domain.reasons import Reason
from payfirst.x402 import PaymentPayloadV1, PaymentPayloadV2

IDEMPOTENCY_HEADER = "idempotency-key"
PAYMENT_IDENTIFIER = "payment-identifier"
_KEY = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_EXTENSION_ID = re.compile(r"^[A-Za-z0-9_-]{16,128}$")  # the extension's own schema


def payment_id_of(
    headers: Mapping[str, str], payload: PaymentPayloadV1 | PaymentPayloadV2
) -> str | None:
    header = headers.get(IDEMPOTENCY_HEADER)
    if header is not None and not _KEY.match(header):
        raise PaymentRejected(
            Reason.INVALID_IDEMPOTENCY_KEY, "Idempotency-Key must be 1-128 of A-Z a-z 0-9 _ -"
        )
    extension = _extension_id(payload)
    if header is not None and extension is not None and header != extension:
        raise PaymentRejected(
            Reason.INVALID_IDEMPOTENCY_KEY,
            "Idempotency-Key and the payment-identifier extension name different ids",
        )
    return header or extension


def _extension_id(payload: PaymentPayloadV1 | PaymentPayloadV2) -> str | None:
    if not isinstance(payload, PaymentPayloadV2) or not payload.extensions:
        return None
    extension = payload.extensions.get(PAYMENT_IDENTIFIER)
    info = extension.get("info") if isinstance(extension, dict) else None
    payment_id = info.get("id") if isinstance(info, dict) else None
    if payment_id is None:
        return None
    if not isinstance(payment_id, str) or not _EXTENSION_ID.match(payment_id):
        raise PaymentRejected(
            Reason.INVALID_PAYLOAD,
            "payment-identifier id must be 16-128 of A-Z a-z 0-9 _ -",
        )
    return payment_id
