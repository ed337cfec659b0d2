"""Paid endpoints without IO: path patterns, prices by units, the checks of what a caller
gives, and the x402 answers built from the registry (402 and the Bazaar item)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from payfirst.domain.endpoints import Endpoint, Pricing, path_matches, path_regex
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.reasons import Reason
from payfirst.usecases.endpoints import (
    AssetInfo,
    Quote,
    check_amount,
    check_description,
    check_method,
    check_mime_type,
    check_resource,
    check_timeout,
    check_unit_param,
    check_units,
    discovery_item,
    payment_required,
)
from payfirst.x402 import PaymentRequiredV2, decode_header

T0 = datetime(2026, 1, 1, tzinfo=UTC)
USDC = AssetInfo("0x036CbD53842c5426634e7929541eC2318f3dCF7e", "USDC", "2", 6)


def endpoint(**overrides: object) -> Endpoint:
    fields: dict[str, object] = {
        "id": uuid4(),
        "provider_id": uuid4(),
        "method": "GET",
        "resource": "https://api.example.com/weather",
        "pricing": Pricing.FIXED,
        "amount": 10_000,
        "unit_param": None,
        "max_units": None,
        "asset": USDC.address,
        "chain_id": 84532,
        "pay_to": "0x000000000000000000000000000000000000bEEF",
        "description": "The weather",
        "mime_type": "application/json",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        "output_schema": {"type": "object"},
        "discoverable": True,
        "max_timeout_seconds": 120,
        "created_at": T0,
        "updated_at": T0,
    }
    fields.update(overrides)
    return Endpoint(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("/weather", "/weather", True),
        ("/weather", "/weather/x", False),
        ("/weather/{city}", "/weather/paris", True),
        ("/weather/{city}", "/weather/", False),
        ("/weather/{city}", "/weather/a/b", False),
        ("/items/{id:int}", "/items/42", True),
        ("/items/{id:int}", "/items/x", False),
        ("/files/{rest:path}", "/files/a/b/c", True),
        ("/a.b/{x}", "/aXb/1", False),  # a literal dot, not any character
    ],
)
def test_a_path_pattern_matches_as_starlette_routes_do(
    pattern: str, path: str, matches: bool
) -> None:
    assert path_matches(pattern, path) is matches


@pytest.mark.parametrize(
    "pattern", ["weather", "/a/{x}/{x}", "/a/{x:nope}", "/a/{", "/a b", "/a?q=1", "/a#f"]
)
def test_a_malformed_path_pattern_is_refused(pattern: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each says what is wrong
        path_regex(pattern)


def test_a_fixed_price_sells_one_unit_and_a_per_unit_price_up_to_its_maximum() -> None:
    fixed = endpoint()
    assert fixed.price(1) == 10_000
    assert not fixed.units_allowed(2)
    per_unit = endpoint(pricing=Pricing.PER_UNIT, unit_param="n", max_units=5)
    assert per_unit.price(5) == 50_000
    for units in (0, 6, -1, True):
        assert not per_unit.units_allowed(units)  # type: ignore[arg-type]
        with pytest.raises(ValueError):  # noqa: PT011
            per_unit.price(units)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("check", "value"),
    [
        (check_method, "get"),
        (check_method, "TRACE"),
        (check_resource, ""),
        (check_resource, "/" + "a" * 512),
        (check_resource, "ftp://example.com/x"),
        (check_resource, "https://"),
        (check_resource, "https://exa mple.com/"),
        (check_resource, "/weather/{city"),
        (check_amount, 0),
        (check_amount, "0"),
        (check_amount, "-1"),
        (check_amount, "1.5"),
        (check_amount, 1.5),
        (check_amount, True),
        (check_amount, "1" * 79),
        (check_amount, str(2**256)),
        (check_amount, " 1"),
        (check_unit_param, ""),
        (check_unit_param, "a b"),
        (check_unit_param, 3),
        (check_description, "x" * 1001),
        (check_description, "bell\x07"),
        (check_mime_type, "json"),
        (check_timeout, 0),
        (check_timeout, 86_401),
        (check_timeout, "300"),
    ],
)
def test_bad_terms_are_refused_with_a_reason(check: object, value: object) -> None:
    with pytest.raises(PaymentRejected) as raised:
        check(value)  # type: ignore[operator]
    assert raised.value.reason is Reason.INVALID_REQUEST


def test_good_terms_pass_and_defaults_fill_in() -> None:
    assert check_method(None) == "*"
    assert check_amount("0010") == 10
    assert check_amount(2**256 - 1) == 2**256 - 1
    assert check_resource("/weather/{city}") == "/weather/{city}"
    assert check_resource("https://api.example.com/w?x=1") == "https://api.example.com/w?x=1"
    assert check_units(None) == 1
    assert check_units("7") == 7
    for text in ("0x1", "-1", "1.0", "", "99999999", "\u0661"):
        with pytest.raises(PaymentRejected):
            check_units(text)


def test_the_402_carries_the_registry_terms_and_payfirsts_extra() -> None:
    e = endpoint(pricing=Pricing.PER_UNIT, unit_param="n", max_units=10)
    body, header = payment_required(Quote(e, USDC, 3, "https://api.example.com/weather"))
    assert body["x402Version"] == 1
    (v1,) = body["accepts"]
    assert v1["maxAmountRequired"] == "30000"
    assert v1["network"] == "base-sepolia"
    assert v1["payTo"] == e.pay_to
    assert v1["asset"] == USDC.address
    assert v1["description"] == "The weather"
    assert v1["mimeType"] == "application/json"
    assert v1["maxTimeoutSeconds"] == 120
    assert v1["resource"] == "https://api.example.com/weather"
    assert v1["outputSchema"]["input"]["queryParams"] == e.input_schema
    assert v1["outputSchema"]["output"] == e.output_schema
    extra = {"name": "USDC", "version": "2", "payfirst": {"endpoint": str(e.id), "units": 3}}
    assert v1["extra"] == extra
    v2 = PaymentRequiredV2.model_validate(decode_header(header))
    assert v2.accepts[0].amount == "30000"
    assert v2.accepts[0].network == "eip155:84532"
    assert v2.accepts[0].extra == extra
    assert v2.resource is not None and v2.resource.url == "https://api.example.com/weather"


def test_a_bazaar_item_is_the_x402_discovery_resource() -> None:
    e = endpoint(method="POST")
    item = discovery_item(Quote(e, USDC, 1, e.resource))
    assert item["resource"] == e.resource
    assert item["type"] == "http"
    assert item["x402Version"] == 2
    assert item["lastUpdated"] == T0.isoformat()
    assert item["description"] == "The weather"
    assert item["accepts"][0]["amount"] == "10000"
    assert item["accepts"][0]["payTo"] == e.pay_to
    bazaar = item["extensions"]["bazaar"]
    assert bazaar["info"]["input"] == {
        "type": "http",
        "method": "POST",
        "bodyType": "json",
        "body": {},
    }
    schema = bazaar["schema"]
    assert schema["properties"]["input"]["properties"]["body"] == e.input_schema
    assert schema["properties"]["output"] == e.output_schema
    plain = discovery_item(Quote(replace(e, description=""), USDC, 1, e.resource))
    assert "description" not in plain
