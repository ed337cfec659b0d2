"""`payfirst ledger check|reverse`."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import typer

from payfirst.app import open_database, open_runtime
from payfirst.cli.output import _aligned, _progress
from payfirst.cli.root import _CHAIN_ENV, _DB_ENV, ledger_app
from payfirst.cli.running import _run
from payfirst.config import Config
from payfirst.usecases.ledger_check import CheckedNetwork, LedgerReport, check_ledger


@ledger_app.command("check", epilog=_CHAIN_ENV)
def ledger_check_command() -> None:
    """Check the ledger's invariants against the chain (exit 1 on any violation)."""
    _run(ledger_check)


@ledger_app.command("reverse", epilog=_DB_ENV)
def ledger_reverse_command(
    payment_id: Annotated[UUID, typer.Argument(metavar="PAYMENT_ID", help="The payment.")],
    reason: Annotated[str, typer.Option("--reason", help="Why, kept with the reversal.")],
) -> None:
    """Reverse a completed payment's ledger entries (one the check found not on chain)."""
    _run(lambda config: ledger_reverse(config, payment_id, reason))


async def ledger_reverse(config: Config, payment_id: UUID, reason: str) -> int:
    """`payfirst ledger reverse`; the exit status (1: nothing to reverse)."""
    store = await open_database(config)
    try:
        reversed_ = await store.reverse_payment(payment_id, reason)
    finally:
        await store.close()
    if not reversed_:
        print(f"{payment_id}: no ledger transaction to reverse (or already reversed)")
        return 1
    print(f"{payment_id}: reversed")
    return 0


async def ledger_check(config: Config) -> int:
    """`payfirst ledger check`; the exit status (1: a violation)."""
    runtime = await open_runtime(config, start_devchain=False)
    try:
        tokens = await runtime.store.list_tokens()
        networks = [
            CheckedNetwork(
                chain_id=n.chain_id,
                chain=n.chain,
                treasury=n.network.treasury_address,
                assets=tuple(
                    sorted(
                        {a.address for a in n.network.assets}
                        | {t.payment_asset for t in tokens if t.chain_id == n.chain_id}
                    )
                ),
            )
            for n in runtime.networks
        ]
        with _progress() as progress:
            # Every payment at most: the check reads the completed ones and those with
            # a ledger transaction.
            counts = (await runtime.store.payment_stats()).get("payments", {})
            task = progress.add_task("payments checked", total=sum(counts.values()) or None)

            def checked(count: int) -> None:
                progress.update(task, completed=count)

            report = await check_ledger(runtime.store, networks, progress=checked)
    finally:
        await runtime.close()
    print(ledger_table(report))
    return 0 if report.ok else 1


def ledger_table(report: LedgerReport) -> str:
    """The findings as a table, then a one-line verdict."""
    rows = [("CHECK", "SUBJECT", "RESULT", "DETAIL")] + [
        (f.check, f.subject, "VIOLATION" if f.violation else "ok", f.detail)
        for f in report.findings
    ]
    lines = _aligned(rows)
    count = len(report.violations)
    verdict = "ledger OK" if report.ok else f"ledger check FAILED: {count} violations"
    lines.append(f"{verdict} ({report.payments_checked} payments checked)")
    return "\n".join(lines)
