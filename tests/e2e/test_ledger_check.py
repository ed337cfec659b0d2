"""`payfirst ledger check` on real PostgreSQL and anvil: payments settled by the pipeline
pass it; a ledger that disagrees with the chain fails it, naming the violation."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from eth_utils.address import to_checksum_address

from payfirst.adapters.evm_chain import EvmChain
from payfirst.cli import ledger_table
from payfirst.domain.ledger import fee_of
from payfirst.usecases.ledger_check import CheckedNetwork, LedgerReport, check_ledger
from tests.e2e.harness import (
    SELLER,
    SETTLE_PRICE,
    SHOP,
    Harness,
    request_v2,
    requirements_v2,
)
from tests.fixtures.store import execute_raw, fetch_raw

#: The platform's treasury in these tests; /settle may pay it (PAYFIRST_SETTLE_PAY_TO).
TREASURY = SHOP
PROVIDER = UUID("7b5a3e8c-0000-4000-8000-0000000000aa")
FEE_BPS = 250

# What the accept path of paid endpoints will do (a later item): a payment to the treasury
# is collected for a provider, its fee fixed when it is accepted. A test-only trigger.
_COLLECT = f"""
CREATE FUNCTION test_collect_for_provider() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.token_address = '{TREASURY}' THEN
        NEW.provider_id := '{PROVIDER}';
        NEW.fee_bps := {FEE_BPS};
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER test_collect_for_provider BEFORE INSERT ON payment_queue
    FOR EACH ROW EXECUTE FUNCTION test_collect_for_provider();
"""
_ENTRIES = """
INSERT INTO ledger_entries (transaction_id, position, account_id, amount)
SELECT $1, v.position, a.id, v.amount
  FROM unnest($3::integer[], $4::text[], $5::text[], $6::numeric[])
       AS v (position, kind, owner, amount)
  JOIN ledger_accounts a ON a.kind = v.kind AND a.owner = v.owner AND a.chain_id = $2
