"""Schemathesis against payfirst's own OpenAPI document, on the in-process app (ASGI) over
real PostgreSQL, a real anvil chain and a running worker.

Every operation gets valid-by-schema and invalid-by-schema requests (bounded counts). The
contract: no 5xx ever; every 4xx (and 402) answer is JSON with an `error` reason;
afterwards nothing was queued and the relayer sent no transaction."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
import schemathesis
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from payfirst.api.openapi import OPERATIONS, openapi_document
from payfirst.api.services import Services
from payfirst.app import build_app
from tests.e2e.harness import Harness
from tests.fixtures.store import fetch_raw

SCHEMA = schemathesis.openapi.from_dict(
    openapi_document(build_app(Services(store=None, chain=None)).routes)  # type: ignore[arg-type]
)
EXAMPLES_PER_OPERATION = 100
DOCUMENT_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _strategy(path: str, method: str, token: str) -> st.SearchStrategy[Any]:
    operation = SCHEMA[path][method.upper()]
    strategies = [operation.as_strategy(mode) for mode in GenerationMode]
    if "{token}" in path:  # also the token payfirst really sells
        strategies += [
            operation.as_strategy(mode, path_parameters={"token": token}) for mode in GenerationMode
        ]
    return st.one_of(strategies)


async def send(http: httpx.AsyncClient, case: Any) -> httpx.Response:
    kwargs = case.as_transport_kwargs(base_url="http://127.0.0.1")
    if "json" in kwargs:
        content: bytes | None = json.dumps(kwargs["json"]).encode()
    elif "data" in kwargs:
        data = kwargs["data"]
        content = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    else:
        content = None
    try:
        request = http.build_request(
            kwargs["method"],
            kwargs["url"],
            headers=kwargs.get("headers"),
            params=kwargs.get("params"),
            content=content,
        )
    except (UnicodeEncodeError, ValueError, TypeError):
        reject()  # not sendable over HTTP at all
    return await http.send(request)


def assert_contract(response: httpx.Response, label: str) -> None:
    assert response.status_code < 500 or (response.status_code == 503 and _is_waiters(response)), (
        f"{label}: {response.status_code} {response.text[:500]}"
    )
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/json"), label
        body = response.json()
        assert isinstance(body, dict), label
        assert isinstance(body.get("error"), str) and body["error"], (label, body)


def _is_waiters(response: httpx.Response) -> bool:
    # A bounded-waiters refusal is a 503 by design, not a server error.
    return bool(response.json().get("error") == "too_many_waiters")


async def queued_rows(h: Harness) -> int:
    rows = await fetch_raw(h.store, "SELECT count(*) AS n FROM payment_queue")
    return int(rows[0]["n"])


@pytest_asyncio.fixture
async def nothing_sent(harness: Harness) -> AsyncIterator[Harness]:
    """After the test: nothing queued, and the relayer sent no transaction."""
    h = harness
    nonce_before = await h.rpc.get_transaction_count(h.deployment.relayer_address, "latest")
    yield h
    assert await queued_rows(h) == 0, "a fuzzed request queued a payment"
    nonce_after = await h.rpc.get_transaction_count(h.deployment.relayer_address, "latest")
    assert nonce_after == nonce_before, "a fuzzed request made the relayer send a transaction"


@pytest.mark.parametrize(("path", "method"), sorted(OPERATIONS))
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
@given(data=st.data())
async def test_schemathesis_contract(
    nothing_sent: Harness, path: str, method: str, data: st.DataObject
) -> None:
    h = nothing_sent
    case = data.draw(_strategy(path, method, h.deployment.token), label="case")
    response = await send(h.http, case)
    assert_contract(response, f"{method.upper()} {path}")
    # The answer is what the document says: a documented status, content type and schema.
    case.validate_response(response, checks=DOCUMENT_CHECKS)
