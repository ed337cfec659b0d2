"""`payfirst tokens add|list` (payfirst.usecases.tokens) against the real dev chain: a
MintToken deployed on anvil is registered as its contract says, once every check passed,
and is then for sale; every refusal stores nothing."""

from __future__ import annotations

from dataclasses import replace
from uuid import UUID

import pytest

from payfirst.adapters.devchain import send_transaction
from payfirst.adapters.evm_chain import EvmChain
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.networks import Asset, Network
from payfirst.domain.reasons import Reason
from payfirst.domain.statuses import PaymentStatus
from payfirst.usecases.deps import ServedNetwork, ServedNetworks
from payfirst.usecases.tokens import (
    MinterRoleMissing,
    add_token,
    added_lines,
    list_tokens,
    listing_row,
)
from tests.e2e.harness import Harness

# The dev chain as the legacy single chain: no assets of its own (they come from its tokens).
ANVIL = Network("eip155:31337", 31337)
STRANGER = "0x7000000000000000000000000000000000000007"


def served(h: Harness) -> ServedNetwork:
    return ServedNetwork(ANVIL, EvmChain(h.rpc), (h.deployment.relayer_address,))


async def refused(h: Harness, address: str, reason: Reason, **kw: object) -> PaymentRejected:
    before = await h.store.list_tokens()
    with pytest.raises(PaymentRejected) as caught:
        await add_token(h.store, served(h), address, **kw)  # type: ignore[arg-type]
    assert caught.value.reason is reason, caught.value.message
    assert await h.store.list_tokens() == before, "a refused token changed the tokens"
    return caught.value


async def test_a_new_mint_token_is_registered_as_the_chain_says_and_sells(harness: Harness) -> None:
    h = harness
    address = await h.chain.deploy_token(
        name="Shop", symbol="SHP", price_per_mint=2_500_000, max_mint_count=7, mint_amount=5
    )
    added = await add_token(
        h.store,
        served(h),
        address.lower(),
        expect_price=2_500_000,
        expect_cap=7,
        expect_asset=h.deployment.usdc,
    )
    assert added.created and added.minted == 0
    assert added.block <= await h.rpc.block_number()
    token = await h.store.get_token(address)
    assert token == added.token
    assert (token.name, token.symbol, token.chain_id) == ("Shop", "SHP", 31337)
    assert (token.price_per_mint, token.max_mint_count, token.mint_amount) == (2_500_000, 7, 5)
    assert (token.payment_asset, token.asset_name, token.asset_version) == (
        h.deployment.usdc,
        "USDC",
        "2",
    )
    assert token.asset_decimals == 6
    lines = added_lines(added)
    assert lines[0] == f"registered Shop (SHP) {address} on eip155:31337"
    assert "price per mint: 2.500000 USDC" in lines[1]
    assert f"  checked on chain at block {added.block}" in lines

    bought = await h.buy(h.payer(1), 2, token=address)
    assert bought.status_code == 202, bought.text
    await h.settled()
    payment = await h.store.get_payment(UUID(bought.json()["paymentQueueId"]))
    assert payment is not None and payment.status is PaymentStatus.COMPLETED
    listed = {t.token.address: t for t in await list_tokens(h.store, ServedNetworks([served(h)]))}
    assert listed[address].token.reserved_count == 2
    assert listed[address].token.remaining == 5
    assert listed[address].minted == 2
    assert listing_row(listed[address]) == (
        "eip155:31337",
        address,
        "SHP",
        f"2.500000 (USDC {h.deployment.usdc})",
        "5",
        "2",
        "5",
        "7",
        "2",
    )
    assert listed[h.deployment.token].minted == 0
    # Not served here: its mints are unknown, not zero.
    assert all(t.minted is None for t in await list_tokens(h.store))

    again = await add_token(h.store, served(h), address)
    assert not again.created and again.minted == 2
    assert again.token.reserved_count == 2
    stored = await h.store.get_token(address)
    assert stored is not None and stored.reserved_count == 2


