"""Operating a running payfirst: stats, adopt-chain, reset-stuck, settings."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Annotated, Any

import typer
from rich.table import Table

from payfirst.app import open_database, open_runtime
from payfirst.cli.options import _choice, _seconds
from payfirst.cli.output import _aligned, _out, _progress, _show
from payfirst.cli.root import _CHAIN_ENV, _DB_ENV, app, settings_app
from payfirst.cli.running import _run
from payfirst.config import Config
from payfirst.domain.errors import ConfigError
from payfirst.domain.models import Payment
from payfirst.domain.settings import SPECS, RuntimeSettings, spec_of
from payfirst.domain.statuses import PaymentStatus
from payfirst.pipeline.settings import SettingsReader


@app.command("stats", epilog=_DB_ENV)
def stats_command(
    as_json: Annotated[
        bool, typer.Option("--json", help="As JSON (the default when not a terminal).")
    ] = False,
) -> None:
    """Print queue counts and rates: a table on a terminal, JSON otherwise."""
    _run(lambda config: stats(config, as_json=as_json))


@app.command("adopt-chain", epilog=_DB_ENV)
def adopt_chain_command(
    chain_id: Annotated[
        int, typer.Option("--chain-id", help="The chain they settle on, e.g. 8453 for Base.")
    ],
) -> None:
    """Give the payments and relayer nonces of no recorded chain (from the single-chain
    setup) the chain id they settle on."""
    _run(lambda config: adopt_chain(config, chain_id))


@app.command("reset-stuck", epilog=_CHAIN_ENV)
def reset_stuck_command(
    older_than: Annotated[
        int | None,
        typer.Option(
            "--older-than",
            parser=_seconds,
            metavar="DURATION",
            help="e.g. 90s, 5m, 1h (default: the confirmation_timeout_s setting).",
        ),
    ] = None,
) -> None:
    """Settle payments `sent` for too long by what the chain says."""
    _run(lambda config: reset_stuck(config, older_than))


# -- settings -----------------------------------------------------------------------------

_SETTING = _choice(*SPECS)
_SETTING_HELP = "The setting: " + ", ".join(SPECS) + "."


@settings_app.command("show", epilog=_DB_ENV)
def settings_show_command(
    as_json: Annotated[bool, typer.Option("--json", help="As JSON.")] = False,
) -> None:
    """Every setting: value in force, default, meaning."""
    _run(lambda config: settings_command(config, "show", as_json=as_json))


@settings_app.command("set", epilog=_DB_ENV)
def settings_set_command(
    name: Annotated[str, typer.Argument(parser=_SETTING, metavar="NAME", help=_SETTING_HELP)],
    value: Annotated[str, typer.Argument(metavar="VALUE", help="Its new value.")],
) -> None:
    """Set NAME to VALUE (checked against its bounds first)."""
    _run(lambda config: settings_command(config, "set", name, value))


@settings_app.command("unset", epilog=_DB_ENV)
def settings_unset_command(
    name: Annotated[str, typer.Argument(parser=_SETTING, metavar="NAME", help=_SETTING_HELP)],
) -> None:
    """Back to the default."""
    _run(lambda config: settings_command(config, "unset", name))


async def adopt_chain(config: Config, chain_id: int) -> None:
    """`payfirst adopt-chain --chain-id N`: the rows of the single-chain setup (payments of
    no recorded chain, relayer state of chain 0) become chain N's, so a start-up serving
    only a networks file can settle them (it refuses to start while they wait)."""
    if chain_id <= 0:
        raise ConfigError(f"--chain-id must be a positive chain id, got {chain_id}")
    store = await open_database(config)
    try:
        await store.adopt_default_chain(chain_id)
    finally:
        await store.close()
    print(f"rows of no recorded chain adopted by chain {chain_id}")


async def stats(config: Config, *, as_json: bool = False) -> None:
    """Queue counts and rates: JSON when asked or when not a terminal, else tables."""
    store = await open_database(config)
    try:
        numbers = await store.payment_stats()
    finally:
        await store.close()
    console = _out()
    if as_json or not console.is_terminal:
        print(json.dumps(numbers, indent=2))
        return
    console.print(stats_table(numbers))


def stats_table(numbers: dict[str, Any]) -> Table:
    """`payment_stats()` as one table: the count of every payment and mint status, then
    the rates."""
    table = Table("QUEUE", "STATUS", header_style="bold", title="payfirst stats")
    table.add_column("COUNT", justify="right")
    for queue in ("payments", "mints"):
        for status, count in numbers.get(queue, {}).items():
            table.add_row(queue, status, str(count))
        table.add_section()
    for name, value in numbers.items():
        if not isinstance(value, dict):
            shown = "-" if value is None else f"{value:.1f}" if isinstance(value, float) else value
            table.add_row(name.replace("_", " "), "", str(shown))
    return table


async def settings_command(
    config: Config,
    action: str,
    name: str | None = None,
    value: str | None = None,
    *,
    as_json: bool = False,
) -> None:
    """`payfirst settings show|set|unset`: the store's rows through RuntimeSettings; a
    value is checked against its bounds before anything is written. The workers read the
    settings at every tick: a change applies without a restart."""
    parsed = 0
    if action == "set":
        assert name is not None and value is not None
        parsed = spec_of(name).parse(value)  # SettingError before any IO
    store = await open_database(config)
    try:
        if action == "set":
            assert name is not None
            await store.set_setting(name, parsed)
            print(f"{name} = {parsed}")
        elif action == "unset":
            assert name is not None
            removed = await store.unset_setting(name)
            default = spec_of(name).default
            print(f"{name} = {default} (default{'' if removed else ', was not set'})")
        elif as_json:
            print(settings_json(await store.get_settings()))
        else:
            rows = await store.get_settings()
            cells, notes = _settings_cells(rows)
            _show(cells[0], cells[1:], lambda: settings_table(rows), notes=notes)
    finally:
        await store.close()


def settings_json(rows: dict[str, int]) -> str:
    """Every setting as JSON: value in force, default, bounds, meaning, and the stored row
    (null when none; a stored value out of bounds shows here, with the default in force)."""
    current, problems = RuntimeSettings.from_rows(rows)
    in_force = current.as_rows()
    return json.dumps(
        {
            "settings": [
                {
                    "name": spec.name,
                    "value": in_force[spec.name],
                    "default": spec.default,
                    "minimum": spec.minimum,
                    "maximum": spec.maximum,
                    "stored": rows.get(spec.name),
                    "description": spec.description,
                }
                for spec in SPECS.values()
            ],
            "problems": problems,
        },
        indent=2,
    )


def _settings_cells(rows: dict[str, int]) -> tuple[list[tuple[str, ...]], list[str]]:
    current, problems = RuntimeSettings.from_rows(rows)
    in_force = current.as_rows()
    cells: list[tuple[str, ...]] = [("NAME", "VALUE", "DEFAULT", "DESCRIPTION")]
    cells += [
        (
            spec.name,
            str(in_force[spec.name]) + ("*" if spec.name in rows else ""),
            str(spec.default),
            spec.description,
        )
        for spec in SPECS.values()
    ]
    notes = ["* set by an operator (`payfirst settings unset NAME`: back to the default)"]
    notes += [f"ignored: {problem}" for problem in problems]
    return cells, notes


def settings_table(rows: dict[str, int]) -> str:
    """Every setting as a table: name, value in force, default, meaning; then every stored
    row that is ignored (unknown, or out of bounds: its default applies)."""
    cells, notes = _settings_cells(rows)
    return "\n".join(_aligned(cells) + notes)


async def reset_stuck(config: Config, older_than_s: int | None) -> None:
    runtime = await open_runtime(config, start_devchain=False)
    try:
        settings = await SettingsReader(runtime.store).read()
        if older_than_s is None:
            older_than_s = settings.confirmation_timeout_s
        for network in runtime.networks:
            confirmer = network.confirmers(runtime.store)[0]
            stuck = await confirmer.stuck_payments(older_than_s)
            print(
                f"{network.network.caip2}: {len(stuck)} payments sent more than {older_than_s}s ago",
                flush=True,
            )
            with _progress() as progress:
                task = progress.add_task(f"deciding by {network.network.caip2}", total=len(stuck))
                for chunk in _by_transaction(stuck, settings.confirmation_batch_size):
                    await confirmer.check(chunk, [], settings)
                    progress.advance(task, len(chunk))
            for payment in stuck:
                now = await runtime.store.get_payment(payment.id)
                assert now is not None
                print(f"  {payment.id}: {now.status} {now.error or ''}")
                if now.status == PaymentStatus.SENT:
                    print("    (still in flight: re-sent; it can still be mined)")
    finally:
        await runtime.close()


def _by_transaction(payments: Sequence[Payment], txs: int) -> Iterator[list[Payment]]:
    """The payments in chunks of at most `txs` transactions, every payment of one
    transaction in the same chunk (as the confirmer's own ticks take them)."""
    groups: dict[str, list[Payment]] = {}
    for payment in payments:
        groups.setdefault(payment.tx_hash or str(payment.id), []).append(payment)
    chunk: list[Payment] = []
    count = 0
    for group in groups.values():
        chunk += group
        count += 1
        if count >= max(txs, 1):
            yield chunk
            chunk, count = [], 0
    if chunk:
        yield chunk
