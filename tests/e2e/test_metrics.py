"""`GET /metrics`: Prometheus text that moves with the pipeline — payments accepted and
refused by reason, the queue per status, txs sent and confirmed, settlement and mint
latency, JSON-RPC requests. The metrics of one process are kept across tests, so each test
compares before and after."""

from __future__ import annotations

import logging
from collections import defaultdict

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import Harness

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


async def scrape(h: Harness) -> Samples:
    answer = await h.http.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    samples: Samples = defaultdict(dict)
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(
        value
        for key, value in samples.get(name, {}).items()
        if all((k, v) in key for k, v in labels.items())
    )


async def test_metrics_follow_payments_through_the_pipeline(harness: Harness) -> None:
    h = harness
    before = await scrape(h)
    bought = await h.buy(h.payer(1), 2)
    assert bought.status_code == 202, bought.text
    refused = await h.http.post(
        f"/api/mint/{h.deployment.token}", headers={"X-PAYMENT": "not base64 !"}
    )
    assert refused.status_code == 400
    await h.settled()
    after = await scrape(h)

    def grew(name: str, by: float = 1, **labels: str) -> bool:
        return total(after, name, **labels) - total(before, name, **labels) >= by

    assert grew("payfirst_payments_accepted_total", route="mint")
    assert grew("payfirst_payments_rejected_total", reason="invalid_payload")
    assert grew("payfirst_txs_total", event="sent")
    assert grew("payfirst_txs_total", event="confirmed")
    assert grew("payfirst_settlement_seconds_count", stage="accepted_to_confirmed")
    assert grew("payfirst_settlement_seconds_count", by=2, stage="confirmed_to_minted")
    assert grew("payfirst_rpc_requests_total", outcome="ok")
    assert grew("payfirst_rpc_seconds_count")
    assert total(after, "payfirst_payments", status="completed") >= 1
    assert total(after, "payfirst_payments", status="pending") == 0
    assert total(after, "payfirst_scrape_database_up") == 1


async def test_readiness_fails_when_a_relayer_cannot_pay_for_gas(harness: Harness) -> None:
    h = harness
    relayer = h.worker.broadcaster.relayer.address
    assert (await h.http.get("/health/live")).json() == {"status": "ok"}
    ready = await h.http.get("/health/ready")
    assert ready.status_code == 200, ready.text
    [state] = ready.json()["relayers"]
    assert (state["address"], state["canPayGas"]) == (relayer, True)
    assert total(await scrape(h), "payfirst_relayer_can_pay_gas", relayer=relayer) == 1

    await h.rpc.call("anvil_setBalance", relayer, hex(10**12))  # far below one batch's gas
    drained = await h.http.get("/health/ready")
    assert drained.status_code == 503
    assert drained.json()["problems"] == [f"eip155:31337: relayer {relayer} cannot pay for gas"]
    samples = await scrape(h)
    assert total(samples, "payfirst_relayer_can_pay_gas", relayer=relayer) == 0
    assert total(samples, "payfirst_relayer_balance_wei", relayer=relayer) == 10**12
    assert (await h.http.get("/health/live")).status_code == 200


async def test_every_request_is_logged_without_its_query(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="payfirst.access"):
        await harness.http.get("/api/tokens?key=secret")
    [record] = [r for r in caplog.records if r.name == "payfirst.access"]
    assert (record.method, record.path, record.status) == ("GET", "/api/tokens", 200)  # type: ignore[attr-defined]
    assert "secret" not in record.getMessage()
