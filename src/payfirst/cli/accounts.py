"""`payfirst accounts create|list|revoke` and `payfirst keys create|revoke`."""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Annotated, Any, NoReturn
from uuid import UUID

import typer

from payfirst.app import open_database
from payfirst.cli.options import _choice, _seconds
from payfirst.cli.output import _show
from payfirst.cli.root import _DATABASE, _DB_ENV, _env, accounts_app, keys_app
from payfirst.cli.running import _run
from payfirst.config import Config
from payfirst.domain.accounts import Account, Role
from payfirst.domain.errors import PaymentRejected
from payfirst.usecases.accounts import (
    MAX_PAGE,
    Accounts,
    IssuedKey,
    check_expires_in,
    check_fee_bps,
    check_id,
    check_key_name,
    check_name,
    check_payout_address,
    check_role,
)
from payfirst.usecases.api_keys import KeyMode

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
