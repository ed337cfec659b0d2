"""The OpenAPI 3.1 document served at /openapi.json: every route with its request and
response schemas, generated from pydantic models (the x402 wire models, and the models
below for payfirst's own answers).

Each route's summary and description come from its docstring; its parameters, body and
answers from `OPERATIONS`. A route missing from `OPERATIONS` is still listed (with a
generic answer) so the document stays valid, and tests/unit/test_openapi.py fails until it
is documented here."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal
from uuid import UUID

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema
from starlette.routing import BaseRoute, Route

from payfirst import __version__
from payfirst.x402.codec import MAX_HEADER_CHARS
from payfirst.x402.models import (
    PaymentRequirementsV1,
    PaymentRequirementsV2,
    SettleRequest,
    SettleResponse,
    SupportedResponse,
    VerifyRequest,
    VerifyResponse,
)

ADDRESS_PATTERN: Final = r"^0x[0-9a-fA-F]{40}$"


# --- payfirst's own answers ------------------------------------------------------------


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorBody(_Doc):
    """Every 4xx/5xx answer (except 402 on the mint routes, which carries requirements)."""

    error: str = Field(description="x402 reason code or payfirst error code")
    message: str | None = None


class MintBody(_Doc):
    """An empty body buys one mint."""

    quantity: int = Field(1, ge=1, description="1..PAYFIRST_MAX_QUANTITY")


class BatchMintBody(_Doc):
    tokenAddress: str = Field(pattern=ADDRESS_PATTERN)
    quantity: int = Field(1, ge=1)


class MintAccepted(_Doc):
    paymentQueueId: UUID
    quantity: int
    status: Literal["payment_pending"]
    note: str


class MintPaymentRequired(_Doc):
    """x402 v1 PaymentRequired body; v2 clients read the PAYMENT-REQUIRED header."""

    x402Version: int
    error: str
    accepts: list[PaymentRequirementsV1]
    message: str | None = None


class MintItemView(_Doc):
    id: str
    mintId: str
    status: str
    tx_hash: str | None


class PaymentView(_Doc):
    id: str
    status: str
    payment_type: str
    tx_hash: str | None
    payer: str
    amount: str
    token_address: str | None
    error: str | None
    created_at: str
    processed_at: str | None
    quantity: int
    result: dict[str, Any]
    mints: list[MintItemView]


class PaymentStats(_Doc):
    payments: dict[str, int]
    mints: dict[str, int]
    oldest_sent_age_s: float | None
    completed_last_minute: int
    mints_completed_last_minute: int


class PaymentAssetView(_Doc):
    address: str
    name: str
    version: str
    decimals: int


class TokenView(_Doc):
    address: str
    name: str
    symbol: str
    network: str
    chainId: int
    pricePerMint: str
    pricePerMintDisplay: str
    mintAmount: str
    maxMintCount: int
    reservedCount: int
    remaining: int
    paymentAsset: PaymentAssetView


class TokenList(_Doc):
    tokens: list[TokenView]


class ChainHead(_Doc):
    chainId: int
    block: int


class Health(_Doc):
    status: Literal["ok", "degraded"]
    database: str
    chain: ChainHead | str
    # Each served network's chain, by CAIP-2 id ("chain" is the first one's).
    networks: dict[str, ChainHead | str] | None = None


class Liveness(_Doc):
    status: Literal["ok"]


class RelayerReadiness(_Doc):
    network: str = Field(description="CAIP-2")
    address: str
    balanceWei: str | None = Field(description="its gas balance; null: the chain did not say")
    neededWei: str | None = Field(description="2 x base fee x 1,000,000 gas")
    canPayGas: bool


class Readiness(_Doc):
    status: Literal["ok", "not_ready"]
    problems: list[str]
    relayers: list[RelayerReadiness]


# --- accounts and API keys (the /v1 admin routes) ---------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccountView(_Doc):
    id: UUID
    role: Literal["operator", "provider", "agent"]
    name: str
    fee_bps: int | None
    payout_address: str | None
    created_at: str
    revoked_at: str | None


class AccountList(_Doc):
    accounts: list[AccountView]
    has_more: bool


class ApiKeyView(_Doc):
    """A key as listed: its prefix names it; its text is never shown again."""

    id: UUID
    account_id: UUID
    prefix: str
    name: str | None
    created_at: str
    expires_at: str | None
    last_used_at: str | None
    revoked_at: str | None


class NewApiKey(ApiKeyView):
    key: str = Field(description="the whole key: shown in this answer only, never again")


class ApiKeyList(_Doc):
    keys: list[ApiKeyView]
    has_more: bool


class NewAccount(_Doc):
    account: AccountView
    api_key: NewApiKey


class AccountBody(_Strict):
    role: Literal["operator", "provider", "agent"]
    name: str = Field(min_length=1, max_length=100)
    fee_bps: int | None = Field(None, ge=0, le=10_000, description="a provider's only")
    payout_address: str | None = Field(
        None, pattern=ADDRESS_PATTERN, description="a provider's only"
    )


class KeyBody(_Strict):
    name: str | None = Field(None, min_length=1, max_length=100)
    expires_in_s: int | None = Field(None, ge=60, le=315_360_000)
    account_id: UUID | None = Field(None, description="operator only: another account's key")


class EmptyBody(_Strict):
    """Nothing (a blank body or {})."""


# --- paid endpoints (api/endpoints.py) --------------------------------------------------

_METHOD = Literal["*", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_AMOUNT = str | int  # a decimal string of 1..78 digits, or an integer; > 0


class EndpointView(_Doc):
    id: UUID
    provider_id: UUID
    method: _METHOD
    resource: str
    pricing: Literal["fixed", "per_unit"]
    amount: str = Field(description="atomic units of the asset (per unit for per_unit)")
    unit_param: str | None
    max_units: int | None
    network: str = Field(description="CAIP-2")
    asset: str
    decimals: int | None
    pay_to: str
    description: str
    mime_type: str
    input_schema: dict[str, Any] | None
    output_schema: dict[str, Any] | None
    discoverable: bool
    max_timeout_seconds: int
    created_at: str
    updated_at: str
    disabled_at: str | None


class EndpointList(_Doc):
    endpoints: list[EndpointView]
    has_more: bool


class EndpointPatch(_Strict):
    """Any of the terms; the result is checked whole."""

    method: _METHOD | None = None
    resource: str | None = Field(
        None, min_length=1, max_length=512, description="a path pattern (/a/{id}) or a full URL"
    )
    pricing: Literal["fixed", "per_unit"] | None = None
    amount: _AMOUNT | None = Field(None, description="atomic units (digits), > 0")
    unit_param: str | None = Field(None, description="per_unit: where the request's count is")
    max_units: int | None = Field(None, ge=1, le=1_000_000)
    network: str | None = Field(None, description="CAIP-2 or an x402 v1 name; served here")
    asset: str | None = Field(None, pattern=ADDRESS_PATTERN)
    pay_to: str | None = Field(None, pattern=ADDRESS_PATTERN)
    description: str | None = Field(None, max_length=1000)
    mime_type: str | None = None
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None
    discoverable: bool | None = Field(None, description="needs a full-URL resource")
    max_timeout_seconds: int | None = Field(None, ge=10, le=86_400)


class EndpointBody(EndpointPatch):
    resource: str = Field(
        min_length=1, max_length=512, description="a path pattern (/a/{id}) or a full URL"
    )
    amount: _AMOUNT = Field(description="atomic units (digits), > 0")
    provider_id: UUID | None = Field(None, description="the operator's: the provider's id")


class DiscoveryResource(_Doc):
    """x402 Bazaar DiscoveryResource."""

    resource: str
    type: str
    x402Version: int
    accepts: list[PaymentRequirementsV2]
    lastUpdated: str
    description: str | None = None
    mimeType: str | None = None
    extensions: dict[str, Any] | None = None


class DiscoveryPagination(_Doc):
    limit: int
    offset: int
    total: int


class DiscoveryList(_Doc):
    """x402 Bazaar DiscoveryResourcesResponse."""

    x402Version: int
    items: list[DiscoveryResource]
    pagination: DiscoveryPagination


# --- operations ------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    responses: dict[int, tuple[str, type[BaseModel] | None]]
    body: type[BaseModel] | None = None
    body_required: bool = True
    parameters: list[dict[str, Any]] = field(default_factory=list)
    media_type: str = "application/json"
    bearer: bool = False  # needs `Authorization: Bearer <API key>`
    csv: bool = False  # a 2xx may also be text/csv (format=csv or Accept: text/csv)


def _header(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": schema,
    }


_PAYMENT_HEADERS: Final = [
    _header(
        "PAYMENT-SIGNATURE",
        "x402 v2 payment payload, base64 JSON",
        {"type": "string", "maxLength": MAX_HEADER_CHARS},
    ),
    _header(
        "X-PAYMENT",
        "x402 v1 payment payload, base64 JSON",
        {"type": "string", "maxLength": MAX_HEADER_CHARS},
    ),
    _header(
        "Idempotency-Key",
        "the client's payment id",
        {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,128}$"},
    ),
]
_PAYMENT_ID: Final = {
    "name": "payment_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}
_LIMITS: Final[dict[int, tuple[str, type[BaseModel] | None]]] = {
    413: ("Request body too large", ErrorBody),
    429: ("Too many requests from this client or payer", ErrorBody),
    503: ("The database or the chain is unreachable; retry after Retry-After", ErrorBody),
}


def _path_id(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "format": "uuid"},
    }


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


_PAGE: Final = [
    _query(
        "limit", "at most this many (default 50)", {"type": "integer", "minimum": 1, "maximum": 100}
    ),
    _query("after", "the last id of the previous page", {"type": "string", "format": "uuid"}),
]
_NO_KEY: Final[dict[int, tuple[str, type[BaseModel] | None]]] = {
    401: ("No valid API key (missing, malformed, unknown, revoked or expired)", ErrorBody),
    503: ("The database is unreachable; retry after Retry-After", ErrorBody),
}
_WRONG_ROLE: Final[dict[int, tuple[str, type[BaseModel] | None]]] = {
    403: ("The key's role may not use this route", ErrorBody),
}
_BODY_LIMITS: Final[dict[int, tuple[str, type[BaseModel] | None]]] = {
    400: ("Malformed body", ErrorBody),
    413: ("Request body too large", ErrorBody),
}

_ADMIN_OPERATIONS: Final[dict[tuple[str, str], Operation]] = {
    ("/v1/me", "get"): Operation({200: ("The caller's account", AccountView), **_NO_KEY}),
    ("/v1/accounts", "post"): Operation(
        {
            201: ("The account and its first key", NewAccount),
            **_BODY_LIMITS,
            **_NO_KEY,
            **_WRONG_ROLE,
        },
        body=AccountBody,
    ),
    ("/v1/accounts", "get"): Operation(
        {
            200: ("A page of accounts", AccountList),
            400: ("Bad limit or after", ErrorBody),
            **_NO_KEY,
            **_WRONG_ROLE,
        },
        parameters=list(_PAGE),
    ),
    ("/v1/accounts/{account_id}", "get"): Operation(
        {
            200: ("The account", AccountView),
            400: ("Not an account id", ErrorBody),
            404: ("No such account (or not the caller's)", ErrorBody),
            **_NO_KEY,
        },
        parameters=[_path_id("account_id")],
    ),
    ("/v1/accounts/{account_id}/revoke", "post"): Operation(
        {
            200: ("The revoked account", AccountView),
            404: ("No such account", ErrorBody),
            **_BODY_LIMITS,
            **_NO_KEY,
            **_WRONG_ROLE,
        },
        body=EmptyBody,
        body_required=False,
        parameters=[_path_id("account_id")],
    ),
    ("/v1/keys", "post"): Operation(
        {
            201: ("The new key", NewApiKey),
            404: ("No such active account (or not the caller's)", ErrorBody),
            **_BODY_LIMITS,
            **_NO_KEY,
        },
        body=KeyBody,
        body_required=False,
    ),
    ("/v1/keys", "get"): Operation(
        {
            200: ("A page of keys", ApiKeyList),
            400: ("Bad limit, after or account_id", ErrorBody),
            404: ("No such account (or not the caller's)", ErrorBody),
            **_NO_KEY,
        },
        parameters=[
            *_PAGE,
            _query(
                "account_id",
                "operator only: another account's keys",
                {"type": "string", "format": "uuid"},
            ),
        ],
    ),
    ("/v1/keys/{key_id}/revoke", "post"): Operation(
        {
            200: ("The revoked key", ApiKeyView),
            404: ("No such key (or not the caller's)", ErrorBody),
            **_BODY_LIMITS,
            **_NO_KEY,
        },
        body=EmptyBody,
        body_required=False,
        parameters=[_path_id("key_id")],
    ),
    ("/v1/endpoints", "post"): Operation(
        {
            201: ("The endpoint", EndpointView),
            404: ("No such provider account (operator)", ErrorBody),
            **_BODY_LIMITS,
            **_NO_KEY,
            **_WRONG_ROLE,
        },
        body=EndpointBody,
    ),
    ("/v1/endpoints", "get"): Operation(
        {
            200: ("A page of endpoints", EndpointList),
            400: ("Bad limit, after, provider_id or include_disabled", ErrorBody),
            404: ("No such account (or not the caller's)", ErrorBody),
            **_NO_KEY,
            **_WRONG_ROLE,
        },
        parameters=[
            *_PAGE,
            _query(
                "provider_id",
                "operator: one provider's endpoints",
                {"type": "string", "format": "uuid"},
            ),
            _query("include_disabled", "disabled ones too", {"enum": ["true", "false"]}),
        ],
    ),
    ("/v1/endpoints/{endpoint_id}", "get"): Operation(
        {
            200: ("The endpoint", EndpointView),
            400: ("Not an endpoint id", ErrorBody),
            404: ("No such endpoint (or not the caller's)", ErrorBody),
            **_NO_KEY,
            **_WRONG_ROLE,
        },
        parameters=[_path_id("endpoint_id")],
    ),
    ("/v1/endpoints/{endpoint_id}", "patch"): Operation(
        {
            200: ("The endpoint", EndpointView),
            404: ("No such endpoint (or not the caller's)", ErrorBody),
            **_BODY_LIMITS,
            **_NO_KEY,
            **_WRONG_ROLE,
        },
        body=EndpointPatch,
        parameters=[_path_id("endpoint_id")],
    ),
    ("/v1/endpoints/{endpoint_id}", "delete"): Operation(
        {
            200: ("The disabled endpoint", EndpointView),
            404: ("No such endpoint (or not the caller's)", ErrorBody),
            **_BODY_LIMITS,
            **_NO_KEY,
            **_WRONG_ROLE,
        },
        body=EmptyBody,
        body_required=False,
        parameters=[_path_id("endpoint_id")],
    ),
}

# --- payouts and balances (api/payouts.py) ---------------------------------------------


class PayoutView(_Doc):
    id: UUID
    provider_id: UUID
    network: str = Field(description="CAIP-2")
    asset: str
    decimals: int | None
    amount: str = Field(description="atomic units of the asset")
    to: str = Field(description="the provider's payout address when it was created")
    status: Literal["pending", "processing", "sent", "completed", "failed"]
    trigger: Literal["on_demand", "threshold", "schedule"]
    tx_hash: str | None
    error: str | None
    created_at: str
    updated_at: str
    completed_at: str | None


class PayoutList(_Doc):
    payouts: list[PayoutView]
    has_more: bool


class PayoutBody(_Strict):
    network: str | None = Field(None, description="CAIP-2; optional with one balance only")
    asset: str | None = Field(None, pattern=ADDRESS_PATTERN)
    amount: _AMOUNT | None = Field(None, description="atomic units (default: all available)")
    provider_id: UUID | None = Field(None, description="the operator's: the provider's id")


class BalanceView(_Doc):
    network: str = Field(description="CAIP-2")
    asset: str
    decimals: int | None
    available: str = Field(description="may be paid out now (atomic units)")
    in_payout: str = Field(description="in payouts not yet decided")
    paid_out: str = Field(description="in completed payouts")
    pending: str = Field(description="its share of payments accepted but not completed")


class BalanceList(_Doc):
    balances: list[BalanceView]


class AccountTermsBody(_Strict):
    payout_address: str | None = Field(None, pattern=ADDRESS_PATTERN)
    payout_threshold: _AMOUNT | None = Field(None, description="atomic units; null: none")
    payout_interval_s: int | None = Field(None, ge=60, le=31_622_400)
    fee_bps: int | None = Field(None, ge=0, le=10_000, description="the operator's only")


class AccountTermsView(AccountView):
    payout_threshold: str | None
    payout_interval_s: int | None


_PROVIDER_ID: Final = _query(
    "provider_id", "the operator's: one provider's", {"type": "string", "format": "uuid"}
)
_PAYOUT_OPERATIONS: Final[dict[tuple[str, str], Operation]] = {
    ("/v1/accounts/{account_id}", "patch"): Operation(
        {
            200: ("The account with its payout terms", AccountTermsView),
            403: ("fee_bps set by another role than operator", ErrorBody),
            404: ("No such account (or not the caller's)", ErrorBody),
            **_BODY_LIMITS,
            **_NO_KEY,
        },
        body=AccountTermsBody,
        parameters=[_path_id("account_id")],
    ),
    ("/v1/payouts", "post"): Operation(
        {
            201: ("The payout (pending)", PayoutView),
            400: ("insufficient_balance, no_payout_address, or a malformed body", ErrorBody),
            404: ("No such provider (or not the caller)", ErrorBody),
            413: ("Request body too large", ErrorBody),
            **_NO_KEY,
            **_WRONG_ROLE,
        },
        body=PayoutBody,
        body_required=False,
    ),
    ("/v1/payouts", "get"): Operation(
        {
            200: ("A page of payouts, newest first", PayoutList),
            400: ("Bad limit, after or provider_id", ErrorBody),
            404: ("provider_id names another provider", ErrorBody),
            **_NO_KEY,
            **_WRONG_ROLE,
        },
        parameters=[*_PAGE, _PROVIDER_ID],
    ),
    ("/v1/payouts/{payout_id}", "get"): Operation(
        {
            200: ("The payout", PayoutView),
            400: ("Not a payout id", ErrorBody),
            404: ("No such payout (or another provider's)", ErrorBody),
            **_NO_KEY,
            **_WRONG_ROLE,
        },
        parameters=[_path_id("payout_id")],
    ),
    ("/v1/balance", "get"): Operation(
        {
            200: ("The provider's balances per network and asset", BalanceList),
            400: ("provider_id missing (operator) or malformed", ErrorBody),
            404: ("provider_id names another provider, or no provider", ErrorBody),
            **_NO_KEY,
            **_WRONG_ROLE,
        },
        parameters=[_PROVIDER_ID],
    ),
}


# --- what providers read (api/views.py) ------------------------------------------------


class ProviderPaymentView(_Doc):
    id: UUID
    status: Literal[
        "pending",
        "processing",
        "sent",
        "completed",
        "failed",
        "confirmation_failed",
        "awaiting_approval",
    ]
    payment_type: Literal["mint", "settle"]
    payer: str
    amount: str = Field(description="atomic units of the asset")
    asset: str
    decimals: int | None
    network: str | None = Field(description="CAIP-2")
    pay_to: str
    endpoint_id: UUID | None
    provider_id: UUID | None
    fee_bps: int | None
    fee: str | None = Field(
        description="completed only: the platform's fee when it collected the payment"
    )
    net: str | None = Field(description="completed only: the payee's share (amount - fee)")
    tx_hash: str | None
    error: str | None
    created_at: str
    updated_at: str


class ProviderPaymentList(_Doc):
    payments: list[ProviderPaymentView]
    next_cursor: str | None


class LedgerAccountView(_Doc):
    kind: Literal["external", "provider", "fees"]
    owner: str
    asset: str
    network: str | None = Field(description="CAIP-2")


class LedgerEntryView(_Doc):
    transaction_id: UUID
    transaction_kind: Literal["payment", "reversal", "payout"]
    payment_id: UUID | None
    position: int
    account: LedgerAccountView
    amount: str = Field(description="signed, atomic units")
    decimals: int | None
    created_at: str


class LedgerEntryList(_Doc):
    entries: list[LedgerEntryView]
    next_cursor: str | None


_TIME: Final = {"type": "string", "format": "date-time"}
_VIEW_FILTERS: Final = [
    _query(
        "limit", "at most this many (default 50)", {"type": "integer", "minimum": 1, "maximum": 100}
    ),
    _query("cursor", "the previous page's next_cursor", {"type": "string", "maxLength": 512}),
    _query("since", "created at or after (RFC 3339)", _TIME),
    _query("until", "created before (RFC 3339)", _TIME),
    _query("format", "csv: every matching row as CSV", {"enum": ["json", "csv"]}),
    _query("provider_id", "the operator's: one provider's", {"type": "string", "format": "uuid"}),
]
_VIEW_OPERATIONS: Final[dict[tuple[str, str], Operation]] = {
    ("/v1/payments", "get"): Operation(
        {
            200: ("A page of payments (or CSV)", ProviderPaymentList),
            400: ("A bad or unknown query parameter", ErrorBody),
            404: ("provider_id names another provider", ErrorBody),
            **_NO_KEY,
            **_WRONG_ROLE,
        },
        csv=True,
        parameters=[
            *_VIEW_FILTERS,
            _query(
                "status",
                "one or more statuses, comma-separated",
                {"type": "string", "maxLength": 200},
            ),
            _query("endpoint_id", "one endpoint's", {"type": "string", "format": "uuid"}),
        ],
    ),
    ("/v1/payments/{payment_id}", "get"): Operation(
        {
            200: ("The payment", ProviderPaymentView),
            400: ("Not a payment id", ErrorBody),
            404: ("No such payment (or not the caller's)", ErrorBody),
            **_NO_KEY,
            **_WRONG_ROLE,
        },
        parameters=[_path_id("payment_id")],
    ),
    ("/v1/ledger/entries", "get"): Operation(
        {
            200: ("A page of ledger entries (or CSV)", LedgerEntryList),
            400: ("A bad or unknown query parameter", ErrorBody),
            404: ("provider_id names another provider", ErrorBody),
            **_NO_KEY,
            **_WRONG_ROLE,
        },
        csv=True,
        parameters=[
            *_VIEW_FILTERS,
            _query("payment_id", "one payment's entries", {"type": "string", "format": "uuid"}),
            _query(
                "account_kind",
                "the operator's: one kind of account",
                {"enum": ["external", "provider", "fees"]},
            ),
        ],
    ),
}

# --- agents' payers and spending policies (api/policies.py) -------------------------------


class PayerChallengeBody(_Strict):
    address: str = Field(pattern=ADDRESS_PATTERN, description="the payer address")
    account_id: UUID | None = Field(None, description="the operator's: the agent's id")


class PayerChallengeView(_Doc):
    address: str
    account_id: UUID
    message: str = Field(description="the text to sign (EIP-191 personal_sign)")
    expires_at: str


class PayerBody(_Strict):
    address: str = Field(pattern=ADDRESS_PATTERN)
    signature: str = Field(
        pattern=r"^0x[0-9a-fA-F]{130}$", description="the payer key's signature of the message"
    )
    account_id: UUID | None = Field(None, description="the operator's: the agent's id")


class PayerView(_Doc):
    address: str = Field(description="EIP-55")
    account_id: UUID
    verified_at: str
    created_at: str


class PayerList(_Doc):
    payers: list[PayerView]
    has_more: bool


_LIMIT_DOC: Final = (
    'atomic units: one amount for every asset, or {asset address or "*": amount}; null: none'
)
_POLICY_AMOUNT = str | dict[str, str]


class PolicyBody(_Strict):
    max_per_payment: _POLICY_AMOUNT | None = Field(None, description=_LIMIT_DOC)
    max_per_day: _POLICY_AMOUNT | None = Field(None, description="rolling 24 h; " + _LIMIT_DOC)
    max_per_month: _POLICY_AMOUNT | None = Field(
        None, description="calendar month (UTC); " + _LIMIT_DOC
    )
    approval_threshold: _POLICY_AMOUNT | None = Field(
        None, description="above it a payment awaits approval; " + _LIMIT_DOC
    )
    allowed_providers: list[UUID] | None = Field(None, max_length=100)
    allowed_endpoints: list[UUID] | None = Field(None, max_length=100)
    allowed_pay_to: list[str] | None = Field(None, max_length=100)
    allowed_networks: list[str | int] | None = Field(
        None, max_length=100, description="CAIP-2 ids, x402 v1 names or chain ids"
    )


class PolicyView(_Doc):
    payer: str
    max_per_payment: dict[str, str] | None
    max_per_day: dict[str, str] | None
    max_per_month: dict[str, str] | None
    approval_threshold: dict[str, str] | None
    allowed_providers: list[UUID] | None
    allowed_endpoints: list[UUID] | None
    allowed_pay_to: list[str] | None
    allowed_networks: list[str] | None = Field(description="CAIP-2")
    updated_at: str | None


class HeldPaymentView(_Doc):
    id: UUID
    status: Literal["awaiting_approval", "pending", "failed"]
    payment_type: Literal["mint", "settle"]
    payer: str
    amount: str = Field(description="atomic units of the asset")
    asset: str
    pay_to: str
    network: str | None = Field(description="CAIP-2")
    valid_before: int = Field(description="the authorization's validBefore (unix s)")
    error: str | None
    created_at: str


class HeldPaymentList(_Doc):
    payments: list[HeldPaymentView]


def _path_address(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"pattern": ADDRESS_PATTERN}}


_AGENT_404: Final[dict[int, tuple[str, type[BaseModel] | None]]] = {
    400: ("Not an address", ErrorBody),
    404: ("No such payer (or another agent's)", ErrorBody),
    **_NO_KEY,
    **_WRONG_ROLE,
}
_POLICY_OPERATIONS: Final[dict[tuple[str, str], Operation]] = {
    ("/v1/payers/challenge", "post"): Operation(
        {
            201: ("The message to sign and when it expires", PayerChallengeView),
            404: ("account_id names no active agent account", ErrorBody),
            **_BODY_LIMITS,
            **_NO_KEY,
            **_WRONG_ROLE,
        },
        body=PayerChallengeBody,
    ),
    ("/v1/payers", "post"): Operation(
        {
            200: ("The payer, already this agent's", PayerView),
            201: ("The payer", PayerView),
            400: ("invalid_payer_proof, or a malformed body", ErrorBody),
            404: ("account_id names no active agent account", ErrorBody),
            409: ("payer_taken: another agent's payer", ErrorBody),
            413: ("Request body too large", ErrorBody),
            **_NO_KEY,
            **_WRONG_ROLE,
        },
        body=PayerBody,
    ),
    ("/v1/payers", "get"): Operation(
        {
            200: ("A page of payers", PayerList),
            400: ("Bad limit, after or account_id", ErrorBody),
            **_NO_KEY,
            **_WRONG_ROLE,
        },
        parameters=[
            _query("limit", "default 50", {"type": "integer", "minimum": 1, "maximum": 100}),
            _query("after", "the last address of the previous page", {"pattern": ADDRESS_PATTERN}),
            _query(
                "account_id", "the operator's: one agent's", {"type": "string", "format": "uuid"}
            ),
        ],
    ),
    ("/v1/payers/{address}", "delete"): Operation(
        {200: ("The payer, detached with its policy", PayerView), **_AGENT_404},
        parameters=[_path_address("address")],
    ),
    ("/v1/payers/{address}/policy", "put"): Operation(
        {200: ("The policy", PolicyView), **_AGENT_404, **_BODY_LIMITS},
        body=PolicyBody,
        parameters=[_path_address("address")],
    ),
    ("/v1/payers/{address}/policy", "get"): Operation(
        {200: ("The policy", PolicyView), **_AGENT_404},
        parameters=[_path_address("address")],
    ),
    ("/v1/payers/{address}/policy", "delete"): Operation(
        {200: ("The policy, removed", PolicyView), **_AGENT_404},
        parameters=[_path_address("address")],
    ),
    ("/v1/approvals", "get"): Operation(
        {
            200: ("Payments awaiting approval, oldest first", HeldPaymentList),
            400: ("Bad limit", ErrorBody),
            **_NO_KEY,
            **_WRONG_ROLE,
        },
        parameters=[
            _query("limit", "default 50", {"type": "integer", "minimum": 1, "maximum": 100}),
        ],
    ),
    ("/v1/approvals/{payment_id}/approve", "post"): Operation(
        {
            200: ("The payment, now pending", HeldPaymentView),
            404: ("No such payment awaiting approval (or another agent's)", ErrorBody),
            **_BODY_LIMITS,
            **_NO_KEY,
            **_WRONG_ROLE,
        },
        body=EmptyBody,
        body_required=False,
        parameters=[_path_id("payment_id")],
    ),
    ("/v1/approvals/{payment_id}/reject", "post"): Operation(
        {
            200: ("The payment, now failed (payment_rejected)", HeldPaymentView),
            404: ("No such payment awaiting approval (or another agent's)", ErrorBody),
            **_BODY_LIMITS,
            **_NO_KEY,
            **_WRONG_ROLE,
        },
        body=EmptyBody,
        body_required=False,
        parameters=[_path_id("payment_id")],
    ),
}

# --- webhooks (api/webhooks.py) ---------------------------------------------------------

_EVENT_TYPE = Literal[
    "payment.queued",
    "payment.awaiting_approval",
    "payment.completed",
    "payment.failed",
    "mint.completed",
    "payout.completed",
    "webhook.disabled",
]


class WebhookPatch(_Strict):
    url: str | None = Field(None, min_length=1, max_length=2048, description="http(s)")
    event_types: list[_EVENT_TYPE] | None = Field(None, description="empty: every type")
    description: str | None = Field(None, max_length=1000)


class WebhookBody(WebhookPatch):
    url: str = Field(min_length=1, max_length=2048, description="http(s)")
    account_id: UUID | None = Field(None, description="the operator's: another account's")


class WebhookView(_Doc):
    id: UUID
    account_id: UUID
    url: str
    event_types: list[str]
    description: str
    enabled: bool
    disabled_at: str | None
    disabled_reason: str | None
    failing_since: str | None = Field(description="no success since (null: not failing)")
    created_at: str
    updated_at: str


class WebhookCreated(WebhookView):
    secret: str = Field(description="whsec_...: verify the webhook-signature with it")


class WebhookList(_Doc):
    webhooks: list[WebhookView]
    has_more: bool


class WebhookSecret(_Doc):
    secret: str


class WebhookAttemptView(_Doc):
    id: str
    message_id: str = Field(description="the webhook-id header")
    started_at: str
    status: int | None = Field(description="the response's status (null: no response)")
    latency_ms: int
    body: str | None = Field(description="the response body's first KiB")
    error: str | None


class WebhookAttemptList(_Doc):
    attempts: list[WebhookAttemptView]
    has_more: bool
    next_before: str | None


class WebhookReplayBody(_Strict):
    message_id: str | None = Field(None, max_length=64)
    since: str | None = Field(None, description="ISO 8601 with offset")
    until: str | None = Field(None, description="ISO 8601 with offset (default now)")


class WebhookReplayQueued(_Doc):
    queued: int


class WebhookDeleted(_Doc):
    id: UUID
    deleted: Literal[True]


_WEBHOOK_ID: Final = _path_id("webhook_id")
_NO_WEBHOOK: Final[dict[int, tuple[str, type[BaseModel] | None]]] = {
    400: ("Not a webhook id", ErrorBody),
    404: ("No such endpoint (or another account's)", ErrorBody),
}
_WEBHOOK_OPERATIONS: Final[dict[tuple[str, str], Operation]] = {
    ("/v1/webhooks", "post"): Operation(
        {
            201: ("The endpoint and its signing secret", WebhookCreated),
            400: ("invalid_webhook_url, or a malformed body", ErrorBody),
            404: ("account_id names another account (or none)", ErrorBody),
            413: ("Request body too large", ErrorBody),
            **_NO_KEY,
        },
        body=WebhookBody,
    ),
    ("/v1/webhooks", "get"): Operation(
        {
            200: ("A page of endpoints, oldest first", WebhookList),
            400: ("Bad limit, after or account_id", ErrorBody),
            404: ("account_id names another account", ErrorBody),
            **_NO_KEY,
        },
        parameters=[
            *_PAGE,
            _query(
                "account_id", "the operator's: one account's", {"type": "string", "format": "uuid"}
            ),
        ],
    ),
    ("/v1/webhooks/{webhook_id}", "get"): Operation(
        {200: ("The endpoint", WebhookView), **_NO_WEBHOOK, **_NO_KEY},
        parameters=[_WEBHOOK_ID],
    ),
    ("/v1/webhooks/{webhook_id}", "patch"): Operation(
        {
            200: ("The endpoint", WebhookView),
            **_NO_WEBHOOK,
            **_BODY_LIMITS,
            **_NO_KEY,
        },
        body=WebhookPatch,
        parameters=[_WEBHOOK_ID],
    ),
    ("/v1/webhooks/{webhook_id}", "delete"): Operation(
        {200: ("Deleted", WebhookDeleted), **_NO_WEBHOOK, **_NO_KEY},
        parameters=[_WEBHOOK_ID],
    ),
    ("/v1/webhooks/{webhook_id}/secret", "get"): Operation(
        {200: ("The signing secret", WebhookSecret), **_NO_WEBHOOK, **_NO_KEY},
        parameters=[_WEBHOOK_ID],
    ),
    ("/v1/webhooks/{webhook_id}/secret/rotate", "post"): Operation(
        {200: ("The new signing secret", WebhookSecret), **_NO_WEBHOOK, **_NO_KEY},
        body=EmptyBody,
        body_required=False,
        parameters=[_WEBHOOK_ID],
    ),
    ("/v1/webhooks/{webhook_id}/attempts", "get"): Operation(
        {200: ("A page of attempts, newest first", WebhookAttemptList), **_NO_WEBHOOK, **_NO_KEY},
        parameters=[
            _WEBHOOK_ID,
            _query(
                "limit",
                "at most this many (default 50)",
                {"type": "integer", "minimum": 1, "maximum": 100},
            ),
            _query("before", "the previous page's next_before", {"type": "string"}),
        ],
    ),
    ("/v1/webhooks/{webhook_id}/replay", "post"): Operation(
        {
            202: ("How many deliveries were queued", WebhookReplayQueued),
            400: ("Not a webhook id, or a malformed body", ErrorBody),
            404: ("No such endpoint or message (or another account's)", ErrorBody),
            413: ("Request body too large", ErrorBody),
            **_NO_KEY,
        },
        body=WebhookReplayBody,
        parameters=[_WEBHOOK_ID],
    ),
    ("/v1/webhooks/{webhook_id}/enable", "post"): Operation(
        {200: ("The endpoint, enabled", WebhookView), **_NO_WEBHOOK, **_NO_KEY},
        body=EmptyBody,
        body_required=False,
        parameters=[_WEBHOOK_ID],
    ),
}

# --- the status page (api/status.py) -----------------------------------------------------


class StuckDecision(_Doc):
    payment_id: UUID
    status: str = Field(description="after the decision (sent: not decided yet, its tx re-sent)")
    decided: bool
    error: str | None
    tx_hash: str | None


class StatusEvent(_Doc):
    """The data of one `status` event of /v1/status/stream."""

    at: str = Field(description="the database's clock")
    queue: dict[str, int] = Field(description="payments per unfinished status")
    rates: dict[str, float] = Field(description="accepted, completed, failed per second")
    rate_window_s: int
    last_minute: dict[str, int] = Field(description="accepted, completed, failed")
    latency_s: dict[str, Any] = Field(
        description="accept_to_sent and sent_to_completed: {p50, p95, p99}; window_s, sample"
    )
    relayers: list[dict[str, Any]] = Field(
        description="network, chain_id, address, balance_wei, balance, needed_wei, "
        "can_pay_gas, stored_next_nonce, nonce_gap"
    )
    failures: list[dict[str, Any]] = Field(description="the latest 20, the latest first")
    stuck: dict[str, Any] = Field(description="after_s, count, payments (longest sent first)")


_STATUS_OFF: Final[dict[int, tuple[str, type[BaseModel] | None]]] = {
    404: ("The status page is disabled (PAYFIRST_STATUS_PAGE=0)", ErrorBody),
}
_STATUS_OPERATIONS: Final[dict[tuple[str, str], Operation]] = {
    ("/v1/status/stream", "get"): Operation(
        {
            200: ("Server-sent events: a `status` event every second", StatusEvent),
            **_NO_KEY,
            **_WRONG_ROLE,
            **_STATUS_OFF,
            503: ("Too many status streams are open, or the database is unreachable", ErrorBody),
        },
        media_type="text/event-stream",
    ),
    ("/v1/status/stuck/{payment_id}/decide", "post"): Operation(
        {
            200: ("The payment's status after the decision", StuckDecision),
            400: ("Not a payment id, or a body", ErrorBody),
            404: ("Unknown payment, or the status page is disabled", ErrorBody),
            413: ("Request body too large", ErrorBody),
            409: ("The payment is not sent", ErrorBody),
            **_NO_KEY,
            **_WRONG_ROLE,
            503: ("No relayer key in this process, or the chain is unreachable", ErrorBody),
        },
        body=EmptyBody,
        body_required=False,
        parameters=[_PAYMENT_ID],
    ),
}

OPERATIONS: Final[dict[tuple[str, str], Operation]] = {
    ("/health", "get"): Operation({200: ("Both reachable", Health), 503: ("Degraded", Health)}),
    ("/health/live", "get"): Operation({200: ("The process answers", Liveness)}),
    ("/health/ready", "get"): Operation(
        {200: ("Ready", Readiness), 503: ("Not ready: what is missing", Readiness)}
    ),
    ("/api/tokens", "get"): Operation({200: ("Tokens for sale", TokenList)}),
    ("/api/tokens/{address}", "get"): Operation(
        {
            200: ("The token", TokenView),
            400: ("Not an address", ErrorBody),
            404: ("Unknown token", ErrorBody),
        },
        parameters=[
            {"name": "address", "in": "path", "required": True, "schema": {"type": "string"}}
        ],
    ),
    ("/api/mint/{token}", "post"): Operation(
        {
            202: ("Payment queued", MintAccepted),
            400: ("Malformed header or body", ErrorBody),
            402: ("Payment required, or the payment failed verification", MintPaymentRequired),
            404: ("Unknown token", ErrorBody),
            409: ("Sold out, or the payment id was used with another payload", ErrorBody),
            **_LIMITS,
        },
        body=MintBody,
        body_required=False,
        parameters=[
            {"name": "token", "in": "path", "required": True, "schema": {"type": "string"}},
            *_PAYMENT_HEADERS,
        ],
    ),
    ("/api/x402-batch-mint", "post"): Operation(
        {
            202: ("Payment queued", MintAccepted),
            400: ("Malformed header or body", ErrorBody),
            402: ("Payment required, or the payment failed verification", MintPaymentRequired),
            404: ("Unknown token", ErrorBody),
            409: ("Sold out, or the payment id was used with another payload", ErrorBody),
            **_LIMITS,
        },
        body=BatchMintBody,
        parameters=list(_PAYMENT_HEADERS),
    ),
    ("/api/payment/{payment_id}", "get"): Operation(
        {
            200: ("The payment and its mint items", PaymentView),
            400: ("Not a payment id, or a bad wait", ErrorBody),
            404: ("Unknown payment", ErrorBody),
            503: ("Too many clients are waiting, or the database is unreachable", ErrorBody),
        },
        parameters=[
            _PAYMENT_ID,
            {
                "name": "wait",
                "in": "query",
                "required": False,
                "description": "seconds to hold the answer until the payment changes",
                "schema": {"type": "number", "minimum": 0, "maximum": 60},
            },
        ],
    ),
    ("/api/payment/{payment_id}/events", "get"): Operation(
        {
            200: ("Server-sent events: `payment` events carrying the payment view", None),
            400: ("Not a payment id", ErrorBody),
            404: ("Unknown payment", ErrorBody),
            503: ("Too many clients are waiting, or the database is unreachable", ErrorBody),
        },
        parameters=[_PAYMENT_ID],
        media_type="text/event-stream",
    ),
    ("/api/payment-stats", "get"): Operation({200: ("Queue counts and rates", PaymentStats)}),
    ("/supported", "get"): Operation({200: ("Supported payment kinds", SupportedResponse)}),
    ("/verify", "post"): Operation(
        {
            200: ("isValid, invalidReason, payer", VerifyResponse),
            400: ("Malformed body", ErrorBody),
            401: ("An Authorization header without a valid API key", ErrorBody),
            403: ("An agent's API key", ErrorBody),
            **_LIMITS,
        },
        body=VerifyRequest,
    ),
    ("/settle", "post"): Operation(
        {
            200: ("success, errorReason, transaction, network, payer", SettleResponse),
            400: ("Malformed body", ErrorBody),
            401: ("An Authorization header without a valid API key", ErrorBody),
            403: ("An agent's API key", ErrorBody),
            409: ("The payment id was used with another payload", ErrorBody),
            **_LIMITS,
        },
        body=SettleRequest,
        parameters=[_PAYMENT_HEADERS[2]],
    ),
    ("/v1/endpoints/{endpoint_id}/requirements", "get"): Operation(
        {
            400: ("Bad units or url", ErrorBody),
            402: ("The requirements (v2: the PAYMENT-REQUIRED header)", MintPaymentRequired),
            404: ("No such endpoint, or disabled", ErrorBody),
            **_LIMITS,
        },
        parameters=[
            _path_id("endpoint_id"),
            _query("units", "how many units (default 1)", {"type": "integer", "minimum": 1}),
            _query("url", "the concrete URL served", {"type": "string", "maxLength": 2048}),
        ],
    ),
    ("/discovery/resources", "get"): Operation(
        {
            200: ("A page of discoverable resources", DiscoveryList),
            400: ("Bad type, limit or offset", ErrorBody),
            **_LIMITS,
        },
        parameters=[
            _query("type", "the protocol (http)", {"type": "string", "maxLength": 32}),
            _query("limit", "default 20", {"type": "integer", "minimum": 1, "maximum": 100}),
            _query("offset", "", {"type": "integer", "minimum": 0, "maximum": 10_000}),
        ],
    ),
    **{key: replace(op, bearer=True) for key, op in _ADMIN_OPERATIONS.items()},
    **{key: replace(op, bearer=True) for key, op in _PAYOUT_OPERATIONS.items()},
    **{key: replace(op, bearer=True) for key, op in _VIEW_OPERATIONS.items()},
    **{key: replace(op, bearer=True) for key, op in _POLICY_OPERATIONS.items()},
    **{key: replace(op, bearer=True) for key, op in _WEBHOOK_OPERATIONS.items()},
    **{key: replace(op, bearer=True) for key, op in _STATUS_OPERATIONS.items()},
}

_REF: Final = "#/components/schemas/{model}"


def _models() -> list[type[BaseModel]]:
    models: list[type[BaseModel]] = [ErrorBody]
    for op in OPERATIONS.values():
        for _, model in op.responses.values():
            if model is not None and model not in models:
                models.append(model)
        if op.body is not None and op.body not in models:
            models.append(op.body)
    return models


def _docstring(endpoint: Any) -> dict[str, Any]:
    doc = inspect.getdoc(endpoint) or ""
    try:
        parsed = yaml.safe_load(doc)
    except yaml.YAMLError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"summary": doc.splitlines()[0] if doc else ""}


def openapi_document(routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `routes`."""
    models = _models()
    keys, defs = models_json_schema(
        [(m, "validation") for m in models] + [(m, "serialization") for m in models],
        ref_template=_REF,
    )
    ref = {model: keys[(model, "serialization")] for model in models}
    request_ref = {model: keys[(model, "validation")] for model in models}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route) or not route.include_in_schema:
            continue
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            verb = method.lower()
            doc = _docstring(route.endpoint)
            op = OPERATIONS.get((route.path, verb))
            operation: dict[str, Any] = {
                "operationId": f"{verb}_{route.name}",
                "summary": str(doc.get("summary", "")).strip(),
            }
            if doc.get("description"):
                operation["description"] = str(doc["description"]).strip()
            if op is None:
                params = [
                    {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                    for p in route.param_convertors
                ]
                if params:
                    operation["parameters"] = params
                operation["responses"] = {
                    "default": {
                        "description": "undocumented",
                        "content": {"application/json": {"schema": {}}},
                    }
                }
                paths.setdefault(route.path, {})[verb] = operation
                continue
            if op.parameters:
                operation["parameters"] = op.parameters
            if op.bearer:
                operation["security"] = [{"bearer": []}]
            if op.body is not None:
                operation["requestBody"] = {
                    "required": op.body_required,
                    "content": {"application/json": {"schema": request_ref[op.body]}},
                }
            responses: dict[str, Any] = {}
            for status, (description, model) in sorted(op.responses.items()):
                media = op.media_type if 200 <= status < 300 else "application/json"
                schema: dict[str, Any] = ref[model] if model is not None else {"type": "string"}
                content: dict[str, Any] = {media: {"schema": schema}}
                if op.csv and 200 <= status < 300:
                    content["text/csv"] = {"schema": {"type": "string"}}
                answer: dict[str, Any] = {"description": description, "content": content}
                if status == 503:
                    answer["headers"] = {
                        "Retry-After": {"schema": {"type": "integer"}, "required": False}
                    }
                responses[str(status)] = answer
            operation["responses"] = responses
            paths.setdefault(route.path, {})[verb] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "payfirst",
            "version": __version__,
            "description": "x402 payment server: answer at once, settle on chain, deliver "
            "only after confirmation.",
        },
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an API key"}
            },
        },
    }
