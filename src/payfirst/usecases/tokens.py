"""Registering a mintable token for sale (`payfirst tokens add`) and listing what is for
sale (`payfirst tokens list`).

A token is registered only after the chain shows it is what it claims, every read made at
one block: a MintToken contract (its terms readable, its MINTER_ROLE the usual one), at
the price, cap and payment asset the operator expects (when they say), paid in an EIP-3009
asset the network knows (its assets, or those of tokens already registered on it) whose
EIP-712 domain is the one payers will sign, and mintable by every relayer of the network.
Any doubt refuses it, and nothing is stored.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from payfirst.domain.errors import PaymentRejected
from payfirst.domain.models import Token
from payfirst.domain.networks import Asset, Network
from payfirst.domain.reasons import Reason
from payfirst.evm import calls
from payfirst.evm.abi import checksum
from payfirst.ports.chain import (
    AssetTerms,
    Chain,
    ChainRejected,
    ChainUnavailable,
    MintTokenTerms,
)
from payfirst.ports.store import Store
from payfirst.usecases.deps import ServedNetwork, ServedNetworks

__all__ = [
    "LIST_COLUMNS",
    "MinterRoleMissing",
    "TokenAdded",
    "TokenListing",
    "add_token",
    "added_lines",
    "check_token",
    "grant_minter_calls",
    "list_tokens",
    "listing_row",
]

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


@dataclass(frozen=True, slots=True)
class TokenAdded:
    """A token registered (or refreshed from the chain, if it was already), or, from
    `check_token`, one that may be."""

    token: Token
    network: Network
    block: int  # every check read the chain at this block
    minted: int  # the contract's mintCount at `block`
    created: bool  # False: it was registered already
    minters: tuple[str, ...]  # the relayers, every one holding MINTER_ROLE


@dataclass(frozen=True, slots=True)
class TokenListing:
    """A token for sale: `token.reserved_count` mints are paid for or being paid,
    `token.remaining` are left, and the contract has minted `minted` (None: its network
    is not served here, or the chain did not answer)."""

    token: Token
    minted: int | None


class MinterRoleMissing(PaymentRejected):
    """Some relayers of the network do not hold the token's MINTER_ROLE: the token's admin
    must grant it to each of `missing` (`calldata`, in the same order) first."""

    def __init__(self, token: str, missing: Sequence[str], network: Network) -> None:
        self.token = token
        self.missing = tuple(missing)
        self.calldata = tuple(calls.grant_role(calls.MINTER_ROLE, m) for m in self.missing)
        lines = "\n".join(f"  {line}" for line in grant_minter_calls(token, self.missing))
        super().__init__(
            Reason.MINTER_ROLE_MISSING,
            f"payfirst's relayers on {network.caip2} could not mint {token}: "
            f"{', '.join(self.missing)} {'does' if len(self.missing) == 1 else 'do'} not hold "
            "its MINTER_ROLE. The token's admin (DEFAULT_ADMIN_ROLE) must grant it:\n" + lines,
        )


def grant_minter_calls(token: str, relayers: Sequence[str]) -> list[str]:
    """The `grantRole(MINTER_ROLE, relayer)` calls a token's admin makes, as `cast send`
    commands (the calldata is `MinterRoleMissing.calldata`)."""
    role = "0x" + calls.MINTER_ROLE.hex()
    return [
        f'cast send {token} "grantRole(bytes32,address)" {role} {checksum(r)} '
        "--rpc-url $RPC_URL --private-key $ADMIN_KEY"
        for r in relayers
    ]


async def add_token(
    store: Store,
    served: ServedNetwork,
    address: str,
    *,
    expect_price: int | None = None,
    expect_cap: int | None = None,
    expect_asset: str | None = None,
) -> TokenAdded:
    """Registers the MintToken at `address` on `served`'s network, as its contract says,
    once `check_token` proves it sellable. Raises PaymentRejected (MinterRoleMissing when
    relayers lack the role) and stores nothing then; ChainUnavailable when the chain
    cannot be read."""
    network = served.network
    token_address = _address(address, "token")
    existing = await store.get_token(token_address)
    if existing is not None and existing.chain_id != network.chain_id:
        raise _on_another_chain(token_address, existing.chain_id)
    checked = await check_token(
        served,
        token_address,
        registered_assets=_assets_of(await store.list_tokens(), network.chain_id),
        expect_price=expect_price,
        expect_cap=expect_cap,
        expect_asset=expect_asset,
    )
    token = checked.token
    if existing is not None:
        token = replace(token, reserved_count=existing.reserved_count)
    try:
        await store.upsert_token(token)
    except ValueError:  # registered on another chain since the check above
        stored = await store.get_token(token_address)
        raise _on_another_chain(token_address, stored.chain_id if stored else 0) from None
    return replace(checked, token=token, created=existing is None)


async def check_token(
    served: ServedNetwork,
    address: str,
    *,
    registered_assets: Sequence[Asset] = (),
    expect_price: int | None = None,
    expect_cap: int | None = None,
    expect_asset: str | None = None,
) -> TokenAdded:
    """What `add_token` would register, read from the chain at one block, or why not (see
    the module). `registered_assets`: the payment assets of tokens registered on the
    network, known beside the network's own. `expect_price` (atomic units of the payment
    asset), `expect_cap` (mints) and `expect_asset` are what the operator believes; a
    difference refuses the token. Reads only the chain."""
    network = served.network
    token_address = _address(address, "token")
    asset_wanted = None if expect_asset is None else _address(expect_asset, "payment asset")
    chain = served.chain
    if chain is None:
        raise PaymentRejected(Reason.INVALID_NETWORK, f"{network.caip2} has no chain to read")
    chain_id = await chain.chain_id()
    if chain_id != network.chain_id:
        raise PaymentRejected(
            Reason.INVALID_NETWORK,
            f"the RPC of {network.caip2} serves chain {chain_id}: check its rpc_urls",
        )
    block = await chain.block_number()  # every read below at this one block
    terms = await _mint_token(chain, token_address, network, block)
    _check_expected(terms, expect_price, expect_cap, asset_wanted)
    known = network.asset(terms.payment_token) or next(
        (a for a in registered_assets if a.address.lower() == terms.payment_token.lower()), None
    )
    asset = await _payment_asset(chain, network, known, terms.payment_token, block)
    await _check_minters(chain, served, token_address, block)
    token = Token(
        address=token_address,
        chain_id=network.chain_id,
        name=terms.name,
        symbol=terms.symbol,
        payment_asset=asset.address,
        asset_name=asset.name,
        asset_version=asset.version,
        asset_decimals=asset.decimals,
        price_per_mint=terms.price_per_mint,
        mint_amount=terms.mint_amount,
        max_mint_count=terms.max_mint_count,
    )
    return TokenAdded(
        token=token,
        network=network,
        block=block,
        minted=terms.mint_count,
        created=True,
        minters=served.signers,
    )


async def list_tokens(store: Store, networks: ServedNetworks | None = None) -> list[TokenListing]:
    """Every token for sale, with what its contract has minted, read from the served
    networks' chains at once (None for a token whose chain is not served or not read)."""
    tokens = await store.list_tokens()
    served = networks or ServedNetworks(())

    async def minted(token: Token) -> int | None:
        network = served.by_chain_id(token.chain_id)
        if network is None or network.chain is None:
            return None
        try:
            terms = await network.chain.mint_token_terms(token.address, "latest")
        except (ChainUnavailable, ChainRejected):
            return None
        return None if terms is None else terms.mint_count

    counts = await asyncio.gather(*(minted(t) for t in tokens))
    return [TokenListing(t, m) for t, m in zip(tokens, counts, strict=True)]