async def test_a_token_whose_relayer_cannot_mint_is_refused_until_granted(harness: Harness) -> None:
    h = harness
    address = await h.chain.deploy_token(name="NoRole", symbol="NRL", minter=STRANGER)
    refusal = await refused(h, address, Reason.MINTER_ROLE_MISSING)
    assert isinstance(refusal, MinterRoleMissing)
    relayer = h.deployment.relayer_address
    assert refusal.missing == (relayer,)
    assert relayer in refusal.message and "grantRole(bytes32,address)" in refusal.message
    # The admin makes the call the refusal names; then the token is registered.
    tx = await send_transaction(h.rpc, h.deployment.relayer_key, address, refusal.calldata[0])
    receipt = await h.rpc.wait_for_receipt(tx)
    assert int(receipt["status"], 16) == 1
    added = await add_token(h.store, served(h), address)
    assert added.token.symbol == "NRL"


async def test_what_is_not_a_mint_token_is_refused(harness: Harness) -> None:
    h = harness
    payer = h.payer(2).address
    message = (await refused(h, payer, Reason.NOT_A_MINT_TOKEN)).message
    assert "no contract at" in message
    message = (await refused(h, h.deployment.usdc, Reason.NOT_A_MINT_TOKEN)).message
    assert "is not a MintToken" in message
    message = (await refused(h, h.deployment.settler, Reason.NOT_A_MINT_TOKEN)).message
    assert "is not a MintToken" in message


async def test_claimed_terms_the_chain_contradicts_are_refused(harness: Harness) -> None:
    h = harness
    address = await h.chain.deploy_token(name="Claim", symbol="CLM", price_per_mint=3_000_000)
    message = (
        await refused(h, address, Reason.TOKEN_TERMS_MISMATCH, expect_price=1_000_000)
    ).message
    assert "price per mint 3000000, not 1000000" in message
    await refused(h, address, Reason.TOKEN_TERMS_MISMATCH, expect_cap=99)
    await refused(h, address, Reason.TOKEN_TERMS_MISMATCH, expect_asset=STRANGER)
    assert await h.store.get_token(address) is None


async def test_a_token_paid_in_an_asset_the_network_does_not_know_is_refused(
    harness: Harness,
) -> None:
    h = harness
    other_usdc = await h.chain.deploy_usdc()
    address = await h.chain.deploy_token(name="Other", symbol="OTH", payment_token=other_usdc)
    message = (await refused(h, address, Reason.UNSUPPORTED_PAYMENT_ASSET)).message
    assert other_usdc in message and "[[network.asset]]" in message
    # Known to the network (its EIP-712 domain as on chain): registered.
    known = Network("eip155:31337", 31337, assets=(_asset(other_usdc, "USDC"),))
    relayers = (h.deployment.relayer_address,)
    added = await add_token(h.store, ServedNetwork(known, EvmChain(h.rpc), relayers), address)
    assert added.token.payment_asset == other_usdc
    # Known with another domain than the chain's: payers would sign for nothing.
    wrong = Network("eip155:31337", 31337, assets=(_asset(other_usdc, "USD Coin"),))
    with pytest.raises(PaymentRejected) as caught:
        await add_token(h.store, ServedNetwork(wrong, EvmChain(h.rpc), relayers), address)
    assert caught.value.reason is Reason.UNSUPPORTED_PAYMENT_ASSET
    assert "wrong domain" in caught.value.message


async def test_a_token_registered_on_another_network_is_refused(harness: Harness) -> None:
    h = harness
    address = await h.chain.deploy_token(name="Elsewhere", symbol="ELS")
    elsewhere = replace(h.deployment.to_token(), address=address, chain_id=84532)
    await h.store.upsert_token(elsewhere)
    message = (await refused(h, address, Reason.TOKEN_ON_ANOTHER_CHAIN)).message
    assert "eip155:84532" in message


def _asset(address: str, name: str) -> Asset:
    return Asset(address=address, name=name, version="2", decimals=6, symbol="USDC")
