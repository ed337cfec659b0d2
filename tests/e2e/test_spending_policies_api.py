"""Agents' payers and spending policies over HTTP, enforced on the mint and facilitator paths
(real PostgreSQL and anvil): proof of control, the /v1 routes, refusals the client can act
on, exact daily limits under concurrent requests, held payments approved or rejected."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any
from uuid import uuid4

import httpx
from eth_account import Account as EthAccount
from eth_account.messages import encode_defunct

from payfirst.adapters.devchain import ANVIL_KEYS
from payfirst.domain.accounts import Role
from payfirst.domain.statuses import PaymentStatus
from tests.e2e.harness import SELLER, SETTLE_PRICE, Harness, request_v2, requirements_v2
from tests.e2e.test_admin_auth import Caller, call, caller
from tests.fixtures.store import (
    execute_raw,
    fetch_raw,
    make_payment,
    random_address,
    stored_payment,
)

PAYER_INDEX = 3


async def prove(h: Harness, agent: Caller, index: int = PAYER_INDEX) -> str:
    """Attach anvil key `index` to `agent` through the challenge; its address."""
    key = EthAccount.from_key(ANVIL_KEYS[index])
    challenge = await call(h, "POST", "/v1/payers/challenge", agent, json={"address": key.address})
    assert challenge.status_code == 201, challenge.text
    message = challenge.json()["message"]
    signature = "0x" + bytes(key.sign_message(encode_defunct(text=message)).signature).hex()
    body = {"address": key.address, "signature": signature}
    attached = await call(h, "POST", "/v1/payers", agent, json=body)
    assert attached.status_code == 201, attached.text
    assert attached.json()["account_id"] == str(agent.account.id)
    # The same proof again: a challenge is used once.
    again = await call(h, "POST", "/v1/payers", agent, json=body)
    assert again.status_code == 400 and again.json()["error"] == "invalid_payer_proof"
    return str(key.address)


async def put_policy(h: Harness, agent: Caller, payer: str, **policy: Any) -> httpx.Response:
    answer = await call(h, "PUT", f"/v1/payers/{payer}/policy", agent, json=policy)
    assert answer.status_code == 200, answer.text
    return answer


async def test_payers_and_policies_are_the_agents_own(harness: Harness) -> None:
    h = harness
    agent = await caller(h, Role.AGENT, "agent")
    other = await caller(h, Role.AGENT, "other agent")
    provider = await caller(h, Role.PROVIDER, "provider")
    payer = await prove(h, agent)
    listed = (await call(h, "GET", "/v1/payers", agent)).json()
    assert [p["address"] for p in listed["payers"]] == [payer] and not listed["has_more"]
    assert (await call(h, "GET", "/v1/payers", other)).json()["payers"] == []
    # Another agent cannot attach it, even proving the key: 409.
    key = EthAccount.from_key(ANVIL_KEYS[PAYER_INDEX])
    theirs = await call(h, "POST", "/v1/payers/challenge", other, json={"address": payer})
    signed = key.sign_message(encode_defunct(text=theirs.json()["message"])).signature
    taken = await call(
        h,
        "POST",
        "/v1/payers",
        other,
        json={"address": payer, "signature": "0x" + bytes(signed).hex()},
    )
    assert taken.status_code == 409 and taken.json()["error"] == "payer_taken"

    policy = {
        "max_per_payment": {"*": "5000000"},
        "max_per_day": "20000000",
        "max_per_month": {h.deployment.usdc: "100000000"},
        "approval_threshold": None,
        "allowed_pay_to": [SELLER.lower()],
        "allowed_networks": ["eip155:31337", "base"],
    }
    stored = (await put_policy(h, agent, payer, **policy)).json()
    assert stored["max_per_day"] == {"*": "20000000"}
    assert stored["allowed_pay_to"] == [SELLER]
    assert stored["allowed_networks"] == ["eip155:8453", "eip155:31337"]
    assert (await call(h, "GET", f"/v1/payers/{payer}/policy", agent)).json() == stored
    # Another agent's payer is no payer; a provider may not ask.
    for who, status in ((other, 404), (provider, 403)):
        for method in ("GET", "PUT", "DELETE"):
            answer = await call(
                h, method, f"/v1/payers/{payer}/policy", who, json={} if method == "PUT" else None
            )
            assert answer.status_code == status, (method, answer.text)
    # Every bad field is 400 and changes nothing.
    for bad in (
        {"max_per_day": 5},
        {"max_per_day": "-1"},
        {"max_per_day": {"0xnotanaddress": "1"}},
        {"max_per_day": {}},
        {"allowed_networks": ["nowhere"]},
        {"allowed_providers": ["not-a-uuid"]},
        {"allowed_pay_to": "0x" + "1" * 40},
        {"max_per_week": "1"},
    ):
        answer = await call(h, "PUT", f"/v1/payers/{payer}/policy", agent, json=bad)
        assert answer.status_code == 400, (bad, answer.text)
        assert answer.json()["error"] == "invalid_request"
    assert (await call(h, "GET", f"/v1/payers/{payer}/policy", agent)).json() == stored
    # The operator sees and removes it.
    operator = await caller(h, Role.OPERATOR, "ops")
    assert (await call(h, "GET", f"/v1/payers/{payer}/policy", operator)).json() == stored
    removed = await call(h, "DELETE", f"/v1/payers/{payer}/policy", operator)
    assert removed.status_code == 200 and removed.json() == stored
    assert (await call(h, "GET", f"/v1/payers/{payer}/policy", agent)).status_code == 404
    assert (await call(h, "DELETE", f"/v1/payers/{payer}", other)).status_code == 404
    detached = await call(h, "DELETE", f"/v1/payers/{payer}", agent)
    assert detached.status_code == 200 and detached.json()["address"] == payer
    assert (await call(h, "GET", "/v1/payers", agent)).json()["payers"] == []
    unknown = await call(h, "GET", f"/v1/payers/{random_address()}/policy", agent)
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_payer"


async def test_a_provider_may_use_none_of_these_routes(harness: Harness) -> None:
    h = harness
    provider = await caller(h, Role.PROVIDER, "provider")
    address = random_address()
    for method, path in (
        ("POST", "/v1/payers/challenge"),
        ("POST", "/v1/payers"),
        ("GET", "/v1/payers"),
        ("DELETE", f"/v1/payers/{address}"),
        ("PUT", f"/v1/payers/{address}/policy"),
        ("GET", f"/v1/payers/{address}/policy"),
        ("DELETE", f"/v1/payers/{address}/policy"),
        ("GET", "/v1/approvals"),
        ("POST", f"/v1/approvals/{uuid4()}/approve"),
        ("POST", f"/v1/approvals/{uuid4()}/reject"),
    ):
        answer = await call(h, method, path, provider, json={} if method != "GET" else None)
        assert answer.status_code == 403, (method, path, answer.text)
        assert answer.json()["error"] == "forbidden"


async def test_a_mint_over_the_policy_is_a_402_the_client_can_act_on(harness: Harness) -> None:
    h = harness
    agent = await caller(h, Role.AGENT, "agent")
    payer = await prove(h, agent)
    price = h.deployment.price_per_mint
    await put_policy(h, agent, payer, max_per_payment=str(price))
    answer = await h.buy(h.payer(PAYER_INDEX), quantity=2)
    assert answer.status_code == 402, answer.text
    assert answer.json()["error"] == "policy_max_per_payment"
    await put_policy(h, agent, payer, allowed_pay_to=[SELLER])
    refused = await h.buy(h.payer(PAYER_INDEX))
    assert refused.status_code == 402 and refused.json()["error"] == "policy_not_allowed"
    rows = await fetch_raw(h.store, "SELECT count(*) AS n FROM payment_queue")
    assert rows[0]["n"] == 0
    # Another payer (no policy) buys as before.
    assert (await h.buy(h.payer(PAYER_INDEX + 1))).status_code == 202
    await h.settled()


async def test_concurrent_mints_against_a_daily_limit_accept_exactly_what_fits(
    harness: Harness,
) -> None:
    h = harness
    agent = await caller(h, Role.AGENT, "agent")
    payer = await prove(h, agent)
    price = h.deployment.price_per_mint
    await put_policy(h, agent, payer, max_per_day={h.deployment.usdc: str(3 * price)})
    buyer = h.payer(PAYER_INDEX)
    headers = [await h.payment_header(buyer) for _ in range(30)]
    answers = await asyncio.gather(
        *(
            h.http.post(f"/api/mint/{h.deployment.token}", json={"quantity": 1}, headers=[header])
            for header in headers
        )
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(202) == 3, [a.text for a in answers]
    refused = [a.json()["error"] for a in answers if a.status_code != 202]
    assert refused == ["policy_daily_limit"] * 27
    await h.settled()
    # Completed payments keep counting: the day is still full.
    assert (await h.buy(buyer)).json()["error"] == "policy_daily_limit"


async def test_verify_answers_the_policy_reason_and_settle_holds_above_the_threshold(
    harness: Harness,
) -> None:
    h = harness
    agent = await caller(h, Role.AGENT, "agent")
    payer = await prove(h, agent)
    buyer = h.payer(PAYER_INDEX)
    await put_policy(h, agent, payer, allowed_pay_to=[random_address()])
    verdict = (await h.http.post("/verify", json=request_v2(buyer, requirements_v2(h)))).json()
    assert verdict["isValid"] is False and verdict["invalidReason"] == "policy_not_allowed"
    await put_policy(h, agent, payer, max_per_day=str(SETTLE_PRICE - 1))
    verdict = (await h.http.post("/verify", json=request_v2(buyer, requirements_v2(h)))).json()
    assert verdict["invalidReason"] == "policy_daily_limit"

    await put_policy(h, agent, payer, approval_threshold=str(SETTLE_PRICE - 1))
    body = request_v2(buyer, requirements_v2(h))
    held = (await h.http.post("/settle", json=body)).json()
    assert held["success"] is False and held["errorReason"] == "payment_awaiting_approval"
    waiting = (await call(h, "GET", "/v1/approvals", agent)).json()["payments"]
    assert [(p["payer"], p["amount"], p["status"]) for p in waiting] == [
        (payer, str(SETTLE_PRICE), "awaiting_approval")
    ]
    other = await caller(h, Role.AGENT, "other agent")
    assert (await call(h, "GET", "/v1/approvals", other)).json()["payments"] == []
    payment_id = waiting[0]["id"]
    stranger = await call(h, "POST", f"/v1/approvals/{payment_id}/approve", other)
    assert stranger.status_code == 404
    approved = await call(h, "POST", f"/v1/approvals/{payment_id}/approve", agent)
    assert approved.status_code == 200 and approved.json()["status"] == "pending"
    # Settling the same payload again gives its outcome, now that it was approved.
    settled = (await h.http.post("/settle", json=body)).json()
    assert settled["success"] is True, settled
    await h.settled()


async def test_a_rejected_mint_fails_and_frees_its_place(harness: Harness) -> None:
    h = harness
    agent = await caller(h, Role.AGENT, "agent")
    payer = await prove(h, agent)
    price = h.deployment.price_per_mint
    await put_policy(h, agent, payer, approval_threshold="0", max_per_day=str(price))
    answer = await h.buy(h.payer(PAYER_INDEX))
    assert answer.status_code == 202, answer.text
    payment_id = answer.json()["paymentQueueId"]
    view = (await h.http.get(f"/api/payment/{payment_id}")).json()
    assert view["status"] == PaymentStatus.AWAITING_APPROVAL.value
    full = await h.buy(h.payer(PAYER_INDEX))
    assert full.json()["error"] == "policy_daily_limit"  # held, it still counts
    rejected = await call(h, "POST", f"/v1/approvals/{payment_id}/reject", agent)
    assert rejected.status_code == 200 and rejected.json()["status"] == "failed"
    assert rejected.json()["error"].startswith("payment_rejected")
    again = await h.buy(h.payer(PAYER_INDEX))
    assert again.status_code == 202  # the rejected one no longer counts
    operator = await caller(h, Role.OPERATOR, "ops")
    approved = await call(
        h, "POST", f"/v1/approvals/{again.json()['paymentQueueId']}/approve", operator
    )
    assert approved.status_code == 200
    await h.settled()


async def test_the_sender_fails_a_held_payment_whose_authorization_expires(
    harness: Harness,
) -> None:
    h = harness
    agent = await caller(h, Role.AGENT, "agent")
    payer = await prove(h, agent)
    await put_policy(h, agent, payer, approval_threshold="0")
    token = h.deployment.to_token()
    held = make_payment(token, payer=payer)
    soon = int(time.time()) + 60
    held = replace(held, authorization=replace(held.authorization, valid_before=soon))
    assert (await h.store.queue_payment(held)).held
    # Within the sender's margin of its expiry: the next tick fails it, never sends it.
    await execute_raw(
        h.store, "UPDATE payment_queue SET valid_before = $2 WHERE id = $1", held.id, 1_000
    )
    h.worker.payment_queued.set()
    await h.settled()  # every payment final
    failed = await stored_payment(h.store, held.id)
    assert failed.status is PaymentStatus.FAILED and failed.tx_hash is None
    assert failed.error is not None and "expired" in failed.error
