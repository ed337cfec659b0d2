"""Every reason code payfirst answers with, in one enum.

The x402 codes are spelled exactly as the x402 spec and the official SDKs spell them;
clients match on them (`invalidReason`, `errorReason`, the `error` of a JSON answer), so
never change a spelling. The domain raises reasons (`PaymentRejected(Reason.X)`); which
HTTP status a reason gets is decided at the HTTP edge (`payfirst.api.responses`)."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    # --- x402, general ("Error Handling") ---------------------------------------------
    INSUFFICIENT_FUNDS = "insufficient_funds"
    INVALID_NETWORK = "invalid_network"
    INVALID_PAYLOAD = "invalid_payload"
    INVALID_PAYMENT_REQUIREMENTS = "invalid_payment_requirements"
    INVALID_SCHEME = "invalid_scheme"
    UNSUPPORTED_SCHEME = "unsupported_scheme"
    INVALID_X402_VERSION = "invalid_x402_version"
    INVALID_TRANSACTION_STATE = "invalid_transaction_state"
    UNEXPECTED_VERIFY_ERROR = "unexpected_verify_error"
    UNEXPECTED_SETTLE_ERROR = "unexpected_settle_error"
    # --- x402, exact scheme on EVM (EIP-3009) -----------------------------------------
    INVALID_EXACT_EVM_PAYLOAD_SIGNATURE = "invalid_exact_evm_payload_signature"
    INVALID_EXACT_EVM_PAYLOAD_AUTHORIZATION_VALUE_MISMATCH = (
        "invalid_exact_evm_payload_authorization_value_mismatch"
    )
    # The v1 spec's older spelling of the amount check; kept so it can be recognised.
    INVALID_EXACT_EVM_PAYLOAD_AUTHORIZATION_VALUE = "invalid_exact_evm_payload_authorization_value"
    INVALID_EXACT_EVM_PAYLOAD_RECIPIENT_MISMATCH = "invalid_exact_evm_payload_recipient_mismatch"
    INVALID_EXACT_EVM_PAYLOAD_AUTHORIZATION_VALID_BEFORE = (
        "invalid_exact_evm_payload_authorization_valid_before"
    )
    INVALID_EXACT_EVM_PAYLOAD_AUTHORIZATION_VALID_AFTER = (
        "invalid_exact_evm_payload_authorization_valid_after"
    )
    INVALID_EXACT_EVM_NONCE_ALREADY_USED = "invalid_exact_evm_nonce_already_used"
    # The official SDK's EVM-specific balance code (the spec's general one is above).
    INVALID_EXACT_EVM_INSUFFICIENT_BALANCE = "invalid_exact_evm_insufficient_balance"
    # The official SDK answers a scheme/network pair that differs from the requirements so.
    NETWORK_MISMATCH = "network_mismatch"
    MISSING_EIP712_DOMAIN = "missing_eip712_domain"
    TRANSACTION_FAILED = "transaction_failed"
    SETTLEMENT_PENDING = "settlement_pending"
    # --- payfirst's own -----------------------------------------------------------------
    INVALID_REQUEST = "invalid_request"
    INVALID_QUANTITY = "invalid_quantity"
    INVALID_TOKEN_ADDRESS = "invalid_token_address"
    INVALID_PAYMENT_ID = "invalid_payment_id"
    UNKNOWN_TOKEN = "unknown_token"
    UNKNOWN_PAYMENT = "unknown_payment"
    SOLD_OUT = "sold_out"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    INVALID_IDEMPOTENCY_KEY = "invalid_idempotency_key"
    RATE_LIMITED = "rate_limited"
    TOO_MANY_WAITERS = "too_many_waiters"
    PAYMENT_NOT_SENT = "payment_not_sent"  # the status page decides only a `sent` payment
    # --- accounts and API keys (the /v1 admin routes) -------------------------------
    # No valid key: missing, malformed, unknown, revoked, expired, or its account revoked
    # (all alike: the answer never says which).
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"  # a valid key whose role may not use the route
    UNKNOWN_ACCOUNT = "unknown_account"  # also another account's, to a non-operator
    UNKNOWN_API_KEY = "unknown_api_key"  # also another account's key
    # --- paid endpoints ----------------------------------------------------------------
    UNKNOWN_ENDPOINT = "unknown_endpoint"  # also another provider's, or a disabled one's 402
    # --- payouts ------------------------------------------------------------------------
    INSUFFICIENT_BALANCE = "insufficient_balance"  # more than the available balance
    NO_PAYOUT_ADDRESS = "no_payout_address"  # the provider has not set where to pay
    UNKNOWN_PAYOUT = "unknown_payout"  # also another provider's
    # --- agents' payers and spending policies -------------------------------------
    # A payment its payer's spending policy refuses (x402 answers: the client may act on them).
    POLICY_MAX_PER_PAYMENT = "policy_max_per_payment"
    POLICY_DAILY_LIMIT = "policy_daily_limit"  # rolling 24 h, per asset
    POLICY_MONTHLY_LIMIT = "policy_monthly_limit"  # calendar month (UTC), per asset
    POLICY_NOT_ALLOWED = "policy_not_allowed"  # provider, endpoint, payTo or network
    PAYMENT_AWAITING_APPROVAL = "payment_awaiting_approval"  # held for the owner's approval
    PAYMENT_REJECTED = "payment_rejected"  # the payer's owner rejected the held payment
    UNKNOWN_PAYER = "unknown_payer"  # also another agent's payer
    PAYER_TAKEN = "payer_taken"  # the address is another agent's payer
    INVALID_PAYER_PROOF = "invalid_payer_proof"  # no open challenge this signature signs
    # --- webhooks ------------------------------------------------------------------------
    UNKNOWN_WEBHOOK = "unknown_webhook"  # also another account's endpoint
    INVALID_WEBHOOK_URL = "invalid_webhook_url"  # not http(s), or an address not allowed
    UNKNOWN_WEBHOOK_MESSAGE = "unknown_webhook_message"  # also another account's
    # --- registering a token for sale (`payfirst tokens add`) -----------------------
    NOT_A_MINT_TOKEN = "not_a_mint_token"  # no contract there, or not a MintToken
    TOKEN_TERMS_MISMATCH = "token_terms_mismatch"  # a claimed price, cap or asset
    UNSUPPORTED_PAYMENT_ASSET = "unsupported_payment_asset"  # not an EIP-3009 asset it knows
    MINTER_ROLE_MISSING = "minter_role_missing"  # a relayer could not mint
    TOKEN_ON_ANOTHER_CHAIN = "token_on_another_chain"  # registered on another network
    # --- the HTTP edge ------------------------------------------------------------------
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    REQUEST_HEADER_FIELDS_TOO_LARGE = "request_header_fields_too_large"
    REQUEST_TIMEOUT = "request_timeout"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    SERVICE_UNAVAILABLE = "service_unavailable"
    INTERNAL_ERROR = "internal_error"
