"""payfirst command line (typer + rich): serve | api | worker | migrate | stats | settings |
reset-stuck | adopt-chain | ledger | payouts | payers | approvals | webhooks | accounts |
keys | tokens | pay | demo.

Every command reads its configuration from PAYFIRST_* environment variables (payfirst.config);
each command's help lists the ones it reads. Tables are drawn with rich on a terminal; piped
or redirected, the output is the plain text scripts parse (and `stats` is JSON)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import re
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Coroutine, Iterator, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn
from uuid import UUID, uuid4

import httpx
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

import payfirst
from payfirst.adapters.webhook_http import WebhookSender, checked_addresses
from payfirst.api.http_limits import HttpLimits
from payfirst.api.services import Services
from payfirst.app import (
    Runtime,
    Unreachable,
    build_app,
    open_database,
    open_runtime,
    redact,
)
from payfirst.client import PaymentError, PaymentRefused
from payfirst.client.cli_pay import KEY_ENV, PayerKeyError, outcome_lines, pay, payer_key
from payfirst.config import Config, load_config
from payfirst.domain.accounts import Account, Role
from payfirst.domain.errors import ConfigError, PaymentRejected
from payfirst.domain.models import Payment
from payfirst.domain.payouts import Payout
from payfirst.domain.settings import SPECS, RuntimeSettings, SettingError, spec_of
from payfirst.domain.statuses import PaymentStatus
from payfirst.domain.webhooks import AddressPolicy, WebhookEndpoint, parse_networks
from payfirst.logs import configure as configure_logging
from payfirst.metrics import setup as setup_metrics
from payfirst.pipeline.settings import SettingsReader
from payfirst.pipeline.webhooks import WebhookDispatcher
from payfirst.pipeline.worker import Worker
from payfirst.ports.chain import ChainUnavailable
from payfirst.ports.store import Store
from payfirst.server import (
    ServerLimits,
    StopSignals,
    make_server,
    restore_default_sigint,
    watch_server,
)
from payfirst.usecases.accounts import (
    MAX_PAGE,
    Accounts,
    IssuedKey,
    check_expires_in,
    check_fee_bps,
    check_id,
    check_key_name,
    check_limit,
    check_name,
    check_payout_address,
    check_role,
)
from payfirst.usecases.api_keys import KeyMode
from payfirst.usecases.deps import ServedNetworks
from payfirst.usecases.ledger_check import CheckedNetwork, LedgerReport, check_ledger
from payfirst.usecases.payouts import Payouts
from payfirst.usecases.policies import Policies
from payfirst.usecases.tokens import (
    LIST_COLUMNS,
    TokenListing,
    add_token,
    added_lines,
    list_tokens,
    listing_row,
)
from payfirst.usecases.webhooks import UrlCheck, Webhooks

log = logging.getLogger("payfirst")

# -- the environment variables each command reads (payfirst.config) ----------------------

_LOGS = "PAYFIRST_LOG_LEVEL, PAYFIRST_LOG_FORMAT"
_DATABASE = "PAYFIRST_DATABASE_URL (unset: the embedded PostgreSQL a `payfirst serve` started)"
_CHAIN = (
    "PAYFIRST_RPC_URL or PAYFIRST_NETWORKS_FILE, PAYFIRST_RELAYER_KEY / PAYFIRST_RELAYER_KEYS / "
    "PAYFIRST_RELAYER_KEY_FILE, PAYFIRST_SETTLER_ADDRESS, PAYFIRST_TREASURY_ADDRESS"
)
_HTTP = (
    "PAYFIRST_HOST, PAYFIRST_PORT, PAYFIRST_MAX_QUANTITY, PAYFIRST_SETTLE_TIMEOUT_S, "
    "PAYFIRST_SETTLE_PAY_TO, PAYFIRST_MIN_SETTLE_AMOUNT, PAYFIRST_PLATFORM_FEE_BPS, "
    "PAYFIRST_RATE_LIMIT_PER_CLIENT, PAYFIRST_RATE_LIMIT_PER_PAYER, PAYFIRST_MAX_WAITERS, "
    "PAYFIRST_MAX_BODY_BYTES, PAYFIRST_MAX_HEADER_BYTES, PAYFIRST_HEADER_TIMEOUT_S, "
    "PAYFIRST_BODY_TIMEOUT_S, PAYFIRST_KEEP_ALIVE_S, PAYFIRST_MAX_CONNECTIONS, "
    "PAYFIRST_ACCESS_LOG, PAYFIRST_STATUS_PAGE, PAYFIRST_METRICS_DIR"
)
_WEBHOOKS = (
    "PAYFIRST_WEBHOOK_ALLOW_PRIVATE, PAYFIRST_WEBHOOK_ALLOWED_CIDRS, PAYFIRST_WEBHOOK_CONCURRENCY"
)


def _env(*groups: str) -> str:
    return "Environment: " + "; ".join((*groups, _LOGS)) + "."


_DB_ENV = _env(_DATABASE)
_CHAIN_ENV = _env(_DATABASE, _CHAIN)

_LIMIT_HELP = "At most this many (1..100)."

app = typer.Typer(
    name="payfirst",
    help="payfirst: an x402 payment server. Payment first, delivery after.\n\n"
    "Every command reads PAYFIRST_* environment variables; `payfirst COMMAND --help` "
    "lists the ones it reads. Tables are drawn on a terminal; piped, the output is plain "
    "text (and `stats` JSON).",
    rich_markup_mode="markdown",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # a traceback never shows locals (keys, URLs)
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _group(name: str, help_: str) -> typer.Typer:
    group = typer.Typer(
        name=name,
        help=help_,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode="markdown",
    )
    app.add_typer(group, name=name)
    return group


settings_app = _group("settings", "Show or change the runtime settings (no restart needed).")
ledger_app = _group("ledger", "The double-entry ledger: check it, reverse a payment's entries.")
payouts_app = _group("payouts", "Providers' payouts: list, create.")
payers_app = _group("payers", "Agents' payer addresses: list.")
approvals_app = _group("approvals", "Payments held by a spending policy: list, approve, reject.")
webhooks_app = _group("webhooks", "Webhook endpoints: list, replay.")
accounts_app = _group("accounts", "Accounts of the admin API: create, list, revoke.")
keys_app = _group("keys", "API keys: create, revoke.")
tokens_app = _group(
    "tokens", "Tokens for sale: register a mintable token (checked on chain), list them."
)


def command_names() -> set[str]:
    """The top-level commands (the container files may run only these)."""
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    return set(group.commands)


def main(argv: Sequence[str] | None = None) -> int:
    """The console script (payfirst.entry): runs one command; its exit status."""
    command = typer.main.get_command(app)
    try:
        command.main(
            args=None if argv is None else list(argv), prog_name="payfirst", standalone_mode=True
        )
    except SystemExit as exit_:
        code = exit_.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    return 0


def _show_version(value: bool) -> None:
    if value:
        print(f"payfirst {payfirst.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_show_version,
            is_eager=True,
            help="Print payfirst's version and exit.",
        ),
    ] = False,
) -> None:
    """The root: --version."""


# -- running a command ------------------------------------------------------------------


def _config() -> Config:
    try:
        config = load_config()
    except ConfigError as exc:
        _fail(f"configuration error: {exc}", 2)
    configure_logging(config.log_level, config.log_format, access_log=config.access_log)
    return config


def _fail(message: str, code: int) -> NoReturn:
    print(f"payfirst: {message}", file=sys.stderr)
    raise typer.Exit(code)


def _exit_of(call: Callable[[], int | None]) -> NoReturn:
    """Runs a command's work and leaves with its exit status: 2 for a configuration or
    setting error, 1 when a database or chain cannot be reached."""
    try:
        code = call() or 0
    except ConfigError as exc:
        _fail(f"configuration error: {exc}", 2)
    except SettingError as exc:
        _fail(str(exc), 2)
    except Unreachable as exc:
        _fail(f"cannot start: {exc}", 1)
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)


def _run(work: Callable[[Config], Coroutine[Any, Any, int | None]]) -> NoReturn:
    """A command's async work with the configuration from the environment."""
    config = _config()
    _exit_of(lambda: asyncio.run(work(config)))


