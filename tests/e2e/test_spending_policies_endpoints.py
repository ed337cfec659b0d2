"""Spending policies on payments for providers' paid endpoints (/verify and /settle with the
provider's key): the allowed providers and endpoints are the registry's."""

from __future__ import annotations

from payfirst.domain.accounts import Role
from tests.e2e.harness import request_v2
from tests.e2e.test_admin_auth import caller
from tests.e2e.test_endpoint_settlement import quoted, settle
from tests.e2e.test_endpoints_api import (  # noqa: F401 - the fixture
    Platform,
    platform_fixture,
)
from tests.e2e.test_spending_policies_api import PAYER_INDEX, prove, put_policy
from tests.fixtures.store import fetch_raw


async def test_allowed_providers_and_endpoints_hold_for_paid_endpoints(platform: Platform) -> None:
    p = platform
    agent = await caller(p.h, Role.AGENT, "agent")
    payer = await prove(p.h, agent)
    buyer = p.h.payer(PAYER_INDEX)
    shop = await p.key(Role.PROVIDER, "shop")
    other = await p.key(Role.PROVIDER, "other")
    allowed = await p.register(shop, resource="/allowed", amount="10000")
    refused = await p.register(shop, resource="/refused", amount="10000")
    elsewhere = await p.register(other, resource="/elsewhere", amount="10000")
    await put_policy(p.h, agent, payer, allowed_endpoints=[allowed["id"]])
    for view, key in ((refused, shop), (elsewhere, other)):
        body = request_v2(buyer, await quoted(p, view["id"]))
        verdict = (await p.call("POST", "/verify", key, json=body)).json()
        assert verdict["isValid"] is False and verdict["invalidReason"] == "policy_not_allowed"
        answer = await settle(p, key, buyer, await quoted(p, view["id"]))
        assert answer["success"] is False and answer["errorReason"] == "policy_not_allowed"
    assert (await settle(p, shop, buyer, await quoted(p, allowed["id"])))["success"] is True

    await put_policy(p.h, agent, payer, allowed_providers=[str(other.account_id)])
    answer = await settle(p, shop, buyer, await quoted(p, allowed["id"]))
    assert answer["errorReason"] == "policy_not_allowed"
    assert (await settle(p, other, buyer, await quoted(p, elsewhere["id"])))["success"] is True
    rows = await fetch_raw(p.h.store, "SELECT endpoint_id, status FROM payment_queue")
    assert sorted((str(r["endpoint_id"]), r["status"]) for r in rows) == sorted(
        [(allowed["id"], "completed"), (elsewhere["id"], "completed")]
    )
