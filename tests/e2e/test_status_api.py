"""The status page's routes through the HTTP app on the harness (real PostgreSQL, real anvil):
the page needs no key and holds no data, its data routes need the operator's key (401
without one, 403 for another role), PAYFIRST_STATUS_PAGE=0 makes all of it 404, the stream
(served by uvicorn on a loopback port) carries every field from its first event and follows
payments as they flow, a limited number of streams, and "decide by the chain" on a real
stuck payment: one whose tx was mined but never confirmed, and one whose tx is not mined
(anvil mining off)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from payfirst.adapters.evm_chain import EvmChain
from payfirst.api.services import Services
from payfirst.api.status import MAX_STREAMS
from payfirst.app import ChainDecider, build_app
from payfirst.config import load_config
from payfirst.domain.accounts import Role
from payfirst.domain.errors import ConfigError
from payfirst.domain.statuses import PaymentStatus
from payfirst.usecases.accounts import Accounts
from tests.e2e.harness import Harness
from tests.e2e.test_interop_official_sdk import payfirst_app, serving
from tests.fixtures.store import execute_raw

STREAM = "/v1/status/stream"
FIELDS = {
    "at",
    "queue",
    "rates",
    "rate_window_s",
    "last_minute",
    "latency_s",
    "relayers",
    "failures",
    "stuck",
}


async def key_of(h: Harness, role: Role) -> dict[str, str]:
    _, issued = await Accounts(h.store).create_account(role, f"the {role.value}")
    return {"Authorization": f"Bearer {issued.text}"}


def deciding_services(h: Harness, **options: Any) -> Services:
    """Services on the harness's store and chain whose "decide by the chain" is the
    composition root's (app.ChainDecider) over the harness's relayer's confirmer."""
    chain_id = h.deployment.chain_id
    return Services(
        store=h.store,
        chain=EvmChain(h.rpc),
        chain_id=chain_id,
        signers=(h.worker.broadcaster.relayer.address,),
        decide_by_chain=ChainDecider(h.store, {chain_id: [h.worker.confirmer]}),
        **options,
    )


def deciding_app(h: Harness, **options: Any) -> tuple[httpx.AsyncClient, Services]:
    """An HTTP client on an app over `deciding_services`."""
    svc = deciding_services(h, **options)
    transport = httpx.ASGITransport(app=build_app(svc))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1"), svc