# -- the checks ---------------------------------------------------------------------------


def _address(value: str, what: str) -> str:
    if not _ADDRESS.fullmatch(value):
        raise PaymentRejected(
            Reason.INVALID_TOKEN_ADDRESS, f"{what} {value!r} is not a 0x address of 40 hex digits"
        )
    return checksum(value)


def _on_another_chain(token: str, chain_id: int) -> PaymentRejected:
    return PaymentRejected(
        Reason.TOKEN_ON_ANOTHER_CHAIN,
        f"{token} is registered on eip155:{chain_id}; a token's network never changes "
        "(deploy it at a new address)",
    )


async def _mint_token(chain: Chain, token: str, network: Network, block: int) -> MintTokenTerms:
    terms = await chain.mint_token_terms(token, block)
    if terms is None:
        if not await chain.has_code(token, block):
            raise PaymentRejected(
                Reason.NOT_A_MINT_TOKEN,
                f"no contract at {token} on {network.caip2} (block {block}): wrong address "
                "or wrong network?",
            )
        raise PaymentRejected(
            Reason.NOT_A_MINT_TOKEN,
            f"{token} on {network.caip2} is not a MintToken: it does not answer name, "
            "symbol, MINT_AMOUNT, MAX_MINT_COUNT, PRICE_PER_MINT, PAYMENT_TOKEN, mintCount "
            "and MINTER_ROLE",
        )
    if terms.minter_role != calls.MINTER_ROLE:
        raise PaymentRejected(
            Reason.NOT_A_MINT_TOKEN,
            f"{token}'s MINTER_ROLE is 0x{terms.minter_role.hex()}, not "
            f'keccak256("MINTER_ROLE"): not a MintToken',
        )
    if terms.price_per_mint <= 0 or terms.mint_amount <= 0 or terms.max_mint_count <= 0:
        raise PaymentRejected(
            Reason.NOT_A_MINT_TOKEN,
            f"{token} sells nothing payfirst can sell: PRICE_PER_MINT {terms.price_per_mint}, "
            f"MINT_AMOUNT {terms.mint_amount}, MAX_MINT_COUNT {terms.max_mint_count} "
            "(each must be above 0)",
        )
    if terms.mint_count >= terms.max_mint_count:
        raise PaymentRejected(
            Reason.SOLD_OUT,
            f"{token} has minted {terms.mint_count} of its {terms.max_mint_count}: nothing "
            "is left to sell",
        )
    return terms


