"""Providers' paid endpoints through the HTTP app: registering, listing, changing and
disabling them (every bad body a 400 with nothing stored; another provider's endpoint a 404
like a missing one, an agent's key 403, no key 401), the 402 payfirst answers for them, and
the x402 Bazaar listing of the discoverable ones."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any
from uuid import uuid4

import httpx
import pytest
import pytest_asyncio
from jsonschema import Draft202012Validator

from payfirst.adapters.evm_chain import EvmChain
from payfirst.api.services import Services
from payfirst.app import build_app
from payfirst.domain.accounts import Role
from payfirst.domain.networks import KNOWN_NETWORKS, Network
from payfirst.usecases.accounts import Accounts
from payfirst.usecases.deps import ServedNetwork
from payfirst.x402 import PaymentRequiredV2, decode_header
from tests.e2e.harness import SETTLE_PAY_TO, Harness
from tests.fixtures.store import execute_raw, fetch_raw

# The platform's treasury on the test chain, and its default fee.
TREASURY = "0x7000000000000000000000000000000000000007"
PLATFORM_FEE_BPS = 100
OWN_PAY_TO = "0x000000000000000000000000000000000000dEaD"


@dataclass
class Platform:
    """The harness's payfirst with a treasury on its chain and a platform fee."""

    h: Harness
    http: httpx.AsyncClient

    async def key(self, role: Role, name: str = "", fee_bps: int | None = None) -> Key:
        account, issued = await Accounts(self.h.store).create_account(
            role, name or role.value, fee_bps=fee_bps
        )
        return Key(account.id, issued.text)

    async def call(
        self, method: str, path: str, key: Key | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key.text}"} if key else {}
        headers.update(kwargs.pop("headers", {}))
        return await self.http.request(method, path, headers=headers, **kwargs)

    async def register(self, key: Key, **body: Any) -> dict[str, Any]:
        answer = await self.call("POST", "/v1/endpoints", key, json={"amount": "10000", **body})
        assert answer.status_code == 201, answer.text
        created: dict[str, Any] = answer.json()
        return created


@dataclass
class Key:
    account_id: Any
    text: str