"""
_UNCOLLECT = """
DROP TRIGGER test_collect_for_provider ON payment_queue;
DROP FUNCTION test_collect_for_provider();
"""


@pytest.fixture
async def paid(harness: Harness) -> Harness:
    """Three payments completed by the pipeline: a settle collected by the treasury for a
    provider, a plain settle to a seller, a mint."""
    await execute_raw(harness.store, _COLLECT)
    try:
        for payer, pay_to in ((harness.payer(3), TREASURY), (harness.payer(4), SELLER)):
            body = request_v2(payer, requirements_v2(harness, pay_to=pay_to))
            settled = (await harness.http.post("/settle", json=body)).json()
            assert settled["success"] is True, settled
        assert (await harness.buy(harness.payer(5))).status_code == 202
        await harness.settled()
    finally:
        await execute_raw(harness.store, _UNCOLLECT)
    return harness


async def _tamper(h: Harness, tx: UUID, entries: list[tuple[int, str, str, int]]) -> None:
    """Entries (position, account kind, owner, amount) of ledger transaction `tx` (one with
    none yet: its entries are written at once), in one statement."""
    columns = [list(column) for column in zip(*entries, strict=True)]
    await execute_raw(h.store, _ENTRIES, tx, h.deployment.chain_id, *columns)


def _checksum(address: str) -> str:
    return str(to_checksum_address(address))


async def _check(h: Harness) -> LedgerReport:
    network = CheckedNetwork(
        chain_id=h.deployment.chain_id,
        chain=EvmChain(h.rpc),
        treasury=TREASURY,
        assets=(h.deployment.usdc,),
    )
    return await check_ledger(h.store, [network], page_size=2)  # pages of 2: 2 pages


async def _payment_to(h: Harness, pay_to: str) -> UUID:
    rows = await fetch_raw(h.store, "SELECT id FROM payment_queue WHERE token_address = $1", pay_to)
    assert len(rows) == 1
    return UUID(str(rows[0]["id"]))


async def test_payments_settled_by_the_pipeline_pass_the_check(paid: Harness) -> None:
    report = await _check(paid)
    assert report.ok, ledger_table(report)
    assert report.payments_checked == 3
    fee = fee_of(SETTLE_PRICE, FEE_BPS)
    assert await paid.usdc_balance(TREASURY) == SETTLE_PRICE
    holdings = await paid.store.ledger_holdings(TREASURY, paid.deployment.chain_id)
    assert holdings == {paid.deployment.usdc: SETTLE_PRICE}
    provider = await fetch_raw(
        paid.store,
        "SELECT a.kind, sum(e.amount) AS amount FROM ledger_entries e"
        " JOIN ledger_accounts a ON a.id = e.account_id"
        " WHERE a.kind IN ('provider', 'fees') GROUP BY a.kind ORDER BY a.kind",
    )
    assert provider == [
        {"kind": "fees", "amount": fee},
        {"kind": "provider", "amount": SETTLE_PRICE - fee},
    ]
    (treasury,) = [f for f in report.findings if f.check == "treasury"]
    assert "as booked" in treasury.detail
    assert "ledger OK (3 payments checked)" in ledger_table(report)


async def test_a_payment_whose_tx_is_elsewhere_fails_until_reversed(paid: Harness) -> None:
    payment_id = await _payment_to(paid, SELLER)
    # the settling tx is now one that does not exist (as after a deep reorg)
    await execute_raw(
        paid.store,
        "UPDATE payment_queue SET tx_hash = $2 WHERE id = $1",
        payment_id,
        "0x" + "ee" * 32,
    )
    report = await _check(paid)
    assert not report.ok
    (violation,) = report.violations
    assert (violation.check, violation.subject) == ("on_chain", str(payment_id))
    assert "not on chain" in violation.detail
    assert "ledger check FAILED: 1 violations" in ledger_table(report)

    assert await paid.store.reverse_payment(payment_id, "not on chain (ledger check)")
    after = await _check(paid)
    assert after.ok, ledger_table(after)
    assert any(f.subject == str(payment_id) and "reversed" in f.detail for f in after.findings)


async def test_a_provider_credit_with_no_money_on_chain_fails_the_treasury_check(
    paid: Harness,
) -> None:
    """A bogus, balanced ledger transaction: a provider credited from nowhere."""
    tx = uuid4()
    await execute_raw(
        paid.store, "INSERT INTO ledger_transactions (id, kind) VALUES ($1, 'payout')", tx
    )
    entries = [(0, "provider", str(PROVIDER), 1_000), (1, "external", _checksum(SELLER), -1_000)]
    await _tamper(paid, tx, entries)
    report = await _check(paid)
    (violation,) = report.violations
    assert violation.check == "treasury"
    assert violation.subject.lower() == f"{paid.deployment.chain_id}/{paid.deployment.usdc}".lower()
    assert f"on chain {SETTLE_PRICE}, but the ledger says {SETTLE_PRICE + 1_000}" in (
        violation.detail
    )


async def test_entries_that_are_not_the_payments_fail_the_check(paid: Harness) -> None:
    """A payment's ledger transaction crediting someone the payment did not pay."""
    payment_id = await _payment_to(paid, SELLER)
    tx = await paid.store.pool.fetchval(
        "SELECT id FROM ledger_transactions WHERE payment_id = $1", payment_id
    )
    payer = paid.payer(4).address  # the payer of the payment to SELLER
    entries = [(10, "external", _checksum(SELLER), -1), (11, "external", payer, 1)]
    columns = [list(column) for column in zip(*entries, strict=True)]
    # Entries added to a written transaction: only behind the trigger's back (a hand edit).
    async with paid.store.pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_checked")
        await conn.execute(_ENTRIES, tx, paid.deployment.chain_id, *columns)
        await conn.execute("ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_checked")
    report = await _check(paid)
    subjects = {(f.check, f.subject) for f in report.violations}
    assert ("recorded", str(payment_id)) in subjects


async def _payfirst(h: Harness, pg_dsn: str, *args: str) -> tuple[int, str]:
    """`payfirst ARGS` run as a process, as an operator runs it: exit status and output."""
    env = {
        **os.environ,
        "PAYFIRST_DATABASE_URL": f"{pg_dsn}?search_path={h.store.schema}",
        "PAYFIRST_RPC_URL": h.deployment.rpc_url,
        "PAYFIRST_TREASURY_ADDRESS": TREASURY,
        "PAYFIRST_LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "payfirst"),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_the_operator_commands_check_and_reverse(paid: Harness, pg_dsn: str) -> None:
    status, out = await _payfirst(paid, pg_dsn, "ledger", "check")
    assert (status, out.splitlines()[-1]) == (0, "ledger OK (3 payments checked)"), out
    payment_id = await _payment_to(paid, SELLER)
    await execute_raw(
        paid.store,
        "UPDATE payment_queue SET tx_hash = $2 WHERE id = $1",
        payment_id,
        "0x" + "ee" * 32,
    )
    status, out = await _payfirst(paid, pg_dsn, "ledger", "check")
    assert status == 1 and re.search(rf"on_chain +{payment_id} +VIOLATION +not on chain", out), out
    reverse = ("ledger", "reverse", str(payment_id), "--reason", "not on chain")
    assert await _payfirst(paid, pg_dsn, *reverse) == (0, f"{payment_id}: reversed\n")
    status, _ = await _payfirst(paid, pg_dsn, *reverse)
    assert status == 1  # once only
    status, out = await _payfirst(paid, pg_dsn, "ledger", "check")
    assert status == 0, out
