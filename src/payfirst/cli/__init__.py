"""payfirst command line (typer + rich): serve | api | worker | migrate | stats | settings |
reset-stuck | adopt-chain | ledger | payouts | payers | approvals | webhooks | accounts |
keys | tokens | pay | demo.

Every command reads its configuration from PAYFIRST_* environment variables (payfirst.config);
each command's help lists the ones it reads. Tables are drawn with rich on a terminal; piped
or redirected, the output is the plain text scripts parse (and `stats` is JSON).

One module per command group; importing them registers their commands on `app`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

# isort: off
# The order of these imports is the order `payfirst --help` lists the commands in.
from payfirst.cli.root import app
from payfirst.cli.run import _dev_operator_key, _print_ready, migrate, serve
from payfirst.cli.operate import (
    adopt_chain,
    reset_stuck,
    settings_command,
    settings_json,
    settings_table,
    stats,
    stats_table,
)
from payfirst.cli.ledger import ledger_check, ledger_reverse, ledger_table
from payfirst.cli.payouts import payouts_command, payouts_table
from payfirst.cli.policies import policies_command
from payfirst.cli.webhooks import (
    webhook_dispatcher,
    webhook_policy,
    webhook_url_check,
    webhooks_command,
    webhooks_table,
)
from payfirst.cli.accounts import accounts_table, create_account
from payfirst.cli.tokens import tokens_add, tokens_list, tokens_table
from payfirst.cli import client as client  # pay, demo: registered last
# isort: on

__all__ = [
    "_dev_operator_key",
    "_print_ready",
    "accounts_table",
    "adopt_chain",
    "app",
    "command_names",
    "create_account",
    "ledger_check",
    "ledger_reverse",
    "ledger_table",
    "main",
    "migrate",
    "payouts_command",
    "payouts_table",
    "policies_command",
    "reset_stuck",
    "serve",
    "settings_command",
    "settings_json",
    "settings_table",
    "stats",
    "stats_table",
    "tokens_add",
    "tokens_list",
    "tokens_table",
    "webhook_dispatcher",
    "webhook_policy",
    "webhook_url_check",
    "webhooks_command",
    "webhooks_table",
]


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
