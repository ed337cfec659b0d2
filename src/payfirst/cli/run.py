"""Running payfirst: serve, api, worker, migrate."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import tempfile
from typing import Annotated

import typer

from payfirst.api.http_limits import HttpLimits
from payfirst.api.services import Services
from payfirst.app import Runtime, build_app, open_database, open_runtime, redact
from payfirst.cli.root import _CHAIN, _DATABASE, _DB_ENV, _HTTP, _WEBHOOKS, _env, app, log
from payfirst.cli.running import _config, _exit_of, _run
from payfirst.cli.webhooks import webhook_dispatcher, webhook_url_check
from payfirst.config import Config
from payfirst.metrics import setup as setup_metrics
from payfirst.pipeline.webhooks import WebhookDispatcher
from payfirst.pipeline.worker import Worker
from payfirst.server import (
    ServerLimits,
    StopSignals,
    make_server,
    restore_default_sigint,
    watch_server,
)
from payfirst.usecases.accounts import Accounts, IssuedKey
from payfirst.usecases.api_keys import KeyMode


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
