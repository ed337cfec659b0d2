"""The x402 protocol as payfirst speaks it: wire models (v1 and v2), the header codec,
mint payment requirements, and RPC-free verification of `exact` EVM payments.

The API layer's request path is, in short::

    payload = parse_payment_header(request.headers)        # None, or raises 400
    if payload is None:
        body, header = payment_required(token, quantity, url, "X-PAYMENT header is required")
        -> 402 JSON `body` + header `PAYMENT-REQUIRED: header`
    requirements = mint_requirements_for(payload, token, quantity, url)
    authorization = verify_exact_evm(payload, requirements, now=int(time.time()))  # 402
"""

from payfirst.x402.codec import (
    PAYMENT_REQUIRED,
    PAYMENT_RESPONSE,
    PAYMENT_SIGNATURE,
    X_PAYMENT,
    X_PAYMENT_RESPONSE,
    decode_header,
    encode_header,
    parse_payment_header,
    parse_payment_payload,
)
from payfirst.x402.exact_evm import (
    SCHEME_EXACT,
    VALID_BEFORE_MARGIN_S,
    digest,
    domain_separator,
    keccak256,
    recover_signer,
    to_checksum_address,
    verify_exact_evm,
)
from payfirst.x402.models import (
    ExactEvmAuthorization,
    ExactEvmPayload,
    PaymentPayload,
    PaymentPayloadV1,
    PaymentPayloadV2,
    PaymentRequiredV1,
    PaymentRequiredV2,
    PaymentRequirements,
    PaymentRequirementsV1,
    PaymentRequirementsV2,
    ResourceInfo,
    SettleRequest,
    SettleResponse,
    SupportedKind,
    SupportedResponse,
    VerifyRequest,
    VerifyResponse,
    WireModel,
    describe_validation_error,
    wire,
)
from payfirst.x402.networks import (
    LOCAL_CHAIN_ID,
    V1_NETWORK_CHAIN_IDS,
    caip2,
    chain_id_of,
    is_known_network,
    v1_network,
)
from payfirst.x402.requirements import (
    MAX_TIMEOUT_SECONDS,
    mint_amount,
    mint_requirements_for,
    mint_requirements_v1,
    mint_requirements_v2,
    payment_required,
)

__all__ = [
    "LOCAL_CHAIN_ID",
    "MAX_TIMEOUT_SECONDS",
    "PAYMENT_REQUIRED",
    "PAYMENT_RESPONSE",
    "PAYMENT_SIGNATURE",
    "SCHEME_EXACT",
    "V1_NETWORK_CHAIN_IDS",
    "VALID_BEFORE_MARGIN_S",
    "X_PAYMENT",
    "X_PAYMENT_RESPONSE",
    "ExactEvmAuthorization",
    "ExactEvmPayload",
    "PaymentPayload",
    "PaymentPayloadV1",
    "PaymentPayloadV2",
    "PaymentRequiredV1",
    "PaymentRequiredV2",
    "PaymentRequirements",
    "PaymentRequirementsV1",
    "PaymentRequirementsV2",
    "ResourceInfo",
    "SettleRequest",
    "SettleResponse",
    "SupportedKind",
    "SupportedResponse",
    "VerifyRequest",
    "VerifyResponse",
    "WireModel",
    "caip2",
    "chain_id_of",
    "decode_header",
    "describe_validation_error",
    "digest",
    "domain_separator",
    "encode_header",
    "is_known_network",
    "keccak256",
    "mint_amount",
    "mint_requirements_for",
    "mint_requirements_v1",
    "mint_requirements_v2",
    "parse_payment_header",
    "parse_payment_payload",
    "payment_required",
    "recover_signer",
    "to_checksum_address",
    "v1_network",
    "verify_exact_evm",
    "wire",
]