async def events(answer: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """The (event, data) of a server-sent event stream, as they arrive."""
    buffer = ""
    async for text in answer.aiter_text():
        buffer += text
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            name, data = "message", []
            for line in block.split("\n"):
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
            if data:
                yield name, json.loads("\n".join(data))


class Stream:
    """An open event stream: its response and its events, read once, in order."""

    def __init__(self, answer: httpx.Response) -> None:
        self.answer = answer
        self.status_code = answer.status_code
        self.headers = answer.headers
        self.events = events(answer)


@contextlib.asynccontextmanager
async def stream(url: str, headers: dict[str, str]) -> AsyncIterator[Stream]:
    async with (
        httpx.AsyncClient(base_url=url, timeout=30) as http,
        http.stream("GET", STREAM, headers=headers) as answer,
    ):
        yield Stream(answer)


async def until(
    opened: Stream, check: Callable[[dict[str, Any]], bool], within_s: float = 30
) -> dict[str, Any]:
    """The first `status` event that passes `check` (waited for, never slept for)."""

    async def first() -> dict[str, Any]:
        async for name, data in opened.events:
            assert name == "status", data
            if check(data):
                return data
        raise AssertionError("the stream ended")

    return await asyncio.wait_for(first(), within_s)


# -- who may see it -------------------------------------------------------------------------


async def test_the_page_needs_no_key_and_holds_no_data(harness: Harness) -> None:
    h = harness
    page = await h.http.get("/status")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "/v1/status/stream" not in page.text  # its script holds that, no data is inline
    assert "<script>" not in page.text  # no inline script: the CSP allows none
    for name, kind in (
        ("status.js", "text/javascript"),
        ("uPlot.iife.min.js", "text/javascript"),
        ("uPlot.min.css", "text/css"),
        ("status.css", "text/css"),
        ("uPlot.LICENSE", "text/plain"),
    ):
        asset = await h.http.get(f"/status/assets/{name}")
        assert asset.status_code == 200, name
        assert asset.headers["content-type"].startswith(kind)
    assert "uPlot (v1.6.32)" in (await h.http.get("/status/assets/uPlot.iife.min.js")).text
    for name in ("status.html", "../services.py", "VENDORED.txt", "nope.js"):
        assert (await h.http.get(f"/status/assets/{name}")).status_code == 404


async def test_the_data_routes_are_the_operators(harness: Harness) -> None:
    h = harness
    decide = f"/v1/status/stuck/{uuid4()}/decide"
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
        for method, path in (("GET", STREAM), ("POST", decide)):
            answer = await h.http.request(method, path, headers=headers)
            assert answer.status_code == 401, answer.text
            assert answer.headers["www-authenticate"].startswith("Bearer")
            assert answer.json()["error"] == "unauthorized"
    for role in (Role.PROVIDER, Role.AGENT):
        headers = await key_of(h, role)
        for method, path in (("GET", STREAM), ("POST", decide)):
            answer = await h.http.request(method, path, headers=headers)
            assert answer.status_code == 403, answer.text
            assert answer.json()["error"] == "forbidden"
    operator = await key_of(h, Role.OPERATOR)
    unknown = await h.http.post(decide, headers=operator)
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "unknown_payment"
    bad = await h.http.post("/v1/status/stuck/not-an-id/decide", headers=operator)
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_payment_id"
    body = await h.http.post(decide, headers=operator, json={"force": True})
    assert body.status_code == 400 and body.json()["error"] == "invalid_request"


async def test_disabled_by_config_everything_is_404(harness: Harness) -> None:
    h = harness
    assert load_config({}).status_page is True
    assert load_config({"PAYFIRST_STATUS_PAGE": "0"}).status_page is False
    with pytest.raises(ConfigError, match="PAYFIRST_STATUS_PAGE"):
        load_config({"PAYFIRST_STATUS_PAGE": "yes"})
    operator = await key_of(h, Role.OPERATOR)
    http, _ = deciding_app(h, status_page=False)
    async with http:
        for method, path in (
            ("GET", "/status"),
            ("GET", "/status/assets/status.js"),
            ("GET", STREAM),
            ("POST", f"/v1/status/stuck/{uuid4()}/decide"),
        ):
            for headers in ({}, operator):  # the key changes nothing: it is not there
                answer = await http.request(method, path, headers=headers)
                assert answer.status_code == 404, (path, answer.text)
                assert answer.json()["error"] == "not_found"


# -- the stream -----------------------------------------------------------------------------


async def test_the_stream_carries_every_field_and_follows_payments(harness: Harness) -> None:
    h = harness
    operator = await key_of(h, Role.OPERATOR)
    relayer = h.worker.broadcaster.relayer.address
    async with serving(payfirst_app(h)) as url, stream(url, operator) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        first = await until(answer, lambda _: True)
        assert set(first) == FIELDS
        assert set(first["queue"]) == {"pending", "processing", "sent", "awaiting_approval"}
        assert (
            set(first["rates"])
            == set(first["last_minute"])
            == {
                "accepted",
                "completed",
                "failed",
            }
        )
        latency = first["latency_s"]
        for leg in ("accept_to_sent", "sent_to_completed"):
            assert set(latency[leg]) == {"p50", "p95", "p99"}
        assert set(first["stuck"]) == {"after_s", "count", "payments"}
        assert first["stuck"]["after_s"] > 0
        [shown] = first["relayers"]
        assert shown["address"] == relayer and shown["network"] == "eip155:31337"
        balance = int(await h.rpc.call("eth_getBalance", relayer, "latest"), 16)
        assert int(shown["balance_wei"]) > 0
        assert abs(int(shown["balance_wei"]) - balance) < 10**17  # gas spent meanwhile
        assert shown["can_pay_gas"] is True
        completed_before = first["last_minute"]["completed"]

        # Payments flow: the next events show them accepted, then completed, with latencies.
        for index in (1, 2, 3):
            assert (await h.buy(h.payer(index), 1)).status_code == 202
        seen = await until(
            answer, lambda s: s["last_minute"]["completed"] >= completed_before + 3, 60
        )
        assert seen["last_minute"]["accepted"] >= 3
        assert seen["latency_s"]["sample"] >= 3
        p = seen["latency_s"]["sent_to_completed"]
        assert p["p50"] is not None and 0 <= p["p50"] <= p["p95"] <= p["p99"] < 60
        assert seen["relayers"][0]["stored_next_nonce"] >= 1


async def test_the_stream_reports_failures_with_their_reasons(harness: Harness) -> None:
    h = harness
    operator = await key_of(h, Role.OPERATOR)
    answer = await h.buy(h.payer(4), 1)
    payment_id = answer.json()["paymentQueueId"]
    await h.settled()
    await h.worker.stop()
    await execute_raw(
        h.store,
        "UPDATE payment_queue SET status = 'confirmation_failed', error = 'made up for the test'"
        " WHERE id = $1",
        UUID(payment_id),
    )
    try:
        async with serving(payfirst_app(h)) as url, stream(url, operator) as events_:
            seen = await until(events_, lambda s: bool(s["failures"]))
        [failure] = seen["failures"]
        assert failure["payment_id"] == payment_id
        assert failure["status"] == "confirmation_failed"
        assert failure["error"] == "made up for the test"
        assert seen["last_minute"]["failed"] == 1
    finally:
        # Completed again, as it was (the invariants check it against the chain).
        await execute_raw(
            h.store,
            "UPDATE payment_queue SET status = 'completed', error = NULL WHERE id = $1",
            UUID(payment_id),
        )
        await h.worker.start()


async def test_streams_are_limited_per_process(harness: Harness) -> None:
    h = harness
    operator = await key_of(h, Role.OPERATOR)
    async with serving(payfirst_app(h)) as url, contextlib.AsyncExitStack() as open_streams:
        held = []  # each one's events referenced: a dropped event reader closes its stream
        for _ in range(MAX_STREAMS):
            held.append(await open_streams.enter_async_context(stream(url, operator)))
            assert held[-1].status_code == 200
            await until(held[-1], lambda _: True)  # counted from its first event
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            refused = await http.get(STREAM, headers=operator)
            assert refused.status_code == 503
            assert refused.json()["error"] == "too_many_waiters"
            assert refused.headers["retry-after"] == "2"
        await open_streams.aclose()
        # Closed streams give their places back (the server sees each close at its next
        # event, within a second).
        deadline = time.monotonic() + 10
        while True:
            async with stream(url, operator) as again:
                if again.status_code == 200:
                    break
                assert again.status_code == 503
            assert time.monotonic() < deadline, "closed streams kept their places"
            await asyncio.sleep(0.2)


async def test_a_revoked_key_ends_its_stream(harness: Harness) -> None:
    h = harness
    account, issued = await Accounts(h.store).create_account(Role.OPERATOR, "leaving")
    headers = {"Authorization": f"Bearer {issued.text}"}
    async with serving(payfirst_app(h)) as url, stream(url, headers) as opened:
        await until(opened, lambda _: True)
        await Accounts(h.store).revoke_key(issued.key.id)

        async def ending() -> list[tuple[str, dict[str, Any]]]:
            return [event async for event in opened.events]

        seen = await asyncio.wait_for(ending(), 15)
    assert seen[-1] == (
        "error",
        {
            "error": "unauthorized",
            "message": "a valid API key is required: Authorization: Bearer <key>",
        },
    )
    assert {name for name, _ in seen[:-1]} <= {"status"}
    assert account.role is Role.OPERATOR


# -- decide by the chain ------------------------------------------------------------------


async def _sent_long_ago(h: Harness, payment_id: UUID) -> None:
    """What a worker killed after broadcasting leaves: `sent`, 10 minutes ago, no mint items
    (the confirmer never decided it)."""
    await execute_raw(h.store, "DELETE FROM mint_queue WHERE payment_id = $1", payment_id)
    await execute_raw(
        h.store,
        "UPDATE payment_queue SET status = 'sent', result = NULL,"
        " processed_at = now() - interval '10 minutes' WHERE id = $1",
        payment_id,
    )


async def test_decide_by_the_chain_completes_a_stuck_payment_whose_tx_was_mined(
    harness: Harness,
) -> None:
    h = harness
    operator = await key_of(h, Role.OPERATOR)
    payment_id = UUID((await h.buy(h.payer(2), 1)).json()["paymentQueueId"])
    await h.settled()
    await h.worker.stop()
    await _sent_long_ago(h, payment_id)
    http, svc = deciding_app(h)
    async with http:
        # The page lists it as stuck, with what the button needs.
        status = await svc.status.snapshot()
        assert [s.payment_id for s in status.queue.stuck] == [payment_id]
        assert status.queue.stuck_count == 1

        answer = await http.post(f"/v1/status/stuck/{payment_id}/decide", headers=operator)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "payment_id": str(payment_id),
            "status": "completed",
            "decided": True,
            "error": None,
            "tx_hash": answer.json()["tx_hash"],
        }
        payment = await h.store.get_payment(payment_id)
        assert payment is not None and payment.status is PaymentStatus.COMPLETED
        assert len(await h.store.get_mint_items(payment_id)) == 1  # as the confirmer does
        assert not (await svc.status.snapshot()).queue.stuck

        again = await http.post(f"/v1/status/stuck/{payment_id}/decide", headers=operator)
        assert again.status_code == 409
        assert again.json()["error"] == "payment_not_sent"
    # Without a relayer key in the process (the harness's app has no decider): 503.
    await _sent_long_ago(h, payment_id)
    refused = await h.http.post(f"/v1/status/stuck/{payment_id}/decide", headers=operator)
    assert refused.status_code == 503 and refused.json()["error"] == "service_unavailable"
    await h.worker.start()
    await h.settled()


