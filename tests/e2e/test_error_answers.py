"""Errors that used to leak or crash (issue 8): each is now a short 4xx with an x402 reason,
or a 503 with Retry-After while a dependency is down, never a 500 or a traceback."""

from __future__ import annotations

import base64
import copy
import json
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import pytest_asyncio

from payfirst.adapters.evm_chain import EvmChain
from payfirst.adapters.store_postgres import PostgresStore
from payfirst.api.services import Services
from payfirst.app import build_app
from payfirst.x402 import decode_header
from tests.e2e.harness import Harness
from tests.e2e.tcp_proxy import TcpProxy, stable_port
from tests.e2e.test_accept_rejections import nothing_written

LEAKS = ("pydantic", "errors.pydantic.dev", "input_value", "For further information", "https://")


async def signed_request(h: Harness) -> dict[str, Any]:
    """A /verify body around a real signed v2 payment for one mint."""
    _, header = await h.payment_header(h.payer(1), 1)
    payload = decode_header(header)
    return {
        "x402Version": 2,
        "paymentPayload": payload,
        "paymentRequirements": copy.deepcopy(payload["accepted"]),
    }


def assert_short_400(answer: httpx.Response, field: str | None = None) -> None:
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["error"] == "invalid_payload"
    for leak in LEAKS:
        assert leak not in body["message"], body["message"]
    assert len(body["message"]) < 400
    if field is not None:
        assert field in body["message"], body["message"]


@pytest.mark.parametrize(
    "amount", ["1.5", "1e6", "-1", "0x10", "", " 10", "\uff11\uff12", "9" * 79, "NaN"]
)
@pytest.mark.parametrize("route", ["/verify", "/settle"])
async def test_non_integer_amounts_are_400(harness: Harness, route: str, amount: str) -> None:
    body = await signed_request(harness)
    body["paymentRequirements"]["amount"] = amount
    body["paymentPayload"]["accepted"]["amount"] = amount
    answer = await harness.http.post(route, json=body)
    assert_short_400(answer, "amount")
    # v1: maxAmountRequired.
    v1 = {
        "x402Version": 1,
        "paymentPayload": {
            "x402Version": 1,
            "scheme": "exact",
            "network": "eip155:31337",
            "payload": body["paymentPayload"]["payload"],
        },
        "paymentRequirements": {
            "scheme": "exact",
            "network": "eip155:31337",
            "maxAmountRequired": amount,
            "resource": "http://127.0.0.1/x",
            "payTo": body["paymentRequirements"]["payTo"],
            "maxTimeoutSeconds": 60,
            "asset": body["paymentRequirements"]["asset"],
            "extra": body["paymentRequirements"]["extra"],
        },
    }
    answer = await harness.http.post(route, json=v1)
    assert_short_400(answer, "maxAmountRequired")
    await nothing_written(harness)


def _with_surrogate(obj: dict[str, Any], *path: str) -> bytes:
    """JSON text of `obj` with the string at `path` replaced by a lone surrogate escape."""
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = "@@SURROGATE@@"
    return json.dumps(obj).replace("@@SURROGATE@@", "\\ud800").encode()


