"""Paid endpoints without IO: path patterns, prices by units, the checks of what a caller
gives, and the x402 answers built from the registry (402 and the Bazaar item)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from jsonschema import Draft202012Validator

from payfirst.domain.endpoints import Endpoint, Pricing, path_matches, path_regex
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.reasons import Reason
from payfirst.usecases.endpoints import (
    AssetInfo,
    Quote,
    bazaar_extension,
    check_amount,
    check_description,
    check_method,
    check_mime_type,
    check_resource,
    check_schema,
    check_timeout,
    check_unit_param,
    check_units,
    discovery_item,
    example_of,
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
        (check_description, "nul\x00"),
        (check_resource, "/a\x00"),
        (check_resource, "/a/{x}\x00"),
        (check_resource, "https://api.example.com/\x00"),
        (check_resource, "https://api.example.com/\x1f"),
        (check_mime_type, "json"),
        (check_mime_type, "application/json\x00"),
        (check_mime_type, "application/json; charset=utf-8\x00"),
        (check_mime_type, "application/json;\x1b"),
        (check_unit_param, "n\x00"),
        (check_method, "GET\x00"),
        (check_timeout, 0),
        (check_timeout, 9),  # the provider middleware's floor is 10 s
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
    assert schema["properties"]["output"]["properties"]["example"] == e.output_schema
    plain = discovery_item(Quote(replace(e, description=""), USDC, 1, e.resource))
    assert "description" not in plain


def nested(depth: int) -> dict[str, object]:
    """A JSON object `depth` levels deep (a list is a level too)."""
    schema: dict[str, object] = {"enum": [1]}
    for _ in range(depth - 2):
        schema = {"not": schema}
    return schema


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a\x00": {"type": "string"}}},  # in a key
        {"\x00": 1},
        {"type": "string", "pattern": "^a\x00"},  # in a string
        {"enum": ["ok", "no\x00"]},  # in a list
        {"a": [{"b": [{"c\x00": None}]}]},  # deep down
        nested(17),
        {"description": "x" * (16 * 1024)},  # 16 KiB and more as JSON
        {"enum": ["é" * 9000]},  # counted in bytes, not characters
        [],
        "object",
    ],
)
def test_a_schema_with_a_nul_or_too_big_or_deep_is_refused(schema: object) -> None:
    with pytest.raises(PaymentRejected) as raised:
        check_schema(schema, "input_schema")
    assert raised.value.reason is Reason.INVALID_REQUEST
    assert "input_schema" in raised.value.message


def test_a_schema_within_the_bounds_is_kept() -> None:
    assert check_schema(None, "s") is None
    for schema in (nested(16), {"description": "x" * (16 * 1024 - 20)}, {"a\u2028b": "\t"}):
        assert check_schema(schema, "s") == schema
    assert check_timeout(10) == 10


# --- the Bazaar extension: `info` valid against its own `schema`, as x402's facilitator checks


WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string", "minLength": 2}, "days": {"type": "integer"}},
    "required": ["city", "days"],
}
BAZAAR_CASES: list[dict[str, object]] = [
    {"method": "GET", "input_schema": WEATHER, "output_schema": {"type": "object"}},
    {"method": "GET", "input_schema": None, "output_schema": None},
    {"method": "*", "input_schema": WEATHER, "output_schema": None},
    {"method": "DELETE", "input_schema": {"properties": {"id": {"type": "string"}}}},
    {"method": "HEAD", "input_schema": {"type": "object", "additionalProperties": False}},
    {"method": "POST", "input_schema": WEATHER, "output_schema": {"type": "string"}},
    {"method": "POST", "input_schema": None, "output_schema": None},
    {
        "method": "PUT",
        "input_schema": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {
                "items": {"type": "array", "minItems": 2, "items": {"enum": ["a", "b"]}},
                "when": {"type": "string", "format": "date-time"},
                "n": {"type": "number", "exclusiveMinimum": 3.5, "multipleOf": 2},
                "flag": {"type": ["boolean", "null"]},
                "kind": {"const": "x"},
                "both": {
                    "allOf": [
                        {"required": ["a"]},
                        {"properties": {"a": {"type": "integer", "minimum": 7}}},
                    ]
                },
                "either": {"anyOf": [{"type": "integer", "maximum": -3}, {"type": "string"}]},
                "told": {"type": "string", "examples": ["hello"], "minLength": 5},
            },
            "required": ["items", "when", "n", "flag", "kind", "both", "either", "told"],
        },
        "output_schema": {
            "type": "object",
            "properties": {"forecast": {"type": "array", "items": {"type": "number"}}},
            "required": ["forecast"],
        },
    },
    {"method": "PATCH", "input_schema": {"type": "object", "default": {"a": 1}}},
    {"method": "OPTIONS", "input_schema": None, "output_schema": {"type": "array", "minItems": 1}},
]


@pytest.mark.parametrize("terms", BAZAAR_CASES)
def test_the_bazaar_info_is_valid_against_its_own_schema(terms: dict[str, object]) -> None:
    e = endpoint(**terms)
    extension = bazaar_extension(e)
    Draft202012Validator.check_schema(extension["schema"])
    errors = list(Draft202012Validator(extension["schema"]).iter_errors(extension["info"]))
    assert errors == [], [e.message for e in errors]
    assert discovery_item(Quote(e, USDC, 1, e.resource))["extensions"]["bazaar"] == extension


def test_the_bazaar_shapes_are_x402s() -> None:
    """As createQueryDiscoveryExtension / createBodyDiscoveryExtension, with the method the
    resource server's enrichment names."""
    query = bazaar_extension(endpoint(method="GET", input_schema=WEATHER, output_schema=None))
    assert query["info"] == {
        "input": {"type": "http", "method": "GET", "queryParams": {"city": "xx", "days": 0}}
    }
    given = query["schema"]["properties"]["input"]
    assert given["properties"]["queryParams"] == WEATHER
    assert given["properties"]["method"] == {"type": "string", "enum": ["GET"]}
    assert given["required"] == ["type", "method"]
    assert given["additionalProperties"] is False
    assert "output" not in query["schema"]["properties"]

    body = bazaar_extension(
        endpoint(method="POST", input_schema=WEATHER, output_schema={"type": "object"})
    )
    assert body["info"]["input"] == {
        "type": "http",
        "method": "POST",
        "bodyType": "json",
        "body": {"city": "xx", "days": 0},
    }
    properties = body["schema"]["properties"]
    assert properties["input"]["properties"]["body"] == WEATHER
    assert properties["input"]["required"] == ["type", "method", "bodyType", "body"]
    assert body["info"]["output"] == {"type": "json", "example": {}}
    assert properties["output"] == {
        "type": "object",
        "properties": {"type": {"type": "string"}, "example": {"type": "object"}},
        "required": ["type"],
    }
    anything = bazaar_extension(endpoint(method="*", input_schema=None))
    assert anything["info"]["input"] == {"type": "http", "method": "GET", "queryParams": {}}


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "integer", "minimum": 10, "multipleOf": 4},
        {"type": "integer", "maximum": -5},
        {"type": "number", "minimum": 0.5},
        {"type": "integer", "minimum": 1e400},  # no such float: the least integer instead
        {"type": "string", "minLength": 100_000},
        {"type": "array", "items": {"type": "string"}},
        {"enum": [None]},
        {"oneOf": [{"type": "null"}, {"type": "string"}]},
        {"type": "object", "required": ["x"], "additionalProperties": {"type": "boolean"}},
        {"type": "string", "format": "uuid"},
        True,
    ],
)
def test_an_example_is_one_its_schema_accepts(schema: object) -> None:
    example = example_of(schema)
    if schema == {"type": "integer", "minimum": 1e400} or schema == {
        "type": "string",
        "minLength": 100_000,
    }:
        return  # out of reach: still a value, never an error
    assert list(Draft202012Validator(schema).iter_errors(example)) == []  # type: ignore[arg-type]
