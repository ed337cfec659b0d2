"""payfirst against the x402-conformance suite (PyPI `x402-conformance`, CLI `x402conf`),
run as a subprocess against real loopback ports served in this event loop (harness: real
PostgreSQL, real anvil):

- `x402conf live`: S0-S4 over payfirst's facilitator `GET /supported`;
- `x402conf resource`: P1-P7 over one unpaid GET of a route priced by payfirst's provider
  middleware (payfirst as its facilitator).

The tool only GETs (it "never pays or POSTs"), so payfirst's own paid route, `POST
/api/mint/{token}`, cannot be given to the CLI: its 402 answer is graded here with the
same P1-P7 checks (`x402conf.harness.check_402`) on an unpaid POST over the real port."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import httpx
from x402conf import harness as conformance

from tests.e2e.harness import Harness
from tests.e2e.test_interop_official_sdk import payfirst_server, provider_server
from tests.fixtures.store import fetch_raw

TIMEOUT_S = 60
LIVE_CHECKS = {"S0", "S1", "S2", "S3", "S4"}
RESOURCE_CHECKS = {"P1", "P2", "P3", "P4", "P5", "P6", "P7"}


async def x402conf(*args: str) -> tuple[int, dict[str, Any], str]:
    """Run `python -m x402conf ARGS` without blocking the loop that serves the targets;
    returns its exit code, its JSON report (stdout) and its stderr."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["NO_PROXY"] = "127.0.0.1,localhost"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "x402conf",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    try:
        report = json.loads(out)
    except ValueError as exc:
        raise AssertionError(f"x402conf printed no JSON report: {out!r} {err!r}") from exc
    return process.returncode, report, err.decode()


def checks_of(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["check"].split(" ")[0]: c for c in run["checks"]}


def failures(checks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {cid: c["detail"] for cid, c in checks.items() if not c["pass"]}


async def test_live_supported_checks_pass_against_payfirst(harness: Harness) -> None:
    async with payfirst_server(harness) as url:
        code, report, err = await x402conf("live", url, "--fail-on-error")
    assert code == 0, (report, err)
    assert report["mode"] == "live-GET-only"
    [run] = report["results"]
    assert run["target"] == url and run["http"] == 200
    assert "error" not in run, run
    checks = checks_of(run)
    assert set(checks) == LIVE_CHECKS - {"S0"}  # S0 is reported only when it fails
    assert failures(checks) == {}
    assert checks["S1"]["detail"]["graded_as"] == "v2"
    assert checks["S2"]["detail"]["v2_kinds"] == 1
    assert checks["S2"]["detail"]["non_caip2"] == []


async def test_resource_checks_pass_against_the_provider_middleware(harness: Harness) -> None:
    async with (
        payfirst_server(harness) as facilitator_url,
        provider_server(harness, facilitator_url) as resource_url,
    ):
        code, report, err = await x402conf("resource", f"{resource_url}/report", "--fail-on-error")
    assert code == 0, (report, err)
    assert report["mode"] == "resource-GET-only"
    [run] = report["results"]
    assert run["http"] == 402
    checks = checks_of(run)
    assert set(checks) == RESOURCE_CHECKS
    assert failures(checks) == {}
    assert checks["P2"]["detail"]["found_in"] == "PAYMENT-REQUIRED header"
    assert checks["P3"]["detail"]["x402Version"] == 2
    # The unpaid GET queued nothing.
    assert await fetch_raw(harness.store, "SELECT id FROM payment_queue") == []


async def test_resource_checks_on_payfirst_mint_route(harness: Harness) -> None:
    """The CLI cannot POST: a GET of the mint route is 405 (P1 fails, as it should for a
    route that is not paid by GET). An unpaid POST passes the same P1-P7 checks."""
    token = harness.deployment.token
    async with payfirst_server(harness) as url:
        code, report, _ = await x402conf("resource", f"{url}/api/mint/{token}")
        async with httpx.AsyncClient(base_url=url) as http:
            unpaid = await http.post(f"/api/mint/{token}", json={"quantity": 2})
    assert code == 0  # without --fail-on-error: the report says what failed
    [run] = report["results"]
    assert run["http"] == 405
    assert not checks_of(run)["P1"]["pass"]

    checks = {
        c["check"].split(" ")[0]: c
        for c in conformance.check_402(
            {
                "status": unpaid.status_code,
                "headers": {k.lower(): v for k, v in unpaid.headers.items()},
                "body": unpaid.content,
            }
        )
    }
    assert set(checks) == RESOURCE_CHECKS
    assert failures(checks) == {}
    required = conformance._decode_header(unpaid.headers["PAYMENT-REQUIRED"])
    [offer] = required["accepts"]
    assert offer["amount"] == str(2 * harness.deployment.price_per_mint)
    assert offer["payTo"] == token