async def test_lone_surrogates_are_refused_everywhere(harness: Harness) -> None:
    h = harness
    token = h.deployment.token
    body = await signed_request(h)
    for route in ("/verify", "/settle"):
        for path in (
            ("paymentRequirements", "payTo"),
            ("paymentPayload", "accepted", "payTo"),
            ("paymentRequirements", "network"),
        ):
            raw = _with_surrogate(copy.deepcopy(body), *path)
            answer = await h.http.post(
                route, content=raw, headers={"content-type": "application/json"}
            )
            assert_short_400(answer)
            assert "surrogate" in answer.json()["message"]
    # In a payment header: decoded by the same parser.
    raw_header = _with_surrogate(copy.deepcopy(body["paymentPayload"]), "accepted", "payTo")
    surrogate_header = base64.b64encode(raw_header).decode()
    for url, content in (
        (f"/api/mint/{token}", b'{"quantity": 1}'),
        ("/api/x402-batch-mint", json.dumps({"tokenAddress": token}).encode()),
    ):
        answer = await h.http.post(
            url,
            content=content,
            headers={"PAYMENT-SIGNATURE": surrogate_header, "content-type": "application/json"},
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "invalid_payload"
    # In the mint body.
    answer = await h.http.post(
        "/api/x402-batch-mint",
        content=b'{"tokenAddress": "\\ud800", "quantity": 1}',
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"
    await nothing_written(h)


async def test_malformed_bodies_name_the_field_without_pydantic_text(harness: Harness) -> None:
    h = harness
    body = await signed_request(h)
    cases: list[tuple[Any, str | None]] = [
        ({"x402Version": 2, "paymentPayload": {"x402Version": 2}, "paymentRequirements": {}}, None),
        (
            {**body, "paymentRequirements": {"scheme": "<script>alert(1)</script>"}},
            "paymentRequirements",
        ),
        ({**body, "paymentPayload": {**body["paymentPayload"], "x402Version": "9" * 500}}, None),
        ({**body, "x402Version": {"deep": ["x"] * 10}}, "x402Version"),
        ([1, 2, 3], None),
        ("just a string", None),
    ]
    for route in ("/verify", "/settle"):
        for case, field in cases:
            answer = await h.http.post(route, json=case)
            assert_short_400(answer, field)
            assert "<script>" not in answer.text
            assert "9" * 50 not in answer.text
        for raw in (b"", b"{", b"NaN", b'{"x402Version": Infinity}', b"\xff\xfe{}"):
            answer = await h.http.post(
                route, content=raw, headers={"content-type": "application/json"}
            )
            assert_short_400(answer)
    await nothing_written(h)


@pytest_asyncio.fixture
async def db_behind_proxy(
    harness: Harness, pg_dsn: str
) -> AsyncIterator[tuple[httpx.AsyncClient, TcpProxy]]:
    """The API on its own pool reaching PostgreSQL through a TCP proxy the test can cut."""
    parts = urlsplit(pg_dsn)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432, stable_port())
    await proxy.start()
    netloc = parts.netloc.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}")
    if parts.port is None:
        netloc = f"{parts.netloc}:{proxy.port}"
    dsn = urlunsplit(parts._replace(netloc=netloc))
    store = await PostgresStore.connect(dsn, schema=harness.store.schema, migrate=False)
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(
            app=build_app(Services(store=store, chain=EvmChain(harness.rpc)))
        ),
        base_url="http://127.0.0.1",
    )
    try:
        yield http, proxy
    finally:
        await http.aclose()
        if not proxy.running:
            await proxy.start()
        await store.close()
        await proxy.stop()


async def test_database_down_mint_answers_503_with_retry_after(
    harness: Harness,
    db_behind_proxy: tuple[httpx.AsyncClient, TcpProxy],
    caplog: pytest.LogCaptureFixture,
) -> None:
    http, proxy = db_behind_proxy
    h = harness
    token = h.deployment.token
    kind, header = await h.payment_header(h.payer(2), 1)
    await proxy.stop()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            for url, content, headers in (
                (f"/api/mint/{token}", {"quantity": 1}, {kind: header}),
                ("/api/x402-batch-mint", {"tokenAddress": token, "quantity": 1}, {kind: header}),
                (f"/api/mint/{token}", {"quantity": 1}, {}),
                ("/api/payment-stats", None, {}),
            ):
                if content is None:
                    answer = await http.get(url)
                else:
                    answer = await http.post(url, json=content, headers=headers)
                assert answer.status_code == 503, answer.text
                assert answer.headers["retry-after"].isdigit()
                assert answer.json()["error"] == "service_unavailable"
                assert "database" in answer.json()["message"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r for r in caplog.records if r.exc_info]
    # One line for the whole outage burst, not one per request.
    unavailable = [r for r in caplog.records if "503" in r.getMessage()]
    assert len(unavailable) == 1, [r.getMessage() for r in unavailable]
    await proxy.start()
    answer = await http.post(f"/api/mint/{token}", json={"quantity": 1}, headers={kind: header})
    assert answer.status_code == 202, answer.text
    await h.settled()
