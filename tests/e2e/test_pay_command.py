"""`payfirst pay URL` (payfirst.client.cli_pay): real x402 resources paid over real HTTP
(uvicorn on loopback) with USDC moving on anvil — a payfirst mint (202, settled later) and
a provider's route priced with PaymentMiddleware (settled before the answer: its tx hash
comes back); a payment above the limit signs nothing; the key comes only from the
environment or a key file only its owner can read."""

from __future__ import annotations

import json
import os
from pathlib import Path
from uuid import UUID

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from payfirst.adapters.devchain import ANVIL_KEYS
from payfirst.client import PaymentRefused
from payfirst.client.cli_pay import KEY_ENV, PayerKeyError, outcome_lines, pay, payer_key
from payfirst.domain.statuses import PaymentStatus
from payfirst.provider import PaymentMiddleware, Price
from tests.e2e.harness import SHOP, Harness
from tests.e2e.test_interop_official_sdk import payfirst_app, serving
from tests.fixtures.store import fetch_raw

PAYER = 4  # anvil account index
WEATHER_PRICE = 10_000


def provider(harness: Harness) -> Starlette:
    """A provider's API: GET /weather for 0.01 USDC to SHOP, payfirst its facilitator."""
    d = harness.deployment

    async def weather(request: Request) -> Response:
        return JSONResponse({"weather": "sunny"})

    price = Price(
        amount=WEATHER_PRICE,
        asset=d.usdc,
        pay_to=SHOP,
        network="eip155:31337",
        asset_name=d.usdc_name,
        asset_version=d.usdc_version,
    )
    return Starlette(
        routes=[Route("/weather", weather)],
        middleware=[
            Middleware(
                PaymentMiddleware,
                facilitator_url="http://127.0.0.1",
                http_client=harness.http,  # payfirst's app, over httpx.ASGITransport
                routes={"GET /weather": price},
                settle="before",
            )
        ],
    )


async def payments(harness: Harness) -> int:
    rows = await fetch_raw(harness.store, "SELECT count(*) AS n FROM payment_queue")
    return int(rows[0]["n"])


async def test_pays_a_payfirst_mint(harness: Harness) -> None:
    d = harness.deployment
    payer = harness.payer(PAYER).address
    before = await harness.usdc_balance(payer)
    async with serving(payfirst_app(harness)) as url:
        outcome = await pay(
            f"{url}/api/mint/{d.token}",
            method="post",
            json_body={"quantity": 2},
            max_amount=2 * d.price_per_mint,
            key=ANVIL_KEYS[PAYER],
            network="eip155:31337",
        )
    assert outcome.status == 202 and outcome.ok, outcome.body
    assert outcome.content_type.startswith("application/json")
    assert outcome.paid is not None
    assert (outcome.paid.amount, outcome.paid.asset, outcome.paid.pay_to) == (
        2 * d.price_per_mint,
        d.usdc,
        d.token,
    )
    assert (outcome.paid.network, outcome.paid.payer) == ("eip155:31337", payer)
    assert outcome.settlement is None  # payfirst settles a mint after answering
    assert outcome_lines(outcome) == [
        "HTTP 202",
        f"paid {2 * d.price_per_mint} atomic units of {d.usdc} to {d.token} on eip155:31337 "
        f"from {payer} (x402 v2)",
        "settlement: not in the answer (the server settles later)",
    ]
    payment_id = UUID(json.loads(outcome.body)["paymentQueueId"])
    await harness.settled()
    payment = await harness.store.get_payment(payment_id)
    assert payment is not None and payment.status is PaymentStatus.COMPLETED
    assert before - await harness.usdc_balance(payer) == 2 * d.price_per_mint
    assert await harness.token_balance(payer) == 2 * d.mint_amount


async def test_pays_a_provider_route_and_reports_the_settlement(harness: Harness) -> None:
    payer = harness.payer(PAYER).address
    shop_before = await harness.usdc_balance(SHOP)
    async with serving(provider(harness)) as url:
        outcome = await pay(f"{url}/weather", max_amount=WEATHER_PRICE, key=ANVIL_KEYS[PAYER])
    assert outcome.status == 200, outcome.body
    assert json.loads(outcome.body) == {"weather": "sunny"}
    assert outcome.paid is not None and outcome.paid.amount == WEATHER_PRICE
    assert outcome.paid.pay_to == SHOP and outcome.paid.payer == payer
    settlement = outcome.settlement
    assert settlement is not None and settlement.success
    assert settlement.network == "eip155:31337"
    assert outcome_lines(outcome)[-1] == f"settled: tx {settlement.transaction} on eip155:31337"
    receipt = await harness.rpc.wait_for_receipt(settlement.transaction)
    assert int(receipt["status"], 16) == 1
    assert await harness.usdc_balance(SHOP) - shop_before == WEATHER_PRICE