def _out() -> Console:
    return Console(highlight=False)


def _err() -> Console:
    return Console(stderr=True, highlight=False)


def _progress(console: Console | None = None) -> Progress:
    """A progress bar on stderr when it is a terminal; nothing at all otherwise (a log or a
    pipe gets the command's results only)."""
    console = console or _err()
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


def _show(
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    plain: Callable[[], str],
    *,
    notes: Sequence[str] = (),
    title: str | None = None,
) -> None:
    """A rich table on a terminal; the plain text (`plain()`) when piped or redirected."""
    console = _out()
    if not console.is_terminal:
        print(plain())
        return
    table = Table(*columns, title=title, header_style="bold", show_lines=False)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # a name may hold [brackets]
    console.print(table)
    for note in notes:
        console.print(note, markup=False)


# -- the server ---------------------------------------------------------------------------


def _server(command: str) -> Config:
    config = _config()
    restore_default_sigint()
    forks = command == "api" and config.api_processes > 1
    setup_metrics(
        config.metrics_dir or (tempfile.mkdtemp(prefix="payfirst-metrics-") if forks else None)
    )
    return config


@app.command(
    "serve",
    epilog=_env(
        _DATABASE.replace("a `payfirst serve` started", "started under var/postgres"),
        _CHAIN + " (unset: a local dev chain)",
        "PAYFIRST_RESET, PAYFIRST_ANVIL_PORT",
        _HTTP,
        _WEBHOOKS,
    ),
)
def serve_command(
    reset: Annotated[
        bool,
        typer.Option(
            "--reset",
            help="Start the embedded database and the dev chain afresh (deletes their data "
            "under var/; the same as PAYFIRST_RESET=1).",
        ),
    ] = False,
) -> None:
    """API and workers in one process; without PAYFIRST_RPC_URL, also a local dev chain;
    without PAYFIRST_DATABASE_URL, an embedded PostgreSQL under var/postgres."""
    config = _server("serve")
    if reset:
        config = dataclasses.replace(config, reset=True)
    _exit_of(lambda: asyncio.run(serve(config, api=True, worker=True)))


