"""A buyer pays, gets 202 at once, and receives tokens only after the payment is confirmed
on chain: real PostgreSQL, real anvil, the API and the worker in one process."""

from __future__ import annotations

import asyncio
from uuid import UUID

from eth_account import Account
from x402 import x402ClientSync
from x402.http import x402HTTPClientSync
from x402.mechanisms.evm.exact import ExactEvmScheme

from payfirst.adapters.devchain import ANVIL_KEYS, send_transaction
from payfirst.domain.statuses import PaymentStatus
from payfirst.evm import abi
from payfirst.pipeline.mint_ids import mint_ids
from tests.e2e.harness import Harness
from tests.fixtures.store import fetch_raw


def official_client(key: str) -> x402HTTPClientSync:
    client = x402ClientSync()
    client.register("eip155:31337", ExactEvmScheme(Account.from_key(key)))
    client.set_spend_controls(False)
    return x402HTTPClientSync(client)


async def test_official_v2_client_buys_mints(harness: Harness) -> None:
    d = harness.deployment
    buyer = harness.payer(1)
    usdc_before = await harness.usdc_balance(buyer.address)
    token_usdc_before = await harness.usdc_balance(d.token)
    http = official_client(ANVIL_KEYS[1])

    required = await harness.http.post(f"/api/mint/{d.token}", json={"quantity": 3})
    assert required.status_code == 402
    payment_required = http.get_payment_required_response(lambda name: required.headers.get(name))
    headers = http.encode_payment_signature_header(http.create_payment_payload(payment_required))
    answer = await harness.http.post(f"/api/mint/{d.token}", json={"quantity": 3}, headers=headers)

    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["quantity"] == 3
    assert body["status"] == "payment_pending"
    payment_id = body["paymentQueueId"]
    assert body["note"] == f"Poll /api/payment/{payment_id}"

    await harness.settled()
    view = (await harness.http.get(f"/api/payment/{payment_id}")).json()
    assert view["status"] == "completed"
    assert view["payer"] == buyer.address
    assert view["amount"] == str(3 * d.price_per_mint)
    assert view["tx_hash"] is not None
    assert len(view["result"]["queueIds"]) == 3
    assert [m["status"] for m in view["mints"]] == ["completed"] * 3
    assert await harness.token_balance(buyer.address) == 3 * d.mint_amount
    assert await harness.usdc_balance(buyer.address) == usdc_before - 3 * d.price_per_mint
    assert await harness.usdc_balance(d.token) == token_usdc_before + 3 * d.price_per_mint
    receipt = await harness.rpc.get_transaction_receipt(view["tx_hash"])
    assert receipt is not None and int(receipt["status"], 16) == 1


async def test_v1_x_payment_buys_mints(harness: Harness) -> None:
    buyer = harness.payer(2)
    answer = await harness.buy(buyer, 2, version=1)
    assert answer.status_code == 202, answer.text
    await harness.settled()
    payment = await harness.store.get_payment(UUID(answer.json()["paymentQueueId"]))
    assert payment is not None and payment.status == PaymentStatus.COMPLETED
    assert await harness.token_balance(buyer.address) == 2 * harness.deployment.mint_amount
    minted = await fetch_raw(
        harness.store, "SELECT mint_id FROM mint_queue WHERE payment_id = $1", payment.id
    )
    assert {r["mint_id"] for r in minted} == set(mint_ids(buyer.address, payment.id, 2))


async def test_old_clients_batch_mint_form(harness: Harness) -> None:
    d = harness.deployment
    buyer = harness.payer(3)
    header = await harness.payment_header(buyer, 1)
    answer = await harness.http.post(
        "/api/x402-batch-mint", json={"tokenAddress": d.token, "quantity": 1}, headers=[header]
    )
    assert answer.status_code == 202, answer.text
    await harness.settled()
    assert await harness.token_balance(buyer.address) == d.mint_amount


