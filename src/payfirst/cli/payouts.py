"""`payfirst payouts list|create`."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated

import typer

from payfirst.app import open_database
from payfirst.cli.output import _aligned, _show
from payfirst.cli.root import _DB_ENV, _LIMIT_HELP, payouts_app
from payfirst.cli.running import _operator, _run
from payfirst.config import Config
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.payouts import Payout
from payfirst.usecases.accounts import check_id, check_limit
from payfirst.usecases.payouts import Payouts


@payouts_app.command("list", epilog=_DB_ENV)
def payouts_list_command(
    provider: Annotated[
        str | None, typer.Option("--provider", metavar="ID", help="One provider's only.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help=_LIMIT_HELP)] = 50,
) -> None:
    """Payouts, newest first."""
    _run(lambda config: payouts_command(config, "list", provider=provider, limit=limit))


@payouts_app.command("create", epilog=_DB_ENV)
def payouts_create_command(
    provider: Annotated[str, typer.Option("--provider", metavar="ID", help="The provider.")],
    amount: Annotated[
        str | None, typer.Option("--amount", help="Atomic units (default: all available).")
    ] = None,
    network: Annotated[
        str | None, typer.Option("--network", help="CAIP-2, e.g. eip155:8453.")
    ] = None,
    asset: Annotated[str | None, typer.Option("--asset", help="The asset's address.")] = None,
) -> None:
    """Pay out a provider's available balance (the payout loop signs it)."""
    _run(
        lambda config: payouts_command(
            config, "create", provider=provider, amount=amount, network=network, asset=asset
        )
    )


async def payouts_command(
    config: Config,
    action: str,
    *,
    provider: str | None = None,
    limit: int = 50,
    amount: str | None = None,
    network: str | None = None,
    asset: str | None = None,
) -> int:
    """`payfirst payouts list|create`, as the operator; the exit status (2: refused,
    nothing written)."""
    store = await open_database(config)
    operator = _operator()
    service = Payouts(store)
    try:
        if action == "create":
            assert provider is not None
            payout = await service.request(
                operator,
                provider_id=check_id(provider, "the provider id"),
                network=network,
                asset=asset,
                amount=amount,
            )
            payouts = [payout]
        else:
            provider_id = None if provider is None else check_id(provider, "provider")
            page = await service.payouts(operator, check_limit(limit), provider_id=provider_id)
            payouts = page.items
    except PaymentRejected as exc:
        print(f"payfirst: {exc.reason.value}: {exc.message}", file=sys.stderr)
        return 2
    finally:
        await store.close()
    _show(
        ("ID", "STATUS", "AMOUNT", "PROVIDER", "CHAIN", "ASSET", "TO", "TX"),
        [
            (
                str(p.id),
                p.status.value,
                str(p.amount),
                str(p.provider_id),
                str(p.chain_id),
                p.asset,
                p.to_address,
                p.tx_hash or "-",
            )
            for p in payouts
        ],
        lambda: payouts_table(payouts),
    )
    return 0


def payouts_table(payouts: Sequence[Payout]) -> str:
    rows = [("ID", "STATUS", "AMOUNT", "PROVIDER  CHAIN  ASSET  TO  TX")] + [
        (
            str(p.id),
            p.status.value,
            str(p.amount),
            f"{p.provider_id}  {p.chain_id}  {p.asset}  {p.to_address}  {p.tx_hash or '-'}",
        )
        for p in payouts
    ]
    return "\n".join(_aligned(rows))
