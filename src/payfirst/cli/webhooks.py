"""`payfirst webhooks list|replay`, and where webhooks may go (the server's
dispatcher and URL check)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated

import typer

from payfirst.adapters.webhook_http import WebhookSender, checked_addresses
from payfirst.app import open_database
from payfirst.cli.output import _aligned, _show
from payfirst.cli.root import _DATABASE, _DB_ENV, _LIMIT_HELP, _WEBHOOKS, _env, webhooks_app
from payfirst.cli.running import _operator, _run
from payfirst.config import Config
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.webhooks import AddressPolicy, WebhookEndpoint, parse_networks
from payfirst.pipeline.webhooks import WebhookDispatcher
from payfirst.ports.store import Store
from payfirst.usecases.accounts import check_id
from payfirst.usecases.webhooks import UrlCheck, Webhooks


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