@app.command("api", epilog=_env(_DATABASE, _CHAIN, "PAYFIRST_API_PROCESSES", _HTTP, _WEBHOOKS))
def api_command() -> None:
    """The HTTP API only (workers run elsewhere); PAYFIRST_API_PROCESSES processes share
    its port."""
    config = _server("api")
    _exit_of(lambda: _run_api(config))


@app.command("worker", epilog=_env(_DATABASE, _CHAIN, _WEBHOOKS, "PAYFIRST_METRICS_DIR"))
def worker_command() -> None:
    """The sender, confirmer, mint, payout and webhook loops only (the API runs
    elsewhere)."""
    config = _server("worker")
    _exit_of(lambda: asyncio.run(serve(config, api=False, worker=True)))


@app.command("migrate", epilog=_DB_ENV)
def migrate_command() -> None:
    """Apply the database migrations and exit."""
    _run(migrate)


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


def _seconds(value: str) -> int:
    """A duration option (90s, 5m, 1h, 30d or seconds) as seconds."""
    try:
        return _duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _choice(*choices: str) -> Callable[[str], str]:
    """A parser accepting one of `choices` (listed in the option's help)."""

    def parse(value: str) -> str:
        if value not in choices:
            shown = ", ".join(repr(c) for c in choices)
            raise typer.BadParameter(f"invalid choice: {value!r} (choose from {shown})")
        return value

    return parse


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


# -- ledger -------------------------------------------------------------------------------


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


# -- payouts, payers, approvals, webhooks -----------------------------------------------


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


