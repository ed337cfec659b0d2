"""Settling a payment for a provider's paid endpoint through /settle with the provider's key:
payfirst settles only the registry's price, to the platform's treasury, records the endpoint,
the provider and its fee on the payment, and the ledger credits the provider price - fee and
the platform the fee. A price, an endpoint or a unit count the registry did not set is
refused before anything is queued."""

from __future__ import annotations

from typing import Any

import httpx

from payfirst.adapters.evm_chain import EvmChain
from payfirst.api.services import Services
from payfirst.app import build_app
from payfirst.client.signing import Payer
from payfirst.domain.accounts import Role
from payfirst.x402 import PaymentRequirementsV2
from tests.e2e.harness import request_v2
from tests.e2e.test_endpoints_api import (  # noqa: F401 - the fixture
    OWN_PAY_TO,
    PLATFORM_FEE_BPS,
    TREASURY,
    Key,
    Platform,
    platform_fixture,
    required_v2,
)
from tests.fixtures.store import fetch_raw


async def quoted(p: Platform, endpoint_id: str, units: int = 1) -> PaymentRequirementsV2:
    answer = await p.call(
        "GET", f"/v1/endpoints/{endpoint_id}/requirements", params={"units": str(units)}
    )
    (accepted,) = required_v2(answer).accepts
    return accepted


async def settle(
    p: Platform, key: Key | None, payer: Payer, requirements: PaymentRequirementsV2
) -> dict[str, Any]:
    answer = await p.call("POST", "/settle", key, json=request_v2(payer, requirements))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def queued(p: Platform) -> list[dict[str, Any]]:
    return await fetch_raw(
        p.h.store,
        "SELECT id, status, amount, token_address AS pay_to, endpoint_id, provider_id, fee_bps"
        " FROM payment_queue",
    )


async def entries(p: Platform, payment_id: Any) -> dict[tuple[str, str], int]:
    rows = await fetch_raw(
        p.h.store,
        "SELECT a.kind, a.owner, e.amount FROM ledger_entries e"
        " JOIN ledger_transactions t ON t.id = e.transaction_id"
        " JOIN ledger_accounts a ON a.id = e.account_id"
        " WHERE t.payment_id = $1",
        payment_id,
    )
    return {(r["kind"], r["owner"]): int(r["amount"]) for r in rows}


async def test_a_payment_for_an_endpoint_credits_the_provider_price_minus_fee(
    platform: Platform,
) -> None:
    p = platform
    shop = await p.key(Role.PROVIDER, "shop", fee_bps=250)
    view = await p.register(
        shop, resource="/translate", pricing="per_unit", unit_param="words", amount="10001"
    )
    payer = p.h.payer(3)
    treasury_before = await p.h.usdc_balance(TREASURY)
    requirements = await quoted(p, view["id"], units=3)
    assert requirements.amount == "30003" and requirements.pay_to == TREASURY
    settled = await settle(p, shop, payer, requirements)
    assert settled["success"] is True, settled
    assert settled["amount"] == "30003"
    (row,) = await queued(p)
    assert row["status"] == "completed"
    assert str(row["endpoint_id"]) == view["id"]
    assert row["provider_id"] == shop.account_id
    assert row["fee_bps"] == 250
    fee = 30003 * 250 // 10_000  # 750, rounded down
    assert await entries(p, row["id"]) == {
        ("external", payer.address): -30003,
        ("provider", str(shop.account_id)): 30003 - fee,
        ("fees", "platform"): fee,
    }
    assert await p.h.usdc_balance(TREASURY) - treasury_before == 30003


async def test_a_provider_without_a_fee_pays_the_platforms(platform: Platform) -> None:
    p = platform
    shop = await p.key(Role.PROVIDER, "no fee of its own")
    view = await p.register(shop, resource="/a", amount="50000")
    settled = await settle(p, shop, p.h.payer(4), await quoted(p, view["id"]))
    assert settled["success"] is True, settled
    (row,) = await queued(p)
    assert (row["provider_id"], row["fee_bps"]) == (shop.account_id, PLATFORM_FEE_BPS)
    fee = 50000 * PLATFORM_FEE_BPS // 10_000
    assert (await entries(p, row["id"]))[("fees", "platform")] == fee