async def test_a_free_resource_is_fetched_without_paying(harness: Harness) -> None:
    async with serving(payfirst_app(harness)) as url:
        outcome = await pay(f"{url}/api/tokens", max_amount=0, key=ANVIL_KEYS[PAYER])
    assert outcome.status == 200 and outcome.paid is None and outcome.settlement is None
    assert harness.deployment.token in outcome.body
    assert outcome_lines(outcome) == ["HTTP 200", "nothing paid: the server asked for no payment"]


async def test_above_max_amount_or_on_another_network_nothing_is_signed(
    harness: Harness,
) -> None:
    d = harness.deployment
    payer = harness.payer(PAYER).address
    before = await harness.usdc_balance(payer)
    async with serving(payfirst_app(harness)) as url:
        mint = f"{url}/api/mint/{d.token}"
        with pytest.raises(PaymentRefused) as caught:
            await pay(mint, method="POST", max_amount=d.price_per_mint - 1, key=ANVIL_KEYS[PAYER])
        assert caught.value.rule == "max_per_payment"
        assert (caught.value.amount, caught.value.limit) == (d.price_per_mint, d.price_per_mint - 1)
        with pytest.raises(PaymentRefused) as caught:
            await pay(
                mint,
                method="POST",
                max_amount=d.price_per_mint,
                key=ANVIL_KEYS[PAYER],
                network="base-sepolia",
            )
        assert caught.value.rule == "allowed_networks"
        with pytest.raises(ValueError, match="unknown network"):
            await pay(mint, max_amount=1, key=ANVIL_KEYS[PAYER], network="nowhere")
    assert await payments(harness) == 0, "a refused payment reached payfirst"
    assert await harness.usdc_balance(payer) == before


# --- the key -------------------------------------------------------------------------------


def key_file(tmp_path: Path, text: str, mode: int) -> Path:
    path = tmp_path / "payer.key"
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_a_key_file_only_its_owner_can_read_is_used(tmp_path: Path) -> None:
    key = ANVIL_KEYS[PAYER]
    assert payer_key(key_file=key_file(tmp_path, f"# payer\n{key}\n", 0o600), env={}) == key
    assert payer_key(key_file=key_file(tmp_path, key[2:], 0o400), env={}) == key
    # The file given wins over the environment.
    other = {KEY_ENV: ANVIL_KEYS[1]}
    assert payer_key(key_file=key_file(tmp_path, key, 0o600), env=other) == key


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_key_file_others_can_reach_is_refused(tmp_path: Path, mode: int) -> None:
    path = key_file(tmp_path, ANVIL_KEYS[PAYER], mode)
    with pytest.raises(PayerKeyError) as caught:
        payer_key(key_file=path, env={})
    assert f"chmod 600 {path}" in str(caught.value)
    assert f"{mode:04o}" in str(caught.value)
    assert ANVIL_KEYS[PAYER][2:] not in str(caught.value)


def test_bad_key_files_are_refused_without_echoing_them(tmp_path: Path) -> None:
    typo = ANVIL_KEYS[PAYER][:-1] + "g"
    for text in (typo, "", f"{ANVIL_KEYS[1]}\n{ANVIL_KEYS[2]}\n"):
        with pytest.raises(PayerKeyError) as caught:
            payer_key(key_file=key_file(tmp_path, text, 0o600), env={})
        assert typo[2:10] not in str(caught.value)
    with pytest.raises(PayerKeyError, match="No such file"):
        payer_key(key_file=tmp_path / "missing.key", env={})
    with pytest.raises(PayerKeyError, match="not a regular file"):
        payer_key(key_file=tmp_path, env={})


def test_the_key_comes_from_the_environment_else_it_is_refused() -> None:
    assert payer_key(env={KEY_ENV: f" {ANVIL_KEYS[PAYER]} "}) == ANVIL_KEYS[PAYER]
    with pytest.raises(PayerKeyError, match=KEY_ENV):
        payer_key(env={})
    with pytest.raises(PayerKeyError) as caught:
        payer_key(env={KEY_ENV: "0xabc"})
    assert "0xabc" not in str(caught.value)
