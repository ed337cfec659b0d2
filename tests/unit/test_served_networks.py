"""The networks the API serves: looked up by the name a requirement gives, listed by
/supported, and a token on any other network is not sold."""

from __future__ import annotations

import time
from typing import Any, cast

import httpx
import pytest

from payfirst.api.services import Services
from payfirst.app import build_app
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.models import Token
from payfirst.domain.networks import BASE_SEPOLIA, Network
from payfirst.domain.reasons import Reason
from payfirst.usecases.deps import ServedNetwork, ServedNetworks
from payfirst.usecases.purchase import MintOrder, MintSales, PaymentNeeded
from tests.fixtures.store import make_token

ANVIL = Network(caip2="eip155:31337", chain_id=31337)
SERVED = ServedNetworks(
    [ServedNetwork(ANVIL, None, ("0xA",)), ServedNetwork(BASE_SEPOLIA, None, ("0xA", "0xB"))]
)


class NoLimit:
    def take(self, key: str) -> None:
        return None


def test_a_served_network_is_found_by_caip2_id_or_v1_name_only() -> None:
    assert SERVED.get("base-sepolia") is SERVED.get("eip155:84532") is SERVED.all[1]
    assert SERVED.get("eip155:31337") is SERVED.all[0]
    assert SERVED.get("base") is None  # known to payfirst, but not served here
    assert SERVED.get("eip155:8453") is None
    assert SERVED.by_chain_id(84532) is SERVED.all[1]
    assert SERVED.by_chain_id(1) is None


async def test_a_token_on_a_network_not_served_is_not_sold() -> None:
    tokens = {t.address: t for t in (make_token(chain_id=8453), make_token(chain_id=84532))}

    async def lookup(address: str) -> Token | None:
        return tokens.get(address)

    sales = MintSales(
        store=cast(Any, None),  # never reached: refused before anything is queued
        tokens=lookup,
        clock=time.time,
        per_payer=NoLimit(),
        on_payment_queued=lambda: None,
        networks=SERVED,
    )
    on_base, on_sepolia = tokens
    with pytest.raises(PaymentRejected) as refused:
        await sales.accept(MintOrder(on_base, 1, "/r", {}))
    assert refused.value.reason == Reason.INVALID_NETWORK
    assert "eip155:8453" in refused.value.message
    needed = await sales.accept(MintOrder(on_sepolia, 1, "/r", {}))  # no payment: its offer
    assert isinstance(needed, PaymentNeeded) and needed.token.chain_id == 84532


async def test_supported_lists_each_network_once_per_version_and_every_signer() -> None:
    svc = Services(store=cast(Any, None), chain=None, networks=SERVED.all)
    transport = httpx.ASGITransport(app=build_app(svc))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        body = (await http.get("/supported")).json()
    assert [(k["x402Version"], k["network"]) for k in body["kinds"]] == [
        (2, "eip155:31337"),
        (1, "eip155:31337"),
        (2, "eip155:84532"),
        (1, "base-sepolia"),
    ]
    assert body["signers"] == {"eip155:*": ["0xA", "0xB"]}


async def test_a_single_chain_setup_is_served_as_its_known_network() -> None:
    svc = Services(store=cast(Any, None), chain=None, chain_id=84532, signers=("0xA",))
    assert [s.network for s in svc.served.all] == [BASE_SEPOLIA]
    assert Services(store=cast(Any, None), chain=None).served.all == ()
