"""x402 header codec: base64 (standard alphabet) of compact JSON.

`X-PAYMENT` carries an x402 v1 PaymentPayload, `PAYMENT-SIGNATURE` a v2 one;
`PAYMENT-REQUIRED`, `PAYMENT-RESPONSE` and `X-PAYMENT-RESPONSE` are encoded the same way.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any, Final

from pydantic import BaseModel, ValidationError

from payfirst import jsonsafe
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.reasons import Reason
from payfirst.x402.models import PaymentPayloadV1, PaymentPayloadV2, describe_validation_error

X_PAYMENT: Final = "X-PAYMENT"
X_PAYMENT_RESPONSE: Final = "X-PAYMENT-RESPONSE"
PAYMENT_SIGNATURE: Final = "PAYMENT-SIGNATURE"
PAYMENT_REQUIRED: Final = "PAYMENT-REQUIRED"
PAYMENT_RESPONSE: Final = "PAYMENT-RESPONSE"

# A real exact-EVM payment header is well under 2 KiB; refuse to decode absurd ones.
MAX_HEADER_CHARS: Final = 16 * 1024

_URLSAFE_TO_STD: Final = bytes.maketrans(b"-_", b"+/")


def encode_header(obj: BaseModel | Mapping[str, Any]) -> str:
    """Base64 of the compact JSON of a wire model (camelCase, no nulls) or a dict."""
    if isinstance(obj, BaseModel):
        text = obj.model_dump_json(by_alias=True, exclude_none=True)
    else:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _bad(message: str) -> PaymentRejected:
    return PaymentRejected(Reason.INVALID_PAYLOAD, message)


def decode_header(value: str) -> dict[str, Any]:
    """The JSON object inside a base64 header value.

    Standard base64; missing padding and the URL-safe alphabet are tolerated.
    Raises PaymentRejected(Reason.INVALID_PAYLOAD) on anything else."""
    if not isinstance(value, str):
        raise _bad("payment header is not a string")
    if len(value) > MAX_HEADER_CHARS:
        raise _bad(f"payment header is longer than {MAX_HEADER_CHARS} characters")
    try:
        raw = value.strip().encode("ascii").translate(_URLSAFE_TO_STD)
    except UnicodeEncodeError:
        raise _bad("payment header is not base64 (non-ASCII characters)") from None
    if not raw:
        raise _bad("payment header is empty")
    raw += b"=" * (-len(raw) % 4)
    try:
        decoded = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise _bad("payment header is not valid base64") from None
    try:
        data = jsonsafe.loads(decoded)
    except jsonsafe.JsonRejected as exc:
        raise _bad(f"payment header is base64 but not acceptable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _bad("payment header JSON is not an object")
    return data


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, case-insensitively, for any Mapping (Starlette's Headers are
    already case-insensitive; plain dicts are scanned)."""
    value = headers.get(name) or headers.get(name.lower())
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None


def parse_payment_payload(
    data: Mapping[str, Any], default_version: int = 2
) -> PaymentPayloadV1 | PaymentPayloadV2:
    """A decoded payment payload as a model, chosen by its `x402Version`
    (`default_version` when absent). Raises PaymentRejected(...)."""
    version = data.get("x402Version", data.get("x402_version", default_version))
    try:
        if version == 1 and not isinstance(version, bool):
            return PaymentPayloadV1.model_validate(data)
        if version == 2 and not isinstance(version, bool):
            return PaymentPayloadV2.model_validate(data)
    except ValidationError as exc:
        raise _bad(
            f"malformed x402 v{version} payment payload: {describe_validation_error(exc)}"
        ) from None
    raise PaymentRejected(
        Reason.INVALID_X402_VERSION, f"unsupported x402Version {version!r} (1 or 2)"
    )


def parse_payment_header(
    headers: Mapping[str, str],
) -> PaymentPayloadV1 | PaymentPayloadV2 | None:
    """The payment a request carries, or None when it carries none.

    Reads `PAYMENT-SIGNATURE` (v2) or else `X-PAYMENT` (v1), case-insensitively. The
    payload's own `x402Version` decides the model (a header without one is taken to be
    the version its header name implies). Raises PaymentRejected(Reason.INVALID_PAYLOAD)
    for a header that cannot be decoded, or PaymentRejected(Reason.INVALID_X402_VERSION)."""
    value = _header(headers, PAYMENT_SIGNATURE)
    default_version = 2
    if value is None:
        value = _header(headers, X_PAYMENT)
        default_version = 1
        if value is None:
            return None
    return parse_payment_payload(decode_header(value), default_version)