async def test_many_buyers_at_once_all_settle(harness: Harness) -> None:
    buyers = [harness.payer(i) for i in range(1, 10)]
    answers = await asyncio.gather(*(harness.buy(b, 2) for b in buyers for _ in range(3)))
    assert [a.status_code for a in answers] == [202] * 27
    await harness.settled(max_wait=60)
    stats = await harness.store.payment_stats()
    assert stats["payments"]["completed"] == 27
    assert stats["mints"]["completed"] == 54
    for b in buyers:
        assert await harness.token_balance(b.address) == 6 * harness.deployment.mint_amount


async def test_resent_header_gets_the_same_payment(harness: Harness) -> None:
    d = harness.deployment
    header = await harness.payment_header(harness.payer(4), 2)
    first = await harness.http.post(f"/api/mint/{d.token}", json={"quantity": 2}, headers=[header])
    again = await harness.http.post(f"/api/mint/{d.token}", json={"quantity": 2}, headers=[header])
    assert first.status_code == again.status_code == 202
    assert first.json()["paymentQueueId"] == again.json()["paymentQueueId"]
    await harness.settled()
    late = await harness.http.post(f"/api/mint/{d.token}", json={"quantity": 2}, headers=[header])
    assert late.json()["paymentQueueId"] == first.json()["paymentQueueId"]
    rows = await fetch_raw(harness.store, "SELECT count(*) AS n FROM payment_queue")
    assert rows[0]["n"] == 1
    assert await harness.token_balance(harness.payer(4).address) == 2 * d.mint_amount


async def test_payer_who_spends_the_usdc_first_gets_nothing(harness: Harness) -> None:
    """The authorization verifies, but before settlement the payer moves the USDC away: the
    sender sees the empty balance before signing, the payment fails insufficient_funds
    without a tx, nothing is minted, and the reserved supply is released."""
    d = harness.deployment
    await harness.worker.stop()  # hold settlement back
    poor = harness.payer(5)
    answer = await harness.buy(poor, 4)
    assert answer.status_code == 202
    assert (await harness.store.get_token(d.token)).reserved_count == 4  # type: ignore[union-attr]
    balance = await harness.usdc_balance(poor.address)
    tx = await send_transaction(
        harness.rpc,
        ANVIL_KEYS[5],
        d.usdc,
        abi.encode_call("transfer(address,uint256)", [harness.payer(6).address, balance]),
        gas=100_000,
    )
    await harness.rpc.wait_for_receipt(tx)
    await harness.worker.start()
    await harness.settled()

    payment = await harness.store.get_payment(UUID(answer.json()["paymentQueueId"]))
    assert payment is not None
    assert payment.status == PaymentStatus.FAILED
    assert (payment.error or "").startswith("insufficient_funds")
    assert payment.tx_hash is None
    assert await harness.store.get_mint_items(payment.id) == []
    assert await harness.token_balance(poor.address) == 0
    assert (await harness.store.get_token(d.token)).reserved_count == 0  # type: ignore[union-attr]
    view = (await harness.http.get(f"/api/payment/{payment.id}")).json()
    assert view["status"] == "failed"


async def test_long_poll_returns_on_change(harness: Harness) -> None:
    await harness.worker.stop()
    answer = await harness.buy(harness.payer(7), 1)
    payment_id = answer.json()["paymentQueueId"]
    waiting = asyncio.create_task(harness.http.get(f"/api/payment/{payment_id}?wait=20"))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    await harness.worker.start()
    view = (await asyncio.wait_for(waiting, 15)).json()
    assert view["status"] != "pending"
    await harness.settled()


async def test_stats_count_payments_and_mints(harness: Harness) -> None:
    await harness.buy(harness.payer(8), 2)
    await harness.settled()
    stats = (await harness.http.get("/api/payment-stats")).json()
    assert stats["payments"]["completed"] == 1
    assert stats["payments"]["pending"] == 0
    assert stats["mints"]["completed"] == 2
    assert stats["completed_last_minute"] == 1