@pytest_asyncio.fixture(name="platform")
async def platform_fixture(harness: Harness) -> AsyncIterator[Platform]:
    h = harness
    services = Services(
        store=h.store,
        chain=EvmChain(h.rpc),
        on_payment_queued=h.worker.payment_queued.set,
        chain_id=h.deployment.chain_id,
        signers=(h.worker.broadcaster.relayer.address,),
        settle_timeout_s=20,
        settle_pay_to=SETTLE_PAY_TO,
        treasury_address=TREASURY,
        platform_fee_bps=PLATFORM_FEE_BPS,
    )
    transport = httpx.ASGITransport(app=build_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        yield Platform(h, http)


async def stored(p: Platform) -> list[dict[str, Any]]:
    return await fetch_raw(p.h.store, "SELECT * FROM endpoints ORDER BY created_at, id")


async def test_an_endpoint_is_registered_with_the_defaults(platform: Platform) -> None:
    p = platform
    shop = await p.key(Role.PROVIDER, "shop")
    view = await p.register(shop, resource="/weather/{city}")
    assert view == {
        "id": view["id"],
        "provider_id": str(shop.account_id),
        "method": "*",
        "resource": "/weather/{city}",
        "pricing": "fixed",
        "amount": "10000",
        "unit_param": None,
        "max_units": None,
        "network": "eip155:31337",
        "asset": p.h.deployment.usdc,
        "decimals": 6,
        "pay_to": TREASURY,
        "description": "",
        "mime_type": "application/json",
        "input_schema": None,
        "output_schema": None,
        "discoverable": False,
        "max_timeout_seconds": 300,
        "created_at": view["created_at"],
        "updated_at": view["created_at"],
        "disabled_at": None,
    }
    again = await p.call("GET", f"/v1/endpoints/{view['id']}", shop)
    assert again.status_code == 200 and again.json() == view


async def test_every_term_can_be_given(platform: Platform) -> None:
    p = platform
    shop = await p.key(Role.PROVIDER)
    body = {
        "method": "POST",
        "resource": "https://api.example.com/translate",
        "pricing": "per_unit",
        "amount": 2500,
        "unit_param": "words",
        "max_units": 50,
        "network": "eip155:31337",
        "asset": p.h.deployment.usdc.lower(),
        "pay_to": OWN_PAY_TO.lower(),
        "description": "Translation, per word",
        "mime_type": "text/plain; charset=utf-8",
        "input_schema": {"type": "object", "properties": {"words": {"type": "integer"}}},
        "output_schema": {"type": "string"},
        "discoverable": True,
        "max_timeout_seconds": 60,
    }
    view = await p.register(shop, **body)
    assert view["amount"] == "2500"
    assert view["asset"] == p.h.deployment.usdc
    assert view["pay_to"] == OWN_PAY_TO
    for field in ("method", "resource", "pricing", "unit_param", "max_units", "description"):
        assert view[field] == body[field]
    for field in ("mime_type", "input_schema", "output_schema", "discoverable"):
        assert view[field] == body[field]


async def test_the_operator_registers_for_a_provider_it_names(platform: Platform) -> None:
    p = platform
    operator = await p.key(Role.OPERATOR)
    shop = await p.key(Role.PROVIDER)
    agent = await p.key(Role.AGENT)
    missing = await p.call(
        "POST", "/v1/endpoints", operator, json={"amount": "1", "resource": "/a"}
    )
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    for not_a_provider in (uuid4(), agent.account_id, operator.account_id):
        answer = await p.call(
            "POST",
            "/v1/endpoints",
            operator,
            json={"amount": "1", "resource": "/a", "provider_id": str(not_a_provider)},
        )
        assert answer.status_code == 404 and answer.json()["error"] == "unknown_account"
    assert await stored(p) == []
    view = await p.register(operator, resource="/a", provider_id=str(shop.account_id))
    assert view["provider_id"] == str(shop.account_id)
    listed = await p.call("GET", "/v1/endpoints", shop)
    assert [e["id"] for e in listed.json()["endpoints"]] == [view["id"]]


BAD_BODIES: list[Any] = [
    [],
    "x",
    {"resource": "/a"},  # no amount
    {"resource": "/a", "amount": "0"},
    {"resource": "/a", "amount": "-5"},
    {"resource": "/a", "amount": 1.5},
    {"resource": "/a", "amount": "1e6"},
    {"resource": "/a", "amount": "1" * 79},
    {"resource": "/a", "amount": True},
    {"amount": "1"},  # no resource
    {"resource": "a", "amount": "1"},
    {"resource": "/" + "a" * 512, "amount": "1"},
    {"resource": "/a/{x", "amount": "1"},
    {"resource": "ftp://example.com/a", "amount": "1"},
    {"resource": "/a", "amount": "1", "method": "get"},
    {"resource": "/a", "amount": "1", "pricing": "free"},
    {"resource": "/a", "amount": "1", "pricing": "per_unit"},  # no unit_param
    {"resource": "/a", "amount": "1", "unit_param": "n"},  # fixed with a unit_param
    {"resource": "/a", "amount": "1", "max_units": 5},
    {"resource": "/a", "amount": "1", "pricing": "per_unit", "unit_param": "n", "max_units": 0},
    {"resource": "/a", "amount": "1", "pricing": "per_unit", "unit_param": "a b"},
    {"resource": "/a", "amount": str(2**250), "pricing": "per_unit", "unit_param": "n"},
    {"resource": "/a", "amount": "1", "network": "eip155:1"},
    {"resource": "/a", "amount": "1", "network": "base"},
    {"resource": "/a", "amount": "1", "asset": "0x" + "12" * 20},  # not settled here
    {"resource": "/a", "amount": "1", "asset": "usdc"},
    {"resource": "/a", "amount": "1", "pay_to": "0x1234"},
    {"resource": "/a", "amount": "1", "description": "x" * 1001},
    {"resource": "/a", "amount": "1", "mime_type": "json"},
    {"resource": "/a", "amount": "1", "input_schema": [1]},
    {"resource": "/a", "amount": "1", "output_schema": "object"},
    {"resource": "/a", "amount": "1", "discoverable": "yes"},
    {"resource": "/a", "amount": "1", "discoverable": True},  # a path: not discoverable
    {"resource": "/a", "amount": "1", "max_timeout_seconds": 0},
    {"resource": "/a", "amount": "1", "max_timeout_seconds": 9},
    {"resource": "/a", "amount": "1", "pay_to": "0x" + "0" * 40},
    # NUL and other control characters, in every text field: 400, never a 500.
    {"resource": "/a", "amount": "1", "input_schema": {"a\u0000": {"type": "string"}}},
    {"resource": "/a", "amount": "1", "input_schema": {"pattern": "\u0000"}},
    {"resource": "/a", "amount": "1", "output_schema": {"enum": [{"k": ["x\u0000"]}]}},
    {"resource": "/a", "amount": "1", "output_schema": {"description": "x" * 16_400}},
    {
        "resource": "/a",
        "amount": "1",
        "input_schema": {
            "not": {
                "not": {
                    "not": {
                        "not": {
                            "not": {
                                "not": {
                                    "not": {
                                        "not": {
                                            "not": {
                                                "not": {
                                                    "not": {
                                                        "not": {
                                                            "not": {"not": {"not": {"not": {}}}}
                                                        }
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    },  # 17 levels
    {"resource": "/a", "amount": "1", "description": "a\u0000b"},
    {"resource": "/a", "amount": "1", "description": "a\u001bb"},
    {"resource": "/a\u0000", "amount": "1"},
    {"resource": "https://api.example.com/a\u0000", "amount": "1"},
    {"resource": "https://api.example.com/a\u0007", "amount": "1"},
    {"resource": "/a", "amount": "1", "mime_type": "text/plain\u0000"},
    {"resource": "/a", "amount": "1", "mime_type": "text/plain; a=\u0001"},
    {"resource": "/a", "amount": "1", "pricing": "per_unit", "unit_param": "n\u0000"},
    {"resource": "/a", "amount": "1", "network": "eip155:31337\u0000"},
    {"resource": "/a", "amount": "1", "asset": "\u0000"},
    {"resource": "/a", "amount": "1", "method": "GET\u0000"},
    {"resource": "/a", "amount": "1\u0000"},
    {"resource": "/a", "amount": "1", "provider_id": "\u0000"},
    {"resource": "/a", "amount": "1", "max_timeout_seconds": 86_401},
    {"resource": "/a", "amount": "1", "price": "1"},  # unknown field
    {"resource": "/a", "amount": "1", "provider_id": "nope"},
]


async def test_a_bad_body_is_400_with_a_reason_and_stores_nothing(platform: Platform) -> None:
    p = platform
    shop = await p.key(Role.PROVIDER)
    for body in BAD_BODIES:
        answer = await p.call("POST", "/v1/endpoints", shop, json=body)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.json()["error"] == "invalid_request", body
        assert answer.json()["message"], body
    other = await p.key(Role.PROVIDER, "other")
    answer = await p.call(
        "POST",
        "/v1/endpoints",
        shop,
        json={"resource": "/a", "amount": "1", "provider_id": str(other.account_id)},
    )
    assert answer.status_code == 400
    mint_token = await p.call(
        "POST",
        "/v1/endpoints",
        shop,
        json={"resource": "/a", "amount": "1", "pay_to": p.h.deployment.token},
    )
    assert mint_token.status_code == 400 and "mint" in mint_token.json()["message"]
    the_asset = await p.call(
        "POST",
        "/v1/endpoints",
        shop,
        json={"resource": "/a", "amount": "1", "pay_to": p.h.deployment.usdc.lower()},
    )
    assert the_asset.status_code == 400 and "asset" in the_asset.json()["message"]
    malformed = await p.call(
        "POST",
        "/v1/endpoints",
        shop,
        content=b"{nope",
        headers={"content-type": "application/json"},
    )
    assert malformed.status_code == 400
    assert await stored(p) == []


async def test_no_default_pay_to_without_a_treasury(harness: Harness) -> None:
    h = harness
    no_treasury = Services(store=h.store, chain=None, chain_id=h.deployment.chain_id)
    transport = httpx.ASGITransport(app=build_app(no_treasury))
    _, issued = await Accounts(h.store).create_account(Role.PROVIDER, "shop")
    auth = {"Authorization": f"Bearer {issued.text}"}
    body = {"resource": "/a", "amount": "1"}
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        answer = await http.post("/v1/endpoints", json=body, headers=auth)
        assert answer.status_code == 400 and "pay_to" in answer.json()["message"]
        answer = await http.post("/v1/endpoints", json={**body, "pay_to": OWN_PAY_TO}, headers=auth)
        assert answer.status_code == 201 and answer.json()["pay_to"] == OWN_PAY_TO


async def test_a_change_applies_some_terms_and_checks_the_whole(platform: Platform) -> None:
    p = platform
    shop = await p.key(Role.PROVIDER)
    view = await p.register(shop, resource="/a", pricing="per_unit", unit_param="n")
    path = f"/v1/endpoints/{view['id']}"
    assert view["max_units"] == 1000
    changed = await p.call("PATCH", path, shop, json={"amount": "20000", "description": "now"})
    assert changed.status_code == 200, changed.text
    after = changed.json()
    assert (after["amount"], after["description"]) == ("20000", "now")
    assert after["unit_param"] == "n" and after["created_at"] == view["created_at"]
    assert after["updated_at"] > view["updated_at"]
    for bad in (
        {"amount": "0"},
        {"provider_id": str(shop.account_id)},
        {"unit_param": None},
        {"discoverable": True},
        {"pricing": "fixed", "max_units": 3},
        {"nope": 1},
    ):
        answer = await p.call("PATCH", path, shop, json=bad)
        assert answer.status_code == 400, (bad, answer.text)
        assert answer.json()["error"] == "invalid_request"
    assert (await p.call("GET", path, shop)).json() == after  # nothing changed
    fixed = await p.call("PATCH", path, shop, json={"pricing": "fixed"})
    assert fixed.status_code == 200, fixed.text
    assert (fixed.json()["unit_param"], fixed.json()["max_units"]) == (None, None)
    per_unit = await p.call("PATCH", path, shop, json={"pricing": "per_unit"})
    assert per_unit.status_code == 400  # which parameter holds the units?


async def test_disabling_keeps_the_endpoint_out_of_lists_and_402s(platform: Platform) -> None:
    p = platform
    shop = await p.key(Role.PROVIDER)
    view = await p.register(shop, resource="https://api.example.com/a", discoverable=True)
    gone = await p.call("DELETE", f"/v1/endpoints/{view['id']}", shop)
    assert gone.status_code == 200 and gone.json()["disabled_at"] is not None
    again = await p.call("DELETE", f"/v1/endpoints/{view['id']}", shop)
    assert again.json()["disabled_at"] == gone.json()["disabled_at"]
    assert (await p.call("GET", "/v1/endpoints", shop)).json()["endpoints"] == []
    everything = await p.call("GET", "/v1/endpoints", shop, params={"include_disabled": "true"})
    assert [e["id"] for e in everything.json()["endpoints"]] == [view["id"]]
    assert (await p.call("GET", f"/v1/endpoints/{view['id']}/requirements")).status_code == 404
    assert (await p.call("GET", "/discovery/resources")).json()["items"] == []
    assert len(await stored(p)) == 1  # kept, never deleted


async def test_another_providers_endpoint_is_404_like_a_missing_one(platform: Platform) -> None:
    p = platform
    a = await p.key(Role.PROVIDER, "a")
    b = await p.key(Role.PROVIDER, "b")
    theirs = await p.register(b, resource="/b", description="b's")
    not_found = {"error": "unknown_endpoint", "message": "no such endpoint"}
    for endpoint_id in (theirs["id"], str(uuid4())):
        path = f"/v1/endpoints/{endpoint_id}"
        for method, body in (("GET", None), ("PATCH", {"amount": "1"}), ("DELETE", None)):
            answer = await p.call(method, path, a, json=body)
            assert answer.status_code == 404, (method, answer.text)
            assert answer.json() == not_found
    answer = await p.call("GET", "/v1/endpoints", a, params={"provider_id": str(b.account_id)})
    assert answer.status_code == 404 and answer.json()["error"] == "unknown_account"
    assert (await p.call("GET", "/v1/endpoints", a)).json() == {"endpoints": [], "has_more": False}
    # B's endpoint is untouched; the operator sees it.
    assert (await p.call("GET", f"/v1/endpoints/{theirs['id']}", b)).json() == theirs
    operator = await p.key(Role.OPERATOR)
    seen = await p.call("GET", f"/v1/endpoints/{theirs['id']}", operator)
    assert seen.json() == theirs
    listed = await p.call(
        "GET", "/v1/endpoints", operator, params={"provider_id": str(b.account_id)}
    )
    assert [e["id"] for e in listed.json()["endpoints"]] == [theirs["id"]]


async def test_agents_are_403_and_no_key_is_401_on_every_registry_route(
    platform: Platform,
) -> None:
    p = platform
    shop = await p.key(Role.PROVIDER)
    agent = await p.key(Role.AGENT)
    view = await p.register(shop, resource="/a")
    routes = [
        ("POST", "/v1/endpoints", {"resource": "/b", "amount": "1"}),
        ("GET", "/v1/endpoints", None),
        ("GET", f"/v1/endpoints/{view['id']}", None),
        ("PATCH", f"/v1/endpoints/{view['id']}", {"amount": "1"}),
        ("DELETE", f"/v1/endpoints/{view['id']}", None),
    ]
    for method, path, body in routes:
        answer = await p.call(method, path, agent, json=body)
        assert answer.status_code == 403, (method, path)
        assert answer.json()["error"] == "forbidden"
        answer = await p.call(method, path, None, json=body)
        assert answer.status_code == 401, (method, path)
        assert answer.headers["www-authenticate"].startswith("Bearer")
    assert [str(r["id"]) for r in await stored(p)] == [view["id"]]
    assert (await p.call("GET", f"/v1/endpoints/{view['id']}", shop)).json() == view


async def test_endpoints_are_listed_a_page_at_a_time(platform: Platform) -> None:
    p = platform
    shop = await p.key(Role.PROVIDER)
    made = [(await p.register(shop, resource=f"/r{n}"))["id"] for n in range(5)]
    first = await p.call("GET", "/v1/endpoints", shop, params={"limit": "2"})
    assert first.json()["has_more"] is True
    ids = [e["id"] for e in first.json()["endpoints"]]
    assert ids == made[:2]
    rest = await p.call("GET", "/v1/endpoints", shop, params={"limit": "100", "after": ids[-1]})
    assert [e["id"] for e in rest.json()["endpoints"]] == made[2:]
    assert rest.json()["has_more"] is False
    for params in (
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "x"},
        {"after": "nope"},
        {"provider_id": "nope"},
        {"include_disabled": "yes"},
    ):
        answer = await p.call("GET", "/v1/endpoints", shop, params=params)
        assert answer.status_code == 400, params
        assert answer.json()["error"] == "invalid_request"
    for bad_id in ("nope", "1" * 40):
        answer = await p.call("GET", f"/v1/endpoints/{bad_id}", shop)
        assert answer.status_code == 400


def required_v2(answer: httpx.Response) -> PaymentRequiredV2:
    assert answer.status_code == 402, answer.text
    return PaymentRequiredV2.model_validate(decode_header(answer.headers["PAYMENT-REQUIRED"]))


async def test_the_402_of_a_fixed_price(platform: Platform) -> None:
    p = platform
    shop = await p.key(Role.PROVIDER)
    view = await p.register(
        shop,
        method="GET",
        resource="https://api.example.com/weather",
        amount="12345",
        description="The weather",
        max_timeout_seconds=90,
    )
    path = f"/v1/endpoints/{view['id']}/requirements"
    answer = await p.call("GET", path, params={"url": "https://elsewhere.example/x"})
    body = answer.json()
    assert body["x402Version"] == 1 and body["error"] == "payment required"
    (v1,) = body["accepts"]
    extra = {"name": "USDC", "version": "2", "payfirst": {"endpoint": view["id"], "units": 1}}
    assert v1 == {
        "scheme": "exact",
        "network": "eip155:31337",
        "maxAmountRequired": "12345",
        "resource": "https://api.example.com/weather",  # a full URL: `url` is ignored
        "description": "The weather",
        "mimeType": "application/json",
        "payTo": TREASURY,
        "maxTimeoutSeconds": 90,
        "asset": p.h.deployment.usdc,
        "extra": extra,
    }
    v2 = required_v2(answer)
    assert v2.x402_version == 2
    assert v2.resource is not None and v2.resource.url == "https://api.example.com/weather"
    (accepted,) = v2.accepts
    assert (accepted.amount, accepted.pay_to, accepted.network) == (
        "12345",
        TREASURY,
        "eip155:31337",
    )
    assert accepted.extra == extra
    for units in ("2", "0", "x", "-1"):
        refused = await p.call("GET", path, params={"units": units})
        assert refused.status_code == 400, units
        assert refused.json()["error"] == "invalid_request"
    assert (
        required_v2(await p.call("GET", path, params={"units": "1"})).accepts[0].amount == "12345"
    )


async def test_the_402_of_a_per_unit_price_for_a_served_url(platform: Platform) -> None:
    p = platform
    shop = await p.key(Role.PROVIDER)
    view = await p.register(
        shop,
        resource="/translate/{lang}",
        pricing="per_unit",
        unit_param="words",
        max_units=10,
        amount="1000",
    )
    path = f"/v1/endpoints/{view['id']}/requirements"
    served = "https://shop.example/translate/fr?words=3"
    answer = await p.call("GET", path, params={"units": "3", "url": served})
    (v1,) = answer.json()["accepts"]
    assert v1["maxAmountRequired"] == "3000"
    assert v1["resource"] == served
    assert v1["extra"]["payfirst"] == {"endpoint": view["id"], "units": 3}
    assert required_v2(answer).accepts[0].amount == "3000"
    pattern = await p.call("GET", path)
    assert pattern.json()["accepts"][0]["resource"] == "/translate/{lang}"
    assert pattern.json()["accepts"][0]["maxAmountRequired"] == "1000"
    assert (
        required_v2(await p.call("GET", path, params={"units": "10"})).accepts[0].amount == "10000"
    )
    for params in (
        {"units": "11"},
        {"units": "0"},
        {"url": "https://shop.example/other/fr"},
        {"url": "https://shop.example/translate/fr/extra"},
        {"url": "/translate/fr"},
        {"url": "https://shop.example/" + "a" * 2100},
    ):
        refused = await p.call("GET", path, params=params)
        assert refused.status_code == 400, params
        assert refused.json()["error"] == "invalid_request"


async def test_the_402_of_no_endpoint_is_404(platform: Platform) -> None:
    p = platform
    for endpoint_id in (str(uuid4()), "nope"):
        answer = await p.call("GET", f"/v1/endpoints/{endpoint_id}/requirements")
        assert answer.status_code == 404
        assert answer.json()["error"] == "unknown_endpoint"


async def test_the_bazaar_lists_enabled_discoverable_endpoints(platform: Platform) -> None:
    p = platform
    shop = await p.key(Role.PROVIDER)
    listed = [
        await p.register(
            shop,
            resource=f"https://api.example.com/r{n}",
            discoverable=True,
            description=f"resource {n}",
            method="GET",
            input_schema={"type": "object"},
            output_schema={"type": "object", "properties": {"n": {"type": "integer"}}},
        )
        for n in range(3)
    ]
    await p.register(shop, resource="https://api.example.com/hidden")
    off = await p.register(shop, resource="https://api.example.com/off", discoverable=True)
    await p.call("DELETE", f"/v1/endpoints/{off['id']}", shop)
    answer = await p.call("GET", "/discovery/resources")
    assert answer.status_code == 200
    body = answer.json()
    assert body["x402Version"] == 2
    assert body["pagination"] == {"limit": 20, "offset": 0, "total": 3}
    assert [i["resource"] for i in body["items"]] == [e["resource"] for e in listed]
    item = body["items"][0]
    assert item["type"] == "http" and item["x402Version"] == 2
    assert item["description"] == "resource 0"
    assert item["mimeType"] == "application/json"
    assert item["lastUpdated"] == listed[0]["updated_at"]
    (accepted,) = item["accepts"]
    assert accepted == {
        "scheme": "exact",
        "network": "eip155:31337",
        "amount": "10000",
        "asset": p.h.deployment.usdc,
        "payTo": TREASURY,
        "maxTimeoutSeconds": 300,
        "extra": {
            "name": "USDC",
            "version": "2",
            "payfirst": {"endpoint": listed[0]["id"], "units": 1},
        },
    }
    bazaar = item["extensions"]["bazaar"]
    assert bazaar["info"]["input"] == {"type": "http", "method": "GET", "queryParams": {}}
    output = bazaar["schema"]["properties"]["output"]
    assert output["properties"]["example"] == listed[0]["output_schema"]
    page = await p.call("GET", "/discovery/resources", params={"limit": "2", "offset": "2"})
    assert [i["resource"] for i in page.json()["items"]] == [listed[2]["resource"]]
    assert page.json()["pagination"] == {"limit": 2, "offset": 2, "total": 3}
    other = await p.call("GET", "/discovery/resources", params={"type": "mcp"})
    assert other.json()["items"] == [] and other.json()["pagination"]["total"] == 0
    http = await p.call("GET", "/discovery/resources", params={"type": "http"})
    assert len(http.json()["items"]) == 3


@pytest.mark.parametrize(
    "params",
    [{"limit": "0"}, {"limit": "101"}, {"offset": "-1"}, {"offset": "x"}, {"offset": "10001"}],
)
async def test_bad_bazaar_parameters_are_400(platform: Platform, params: dict[str, str]) -> None:
    answer = await platform.call("GET", "/discovery/resources", params=params)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"


async def test_the_bazaar_offset_goes_up_to_10000(platform: Platform) -> None:
    answer = await platform.call("GET", "/discovery/resources", params={"offset": "10000"})
    assert answer.status_code == 200
    assert answer.json()["items"] == [] and answer.json()["pagination"]["offset"] == 10_000


async def test_every_bazaar_extension_is_valid_against_its_own_schema(platform: Platform) -> None:
    """What x402's facilitator checks (Ajv) before it catalogues a resource."""
    p = platform
    shop = await p.key(Role.PROVIDER)
    weather = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
        "required": ["city", "days"],
    }
    for n, (method, output) in enumerate(
        [("GET", {"type": "string"}), ("POST", {"type": "object"}), ("*", None), ("PUT", None)]
    ):
        await p.register(
            shop,
            method=method,
            resource=f"https://api.example.com/r{n}",
            discoverable=True,
            input_schema=weather,
            output_schema=output,
        )
    items = (await p.call("GET", "/discovery/resources")).json()["items"]
    assert len(items) == 4
    for item in items:
        bazaar = item["extensions"]["bazaar"]
        Draft202012Validator.check_schema(bazaar["schema"])
        errors = list(Draft202012Validator(bazaar["schema"]).iter_errors(bazaar["info"]))
        assert errors == [], (item["resource"], [e.message for e in errors])
    first = items[0]["extensions"]["bazaar"]["info"]
    assert first["input"]["queryParams"] == {"city": "", "days": 1}
    assert first["output"] == {"type": "json", "example": ""}
    body = items[1]["extensions"]["bazaar"]["info"]["input"]
    assert (body["bodyType"], body["body"]) == ("json", {"city": "", "days": 1})


async def test_naming_the_same_network_again_changes_nothing(platform: Platform) -> None:
    p = platform
    shop = await p.key(Role.PROVIDER)
    view = await p.register(shop, resource="/a", pay_to=OWN_PAY_TO)
    path = f"/v1/endpoints/{view['id']}"
    for same in ("eip155:31337", "eip155:31337"):
        answer = await p.call("PATCH", path, shop, json={"network": same, "amount": "20000"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["pay_to"] == OWN_PAY_TO  # not reset to the treasury
        assert answer.json()["asset"] == view["asset"]
    for body in ({"network": None}, {"network": None, "pay_to": OWN_PAY_TO}):
        refused = await p.call("PATCH", path, shop, json=body)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_request"
    assert (await p.call("GET", path, shop)).json()["pay_to"] == OWN_PAY_TO


SETTLER_ON_ANVIL = "0x5e77000000000000000000000000000000005E77"
(BASE_SEPOLIA,) = (n for n in KNOWN_NETWORKS if n.chain_id == 84532)


@pytest_asyncio.fixture(name="two_networks")
async def two_networks_fixture(harness: Harness) -> AsyncIterator[Platform]:
    """payfirst serving the test chain (with a settler contract and the treasury) and Base
    Sepolia (no chain reached: the registry only needs its assets)."""
    anvil = Network(
        "eip155:31337",
        31337,
        settler_address=SETTLER_ON_ANVIL,
        treasury_address=TREASURY,
    )
    base_sepolia = replace(BASE_SEPOLIA, treasury_address=TREASURY)
    services = Services(
        store=harness.store,
        chain=None,
        networks=(ServedNetwork(anvil, None), ServedNetwork(base_sepolia, None)),
    )
    transport = httpx.ASGITransport(app=build_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        yield Platform(harness, http)


async def test_a_change_of_network_names_its_asset_and_pay_to(two_networks: Platform) -> None:
    p = two_networks
    shop = await p.key(Role.PROVIDER)
    view = await p.register(shop, resource="/a", pay_to=OWN_PAY_TO)
    assert view["network"] == "eip155:31337"
    path = f"/v1/endpoints/{view['id']}"
    base_usdc = BASE_SEPOLIA.assets[0]
    for body in (
        {"network": "eip155:84532"},
        {"network": "eip155:84532", "asset": base_usdc.address},
        {"network": "eip155:84532", "pay_to": OWN_PAY_TO},
        {"network": "eip155:84532", "asset": None, "pay_to": OWN_PAY_TO},
        {"network": "eip155:84532", "asset": p.h.deployment.usdc, "pay_to": OWN_PAY_TO},
    ):
        refused = await p.call("PATCH", path, shop, json=body)
        assert refused.status_code == 400, (body, refused.text)
        assert refused.json()["error"] == "invalid_request"
    assert (await p.call("GET", path, shop)).json() == view
    moved = await p.call(
        "PATCH",
        path,
        shop,
        json={"network": "base-sepolia", "asset": base_usdc.address, "pay_to": OWN_PAY_TO},
    )
    assert moved.status_code == 200, moved.text
    assert (moved.json()["network"], moved.json()["asset"], moved.json()["pay_to"]) == (
        "eip155:84532",
        base_usdc.address,
        OWN_PAY_TO,
    )


async def test_a_pay_to_that_would_trap_the_money_is_refused(two_networks: Platform) -> None:
    p = two_networks
    shop = await p.key(Role.PROVIDER)
    base_usdc = BASE_SEPOLIA.assets[0]
    for pay_to, network, asset in (
        ("0x" + "0" * 40, "eip155:31337", None),
        (SETTLER_ON_ANVIL, "eip155:31337", None),
        (SETTLER_ON_ANVIL.lower(), "eip155:31337", None),
        (p.h.deployment.usdc, "eip155:31337", None),
        (base_usdc.address.lower(), "eip155:84532", base_usdc.address),
    ):
        body = {"resource": "/a", "amount": "1", "pay_to": pay_to, "network": network}
        if asset is not None:
            body["asset"] = asset
        answer = await p.call("POST", "/v1/endpoints", shop, json=body)
        assert answer.status_code == 400, (pay_to, answer.text)
        assert answer.json()["error"] == "invalid_request"
    view = await p.register(shop, resource="/a", pay_to=OWN_PAY_TO)
    answer = await p.call(
        "PATCH", f"/v1/endpoints/{view['id']}", shop, json={"pay_to": SETTLER_ON_ANVIL}
    )
    assert answer.status_code == 400
    # The settler is only the settler on its own network.
    elsewhere = await p.register(
        shop, resource="/b", network="eip155:84532", pay_to=SETTLER_ON_ANVIL
    )
    assert elsewhere["pay_to"] == SETTLER_ON_ANVIL
    assert len(await stored(p)) == 2


async def test_after_must_be_one_of_the_listed_endpoints(platform: Platform) -> None:
    """Another provider's endpoint as `after` is answered as an unknown id is: no oracle."""
    p = platform
    a = await p.key(Role.PROVIDER, "a")
    b = await p.key(Role.PROVIDER, "b")
    mine = [(await p.register(a, resource=f"/a{n}"))["id"] for n in range(2)]
    theirs = (await p.register(b, resource="/b"))["id"]
    answers = [
        await p.call("GET", "/v1/endpoints", a, params={"after": after})
        for after in (theirs, str(uuid4()))
    ]
    assert [r.status_code for r in answers] == [400, 400]
    assert answers[0].json() == answers[1].json()
    assert answers[0].json()["error"] == "invalid_request"
    page = await p.call("GET", "/v1/endpoints", a, params={"after": mine[0]})
    assert [e["id"] for e in page.json()["endpoints"]] == mine[1:]
    operator = await p.key(Role.OPERATOR)
    everyone = await p.call("GET", "/v1/endpoints", operator, params={"after": mine[0]})
    assert [e["id"] for e in everyone.json()["endpoints"]] == [mine[1], theirs]
    of_b = await p.call(
        "GET",
        "/v1/endpoints",
        operator,
        params={"after": mine[0], "provider_id": str(b.account_id)},
    )
    assert of_b.status_code == 400


async def test_a_provider_has_at_most_1000_enabled_endpoints(platform: Platform) -> None:
    p = platform
    shop = await p.key(Role.PROVIDER)
    other = await p.key(Role.PROVIDER, "other")
    await execute_raw(
        p.h.store,
        "INSERT INTO endpoints (id, provider_id, method, resource, amount, asset, chain_id, pay_to)"
        " SELECT gen_random_uuid(), $1, 'GET', '/r' || n, 1000, $2, 31337, $3"
        " FROM generate_series(1, 999) n",
        shop.account_id,
        p.h.deployment.usdc,
        OWN_PAY_TO,
    )
    last = await p.register(shop, resource="/last")
    over = await p.call("POST", "/v1/endpoints", shop, json={"resource": "/x", "amount": "1"})
    assert over.status_code == 400 and over.json()["error"] == "invalid_request"
    assert "1000" in over.json()["message"]
    operator = await p.key(Role.OPERATOR)
    for_shop = {"resource": "/x", "amount": "1", "provider_id": str(shop.account_id)}
    assert (await p.call("POST", "/v1/endpoints", operator, json=for_shop)).status_code == 400
    assert len(await stored(p)) == 1000
    await p.register(other, resource="/x")  # another provider's count is its own
    await p.call("DELETE", f"/v1/endpoints/{last['id']}", shop)
    await p.register(shop, resource="/again")  # a disabled one freed its place