async def test_decide_by_the_chain_waits_for_a_tx_not_mined_yet(harness: Harness) -> None:
    """Mining off: the payment's tx is in the pool, not in a block. Deciding leaves it `sent`
    (decided false: the tx is re-sent, never failed for being slow); once blocks are mined,
    deciding completes it."""
    h = harness
    operator = await key_of(h, Role.OPERATOR)
    await h.rpc.call("evm_setAutomine", False)
    await h.rpc.call("evm_setIntervalMining", 0)
    payment_id = UUID((await h.buy(h.payer(3), 1)).json()["paymentQueueId"])
    deadline = time.monotonic() + 20
    while (p := await h.store.get_payment(payment_id)) is None or p.status is not (
        PaymentStatus.SENT
    ):
        assert time.monotonic() < deadline, "the payment's tx was never broadcast"
        await asyncio.sleep(0.05)
    await h.worker.stop()
    await execute_raw(
        h.store,
        "UPDATE payment_queue SET processed_at = now() - interval '10 minutes' WHERE id = $1",
        payment_id,
    )
    assert p.tx_hash is not None
    assert await h.rpc.call("eth_getTransactionReceipt", p.tx_hash) is None
    http, _ = deciding_app(h)
    async with http:
        answer = await http.post(f"/v1/status/stuck/{payment_id}/decide", headers=operator)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "sent" and answer.json()["decided"] is False
        for _ in range(3):  # mined, and deep enough for the confirmation depth
            await h.rpc.call("evm_mine")
        answer = await http.post(f"/v1/status/stuck/{payment_id}/decide", headers=operator)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "completed" and answer.json()["decided"] is True
    await h.rpc.call("evm_setIntervalMining", 1)
    await h.worker.start()
    await h.settled()