def _check_expected(
    terms: MintTokenTerms, price: int | None, cap: int | None, asset: str | None
) -> None:
    differences = []
    if price is not None and price != terms.price_per_mint:
        differences.append(f"price per mint {terms.price_per_mint}, not {price}")
    if cap is not None and cap != terms.max_mint_count:
        differences.append(f"cap {terms.max_mint_count} mints, not {cap}")
    if asset is not None and asset != terms.payment_token:
        differences.append(f"payment asset {terms.payment_token}, not {asset}")
    if differences:
        raise PaymentRejected(
            Reason.TOKEN_TERMS_MISMATCH,
            f"{terms.address} is not what it was said to be: on chain its "
            + "; its ".join(differences),
        )


async def _payment_asset(
    chain: Chain, network: Network, known: Asset | None, address: str, block: int
) -> Asset:
    """The known asset at `address`, once the chain shows the same EIP-3009 asset there."""
    if known is None:
        raise PaymentRejected(
            Reason.UNSUPPORTED_PAYMENT_ASSET,
            f"the token is paid in {address}, an asset {network.caip2} does not know: add it "
            "as a [[network.asset]] (address, EIP-712 name and version, decimals) in "
            "PAYFIRST_NETWORKS_FILE",
        )
    problem = _asset_problem(known, await chain.asset_terms(address, block), network)
    if problem:
        raise PaymentRejected(
            Reason.UNSUPPORTED_PAYMENT_ASSET, f"payment asset {address}: {problem}"
        )
    return known