async def test_an_endpoint_paid_to_the_provider_records_only_the_endpoint(
    platform: Platform,
) -> None:
    p = platform
    operator = await p.key(Role.OPERATOR)
    shop = await p.key(Role.PROVIDER)
    view = await p.register(
        operator, resource="/a", amount="5000", pay_to=OWN_PAY_TO, provider_id=str(shop.account_id)
    )
    # The operator may settle any provider's endpoint; OWN_PAY_TO is not in SETTLE_PAY_TO.
    settled = await settle(p, operator, p.h.payer(5), await quoted(p, view["id"]))
    assert settled["success"] is True, settled
    (row,) = await queued(p)
    assert str(row["endpoint_id"]) == view["id"]
    assert (row["provider_id"], row["fee_bps"], row["pay_to"]) == (None, None, OWN_PAY_TO)
    assert await entries(p, row["id"]) == {
        ("external", p.h.payer(5).address): -5000,
        ("external", OWN_PAY_TO): 5000,
    }


async def test_what_the_registry_did_not_price_is_refused_and_never_queued(
    platform: Platform,
) -> None:
    p = platform
    shop = await p.key(Role.PROVIDER, "shop")
    other = await p.key(Role.PROVIDER, "other")
    fixed = await p.register(shop, resource="/fixed", amount="10000")
    per_unit = await p.register(
        shop, resource="/per-unit", pricing="per_unit", unit_param="n", amount="2000", max_units=5
    )
    theirs = await p.register(other, resource="/theirs", amount="10000")
    payer = p.h.payer(6)
    good = await quoted(p, fixed["id"])
    two = await quoted(p, per_unit["id"], units=2)

    def with_extra(r: PaymentRequirementsV2, **payfirst: Any) -> PaymentRequirementsV2:
        extra = {**r.extra, "payfirst": {**r.extra["payfirst"], **payfirst}}
        return r.model_copy(update={"extra": extra})

    refused: list[tuple[Key, PaymentRequirementsV2]] = [
        (shop, good.model_copy(update={"amount": "10001"})),  # not the price
        (shop, good.model_copy(update={"amount": "9999"})),
        (shop, with_extra(two, units=3)),  # the price of 2 units, claimed as 3
        (shop, with_extra(two, units=6)),  # more than max_units
        (shop, with_extra(good, units=2)),  # a fixed price sells one unit
        (shop, with_extra(good, endpoint=theirs["id"])),  # another provider's
        (shop, await quoted(p, theirs["id"])),
        (shop, good.model_copy(update={"pay_to": OWN_PAY_TO})),
        (shop, with_extra(good, endpoint="nope")),
        (other, good),  # shop's endpoint, other's key
    ]
    for key, requirements in refused:
        for route in ("/verify", "/settle"):
            answer = await p.call("POST", route, key, json=request_v2(payer, requirements))
            assert answer.status_code == 200, answer.text
            body = answer.json()
            reason = body.get("invalidReason") or body.get("errorReason")
            assert reason == "invalid_payment_requirements", (route, requirements, body)
    # Without a key, the treasury is no pay-to the operator allowed: today's rules.
    for route in ("/verify", "/settle"):
        answer = await p.call("POST", route, None, json=request_v2(payer, good))
        body = answer.json()
        assert (body.get("invalidReason") or body.get("errorReason")) == (
            "invalid_payment_requirements"
        )
    # Never below the minimum amount, even at the registry's price.
    dust = await p.register(shop, resource="/dust", amount="999")
    answer = await p.call(
        "POST", "/settle", shop, json=request_v2(payer, await quoted(p, dust["id"]))
    )
    assert answer.json()["errorReason"] == "invalid_payment_requirements"
    assert "minimum" in answer.json()["errorMessage"]
    # A disabled endpoint is no longer sold.
    await p.call("DELETE", f"/v1/endpoints/{fixed['id']}", shop)
    answer = await p.call("POST", "/settle", shop, json=request_v2(payer, good))
    assert answer.json()["errorReason"] == "invalid_payment_requirements"
    assert await queued(p) == []


