"""The typer app, its command groups, --version, and the environment each command's
help lists."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

import payfirst

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
