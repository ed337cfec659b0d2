"""payfirst command line: serve | api | worker | migrate | stats | settings | reset-stuck |
ledger | accounts | keys | demo."""

from __future__ import annotations

import argparse
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
from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID, uuid4

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
from payfirst.config import Config, load_config
from payfirst.domain.accounts import Account, Role
from payfirst.domain.errors import ConfigError, PaymentRejected
from payfirst.domain.payouts import Payout
from payfirst.domain.settings import SPECS, RuntimeSettings, SettingError, spec_of
from payfirst.domain.statuses import PaymentStatus
from payfirst.domain.webhooks import AddressPolicy, WebhookEndpoint, parse_networks
from payfirst.logs import configure as configure_logging
from payfirst.metrics import setup as setup_metrics
from payfirst.pipeline.settings import SettingsReader
from payfirst.pipeline.webhooks import WebhookDispatcher
from payfirst.pipeline.worker import Worker
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
from payfirst.usecases.ledger_check import CheckedNetwork, LedgerReport, check_ledger
from payfirst.usecases.payouts import Payouts
from payfirst.usecases.policies import Policies
from payfirst.usecases.webhooks import UrlCheck, Webhooks

log = logging.getLogger("payfirst")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="payfirst", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser(
        "serve",
        help="API and workers in one process; without PAYFIRST_RPC_URL, also a local dev chain; "
        "without PAYFIRST_DATABASE_URL, an embedded PostgreSQL under var/postgres",
    )
    serve_parser.add_argument(
        "--reset",
        action="store_true",
        help="start the embedded database and the dev chain afresh (deletes their data "
        "under var/; the same as PAYFIRST_RESET=1)",
    )
    commands.add_parser("api", help="the HTTP API only (workers run elsewhere)")
    commands.add_parser("worker", help="the sender, confirmer and mint loops only")
    commands.add_parser("migrate", help="apply database migrations and exit")
    commands.add_parser("stats", help="print queue counts and rates")
    adopt = commands.add_parser(
        "adopt-chain",
        help="give the payments and relayer nonces of no recorded chain (from the "
        "single-chain setup) the chain id they settle on",
    )
    adopt.add_argument("--chain-id", type=int, required=True, help="e.g. 8453 for Base")
    reset = commands.add_parser(
        "reset-stuck", help="settle payments `sent` for too long by what the chain says"
    )
    reset.add_argument(
        "--older-than",
        default=None,
        type=_duration,
        help="e.g. 90s, 5m, 1h (default: the confirmation_timeout_s setting)",
    )
    settings = commands.add_parser(
        "settings", help="show or change the runtime settings (no restart needed)"
    )
    settings_commands = settings.add_subparsers(dest="settings_command", required=True)
    show = settings_commands.add_parser("show", help="every setting: value, default, meaning")
    show.add_argument("--json", action="store_true", help="as JSON")
    set_ = settings_commands.add_parser(
        "set", help="set NAME to VALUE (checked against its bounds)"
    )
    set_.add_argument("name", choices=list(SPECS), metavar="NAME")
    set_.add_argument("value", metavar="VALUE")
    unset = settings_commands.add_parser("unset", help="back to the default")
    unset.add_argument("name", choices=list(SPECS), metavar="NAME")
    _add_ledger_parser(commands)
    _add_payouts_parser(commands)
    _add_policies_parsers(commands)
    _add_webhooks_parser(commands)
    _add_accounts_parsers(commands)
    demo = commands.add_parser("demo", help="buy mints from a running server, report latency")
    demo.add_argument("--url", default=None, help="server URL (default from PAYFIRST_HOST/PORT)")
    demo.add_argument("--rpc", default=None, help="chain RPC (default from var/devchain.json)")
    demo.add_argument("--payers", type=int, default=5)
    demo.add_argument("--mints", type=int, default=20, help="payments of one mint each")
    demo.add_argument("--x402-version", type=int, choices=(1, 2), default=2)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config()
    except ConfigError as exc:
        print(f"payfirst: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level, config.log_format, access_log=config.access_log)
    if args.command in ("serve", "api", "worker"):
        restore_default_sigint()
        forks = args.command == "api" and config.api_processes > 1
        setup_metrics(
            config.metrics_dir or (tempfile.mkdtemp(prefix="payfirst-metrics-") if forks else None)
        )
    try:
        if args.command == "demo":
            from payfirst.demo import run_demo

            url = args.url or f"http://{config.host}:{config.port}"
            return asyncio.run(run_demo(url, args.rpc, args.payers, args.mints, args.x402_version))
        if args.command == "ledger":
            return asyncio.run(ledger_command(config, args))
        if args.command == "payouts":
            return asyncio.run(payouts_command(config, args))
        if args.command in ("payers", "approvals"):
            return asyncio.run(policies_command(config, args))
        if args.command == "webhooks":
            return asyncio.run(webhooks_command(config, args))
        if args.command in ("accounts", "keys"):
            return asyncio.run(accounts_command(config, args))
        if args.command == "api":
            _run_api(config)
        else:
            asyncio.run(_run(args, config))
    except ConfigError as exc:
        print(f"payfirst: configuration error: {exc}", file=sys.stderr)
        return 2
    except SettingError as exc:
        print(f"payfirst: {exc}", file=sys.stderr)
        return 2
    except Unreachable as exc:
        print(f"payfirst: cannot start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


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


async def _run(args: argparse.Namespace, config: Config) -> None:
    if args.command == "serve":
        if args.reset:
            config = dataclasses.replace(config, reset=True)
        await serve(config, api=True, worker=True)
    elif args.command == "worker":
        await serve(config, api=False, worker=True)
    elif args.command == "migrate":
        await migrate(config)
    elif args.command == "stats":
        await stats(config)
    elif args.command == "reset-stuck":
        await reset_stuck(config, args.older_than)
    elif args.command == "adopt-chain":
        await adopt_chain(config, args.chain_id)
    elif args.command == "settings":
        await settings_command(config, args)


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


async def stats(config: Config) -> None:
    store = await open_database(config)
    try:
        print(json.dumps(await store.payment_stats(), indent=2))
    finally:
        await store.close()


async def settings_command(config: Config, args: argparse.Namespace) -> None:
    """`payfirst settings show|set|unset`: the store's rows through RuntimeSettings; a
    value is checked against its bounds before anything is written. The workers read the
    settings at every tick: a change applies without a restart."""
    if args.settings_command == "set":
        value = spec_of(args.name).parse(args.value)  # SettingError before any IO
    store = await open_database(config)
    try:
        if args.settings_command == "set":
            await store.set_setting(args.name, value)
            print(f"{args.name} = {value}")
        elif args.settings_command == "unset":
            removed = await store.unset_setting(args.name)
            default = spec_of(args.name).default
            print(f"{args.name} = {default} (default{'' if removed else ', was not set'})")
        else:
            rows = await store.get_settings()
            print(settings_json(rows) if args.json else settings_table(rows))
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


def settings_table(rows: dict[str, int]) -> str:
    """Every setting as a table: name, value in force, default, meaning; then every stored
    row that is ignored (unknown, or out of bounds: its default applies)."""
    current, problems = RuntimeSettings.from_rows(rows)
    in_force = current.as_rows()
    table = [("NAME", "VALUE", "DEFAULT", "DESCRIPTION")] + [
        (
            spec.name,
            str(in_force[spec.name]) + ("*" if spec.name in rows else ""),
            str(spec.default),
            spec.description,
        )
        for spec in SPECS.values()
    ]
    lines = _aligned(table)
    lines.append("* set by an operator (`payfirst settings unset NAME`: back to the default)")
    lines += [f"ignored: {problem}" for problem in problems]
    return "\n".join(lines)


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
                f"{network.network.caip2}: {len(stuck)} payments sent more than {older_than_s}s ago"
            )
            await confirmer.check(stuck, [], settings)
            for payment in stuck:
                now = await runtime.store.get_payment(payment.id)
                assert now is not None
                print(f"  {payment.id}: {now.status} {now.error or ''}")
                if now.status == PaymentStatus.SENT:
                    print("    (still in flight: re-sent; it can still be mined)")
    finally:
        await runtime.close()


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


def _add_accounts_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    accounts = commands.add_parser(
        "accounts", help="accounts of the admin API: create, list, revoke"
    )
    accounts_commands = accounts.add_subparsers(dest="accounts_command", required=True)
    create = accounts_commands.add_parser(
        "create", help="a new account and its first API key (printed once)"
    )
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--name", required=True)
    create.add_argument("--fee-bps", type=int, default=None, help="a provider's fee, 0..10000")
    create.add_argument("--payout-address", default=None, help="a provider's payout address")
    accounts_commands.add_parser("list", help="every account, oldest first")
    revoke = accounts_commands.add_parser("revoke", help="revoke an account and so its keys")
    revoke.add_argument("account_id", metavar="ID")
    keys = commands.add_parser("keys", help="API keys: create, revoke")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    key_create = keys_commands.add_parser("create", help="a new API key (printed once)")
    key_create.add_argument("--account", required=True, metavar="ID")
    key_create.add_argument("--name", default=None)
    key_create.add_argument(
        "--expires-in", type=_duration, default=None, help="e.g. 12h, 30d (default: never)"
    )
    key_revoke = keys_commands.add_parser("revoke", help="revoke an API key by prefix or id")
    key_revoke.add_argument("key", metavar="PREFIX_OR_ID")


async def accounts_command(config: Config, args: argparse.Namespace) -> int:
    """`payfirst accounts create|list|revoke` and `payfirst keys create|revoke`; the exit
    status (2: a value refused, nothing written). Keys of the embedded database (a dev
    instance) are test keys (pf_test_)."""
    mode = KeyMode.TEST if config.database_url is None else KeyMode.LIVE
    store = await open_database(config)
    try:
        print(await _accounts_action(Accounts(store), args, mode))
    except PaymentRejected as exc:
        print(f"payfirst: {exc.message}", file=sys.stderr)
        return 2
    finally:
        await store.close()
    return 0


async def _accounts_action(service: Accounts, args: argparse.Namespace, mode: KeyMode) -> str:
    if args.command == "keys" and args.keys_command == "create":
        issued = await service.issue_key(
            check_id(args.account, "the account id"),
            name=check_key_name(args.name),
            expires_in=check_expires_in(args.expires_in),
            mode=mode,
        )
        return _shown_once(issued)
    if args.command == "keys":
        key_id = _uuid_or_none(args.key)
        if key_id is None:
            key_id = (await service.key_by_prefix(args.key)).id
        revoked = await service.revoke_key(key_id)
        return f"key {revoked.prefix} revoked"
    if args.accounts_command == "create":
        account, issued = await service.create_account(
            check_role(args.role),
            check_name(args.name),
            fee_bps=check_fee_bps(args.fee_bps),
            payout_address=check_payout_address(args.payout_address),
            mode=mode,
        )
        return f"account {account.id} ({account.role}, {account.name})\n{_shown_once(issued)}"
    if args.accounts_command == "revoke":
        account = await service.revoke_account(check_id(args.account_id, "the account id"))
        return f"account {account.id} revoked"
    return accounts_table(await _all_accounts(service))


async def _all_accounts(service: Accounts) -> list[Account]:
    found: list[Account] = []
    while True:
        page = await service.accounts(MAX_PAGE, found[-1].id if found else None)
        found += page.items
        if not page.has_more:
            return found


def accounts_table(accounts: list[Account]) -> str:
    rows = [("ID", "ROLE", "CREATED", "REVOKED", "NAME")] + [
        (
            str(a.id),
            a.role.value,
            a.created_at.isoformat(timespec="seconds"),
            a.revoked_at.isoformat(timespec="seconds") if a.revoked_at else "-",
            a.name,
        )
        for a in accounts
    ]
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


def _add_ledger_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ledger = commands.add_parser("ledger", help="the double-entry ledger: check it, reverse")
    ledger_commands = ledger.add_subparsers(dest="ledger_command", required=True)
    ledger_commands.add_parser(
        "check",
        help="check the ledger's invariants against the chain (exit 1 on any violation)",
    )
    reverse = ledger_commands.add_parser(
        "reverse",
        help="reverse a completed payment's ledger entries (one the check found not on chain)",
    )
    reverse.add_argument("payment_id", type=UUID, metavar="PAYMENT_ID")
    reverse.add_argument("--reason", required=True, help="why, kept with the reversal")


async def ledger_command(config: Config, args: argparse.Namespace) -> int:
    """`payfirst ledger check|reverse`; the exit status."""
    if args.ledger_command == "reverse":
        store = await open_database(config)
        try:
            reversed_ = await store.reverse_payment(args.payment_id, args.reason)
        finally:
            await store.close()
        if not reversed_:
            print(f"{args.payment_id}: no ledger transaction to reverse (or already reversed)")
            return 1
        print(f"{args.payment_id}: reversed")
        return 0
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
        report = await check_ledger(runtime.store, networks)
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


def _add_payouts_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    payouts = commands.add_parser("payouts", help="providers' payouts: list, create")
    payouts_commands = payouts.add_subparsers(dest="payouts_command", required=True)
    listing = payouts_commands.add_parser("list", help="payouts, newest first")
    listing.add_argument("--provider", default=None, metavar="ID", help="one provider's only")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (1..100)")
    create = payouts_commands.add_parser(
        "create", help="pay out a provider's available balance (the payout loop signs it)"
    )
    create.add_argument("--provider", required=True, metavar="ID")
    create.add_argument("--amount", default=None, help="atomic units (default: all available)")
    create.add_argument("--network", default=None, help="CAIP-2, e.g. eip155:8453")
    create.add_argument("--asset", default=None, help="the asset's address")


async def payouts_command(config: Config, args: argparse.Namespace) -> int:
    """`payfirst payouts list|create`, as the operator; the exit status (2: refused,
    nothing written)."""
    store = await open_database(config)
    operator = Account(uuid4(), Role.OPERATOR, "command line", datetime.now(UTC))
    service = Payouts(store)
    try:
        if args.payouts_command == "create":
            payout = await service.request(
                operator,
                provider_id=check_id(args.provider, "the provider id"),
                network=args.network,
                asset=args.asset,
                amount=args.amount,
            )
            print(payouts_table([payout]))
        else:
            provider = None if args.provider is None else check_id(args.provider, "provider")
            page = await service.payouts(operator, check_limit(args.limit), provider_id=provider)
            print(payouts_table(page.items))
    except PaymentRejected as exc:
        print(f"payfirst: {exc.reason.value}: {exc.message}", file=sys.stderr)
        return 2
    finally:
        await store.close()
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


def _add_policies_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    payers = commands.add_parser("payers", help="agents' payer addresses: list")
    payers_commands = payers.add_subparsers(dest="payers_command", required=True)
    listing = payers_commands.add_parser("list", help="payer addresses, by address")
    listing.add_argument("--agent", default=None, metavar="ID", help="one agent's only")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (1..100)")
    approvals = commands.add_parser(
        "approvals", help="payments held by a spending policy: list, approve, reject"
    )
    approvals_commands = approvals.add_subparsers(dest="approvals_command", required=True)
    held = approvals_commands.add_parser("list", help="payments awaiting approval, oldest first")
    held.add_argument("--limit", type=int, default=50, help="at most this many (1..100)")
    for name, text in (("approve", "settle it like any other"), ("reject", "fail it")):
        decide = approvals_commands.add_parser(name, help=f"a payment awaiting approval: {text}")
        decide.add_argument("payment_id", metavar="PAYMENT_ID")


async def policies_command(config: Config, args: argparse.Namespace) -> int:
    """`payfirst payers list` and `payfirst approvals list|approve|reject`, as the operator;
    the exit status (2: refused, nothing written)."""
    store = await open_database(config)
    operator = Account(uuid4(), Role.OPERATOR, "command line", datetime.now(UTC))
    service = Policies(store)
    try:
        limit = check_limit(getattr(args, "limit", None))
        if args.command == "payers":
            agent = None if args.agent is None else check_id(args.agent, "the agent id")
            payers = await service.payers(operator, limit, None, agent)
            rows = [("ADDRESS", "AGENT", "VERIFIED", "")] + [
                (p.address, str(p.account_id), p.verified_at.isoformat(), "") for p in payers
            ]
        elif args.approvals_command == "list":
            held = await service.awaiting_approval(operator, limit)
            rows = [("ID", "AMOUNT", "PAYER", "ASSET  PAY_TO  CREATED")] + [
                (
                    str(p.id),
                    str(p.amount),
                    p.payer,
                    f"{p.payment_asset}  {p.pay_to}  {p.created_at.isoformat()}",
                )
                for p in held
            ]
        else:
            payment_id = check_id(args.payment_id, "the payment id")
            approve = args.approvals_command == "approve"
            payment = await service.decide(operator, payment_id, approve=approve)
            rows = [
                ("ID", "STATUS", "PAYER", "AMOUNT"),
                (str(payment.id), payment.status.value, payment.payer, str(payment.amount)),
            ]
        print("\n".join(_aligned(rows)))
    except PaymentRejected as exc:
        print(f"payfirst: {exc.reason.value}: {exc.message}", file=sys.stderr)
        return 2
    finally:
        await store.close()
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


def _add_webhooks_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    webhooks = commands.add_parser("webhooks", help="webhook endpoints: list, replay")
    webhooks_commands = webhooks.add_subparsers(dest="webhooks_command", required=True)
    listing = webhooks_commands.add_parser("list", help="webhook endpoints, oldest first")
    listing.add_argument("--account", default=None, metavar="ID", help="one account's only")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (1..100)")
    replay = webhooks_commands.add_parser(
        "replay", help="send an endpoint one message, or those of a time range, again"
    )
    replay.add_argument("endpoint", metavar="ID", help="the webhook endpoint's id")
    replay.add_argument("--message", default=None, metavar="M", help="a message id (msg_...)")
    replay.add_argument("--since", default=None, metavar="T", help="ISO 8601: 2026-01-31T00:00Z")
    replay.add_argument("--until", default=None, metavar="T", help="ISO 8601 (default: now)")


async def webhooks_command(config: Config, args: argparse.Namespace) -> int:
    """`payfirst webhooks list|replay`, as the operator; the exit status (2: refused,
    nothing written)."""
    store = await open_database(config)
    operator = Account(uuid4(), Role.OPERATOR, "command line", datetime.now(UTC))
    service = Webhooks(store, webhook_url_check(config))
    try:
        if args.webhooks_command == "replay":
            if args.message is None and args.since is None:
                print("payfirst: give --message M, or --since T [--until T]", file=sys.stderr)
                return 2
            count = await service.replay(
                operator,
                check_id(args.endpoint, "the webhook id"),
                message_id=args.message,
                since=_iso(args.since),
                until=_iso(args.until),
            )
            print(f"{count} deliveries queued")
        else:
            account = None if args.account is None else check_id(args.account, "account")
            page, _ = await service.endpoints(operator, args.limit, account_id=account)
            print(webhooks_table(page))
    except PaymentRejected as exc:
        print(f"payfirst: {exc.reason.value}: {exc.message}", file=sys.stderr)
        return 2
    finally:
        await store.close()
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


def _duration(text: str) -> int:
    match = re.fullmatch(r"(\d+)([smhd]?)", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (try 90s, 5m, 1h, 30d)")
    return int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


if __name__ == "__main__":
    sys.exit(main())


def _aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows of four cells as lines: the first three padded into columns, the last as is."""
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + "  "
        + row[3]
        for row in rows
    ]
