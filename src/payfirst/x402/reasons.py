"""x402 reason codes, spelled exactly as the x402 spec and the official SDKs spell them.

They travel to clients in `invalidReason` / `errorReason` and in payfirst's 400/402
JSON bodies; clients match on them, so never change a spelling.
"""

from __future__ import annotations

from typing import Final

# --- general (x402 spec, "Error Handling") -------------------------------------------
INSUFFICIENT_FUNDS: Final = "insufficient_funds"
INVALID_NETWORK: Final = "invalid_network"
INVALID_PAYLOAD: Final = "invalid_payload"
INVALID_PAYMENT_REQUIREMENTS: Final = "invalid_payment_requirements"
INVALID_SCHEME: Final = "invalid_scheme"
UNSUPPORTED_SCHEME: Final = "unsupported_scheme"
INVALID_X402_VERSION: Final = "invalid_x402_version"
INVALID_TRANSACTION_STATE: Final = "invalid_transaction_state"
UNEXPECTED_VERIFY_ERROR: Final = "unexpected_verify_error"
UNEXPECTED_SETTLE_ERROR: Final = "unexpected_settle_error"

# --- exact scheme on EVM (EIP-3009) ----------------------------------------------------
INVALID_EXACT_EVM_PAYLOAD_SIGNATURE: Final = "invalid_exact_evm_payload_signature"
INVALID_EXACT_EVM_PAYLOAD_AUTHORIZATION_VALUE_MISMATCH: Final = (
    "invalid_exact_evm_payload_authorization_value_mismatch"
)
# The v1 spec's older spelling of the amount check; kept so it can be recognised.
INVALID_EXACT_EVM_PAYLOAD_AUTHORIZATION_VALUE: Final = (
    "invalid_exact_evm_payload_authorization_value"
)
INVALID_EXACT_EVM_PAYLOAD_RECIPIENT_MISMATCH: Final = "invalid_exact_evm_payload_recipient_mismatch"
INVALID_EXACT_EVM_PAYLOAD_AUTHORIZATION_VALID_BEFORE: Final = (
    "invalid_exact_evm_payload_authorization_valid_before"
)
INVALID_EXACT_EVM_PAYLOAD_AUTHORIZATION_VALID_AFTER: Final = (
    "invalid_exact_evm_payload_authorization_valid_after"
)
INVALID_EXACT_EVM_NONCE_ALREADY_USED: Final = "invalid_exact_evm_nonce_already_used"
# The official SDK's EVM-specific balance code (the spec's general one is insufficient_funds).
INVALID_EXACT_EVM_INSUFFICIENT_BALANCE: Final = "invalid_exact_evm_insufficient_balance"
# The official SDK answers a scheme/network pair that differs from the requirements so.
NETWORK_MISMATCH: Final = "network_mismatch"
MISSING_EIP712_DOMAIN: Final = "missing_eip712_domain"
TRANSACTION_FAILED: Final = "transaction_failed"
SETTLEMENT_PENDING: Final = "settlement_pending"

ALL_REASONS: Final = frozenset(
    {
        INSUFFICIENT_FUNDS,
        INVALID_NETWORK,
        INVALID_PAYLOAD,
        INVALID_PAYMENT_REQUIREMENTS,
        INVALID_SCHEME,
        UNSUPPORTED_SCHEME,
        INVALID_X402_VERSION,
        INVALID_TRANSACTION_STATE,
        UNEXPECTED_VERIFY_ERROR,
        UNEXPECTED_SETTLE_ERROR,
        INVALID_EXACT_EVM_PAYLOAD_SIGNATURE,
        INVALID_EXACT_EVM_PAYLOAD_AUTHORIZATION_VALUE_MISMATCH,
        INVALID_EXACT_EVM_PAYLOAD_AUTHORIZATION_VALUE,
        INVALID_EXACT_EVM_PAYLOAD_RECIPIENT_MISMATCH,
        INVALID_EXACT_EVM_PAYLOAD_AUTHORIZATION_VALID_BEFORE,
        INVALID_EXACT_EVM_PAYLOAD_AUTHORIZATION_VALID_AFTER,
        INVALID_EXACT_EVM_NONCE_ALREADY_USED,
        INVALID_EXACT_EVM_INSUFFICIENT_BALANCE,
        NETWORK_MISMATCH,
        MISSING_EIP712_DOMAIN,
        TRANSACTION_FAILED,
        SETTLEMENT_PENDING,
    }
)
