"""The status page in a real browser: Debian's headless Chromium driven by Playwright for
Python (never `playwright install`: the system's chromium through `executable_path`).

payfirst (the harness's store, chain and worker; an app whose "decide by the chain" is the
composition root's) is served by uvicorn on a free loopback port. The page asks for the
operator key, its charts appear, payments flow and the page's numbers follow them without
a reload; a payment made stuck shows up with its button, and one click decides it by the
chain. A screenshot is saved under the test's tmp dir, and with PAYFIRST_UPDATE_SCREENSHOT=1
as docs/status-page.png (the README's; a test run leaves the tree as it was).

Skipped only when chromium is missing and cannot be installed here (`make test` installs it
as root: the Makefile's `chromium` target); the reason is printed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from uuid import UUID

import pytest
from playwright.async_api import Page, async_playwright

from payfirst.app import build_app
from payfirst.domain.accounts import Role
from payfirst.domain.statuses import PaymentStatus
from tests.e2e.harness import Harness
from tests.e2e.test_interop_official_sdk import serving
from tests.e2e.test_status_api import deciding_services, key_of
from tests.fixtures.store import execute_raw, fetch_raw

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "status-page.png"
WAIT_MS = 60_000


def _install_chromium() -> str | None:
    """Installs Debian's chromium when it is missing; why it cannot be, else None."""
    if CHROMIUM.exists():
        return None
    if shutil.which("apt-get") is None:
        return "no apt-get on this machine (not Debian-like)"
    if os.geteuid() != 0:
        return "not root: `apt-get install chromium` needs root (run `make chromium` as root)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return f"`{' '.join(command)}` failed: {done.stderr.strip()[-300:]}"
    return None if CHROMIUM.exists() else "apt-get installed no /usr/bin/chromium"


@pytest.fixture(scope="session")
def chromium() -> str:
    why = _install_chromium()
    if why is not None:
        print(
            f"\nstatus page browser test skipped: chromium is unavailable: {why}", file=sys.stderr
        )
        pytest.skip(f"chromium is unavailable: {why}")
    return str(CHROMIUM)


async def _number(page: Page, element_id: str) -> int:
    text = await page.text_content(f"#{element_id}")
    assert text is not None and text.strip().isdigit(), (element_id, text)
    return int(text)


async def _wait_number_at_least(page: Page, element_id: str, least: int) -> None:
    await page.wait_for_function(
        "([id, least]) => Number(document.getElementById(id).textContent) >= least",
        arg=[element_id, least],
        timeout=WAIT_MS,
    )


async def test_the_status_page_follows_payments_live(
    harness: Harness, chromium: str, tmp_path: Path
) -> None:
    h = harness
    operator = (await key_of(h, Role.OPERATOR))["Authorization"].removeprefix("Bearer ")
    problems: list[str] = []
    async with (
        serving(build_app(deciding_services(h))) as url,
        async_playwright() as playwright,
    ):
        browser = await playwright.chromium.launch(
            executable_path=chromium, headless=True, args=ARGS
        )
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1100})
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on(
                "response",
                lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None,
            )
            page.on(
                "console",
                lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None,
            )
            await page.goto(f"{url}/status")

            # The key is asked for; no data is shown before it.
            await page.wait_for_selector("#login-form", state="visible")
            assert await page.is_hidden("#board")
            await page.fill("#key", operator)
            await page.click("#login-form button[type=submit]")

            # The charts exist and the first events arrived.
            await page.wait_for_selector("body[data-charts=ready]", timeout=WAIT_MS)
            assert await page.locator(".uplot").count() == 3
            await page.wait_for_function(
                "() => Number(document.body.dataset.ticks) >= 1", timeout=WAIT_MS
            )
            assert await page.text_content("#connection") == "live"
            assert await page.evaluate("sessionStorage.getItem('payfirst.operatorKey')") == operator
            relayer = h.worker.broadcaster.relayer.address
            await page.wait_for_selector(f"#relayers td:text-is('{relayer}')", timeout=WAIT_MS)
            completed = await _number(page, "minute-completed")
            ticks = int(await page.evaluate("document.body.dataset.ticks"))

            # Payments flow, in waves: the numbers and charts follow, no reload.
            marker = await page.evaluate("window.__notReloaded = true")
            assert marker is True
            payer = 1
            for wave in (1, 2, 3, 4, 5):
                for _ in range(wave + 1):
                    assert (await h.buy(h.payer(payer), 1)).status_code == 202
                    payer = payer % 9 + 1
                completed += wave + 1
                await _wait_number_at_least(page, "minute-completed", completed)
            assert await _number(page, "minute-accepted") >= completed
            assert await page.evaluate("window.__notReloaded") is True
            assert int(await page.evaluate("document.body.dataset.ticks")) > ticks + 2
            await h.settled()

            # A payment left `sent` by a dead worker: listed as stuck, with its button.
            await h.worker.stop()
            [row] = await fetch_raw(
                h.store,
                "SELECT id FROM payment_queue WHERE status = 'completed'"
                " ORDER BY created_at DESC LIMIT 1",
            )
            stuck: UUID = row["id"]
            await execute_raw(h.store, "DELETE FROM mint_queue WHERE payment_id = $1", stuck)
            await execute_raw(
                h.store,
                "UPDATE payment_queue SET status = 'sent', result = NULL,"
                " processed_at = now() - interval '10 minutes' WHERE id = $1",
                stuck,
            )
            button = page.locator(f"button[data-payment='{stuck}']")
            await button.wait_for(timeout=WAIT_MS)
            await _wait_number_at_least(page, "stuck-count", 1)
            await page.screenshot(path=str(tmp_path / "status-page.png"), full_page=True)
            if os.environ.get("PAYFIRST_UPDATE_SCREENSHOT") == "1":
                shutil.copyfile(tmp_path / "status-page.png", SCREENSHOT)

            # One click decides it by the chain: its tx was mined, so it is completed.
            await button.click()
            await page.wait_for_selector("#decide-result[data-outcome=completed]", timeout=WAIT_MS)
            assert str(stuck) in (await page.text_content("#decide-result") or "")
            payment = await h.store.get_payment(stuck)
            assert payment is not None and payment.status is PaymentStatus.COMPLETED
            await page.wait_for_function(
                "() => document.getElementById('stuck-count').textContent === '0'",
                timeout=WAIT_MS,
            )
            await h.worker.start()
        finally:
            await browser.close()
    assert (tmp_path / "status-page.png").stat().st_size > 10_000
    assert problems == []
