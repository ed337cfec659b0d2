"""The pieces of the HTTP edge on their own: the one JSON parser for client input, the
last-resort error answer, and the OpenAPI document."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from payfirst import jsonsafe
from payfirst.api.http_limits import Guard
from payfirst.api.openapi import OPERATIONS, openapi_document
from payfirst.api.services import Services
from payfirst.app import RECURSION_LIMIT, build_app
from payfirst.x402 import decode_header

# --- jsonsafe ----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab\n\u00e9'),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(alphabet='[]{}"\\k', max_size=4), inner, max_size=3)
    ),
    max_leaves=30,
)


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(json_values, st.integers(min_value=0, max_value=6))
def test_depth_scan_is_exact_on_valid_json(value: Any, limit: int) -> None:
    """Brackets inside strings (escaped quotes included) never count; nesting always does."""
    text = json.dumps(value)
    assert jsonsafe.nesting_depth_exceeds(text, limit) == (depth(value) > limit)
    if depth(value) <= limit:
        assert jsonsafe.loads(text, max_depth=limit) == value
    else:
        with pytest.raises(jsonsafe.JsonRejected, match="deeper"):
            jsonsafe.loads(text, max_depth=limit)


@pytest.mark.parametrize(
    "text",
    [
        "[" * 1_000_000 + "]" * 1_000_000,
        '{"a":' * 500_000 + "1" + "}" * 500_000,
        "[" * 1_000_000,  # never closed
        '["\\"' + "[" * 100_000,  # an escaped quote does not end the string... which never ends
        '"' + "[" * 10 + '"' + "[" * 100_000,
    ],
)
def test_deep_input_is_refused_before_parsing(text: str) -> None:
    with pytest.raises(jsonsafe.JsonRejected):
        jsonsafe.loads(text)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b'{"a": NaN}', "NaN"),
        (b"[Infinity]", "Infinity"),
        (b'"\\ud800"', "surrogate"),
        (b'{"payTo": "\\udfff"}', "surrogate"),
        (b"\xff\xfe[]", "UTF-8"),
        (b'{"a": 1' + b"2" * 5000 + b"}", "not valid JSON"),
        (b"{", "not valid JSON"),
    ],
)
def test_unanswerable_json_is_refused(raw: bytes, why: str) -> None:
    with pytest.raises(jsonsafe.JsonRejected, match=why):
        jsonsafe.loads(raw)


def test_surrogate_pairs_are_fine() -> None:
    assert jsonsafe.loads(b'"\\ud83d\\ude00"') == "\U0001f600"


def test_payment_header_decoder_uses_the_same_parser() -> None:
    import base64

    from payfirst.domain.errors import PaymentRejected

    deep = base64.b64encode(b"[" * 5000 + b"]" * 5000).decode()
    with pytest.raises(PaymentRejected, match="deeper"):
        decode_header(deep)
    with pytest.raises(PaymentRejected, match="longer than"):
        decode_header("A" * 1_000_000)


def test_recursion_limit_is_back_to_a_sane_value_and_signing_still_works() -> None:
    from eth_account import Account

    assert sys.getrecursionlimit() == RECURSION_LIMIT
    account = Account.create()
    signed = account.sign_transaction(
        {
            "to": account.address,
            "value": 1,
            "gas": 21_000,
            "maxFeePerGas": 1,
            "maxPriorityFeePerGas": 1,
            "nonce": 0,
            "chainId": 31337,
        }
    )
    assert signed.raw_transaction


# --- the last-resort answer ----------------------------------------------------------------


async def test_an_unexpected_exception_is_a_json_500_and_one_log_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(request: Request) -> Response:
        raise ZeroDivisionError("a bug")

    app = Starlette(routes=[Route("/broken", broken)], middleware=[Middleware(Guard)])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://127.0.0.1",
    ) as http:
        with caplog.at_level(logging.ERROR):
            answer = await http.get("/broken")
    assert answer.status_code == 500
    assert answer.json()["error"] == "internal_error"
    assert "a bug" not in answer.text
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "ZeroDivisionError" in errors[0].getMessage()


# --- OpenAPI -------------------------------------------------------------------------------


def _document() -> dict[str, Any]:
    app = build_app(Services(store=None, chain=None))  # type: ignore[arg-type]
    return openapi_document(app.routes)


def test_openapi_document_is_valid() -> None:
    validate(_document())


def test_openapi_documents_every_route_with_real_schemas() -> None:
    app = build_app(Services(store=None, chain=None))  # type: ignore[arg-type]
    document = openapi_document(app.routes)
    schemas = document["components"]["schemas"]
    for route in app.routes:
        if not getattr(route, "include_in_schema", False):
            continue
        for method in set(getattr(route, "methods", ())) - {"HEAD"}:
            key = (route.path, method.lower())  # type: ignore[attr-defined]
            assert key in OPERATIONS, f"{key} has no request/response schemas in api/openapi.py"
            operation = document["paths"][key[0]][key[1]]
            if key[1] == "post":
                ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                assert ref.rsplit("/", 1)[1] in schemas
            for status, answer in operation["responses"].items():
                media = dict(answer["content"])
                if status.startswith("2") and media.pop("text/csv", None) is not None:
                    assert key in {("/v1/payments", "get"), ("/v1/ledger/entries", "get")}
                (content,) = media.values()
                schema = content["schema"]
                if "$ref" in schema:
                    assert schema["$ref"].rsplit("/", 1)[1] in schemas, (key, status)
                else:
                    assert key[0].endswith("/events") and status == "200"
                if status.startswith(("4", "5")) and status != "402":
                    assert schema["$ref"].endswith(("/ErrorBody", "/Health", "/Readiness")), (
                        key,
                        status,
                    )