@webhooks_app.command("list", epilog=_DB_ENV)
def webhooks_list_command(
    account: Annotated[
        str | None, typer.Option("--account", metavar="ID", help="One account's only.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help=_LIMIT_HELP)] = 50,
) -> None:
    """Webhook endpoints, oldest first."""
    _run(lambda config: webhooks_command(config, "list", account=account, limit=limit))


@webhooks_app.command("replay", epilog=_env(_DATABASE, _WEBHOOKS))
def webhooks_replay_command(
    endpoint: Annotated[str, typer.Argument(metavar="ID", help="The webhook endpoint's id.")],
    message: Annotated[
        str | None, typer.Option("--message", metavar="M", help="A message id (msg_...).")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", metavar="T", help="ISO 8601: 2026-01-31T00:00Z.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", metavar="T", help="ISO 8601 (default: now).")
    ] = None,
) -> None:
    """Send an endpoint one message, or those of a time range, again."""
    _run(
        lambda config: webhooks_command(
            config, "replay", endpoint=endpoint, message=message, since=since, until=until
        )
    )


# -- accounts and keys ------------------------------------------------------------------

_KEYS_ENV = _env(
    _DATABASE + "; keys of the embedded database are test keys (pf_test_), others live"
)


@accounts_app.command("create", epilog=_KEYS_ENV)
def accounts_create_command(
    role: Annotated[
        str,
        typer.Option(
            "--role",
            parser=_choice(*(r.value for r in Role)),
            help="The account's role: " + ", ".join(r.value for r in Role) + ".",
        ),
    ],
    name: Annotated[str, typer.Option("--name", help="A name for people.")],
    fee_bps: Annotated[
        int | None, typer.Option("--fee-bps", help="A provider's fee, 0..10000.")
    ] = None,
    payout_address: Annotated[
        str | None, typer.Option("--payout-address", help="A provider's payout address.")
    ] = None,
) -> None:
    """A new account and its first API key (printed once)."""
    _accounts(
        lambda service, mode: create_account(
            service, mode, role, name, fee_bps=fee_bps, payout_address=payout_address
        )
    )


@accounts_app.command("list", epilog=_DB_ENV)
def accounts_list_command() -> None:
    """Every account, oldest first."""

    async def listing(service: Accounts, mode: KeyMode) -> str | None:
        accounts = await _all_accounts(service)
        _show(
            ("ID", "ROLE", "CREATED", "REVOKED", "NAME"),
            _account_rows(accounts),
            lambda: accounts_table(accounts),
        )
        return None

    _accounts(listing)


@accounts_app.command("revoke", epilog=_DB_ENV)
def accounts_revoke_command(
    account_id: Annotated[str, typer.Argument(metavar="ID", help="The account.")],
) -> None:
    """Revoke an account and so its keys."""

    async def revoke(service: Accounts, mode: KeyMode) -> str:
        account = await service.revoke_account(check_id(account_id, "the account id"))
        return f"account {account.id} revoked"

    _accounts(revoke)


@keys_app.command("create", epilog=_KEYS_ENV)
def keys_create_command(
    account: Annotated[str, typer.Option("--account", metavar="ID", help="The account.")],
    name: Annotated[str | None, typer.Option("--name", help="A name for people.")] = None,
    expires_in: Annotated[
        int | None,
        typer.Option(
            "--expires-in",
            parser=_seconds,
            metavar="DURATION",
            help="e.g. 12h, 30d (default: never).",
        ),
    ] = None,
) -> None:
    """A new API key (printed once)."""

    async def create(service: Accounts, mode: KeyMode) -> str:
        issued = await service.issue_key(
            check_id(account, "the account id"),
            name=check_key_name(name),
            expires_in=check_expires_in(expires_in),
            mode=mode,
        )
        return _shown_once(issued)

    _accounts(create)


@keys_app.command("revoke", epilog=_DB_ENV)
def keys_revoke_command(
    key: Annotated[
        str, typer.Argument(metavar="PREFIX_OR_ID", help="The key's prefix (pf_..._) or id.")
    ],
) -> None:
    """Revoke an API key by prefix or id."""

    async def revoke(service: Accounts, mode: KeyMode) -> str:
        key_id = _uuid_or_none(key)
        if key_id is None:
            key_id = (await service.key_by_prefix(key)).id
        revoked = await service.revoke_key(key_id)
        return f"key {revoked.prefix} revoked"

    _accounts(revoke)


# -- tokens -------------------------------------------------------------------------------


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


# -- pay ----------------------------------------------------------------------------------


@app.command("pay", epilog=f"Environment: {KEY_ENV} (the payer's private key, 0x-hex).")
def pay_command(
    url: Annotated[str, typer.Argument(metavar="URL", help="The x402 resource.")],
    max_amount: Annotated[
        int,
        typer.Option(
            "--max-amount",
            help="Pay at most this, atomic units of the asset asked for (1 USDC = 1000000); "
            "a dearer payment is refused before anything is signed.",
        ),
    ],
    method: Annotated[str, typer.Option("--method", "-X", help="The HTTP method.")] = "GET",
    json_text: Annotated[
        str | None, typer.Option("--json", metavar="TEXT", help="A JSON request body.")
    ] = None,
    network: Annotated[
        str | None,
        typer.Option("--network", help="Pay only on this network (CAIP-2 or x402 v1 name)."),
    ] = None,
    key_file: Annotated[
        str | None,
        typer.Option(
            "--key-file",
            metavar="PATH",
            help=f"A file holding the payer's key, readable by you only (mode 600); "
            f"default: {KEY_ENV}.",
        ),
    ] = None,
) -> None:
    """Pay an x402 resource from the shell, what curl is for HTTP: the body on stdout,
    what was paid on stderr. Exit 0 on a 2xx answer, 1 otherwise; 2 when nothing was paid
    (no key, above --max-amount, a bad argument)."""
    try:
        key = payer_key(key_file=key_file)
        body = None if json_text is None else json.loads(json_text)
        outcome = asyncio.run(
            pay(
                url,
                method=method,
                json_body=body,
                max_amount=max_amount,
                key=key,
                network=network,
            )
        )
    except (PayerKeyError, PaymentRefused, PaymentError, ValueError) as exc:
        _fail(str(exc), 2)
    except httpx.HTTPError as exc:
        _fail(f"{url}: {exc or type(exc).__name__}", 1)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    sys.stdout.write(outcome.body)
    if outcome.body and not outcome.body.endswith("\n"):
        sys.stdout.write("\n")
    sys.stdout.flush()
    print("\n".join(outcome_lines(outcome)), file=sys.stderr)
    raise typer.Exit(0 if outcome.ok else 1)


# -- demo ---------------------------------------------------------------------------------


@app.command("demo", epilog=_env("PAYFIRST_HOST, PAYFIRST_PORT (the server's URL)"))
def demo_command(
    url: Annotated[
        str | None,
        typer.Option("--url", help="Server URL (default from PAYFIRST_HOST and PAYFIRST_PORT)."),
    ] = None,
    rpc: Annotated[
        str | None, typer.Option("--rpc", help="Chain RPC (default from var/devchain.json).")
    ] = None,
    payers: Annotated[int, typer.Option("--payers", help="Payer keys, funded first.")] = 5,
    mints: Annotated[int, typer.Option("--mints", help="Payments of one mint each.")] = 20,
    x402_version: Annotated[
        int,
        typer.Option("--x402-version", min=1, max=2, help="x402 version, 1 or 2."),
    ] = 2,
) -> None:
    """Buy mints from a running server like real clients, with progress bars; reports the
    latency from request to mint confirmed."""
    from payfirst.demo import run_demo

    config = _config()
    base = url or f"http://{config.host}:{config.port}"
    _exit_of(lambda: asyncio.run(run_demo(base, rpc, payers, mints, x402_version)))


# -- the implementations ------------------------------------------------------------------


def _run_api(config: Config) -> None:
    """`payfirst api`: PAYFIRST_API_PROCESSES processes share one listening socket (the
    kernel spreads connections between them); each has its own event loop and pool."""
    if config.api_processes == 1:
        asyncio.run(serve(config, api=True, worker=False))
        return
    sock = socket.create_server((config.host, config.port), backlog=4096, reuse_port=False)
    sock.set_inheritable(True)
    children: list[int] = []
    for _ in range(config.api_processes - 1):
        pid = os.fork()
        if pid == 0:
            try:
                asyncio.run(serve(config, api=True, worker=False, sock=sock))
            finally:
                os._exit(0)
        children.append(pid)
    try:
        asyncio.run(serve(config, api=True, worker=False, sock=sock))
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


async def migrate(config: Config) -> None:
    store = await open_database(config)
    await store.close()
    log.info("migrations applied")


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


async def serve(
    config: Config, *, api: bool, worker: bool, sock: socket.socket | None = None
) -> None:
    # SIGINT/SIGTERM stop the process gracefully whatever it inherited (a background job
    # of a non-interactive shell starts with SIGINT ignored); during start-up they cancel it.
    signals = StopSignals()
    signals.install()
    main_task = asyncio.current_task()
    assert main_task is not None
    started = False

    def cancel_start_up() -> None:
        if not started:
            main_task.cancel()

    signals.on_stop(cancel_start_up)
    try:
        runtime = await open_runtime(config, start_devchain=api and worker)
    except asyncio.CancelledError:
        if signals.stopping.is_set():
            return
        raise
    started = True
    pipelines: list[Worker] = []
    dispatcher: WebhookDispatcher | None = None
    try:
        operator_key = await _dev_operator_key(runtime) if api else None
        if worker:
            # One worker per served network, all on the one store.
            for network, pipeline in zip(runtime.networks, runtime.workers(), strict=True):
                pipelines.append(pipeline)
                await pipeline.start()
                log.info(
                    "worker %s running with relayers %s on %s",
                    pipeline.holder,
                    ", ".join(r.address for r in network.relayers),
                    network.network.caip2,
                )
            # One webhook dispatcher per process, whatever the networks.
            dispatcher = webhook_dispatcher(config, runtime.store)
            await dispatcher.start()
        if not api:
            await signals.stopping.wait()
            return
        svc = Services(
            store=runtime.store,
            chain=runtime.chain,
            max_quantity_per_request=config.max_quantity_per_request,
            networks=runtime.served(),
            settle_timeout_s=config.settle_timeout_s,
            settle_pay_to=frozenset(config.settle_pay_to),
            min_settle_amount=config.min_settle_amount,
            rate_limit_per_client=config.rate_limit_per_client,
            rate_limit_per_payer=config.rate_limit_per_payer,
            max_waiters=config.max_waiters,
            platform_fee_bps=config.platform_fee_bps,
            webhook_url_check=webhook_url_check(config),
            status_page=config.status_page,
            decide_by_chain=runtime.decide_by_chain(),
        )
        server = make_server(
            build_app(svc, HttpLimits(config.max_body_bytes, config.body_timeout_s)),
            config.host,
            config.port,
            ServerLimits(
                header_timeout_s=config.header_timeout_s,
                body_timeout_s=config.body_timeout_s,
                keep_alive_s=config.keep_alive_s,
                max_header_bytes=config.max_header_bytes,
                max_connections=config.max_connections,
            ),
        )
        watch_server(server, signals)
        serving = asyncio.create_task(server.serve(sockets=[sock] if sock else None))
        while not server.started and not serving.done():  # noqa: ASYNC110 (uvicorn has no event)
            await asyncio.sleep(0.05)
        if server.started:
            _print_ready(config, runtime, operator_key)
        await serving
    finally:
        if dispatcher is not None:
            await dispatcher.stop()
        for pipeline in pipelines:
            await pipeline.stop()
        await runtime.close()
        signals.uninstall()
        log.info("stopped")


async def _dev_operator_key(runtime: Runtime) -> IssuedKey | None:
    """A dev instance, the embedded database AND the local dev chain `serve` started (never
    PAYFIRST_DATABASE_URL, PAYFIRST_RPC_URL or a networks file: an embedded database may
    still settle real money): with no operator account yet, one is created and its key
    returned, to be printed once."""
    config = runtime.config
    dev = (
        runtime.database is not None
        and config.database_url is None
        and runtime.devchain is not None
        and config.rpc_url is None
        and config.networks_file is None
    )
    if not dev:
        return None
    return await Accounts(runtime.store).ensure_operator(KeyMode.TEST)


def _print_ready(config: Config, runtime: Runtime, operator_key: IssuedKey | None = None) -> None:
    url = f"http://{config.host}:{config.port}"
    lines = [
        f"payfirst ready: {url}",
        *(
            f"  chain RPC:      {redact(n.rpc.url)} ({n.network.caip2}, {len(n.relayers)} relayers)"
            for n in runtime.networks
        ),
    ]
    deployment = runtime.deployment
    if deployment is not None:
        price = deployment.price_per_mint / 10**6
        lines += [
            f"  token:          {deployment.token} ({deployment.token_symbol})",
            f"  USDC:           {deployment.usdc}",
            f"  batch settler:  {runtime.networks[0].settler or 'none (one tx per payment)'}",
            f"  price per mint: {price:.6f} USDC",
            "  try it:",
            f"    curl -s {url}/api/tokens/{deployment.token}",
            "    .venv/bin/payfirst demo --payers 20 --mints 100",
        ]
    if operator_key is not None:
        lines += [
            f"  operator key:   {operator_key.text}",
            "                  (shown this once: keep it; `payfirst keys create` makes more)",
        ]
    elif runtime.database is not None:
        lines.append(
            "  operator key:   an operator account exists; a new key: "
            "`payfirst accounts list`, then `payfirst keys create --account ID`"
        )
    lines.append("  Ctrl-C stops everything.")
    print("\n".join(lines), flush=True)


# -- accounts and API keys --------------------------------------------------------------


def _accounts(action: Callable[[Accounts, KeyMode], Coroutine[Any, Any, str | None]]) -> NoReturn:
    """`payfirst accounts ...` and `payfirst keys ...`: runs `action` and prints what it
    returns; exit 2 for a value refused (nothing written). Keys of the embedded database
    (a dev instance) are test keys (pf_test_)."""

    async def work(config: Config) -> int:
        mode = KeyMode.TEST if config.database_url is None else KeyMode.LIVE
        store = await open_database(config)
        try:
            printed = await action(Accounts(store), mode)
        except PaymentRejected as exc:
            print(f"payfirst: {exc.message}", file=sys.stderr)
            return 2
        finally:
            await store.close()
        if printed is not None:
            print(printed)
        return 0

    _run(work)


async def create_account(
    service: Accounts,
    mode: KeyMode,
    role: str,
    name: str,
    *,
    fee_bps: int | None,
    payout_address: str | None,
) -> str:
    account, issued = await service.create_account(
        check_role(role),
        check_name(name),
        fee_bps=check_fee_bps(fee_bps),
        payout_address=check_payout_address(payout_address),
        mode=mode,
    )
    return f"account {account.id} ({account.role}, {account.name})\n{_shown_once(issued)}"


async def _all_accounts(service: Accounts) -> list[Account]:
    found: list[Account] = []
    while True:
        page = await service.accounts(MAX_PAGE, found[-1].id if found else None)
        found += page.items
        if not page.has_more:
            return found


def _account_rows(accounts: Sequence[Account]) -> list[tuple[str, ...]]:
    return [
        (
            str(a.id),
            a.role.value,
            a.created_at.isoformat(timespec="seconds"),
            a.revoked_at.isoformat(timespec="seconds") if a.revoked_at else "-",
            a.name,
        )
        for a in accounts
    ]


def accounts_table(accounts: list[Account]) -> str:
    rows = [("ID", "ROLE", "CREATED", "REVOKED", "NAME"), *_account_rows(accounts)]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True))
        + "  "
        + row[4]
        for row in rows
    )


