"""Agents' spending policies: `payfirst payers list`, `payfirst approvals
list|approve|reject`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from payfirst.app import open_database
from payfirst.cli.output import _aligned, _show
from payfirst.cli.root import _DB_ENV, _LIMIT_HELP, approvals_app, payers_app
from payfirst.cli.running import _operator, _run
from payfirst.config import Config
from payfirst.domain.errors import PaymentRejected
from payfirst.usecases.accounts import check_id, check_limit
from payfirst.usecases.policies import Policies


@payers_app.command("list", epilog=_DB_ENV)
def payers_list_command(
    agent: Annotated[
        str | None, typer.Option("--agent", metavar="ID", help="One agent's only.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help=_LIMIT_HELP)] = 50,
) -> None:
    """Payer addresses, by address."""
    _run(lambda config: policies_command(config, "payers", agent=agent, limit=limit))


@approvals_app.command("list", epilog=_DB_ENV)
def approvals_list_command(
    limit: Annotated[int, typer.Option("--limit", help=_LIMIT_HELP)] = 50,
) -> None:
    """Payments awaiting approval, oldest first."""
    _run(lambda config: policies_command(config, "list", limit=limit))


_PAYMENT_ID = typer.Argument(metavar="PAYMENT_ID", help="The payment awaiting approval.")


@approvals_app.command("approve", epilog=_DB_ENV)
def approvals_approve_command(payment_id: Annotated[str, _PAYMENT_ID]) -> None:
    """A payment awaiting approval: settle it like any other."""
    _run(lambda config: policies_command(config, "approve", payment_id=payment_id))


@approvals_app.command("reject", epilog=_DB_ENV)
def approvals_reject_command(payment_id: Annotated[str, _PAYMENT_ID]) -> None:
    """A payment awaiting approval: fail it."""
    _run(lambda config: policies_command(config, "reject", payment_id=payment_id))


async def policies_command(
    config: Config,
    action: str,
    *,
    agent: str | None = None,
    limit: int = 50,
    payment_id: str | None = None,
) -> int:
    """`payfirst payers list` (action "payers") and `payfirst approvals
    list|approve|reject`, as the operator; the exit status (2: refused, nothing written)."""
    store = await open_database(config)
    operator = _operator()
    service = Policies(store)
    try:
        if action == "payers":
            agent_id = None if agent is None else check_id(agent, "the agent id")
            payers = await service.payers(operator, check_limit(limit), None, agent_id)
            columns: tuple[str, ...] = ("ADDRESS", "AGENT", "VERIFIED")
            rows: list[tuple[str, ...]] = [
                (p.address, str(p.account_id), p.verified_at.isoformat()) for p in payers
            ]
            plain: list[tuple[str, ...]] = [("ADDRESS", "AGENT", "VERIFIED", "")]
            plain += [(*r, "") for r in rows]
        elif action == "list":
            held = await service.awaiting_approval(operator, check_limit(limit))
            columns = ("ID", "AMOUNT", "PAYER", "ASSET", "PAY TO", "CREATED")
            rows = [
                (
                    str(p.id),
                    str(p.amount),
                    p.payer,
                    p.payment_asset,
                    p.pay_to,
                    p.created_at.isoformat(),
                )
                for p in held
            ]
            plain = [("ID", "AMOUNT", "PAYER", "ASSET  PAY_TO  CREATED")] + [
                (*r[:3], "  ".join(r[3:])) for r in rows
            ]
        else:
            assert payment_id is not None
            decided = await service.decide(
                operator, check_id(payment_id, "the payment id"), approve=action == "approve"
            )
            columns = ("ID", "STATUS", "PAYER", "AMOUNT")
            rows = [(str(decided.id), decided.status.value, decided.payer, str(decided.amount))]
            plain = [columns, *rows]
    except PaymentRejected as exc:
        print(f"payfirst: {exc.reason.value}: {exc.message}", file=sys.stderr)
        return 2
    finally:
        await store.close()
    _show(columns, rows, lambda: "\n".join(_aligned(plain)))
    return 0