async def test_verify_with_a_key_accepts_the_registry_price(platform: Platform) -> None:
    p = platform
    shop = await p.key(Role.PROVIDER)
    view = await p.register(shop, resource="/a", amount="10000")
    payer = p.h.payer(7)
    answer = await p.call(
        "POST", "/verify", shop, json=request_v2(payer, await quoted(p, view["id"]))
    )
    assert answer.json() == {"isValid": True, "payer": payer.address}
    assert await queued(p) == []


async def test_a_bad_key_is_401_and_an_agents_403_on_verify_and_settle(platform: Platform) -> None:
    p = platform
    shop = await p.key(Role.PROVIDER)
    agent = await p.key(Role.AGENT)
    view = await p.register(shop, resource="/a", amount="10000")
    body = request_v2(p.h.payer(8), await quoted(p, view["id"]))
    for route in ("/verify", "/settle"):
        for bad in ("Bearer nope", "Basic x", "", f"Bearer {shop.text}x"):
            answer = await p.http.post(route, json=body, headers={"Authorization": bad})
            assert answer.status_code == 401, (route, bad)
            assert answer.json()["error"] == "unauthorized"
            assert answer.headers["www-authenticate"].startswith("Bearer")
        answer = await p.call("POST", route, agent, json=body)
        assert answer.status_code == 403 and answer.json()["error"] == "forbidden"
    assert await queued(p) == []


async def test_a_retried_settlement_answers_its_payment_whatever_the_price_now(
    platform: Platform,
) -> None:
    """A settlement still pending is retried (as x402 clients do) after the provider
    changed its price, then after it disabled the endpoint: the retry answers the payment
    queued at the price of its time, never invalid_payment_requirements."""
    p = platform
    shop = await p.key(Role.PROVIDER, "shop")
    other = await p.key(Role.PROVIDER, "other")
    operator = await p.key(Role.OPERATOR)
    view = await p.register(shop, resource="/a", amount="10000")
    payer = p.h.payer(9)
    body = request_v2(payer, await quoted(p, view["id"]))
    await p.h.worker.stop()
    impatient = Services(
        store=p.h.store,
        chain=EvmChain(p.h.rpc),
        chain_id=p.h.deployment.chain_id,
        settle_timeout_s=0.2,
        treasury_address=TREASURY,
        platform_fee_bps=PLATFORM_FEE_BPS,
    )
    transport = httpx.ASGITransport(app=build_app(impatient))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        q = Platform(p.h, http)
        first = (await q.call("POST", "/settle", shop, json=body)).json()
        assert first["errorReason"] == "settlement_pending", first
        changed = await q.call("PATCH", f"/v1/endpoints/{view['id']}", shop, json={"amount": "7"})
        assert changed.status_code == 200
        for key in (shop, operator):
            retried = (await q.call("POST", "/settle", key, json=body)).json()
            assert retried["errorReason"] == "settlement_pending", retried
        # Not the endpoint's provider, or no key: the registry's word, as before.
        for key in (other, None):
            refused = (await q.call("POST", "/settle", key, json=body)).json()
            assert refused["errorReason"] == "invalid_payment_requirements", refused
        await q.call("DELETE", f"/v1/endpoints/{view['id']}", shop)
        retried = (await q.call("POST", "/settle", shop, json=body)).json()
        assert retried["errorReason"] == "settlement_pending", retried
        await p.h.worker.start()
        p.h.worker.payment_queued.set()
        await p.h.settled()
        final = (await q.call("POST", "/settle", shop, json=body)).json()
    assert final["success"] is True, final
    assert final["amount"] == "10000"
    (row,) = await queued(p)
    assert (row["status"], row["amount"], str(row["endpoint_id"])) == (
        "completed",
        10000,
        view["id"],
    )
    assert (row["provider_id"], row["fee_bps"]) == (shop.account_id, PLATFORM_FEE_BPS)