def _shown_once(issued: IssuedKey) -> str:
    expires = issued.key.expires_at
    until = f", expires {expires.isoformat(timespec='seconds')}" if expires else ""
    return f"API key {issued.key.prefix}{until} (shown once, keep it now):\n{issued.text}"


def _uuid_or_none(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None


# -- ledger ---------------------------------------------------------------------------


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


# -- payouts --------------------------------------------------------------------------


def _operator() -> Account:
    return Account(uuid4(), Role.OPERATOR, "command line", datetime.now(UTC))


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


# -- agents' payers and held payments -------------------------------------------------


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


# -- webhooks -------------------------------------------------------------------------


def webhook_policy(config: Config) -> AddressPolicy:
    """Where webhooks may go: PAYFIRST_WEBHOOK_ALLOW_PRIVATE, PAYFIRST_WEBHOOK_ALLOWED_CIDRS."""
    return AddressPolicy(
        allow_private=config.webhook_allow_private,
        allowed=parse_networks(",".join(config.webhook_allowed_cidrs)),
    )


def webhook_url_check(config: Config) -> UrlCheck:
    """The registration-time check of a webhook URL (the sender checks again at delivery)."""
    policy = webhook_policy(config)

    async def check(url: str) -> object:
        return await checked_addresses(url, policy)

    return check


def webhook_dispatcher(config: Config, store: Store) -> WebhookDispatcher:
    return WebhookDispatcher(
        store,
        WebhookSender(webhook_policy(config), config.webhook_concurrency),
        concurrency=config.webhook_concurrency,
    )


async def webhooks_command(
    config: Config,
    action: str,
    *,
    account: str | None = None,
    limit: int = 50,
    endpoint: str | None = None,
    message: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> int:
    """`payfirst webhooks list|replay`, as the operator; the exit status (2: refused,
    nothing written)."""
    if action == "replay" and message is None and since is None:
        print("payfirst: give --message M, or --since T [--until T]", file=sys.stderr)
        return 2
    store = await open_database(config)
    operator = _operator()
    service = Webhooks(store, webhook_url_check(config))
    try:
        if action == "replay":
            assert endpoint is not None
            count = await service.replay(
                operator,
                check_id(endpoint, "the webhook id"),
                message_id=message,
                since=_iso(since),
                until=_iso(until),
            )
            print(f"{count} deliveries queued")
            return 0
        account_id = None if account is None else check_id(account, "account")
        page, _ = await service.endpoints(operator, limit, account_id=account_id)
    except PaymentRejected as exc:
        print(f"payfirst: {exc.reason.value}: {exc.message}", file=sys.stderr)
        return 2
    finally:
        await store.close()
    _show(
        ("ID", "STATE", "ACCOUNT", "URL", "EVENTS", "DISABLED BECAUSE"),
        [
            (
                str(e.id),
                "enabled" if e.disabled_at is None else "disabled",
                str(e.account_id),
                e.url,
                ",".join(e.event_types) or "*",
                e.disabled_reason or "",
            )
            for e in page
        ],
        lambda: webhooks_table(page),
    )
    return 0


def _iso(text: str | None) -> str | None:
    """An ISO time as given, UTC when it names no offset (Z accepted)."""
    if text is None:
        return None
    with contextlib.suppress(ValueError):
        at = datetime.fromisoformat(text)
        if at.tzinfo is None:
            return at.replace(tzinfo=UTC).isoformat()
    return text


def webhooks_table(endpoints: Sequence[WebhookEndpoint]) -> str:
    rows = [("ID", "STATE", "ACCOUNT", "URL  EVENTS")] + [
        (
            str(e.id),
            "enabled" if e.disabled_at is None else "disabled",
            str(e.account_id),
            f"{e.url}  {','.join(e.event_types) or '*'}"
            + (f"  ({e.disabled_reason})" if e.disabled_reason else ""),
        )
        for e in endpoints
    ]
    return "\n".join(_aligned(rows))


# -- tokens -------------------------------------------------------------------------------


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


# -- helpers ----------------------------------------------------------------------------


def _duration(text: str) -> int:
    match = re.fullmatch(r"(\d+)([smhd]?)", text.strip())
    if match is None:
        raise ValueError(f"not a duration: {text!r} (try 90s, 5m, 1h, 30d)")
    return int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def _aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows of four cells as lines: the first three padded into columns, the last as is."""
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + "  "
        + row[3]
        for row in rows
    ]


if __name__ == "__main__":
    sys.exit(main())
