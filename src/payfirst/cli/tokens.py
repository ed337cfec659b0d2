"""`payfirst tokens add|list`."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated

import typer

from payfirst.app import Unreachable, open_database, open_runtime
from payfirst.cli.output import _show
from payfirst.cli.root import _CHAIN_ENV, log, tokens_app
from payfirst.cli.running import _run
from payfirst.config import Config
from payfirst.domain.errors import PaymentRejected
from payfirst.ports.chain import ChainUnavailable
from payfirst.usecases.deps import ServedNetworks
from payfirst.usecases.tokens import (
    LIST_COLUMNS,
    TokenListing,
    add_token,
    added_lines,
    list_tokens,
    listing_row,
)


@tokens_app.command("add", epilog=_CHAIN_ENV)
def tokens_add_command(
    address: Annotated[str, typer.Argument(metavar="ADDRESS", help="The MintToken contract.")],
    network: Annotated[
        str | None,
        typer.Option(
            "--network",
            help="A served network, CAIP-2 (eip155:8453) or x402 v1 name (default: the "
            "first served).",
        ),
    ] = None,
    price: Annotated[
        int | None,
        typer.Option(
            "--price", help="The price per mint you expect, atomic units of the payment asset."
        ),
    ] = None,
    cap: Annotated[
        int | None, typer.Option("--cap", help="The cap you expect (MAX_MINT_COUNT, mints).")
    ] = None,
    asset: Annotated[
        str | None, typer.Option("--asset", help="The payment asset you expect (0x address).")
    ] = None,
) -> None:
    """Register a mintable token for sale once the chain shows it is what it claims: a
    MintToken at the expected price, cap and payment asset, mintable by every relayer.
    Exit 1 when refused (nothing stored) or the chain cannot be read."""
    _run(
        lambda config: tokens_add(
            config, address, network=network, price=price, cap=cap, asset=asset
        )
    )


@tokens_app.command("list", epilog=_CHAIN_ENV)
def tokens_list_command() -> None:
    """Every token for sale: price, cap, sold, remaining, and what its contract has minted
    (? when its chain cannot be read)."""
    _run(tokens_list)


async def tokens_add(
    config: Config,
    address: str,
    *,
    network: str | None,
    price: int | None,
    cap: int | None,
    asset: str | None,
) -> int:
    """`payfirst tokens add`; the exit status (1: refused or the chain unreachable, 2: a
    network not served here)."""
    runtime = await open_runtime(config, start_devchain=False)
    try:
        served = ServedNetworks(runtime.served())
        target = served.all[0] if network is None and served.all else None
        if network is not None:
            target = served.get(network)
        if target is None:
            print(
                f"payfirst: network {network} is not served here (served: {served.describe()})",
                file=sys.stderr,
            )
            return 2
        try:
            added = await add_token(
                runtime.store,
                target,
                address,
                expect_price=price,
                expect_cap=cap,
                expect_asset=asset,
            )
        except PaymentRejected as exc:
            print(f"payfirst: {exc.reason.value}: {exc.message}", file=sys.stderr)
            return 1
        except ChainUnavailable:
            print("payfirst: chain unreachable, try again", file=sys.stderr)
            return 1
    finally:
        await runtime.close()
    print("\n".join(added_lines(added)))
    return 0


async def tokens_list(config: Config) -> None:
    """`payfirst tokens list`: what each contract has minted is read from the served
    chains; without them (an RPC down) the list is the database's, minted shown as ?."""
    try:
        runtime = await open_runtime(config, start_devchain=False)
    except Unreachable as exc:
        log.warning("listing without the chain: %s", exc)
        store = await open_database(config)
        try:
            listings = await list_tokens(store)
        finally:
            await store.close()
    else:
        try:
            listings = await list_tokens(runtime.store, ServedNetworks(runtime.served()))
        finally:
            await runtime.close()
    rows = [listing_row(listing) for listing in listings]
    _show(LIST_COLUMNS, rows, lambda: tokens_table(listings), title="tokens for sale")


def tokens_table(listings: Sequence[TokenListing]) -> str:
    """The listing as plain text: a header of LIST_COLUMNS, one token a line, the cells
    tab-separated (a price cell holds spaces)."""
    rows = [LIST_COLUMNS, *(listing_row(listing) for listing in listings)]
    return "\n".join("\t".join(row) for row in rows)
