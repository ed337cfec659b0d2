"""`check_token`'s decisions (payfirst.usecases.tokens) on a fake chain: a token is
registrable only when the chain shows a MintToken at the claimed terms, paid in a known
EIP-3009 asset with the domain payers sign, and mintable by every relayer."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import httpx
import pytest
from eth_abi.abi import encode

from payfirst.adapters.chain_rpc import RpcClient
from payfirst.adapters.evm_chain import EvmChain
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.networks import Asset, Network
from payfirst.domain.reasons import Reason
from payfirst.evm import calls
from payfirst.ports.chain import AssetTerms, ChainUnavailable, MintTokenTerms
from payfirst.usecases.deps import ServedNetwork
from payfirst.usecases.tokens import MinterRoleMissing, check_token, grant_minter_calls
from tests.fakes.chain import FakeChain

CHAIN_ID = 84532
TOKEN = "0x1000000000000000000000000000000000000001"
USDC = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
OTHER = "0x4000000000000000000000000000000000000004"
RELAYER_A = "0xA00000000000000000000000000000000000000a"
RELAYER_B = "0xB00000000000000000000000000000000000000b"
KNOWN = Asset(address=USDC, name="USDC", version="2", decimals=6, symbol="USDC")
NETWORK = Network("eip155:84532", CHAIN_ID, "base-sepolia", assets=(KNOWN,))

TERMS = MintTokenTerms(
    address=TOKEN,
    name="Shop Token",
    symbol="SHOP",
    mint_amount=10**18,
    max_mint_count=500,
    price_per_mint=2_500_000,
    payment_token=USDC,
    mint_count=3,
    minter_role=calls.MINTER_ROLE,
)
USDC_TERMS = AssetTerms(
    address=USDC,
    name="USDC",
    version="2",
    decimals=6,
    eip3009=True,
    domain_chain_id=CHAIN_ID,
    verifying_contract=USDC,
)


def chain(
    terms: MintTokenTerms | None = TERMS,
    asset: AssetTerms | None = USDC_TERMS,
    minters: tuple[str, ...] = (RELAYER_A, RELAYER_B),
) -> FakeChain:
    fake = FakeChain(chain_id=CHAIN_ID)
    if terms is not None:
        fake.mint_tokens[TOKEN.lower()] = terms
    if asset is not None:
        fake.assets[asset.address.lower()] = asset
    for minter in minters:
        fake.roles.add((TOKEN.lower(), calls.MINTER_ROLE, minter.lower()))
    return fake


def served(fake: FakeChain, network: Network = NETWORK) -> ServedNetwork:
    return ServedNetwork(network, fake, (RELAYER_A, RELAYER_B))


async def refused(fake: FakeChain, reason: Reason, **kw: object) -> str:
    with pytest.raises(PaymentRejected) as caught:
        await check_token(served(fake), TOKEN, **kw)  # type: ignore[arg-type]
    assert caught.value.reason is reason, caught.value.message
    return caught.value.message


async def test_a_mint_token_as_the_chain_says_is_registrable() -> None:
    fake = chain()
    checked = await check_token(
        served(fake), TOKEN.lower(), expect_price=2_500_000, expect_cap=500, expect_asset=USDC
    )
    token = checked.token
    assert (token.address, token.chain_id, token.name, token.symbol) == (
        TOKEN,
        CHAIN_ID,
        "Shop Token",
        "SHOP",
    )
    assert (token.price_per_mint, token.max_mint_count, token.mint_amount) == (
        2_500_000,
        500,
        10**18,
    )
    assert (token.payment_asset, token.asset_name, token.asset_version, token.asset_decimals) == (
        USDC,
        "USDC",
        "2",
        6,
    )
    assert token.reserved_count == 0
    assert (checked.block, checked.minted, checked.minters) == (
        fake.head,
        3,
        (RELAYER_A, RELAYER_B),
    )


async def test_an_address_without_a_contract_is_refused() -> None:
    message = await refused(chain(terms=None), Reason.NOT_A_MINT_TOKEN)
    assert "no contract at" in message


async def test_a_contract_that_is_not_a_mint_token_is_refused() -> None:
    fake = chain(terms=None)
    fake.code.add(TOKEN.lower())
    message = await refused(fake, Reason.NOT_A_MINT_TOKEN)
    assert "is not a MintToken" in message


async def test_a_contract_answering_another_minter_role_is_refused() -> None:
    fake = chain(replace(TERMS, minter_role=b"\x01" * 32))
    assert "MINTER_ROLE" in await refused(fake, Reason.NOT_A_MINT_TOKEN)


@pytest.mark.parametrize(
    "terms",
    [
        replace(TERMS, price_per_mint=0),
        replace(TERMS, mint_amount=0),
        replace(TERMS, max_mint_count=0, mint_count=0),
    ],
)
async def test_a_token_selling_nothing_is_refused(terms: MintTokenTerms) -> None:
    assert "must be above 0" in await refused(chain(terms), Reason.NOT_A_MINT_TOKEN)


async def test_a_token_minted_out_on_chain_is_refused() -> None:
    message = await refused(chain(replace(TERMS, mint_count=500)), Reason.SOLD_OUT)
    assert "500 of its 500" in message


async def test_claimed_terms_that_differ_are_all_named() -> None:
    message = await refused(
        chain(),
        Reason.TOKEN_TERMS_MISMATCH,
        expect_price=1_000_000,
        expect_cap=500,
        expect_asset=OTHER,
    )
    assert "price per mint 2500000, not 1000000" in message
    assert f"payment asset {USDC}, not {OTHER}" in message
    assert "cap" not in message


async def test_an_asset_the_network_does_not_know_is_refused() -> None:
    fake = chain(replace(TERMS, payment_token=OTHER), replace(USDC_TERMS, address=OTHER))
    message = await refused(fake, Reason.UNSUPPORTED_PAYMENT_ASSET)
    assert "[[network.asset]]" in message


async def test_an_asset_of_a_registered_token_is_known() -> None:
    other = replace(KNOWN, address=OTHER)
    fake = chain(
        replace(TERMS, payment_token=OTHER),
        replace(USDC_TERMS, address=OTHER, verifying_contract=OTHER),
    )
    checked = await check_token(served(fake), TOKEN, registered_assets=[other])
    assert checked.token.payment_asset == OTHER


async def test_an_asset_with_another_domain_is_refused() -> None:
    for terms in (
        replace(USDC_TERMS, name="USD Coin"),
        replace(USDC_TERMS, version="1"),
        replace(USDC_TERMS, decimals=18),
    ):
        message = await refused(chain(asset=terms), Reason.UNSUPPORTED_PAYMENT_ASSET)
        assert "wrong domain" in message
    message = await refused(
        chain(asset=replace(USDC_TERMS, domain_chain_id=1)), Reason.UNSUPPORTED_PAYMENT_ASSET
    )
    assert "for chain 1" in message


async def test_an_asset_without_eip3009_or_unreadable_is_refused() -> None:
    message = await refused(
        chain(asset=replace(USDC_TERMS, eip3009=False)), Reason.UNSUPPORTED_PAYMENT_ASSET
    )
    assert "authorizationState" in message
    await refused(chain(asset=None), Reason.UNSUPPORTED_PAYMENT_ASSET)


async def test_an_asset_without_eip5267_is_checked_by_name_and_version() -> None:
    legacy = replace(USDC_TERMS, domain_chain_id=None, verifying_contract=None)
    checked = await check_token(served(chain(asset=legacy)), TOKEN)
    assert checked.token.asset_name == "USDC"


async def test_relayers_without_the_minter_role_are_named_with_the_grant_to_make() -> None:
    with pytest.raises(MinterRoleMissing) as caught:
        await check_token(served(chain(minters=(RELAYER_A,))), TOKEN)
    refusal = caught.value
    assert refusal.reason is Reason.MINTER_ROLE_MISSING
    assert refusal.missing == (RELAYER_B,)
    assert RELAYER_A not in refusal.message
    assert refusal.calldata == (calls.grant_role(calls.MINTER_ROLE, RELAYER_B),)
    [command] = grant_minter_calls(TOKEN, [RELAYER_B])
    assert command in refusal.message
    assert "0x" + calls.MINTER_ROLE.hex() in command


async def test_a_network_without_relayers_is_refused() -> None:
    with pytest.raises(PaymentRejected) as caught:
        await check_token(ServedNetwork(NETWORK, chain(), ()), TOKEN)
    assert caught.value.reason is Reason.MINTER_ROLE_MISSING


async def test_an_rpc_of_another_chain_is_refused() -> None:
    fake = chain()
    fake.id = 1
    message = await refused(fake, Reason.INVALID_NETWORK)
    assert "serves chain 1" in message


async def test_a_malformed_address_is_refused_before_any_read() -> None:
    fake = chain()
    fake.unavailable = True
    with pytest.raises(PaymentRejected) as caught:
        await check_token(served(fake), "0x1234")
    assert caught.value.reason is Reason.INVALID_TOKEN_ADDRESS


async def test_an_unreachable_chain_is_not_a_refusal() -> None:
    fake = chain()
    fake.unavailable = True
    with pytest.raises(ChainUnavailable):
        await check_token(served(fake), TOKEN)


# --- the JSON-RPC adapter's reads (a node answering over httpx.MockTransport) -------------


class Node:
    """A node whose contracts answer `answers[selector]` (ABI-encoded), else revert; counts
    the HTTP requests."""

    def __init__(self, answers: dict[str, bytes]) -> None:
        self.answers = {sel.removeprefix("0x"): data for sel, data in answers.items()}
        self.posts = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.posts += 1
        body = json.loads(request.content)
        return httpx.Response(200, json=[self._one(item) for item in body])

    def _one(self, item: dict[str, Any]) -> dict[str, Any]:
        selector = item["params"][0]["data"][2:10]
        data = self.answers.get(selector)
        if data is None:
            return {"jsonrpc": "2.0", "id": item["id"], "error": {"code": 3, "message": "revert"}}
        return {"jsonrpc": "2.0", "id": item["id"], "result": "0x" + data.hex()}


def sel(signature: str) -> str:
    return calls.getter(signature)[:10]


MINT_TOKEN_ANSWERS = {
    sel("name()"): encode(["string"], ["Shop Token"]),
    sel("symbol()"): encode(["string"], ["SHOP"]),
    sel("MINT_AMOUNT()"): encode(["uint256"], [10**18]),
    sel("MAX_MINT_COUNT()"): encode(["uint256"], [500]),
    sel("PRICE_PER_MINT()"): encode(["uint256"], [2_500_000]),
    sel("PAYMENT_TOKEN()"): encode(["address"], [USDC]),
    sel("mintCount()"): encode(["uint256"], [3]),
    sel("MINTER_ROLE()"): encode(["bytes32"], [calls.MINTER_ROLE]),
}


async def read(answers: dict[str, bytes], what: str) -> tuple[Any, int]:
    node = Node(answers)
    rpc = RpcClient("http://127.0.0.1:8545", transport=httpx.MockTransport(node.handle))
    try:
        chain = EvmChain(rpc)
        if what == "token":
            return await chain.mint_token_terms(TOKEN.lower(), 7), node.posts
        return await chain.asset_terms(USDC, 7), node.posts
    finally:
        await rpc.aclose()


async def test_a_mint_tokens_terms_are_read_in_one_request() -> None:
    terms, posts = await read(MINT_TOKEN_ANSWERS, "token")
    assert terms == TERMS
    assert posts == 1


async def test_one_unanswered_or_garbled_term_is_no_mint_token() -> None:
    for signature in ("PAYMENT_TOKEN()", "mintCount()"):
        answers = {k: v for k, v in MINT_TOKEN_ANSWERS.items() if k != sel(signature)}
        assert (await read(answers, "token"))[0] is None
    garbled = {**MINT_TOKEN_ANSWERS, sel("name()"): b"\x01" * 5}
    assert (await read(garbled, "token"))[0] is None


ASSET_BASICS = {
    sel("name()"): encode(["string"], ["USDC"]),
    sel("version()"): encode(["string"], ["2"]),
    sel("decimals()"): encode(["uint8"], [6]),
    calls.authorization_state("0x" + "00" * 20, b"\x00" * 32)[:10]: encode(["bool"], [False]),
}


async def test_an_asset_with_eip5267_gives_its_domain() -> None:
    domain = encode(
        calls.EIP712_DOMAIN_TYPES,
        [b"\x0f", "USD Coin", "2", CHAIN_ID, USDC, b"\x00" * 32, []],
    )
    terms, posts = await read({**ASSET_BASICS, sel("eip712Domain()"): domain}, "asset")
    assert terms == replace(USDC_TERMS, name="USD Coin")  # the domain's name, not name()
    assert posts == 1


async def test_an_asset_without_eip5267_gives_name_and_version() -> None:
    terms, _ = await read(ASSET_BASICS, "asset")
    assert terms == replace(USDC_TERMS, domain_chain_id=None, verifying_contract=None)
    no_name = {k: v for k, v in ASSET_BASICS.items() if k != sel("name()")}
    assert (await read(no_name, "asset"))[0] is None
    no_state = dict(list(ASSET_BASICS.items())[:3])
    terms, _ = await read(no_state, "asset")
    assert terms is not None and not terms.eip3009
