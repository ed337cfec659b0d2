"""x402 wire models (v1 and v2), field for field as the official x402 SDK names them.

Python attributes are snake_case; the wire is camelCase (aliases). Parse with
`Model.model_validate(data)` (either spelling is accepted) and dump with `wire(model)`,
i.e. `model.model_dump(mode="json", by_alias=True, exclude_none=True)`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

# An amount in the asset's atomic units: a decimal uint256 (at most 78 digits), never a
# float, a sign or an exponent. Anything else is refused while parsing, so no `int()` on
# client input can fail later.
AtomicAmount = Annotated[str, Field(pattern=r"^[0-9]{1,78}$")]


class WireModel(BaseModel):
    """camelCase on the wire; unknown fields are ignored (newer clients add some)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
        extra="ignore",
    )


def wire(model: BaseModel) -> dict[str, Any]:
    """The JSON-ready wire form of a model."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


# Error types whose pydantic message quotes the client's input.
_ECHOING_ERRORS = frozenset({"union_tag_invalid", "literal_error", "enum"})


def describe_validation_error(exc: ValidationError, limit: int = 3) -> str:
    """A short account of what failed, naming the fields: never the library's full text
    (its version, a documentation URL, the input echoed back)."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:limit]:
        where = ".".join(str(p) for p in err["loc"])[:120] or "body"
        what = "unsupported value" if err["type"] in _ECHOING_ERRORS else err["msg"][:120]
        parts.append(f"{where}: {what}")
    return "; ".join(parts)


# --- exact scheme on EVM ---------------------------------------------------------------


class ExactEvmAuthorization(WireModel):
    """EIP-3009 TransferWithAuthorization fields; integers as decimal strings."""

    from_: str = Field(alias="from")
    to: str
    value: str
    valid_after: str
    valid_before: str
    nonce: str


class ExactEvmPayload(WireModel):
    """The `payload` of an exact-EVM PaymentPayload (EIP-3009 form)."""

    signature: str
    authorization: ExactEvmAuthorization


# --- v1 --------------------------------------------------------------------------------


class PaymentRequirementsV1(WireModel):
    scheme: str
    network: str
    max_amount_required: AtomicAmount
    resource: str
    description: str | None = None
    mime_type: str | None = None
    pay_to: str
    max_timeout_seconds: int
    asset: str
    output_schema: dict[str, Any] | None = None
    extra: dict[str, Any] | None = None

    @property
    def amount(self) -> str:
        return self.max_amount_required


class PaymentRequiredV1(WireModel):
    x402_version: Literal[1] = 1
    error: str | None = None
    accepts: list[PaymentRequirementsV1]


class PaymentPayloadV1(WireModel):
    x402_version: Literal[1] = 1
    scheme: str
    network: str
    payload: dict[str, Any]


# --- v2 --------------------------------------------------------------------------------


class ResourceInfo(WireModel):
    url: str
    description: str | None = None
    mime_type: str | None = None


class PaymentRequirementsV2(WireModel):
    scheme: str
    network: str
    amount: AtomicAmount
    asset: str
    pay_to: str
    max_timeout_seconds: int
    extra: dict[str, Any] = Field(default_factory=dict)


class PaymentRequiredV2(WireModel):
    x402_version: Literal[2] = 2
    error: str | None = None
    resource: ResourceInfo | None = None
    accepts: list[PaymentRequirementsV2]
    extensions: dict[str, Any] | None = None


class PaymentPayloadV2(WireModel):
    x402_version: Literal[2] = 2
    resource: ResourceInfo | None = None
    accepted: PaymentRequirementsV2
    payload: dict[str, Any]
    extensions: dict[str, Any] | None = None

    @property
    def scheme(self) -> str:
        return self.accepted.scheme

    @property
    def network(self) -> str:
        return self.accepted.network


PaymentPayload = PaymentPayloadV1 | PaymentPayloadV2
PaymentRequirements = PaymentRequirementsV1 | PaymentRequirementsV2
AnyPaymentPayload = Annotated[
    PaymentPayloadV1 | PaymentPayloadV2, Field(discriminator="x402_version")
]


# --- facilitator -----------------------------------------------------------------------


class VerifyRequest(WireModel):
    x402_version: int
    payment_payload: AnyPaymentPayload
    payment_requirements: PaymentRequirementsV2 | PaymentRequirementsV1


class SettleRequest(VerifyRequest):
    pass


class VerifyResponse(WireModel):
    is_valid: bool
    invalid_reason: str | None = None
    invalid_message: str | None = None
    payer: str | None = None
    extensions: dict[str, Any] | None = None
    extra: dict[str, Any] | None = None


class SettleResponse(WireModel):
    success: bool
    error_reason: str | None = None
    error_message: str | None = None
    payer: str | None = None
    transaction: str
    network: str
    amount: str | None = None
    extensions: dict[str, Any] | None = None
    extra: dict[str, Any] | None = None


class SupportedKind(WireModel):
    x402_version: int
    scheme: str
    network: str
    extra: dict[str, Any] | None = None


class SupportedResponse(WireModel):
    kinds: list[SupportedKind]
    extensions: list[str] = Field(default_factory=list)
    signers: dict[str, list[str]] = Field(default_factory=dict)