def _assets_of(tokens: Sequence[Token], chain_id: int) -> list[Asset]:
    """The payment assets of the tokens registered on a chain (a dev chain's assets are
    known only so)."""
    return [
        Asset(
            address=t.payment_asset,
            name=t.asset_name,
            version=t.asset_version,
            decimals=t.asset_decimals,
            symbol=t.asset_name,
        )
        for t in tokens
        if t.chain_id == chain_id
    ]


def _asset_problem(known: Asset, terms: AssetTerms | None, network: Network) -> str:
    if terms is None:
        return (
            "its EIP-712 domain (eip712Domain(), or name() and version()) and decimals() "
            "cannot be read"
        )
    if not terms.eip3009:
        return "it does not answer EIP-3009's authorizationState: payments could not settle"
    found = (terms.name, terms.version, terms.decimals)
    expected = (known.name, known.version, known.decimals)
    if found != expected:
        return (
            f"on chain its EIP-712 name, version and decimals are {found}, where payfirst "
            f"knows {expected}: payers would sign for the wrong domain"
        )
    if terms.domain_chain_id is not None and terms.domain_chain_id != network.chain_id:
        return f"its EIP-712 domain is for chain {terms.domain_chain_id}"
    if terms.verifying_contract is not None and terms.verifying_contract != known.address:
        return f"its EIP-712 domain verifies for {terms.verifying_contract}"
    return ""


async def _check_minters(chain: Chain, served: ServedNetwork, token: str, block: int) -> None:
    relayers = served.signers
    if not relayers:
        raise PaymentRejected(
            Reason.MINTER_ROLE_MISSING,
            f"{served.network.caip2} has no relayer keys: nobody would mint {token}",
        )
    held = await chain.have_role(token, calls.MINTER_ROLE, relayers, block)
    if any(h is None for h in held):
        raise ChainUnavailable(f"hasRole(MINTER_ROLE, ...) of {token} could not be read")
    missing = [r for r, h in zip(relayers, held, strict=True) if not h]
    if missing:
        raise MinterRoleMissing(token, missing, served.network)


# -- what the command line prints -------------------------------------------------------

#: `payfirst tokens list`'s table columns, `listing_row`'s cells in this order.
LIST_COLUMNS = (
    "Network",
    "Token",
    "Symbol",
    "Price per mint",
    "Mint amount",
    "Sold",
    "Remaining",
    "Cap",
    "Minted on chain",
)


def listing_row(listing: TokenListing) -> tuple[str, ...]:
    t = listing.token
    return (
        f"eip155:{t.chain_id}",
        t.address,
        t.symbol,
        f"{_units(t.price_per_mint, t.asset_decimals)} ({t.asset_name} {t.payment_asset})",
        str(t.mint_amount),
        str(t.reserved_count),
        str(t.remaining),
        str(t.max_mint_count),
        "?" if listing.minted is None else str(listing.minted),
    )


def added_lines(added: TokenAdded) -> list[str]:
    """What `payfirst tokens add` prints once a token is registered."""
    t = added.token
    verb = "registered" if added.created else "already registered; terms refreshed from chain:"
    return [
        f"{verb} {t.name} ({t.symbol}) {t.address} on {added.network.caip2}",
        f"  price per mint: {_units(t.price_per_mint, t.asset_decimals)} {t.asset_name} "
        f"({t.price_per_mint} atomic units of {t.payment_asset})",
        f"  mint amount: {t.mint_amount}; cap: {t.max_mint_count} mints, "
        f"{added.minted} minted on chain, {t.reserved_count} sold by payfirst",
        f"  minters: {', '.join(added.minters)} (each holds MINTER_ROLE)",
        f"  checked on chain at block {added.block}",
        f"  for sale at POST /api/mint/{t.address}",
    ]


def _units(atomic: int, decimals: int) -> str:
    return f"{Decimal(atomic).scaleb(-decimals):.{decimals}f}"
