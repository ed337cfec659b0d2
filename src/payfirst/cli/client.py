"""A client's commands: pay an x402 resource, run the demo against a server."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated

import httpx
import typer

from payfirst.cli.root import _env, app
from payfirst.cli.running import _config, _exit_of, _fail
from payfirst.client import PaymentError, PaymentRefused
from payfirst.client.cli_pay import KEY_ENV, PayerKeyError, outcome_lines, pay, payer_key


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
