"""The typer command line, run as processes the way an operator runs it: `--version`,
`--help` naming every command (and every command's help listing the environment it reads),
`payfirst tokens list|add` against the test database and chain, and `payfirst pay` paying a
payfirst served on a port."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from uuid import UUID

import pytest
import typer

from payfirst import __version__
from payfirst.adapters.devchain import ANVIL_KEYS
from payfirst.cli import app, command_names, main
from payfirst.client.cli_pay import KEY_ENV
from payfirst.domain.statuses import PaymentStatus
from payfirst.usecases.tokens import LIST_COLUMNS
from tests.e2e.harness import Harness
from tests.e2e.test_accounts_cli import payfirst
from tests.e2e.test_interop_official_sdk import payfirst_app, serving
from tests.fixtures.store import fetch_raw

BIN = Path(sys.executable).parent
PAYER = 6  # anvil account index, one no other test of this module pays with


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BIN / "payfirst", *args],
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version() -> None:
    done = _run("--version")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"payfirst {__version__}\n", "")


def test_help_lists_every_command() -> None:
    done = _run("--help")
    assert done.returncode == 0, done.stderr
    names = command_names()
    assert {"serve", "stats", "tokens", "pay", "accounts", "ledger", "demo"} <= names
    listed = {line.strip("│ ").split(" ", 1)[0] for line in done.stdout.splitlines()}
    assert names <= listed, names - listed
    assert "--version" in done.stdout


def _every_command() -> list[tuple[str, ...]]:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    found: list[tuple[str, ...]] = []
    for name, command in group.commands.items():
        if isinstance(command, typer.core.TyperGroup):
            found += [(name, sub) for sub in command.commands]
        else:
            found.append((name,))
    return found


@pytest.mark.parametrize("path", _every_command(), ids=" ".join)
def test_every_command_has_help_naming_its_environment(
    path: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*path, "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert f"Usage: payfirst {' '.join(path)}" in shown
    assert "Environment: PAYFIRST_" in shown
    if path not in (("pay",), ("demo",)):
        assert "PAYFIRST_DATABASE_URL" in shown
    if path in (("serve",), ("api",), ("worker",), ("tokens", "add"), ("ledger", "check")):
        assert "PAYFIRST_RPC_URL" in shown and "PAYFIRST_RELAYER_KEY" in shown


def test_a_usage_error_exits_2() -> None:
    done = _run("reset-stuck", "--older-than", "5x")
    assert done.returncode == 2
    assert "not a duration: '5x'" in done.stderr
    done = _run("tokens")  # a group without its command
    assert done.returncode == 2


async def test_tokens_list_and_add(harness: Harness, pg_dsn: str) -> None:
    h = harness
    d = h.deployment
    code, out, err = await payfirst(h, pg_dsn, "tokens", "list")
    assert code == 0, err
    header, *rows = [line.split("\t") for line in out.splitlines()]
    assert tuple(header) == LIST_COLUMNS
    (row,) = [r for r in rows if r[1].lower() == d.token.lower()]
    assert row[0] == "eip155:31337"
    assert row[-1].isdigit()  # minted, read from the chain

    code, out, err = await payfirst(h, pg_dsn, "tokens", "add", d.token, "--cap", "1")
    assert code == 1 and "token_terms_mismatch" in err, out + err
    code, out, err = await payfirst(
        h, pg_dsn, "tokens", "add", "0x" + "00" * 19 + "01", "--network", "eip155:31337"
    )
    assert code == 1 and "not_a_mint_token" in err, out + err
    code, out, err = await payfirst(h, pg_dsn, "tokens", "add", d.token, "--network", "base")
    assert code == 2 and "not served here" in err, out + err

    code, out, err = await payfirst(
        h, pg_dsn, "tokens", "add", d.token, "--price", str(d.price_per_mint)
    )
    assert code == 0, out + err
    assert out.startswith("already registered; terms refreshed from chain:")
    assert f"for sale at POST /api/mint/{d.token}" in out


async def _pay(url: str, *args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(BIN / "payfirst"),
        "pay",
        url,
        *args,
        env={k: v for k, v in os.environ.items() if k != KEY_ENV} | env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _payments(h: Harness) -> int:
    rows = await fetch_raw(h.store, "SELECT count(*) AS n FROM payment_queue")
    return int(rows[0]["n"])


async def test_pay_a_mint_from_the_shell(harness: Harness, tmp_path: Path) -> None:
    h = harness
    d = h.deployment
    payer = h.payer(PAYER).address
    key = {KEY_ENV: ANVIL_KEYS[PAYER]}
    tokens_before = await h.token_balance(payer)
    async with serving(payfirst_app(h)) as url:
        mint = f"{url}/api/mint/{d.token}"
        body = ("--method", "POST", "--json", '{"quantity": 1}')
        # Refused before anything is signed: above --max-amount, no key, a bad body.
        code, out, err = await _pay(mint, *body, "--max-amount", str(d.price_per_mint - 1), env=key)
        assert (code, out) == (2, "") and err.startswith("payfirst: "), err
        code, _, err = await _pay(mint, *body, "--max-amount", str(d.price_per_mint), env={})
        assert code == 2 and KEY_ENV in err
        code, _, err = await _pay(
            mint, "--json", "{", "--max-amount", str(d.price_per_mint), env=key
        )
        assert code == 2 and err.startswith("payfirst: ")
        loose = tmp_path / "key"
        loose.write_text(ANVIL_KEYS[PAYER] + "\n")
        loose.chmod(0o644)
        code, _, err = await _pay(
            mint, *body, "--max-amount", str(d.price_per_mint), "--key-file", str(loose), env={}
        )
        assert code == 2 and "chmod 600" in err
        assert await _payments(h) == 0

        loose.chmod(stat.S_IRUSR | stat.S_IWUSR)
        code, out, err = await _pay(
            mint,
            *body,
            "--max-amount",
            str(d.price_per_mint),
            "--network",
            "eip155:31337",
            "--key-file",
            str(loose),
            env={},
        )
        assert code == 0, err
        assert err.splitlines()[:2] == [
            "HTTP 202",
            f"paid {d.price_per_mint} atomic units of {d.usdc} to {d.token} on eip155:31337 "
            f"from {payer} (x402 v2)",
        ]
        payment_id = UUID(json.loads(out)["paymentQueueId"])

        # A 4xx answer exits 1, its body still on stdout.
        code, out, err = await _pay(
            f"{url}/api/payment/{payment_id}x", "--max-amount", "0", env=key
        )
        assert code == 1 and out and err.startswith("HTTP 4"), err
    await h.settled()
    payment = await h.store.get_payment(payment_id)
    assert payment is not None and payment.status is PaymentStatus.COMPLETED
    assert await h.token_balance(payer) - tokens_before == d.mint_amount


async def test_pay_an_unreachable_server_exits_1() -> None:
    code, out, err = await _pay(
        "http://127.0.0.1:9/nothing", "--max-amount", "1", env={KEY_ENV: ANVIL_KEYS[PAYER]}
    )
    assert (code, out) == (1, "") and err.startswith("payfirst: "), err
