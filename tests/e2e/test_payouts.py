"""Payouts end to end on real PostgreSQL and anvil: money collected for a provider by real
payments to the treasury, paid out on chain by the treasury's payout loop (signed and
persisted before broadcast), recorded in the ledger only when confirmed, never above the
available balance; automatic payouts at a threshold; a reverted payout fails and its
money is available again; a provider sees its own payouts and balance only."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from uuid import UUID, uuid4

from payfirst.adapters.evm_chain import EvmChain
from payfirst.cli import ledger_table
from payfirst.domain.accounts import Role
from payfirst.pipeline.payouts import GAS_PAYOUT, transfer_call
from payfirst.pipeline.relayer import Relayer, current_fees
from payfirst.usecases.ledger_check import CheckedNetwork, check_ledger
from tests.e2e.harness import SETTLE_PRICE
from tests.e2e.payout_harness import CREDIT, PayoutEnv, payout_env, wait_for
from tests.fixtures.store import fetch_raw, random_address

__all__ = ["payout_env"]


async def _balance(env: PayoutEnv, who_headers: dict[str, str], query: str = "") -> dict[str, str]:
    answer = await env.h.http.get(f"/v1/balance{query}", headers=who_headers)
    assert answer.status_code == 200, answer.text
    (balance,) = answer.json()["balances"]
    return dict(balance)


async def _ledger_ok(env: PayoutEnv) -> None:
    network = CheckedNetwork(
        chain_id=env.h.deployment.chain_id,
        chain=EvmChain(env.h.rpc),
        treasury=env.treasury,
        assets=(env.h.deployment.usdc,),
    )
    report = await check_ledger(env.store, [network])
    assert report.ok, ledger_table(report)
    (treasury,) = [f for f in report.findings if f.check == "treasury"]
    assert "as booked" in treasury.detail, ledger_table(report)


async def test_an_on_demand_payout_is_paid_on_chain_and_recorded_in_the_ledger(
    payout_env: PayoutEnv, pg_dsn: str
) -> None:
    env = payout_env
    usdc = env.h.deployment.usdc
    provider, payee = await env.provider()
    await env.collect(provider.account.id, [1, 2])
    assert await env.h.usdc_balance(env.treasury) == 2 * SETTLE_PRICE
    before = await _balance(env, provider.headers)
    assert before == {
        "network": "eip155:31337",
        "asset": usdc,
        "decimals": 6,
        "available": str(2 * CREDIT),
        "in_payout": "0",
        "paid_out": "0",
        "pending": "0",
    }

    answer = await env.call("POST", "/v1/payouts", provider, json={"amount": "30000"})
    assert answer.status_code == 201, answer.text
    payout = answer.json()
    assert (payout["status"], payout["amount"], payout["to"]) == ("pending", "30000", payee)
    assert payout["trigger"] == "on_demand" and payout["network"] == "eip155:31337"
    # While it is undecided its amount is not available, and nothing is in the ledger.
    assert await env.decided(payout["id"]) == "completed"

    assert await env.h.usdc_balance(payee) == 30_000
    assert await env.h.usdc_balance(env.treasury) == 2 * SETTLE_PRICE - 30_000
    (transfer,) = await env.transfers_to(payee)
    done = (await env.call("GET", f"/v1/payouts/{payout['id']}", provider)).json()
    assert done["status"] == "completed" and done["tx_hash"] == transfer["transactionHash"]
    assert done["completed_at"] is not None
    entries = await fetch_raw(
        env.store,
        "SELECT a.kind, a.owner, e.amount FROM ledger_transactions t"
        " JOIN ledger_entries e ON e.transaction_id = t.id"
        " JOIN ledger_accounts a ON a.id = e.account_id"
        " WHERE t.payout_id = $1 AND t.kind = 'payout' ORDER BY e.position",
        UUID(payout["id"]),
    )
    assert entries == [
        {"kind": "provider", "owner": str(provider.account.id), "amount": -30_000},
        {"kind": "external", "owner": payee, "amount": 30_000},
    ]
    after = await _balance(env, provider.headers)
    assert (after["available"], after["in_payout"], after["paid_out"]) == (
        str(2 * CREDIT - 30_000),
        "0",
        "30000",
    )
    # Never above what is available.
    refused = await env.call(
        "POST", "/v1/payouts", provider, json={"amount": str(2 * CREDIT - 30_000 + 1)}
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "insufficient_balance"
    await _ledger_ok(env)

    # The rest, on demand by the operator's command line (amount: all available).
    code, output = await _payfirst(
        env, pg_dsn, "payouts", "create", "--provider", str(provider.account.id)
    )
    assert code == 0, output
    # The command's payout, whatever its status by now (the payout loop may be quick).
    (rest,) = await fetch_raw(
        env.store, f"SELECT id, amount FROM payouts WHERE id <> '{payout['id']}'"
    )
    assert int(rest["amount"]) == 2 * CREDIT - 30_000
    assert await env.decided(str(rest["id"])) == "completed"
    assert await env.h.usdc_balance(payee) == 2 * CREDIT
    code, output = await _payfirst(
        env, pg_dsn, "payouts", "list", "--provider", str(provider.account.id)
    )
    assert code == 0 and output.count("completed") == 2, output
    code, output = await _payfirst(env, pg_dsn, "ledger", "check")
    assert code == 0, output
    assert "ledger OK" in output
    # The treasury keeps exactly the platform's fees.
    assert await env.h.usdc_balance(env.treasury) == 2 * (SETTLE_PRICE - CREDIT)


async def test_concurrent_requests_never_pay_out_more_than_the_balance(
    payout_env: PayoutEnv,
) -> None:
    env = payout_env
    provider, payee = await env.provider()
    await env.collect(provider.account.id, [3, 4])
    share = str(CREDIT + 1)  # two of these exceed the balance (2 * CREDIT)
    answers = await asyncio.gather(
        *(env.call("POST", "/v1/payouts", provider, json={"amount": share}) for _ in range(6))
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] + [400] * 5, [a.text for a in answers]
    assert {a.json()["error"] for a in answers if a.status_code == 400} == {"insufficient_balance"}
    (created,) = [a.json() for a in answers if a.status_code == 201]
    assert await env.decided(created["id"]) == "completed"
    assert await env.h.usdc_balance(payee) == CREDIT + 1
    balance = await _balance(env, provider.headers)
    assert balance["available"] == str(CREDIT - 1)


async def test_a_threshold_pays_out_by_itself(payout_env: PayoutEnv) -> None:
    env = payout_env
    provider, payee = await env.provider()
    answer = await env.call(
        "PATCH",
        f"/v1/accounts/{provider.account.id}",
        provider,
        json={"payout_threshold": str(2 * CREDIT)},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["payout_threshold"] == str(2 * CREDIT)
    await env.collect(provider.account.id, [5])
    assert await fetch_raw(env.store, "SELECT id FROM payouts") == []  # below the threshold
    await env.collect(provider.account.id, [6])

    async def paid() -> bool:
        rows = await fetch_raw(env.store, "SELECT status FROM payouts")
        return [r["status"] for r in rows] == ["completed"]

    await wait_for(paid, 60, "the threshold payout")
    (payout,) = await fetch_raw(env.store, "SELECT trigger, amount FROM payouts")
    assert (payout["trigger"], int(payout["amount"])) == ("threshold", 2 * CREDIT)
    assert await env.h.usdc_balance(payee) == 2 * CREDIT
    await _ledger_ok(env)


async def test_a_reverted_payout_fails_and_its_money_is_available_again(
    payout_env: PayoutEnv,
) -> None:
    env = payout_env
    provider, payee = await env.provider()
    await env.collect(provider.account.id, [7])
    # The treasury's tokens leave behind payfirst's back (its key used elsewhere): the
    # ledger says more than the chain holds, and a transfer of all of it must revert.
    relayer = Relayer.from_key(env.h.worker.broadcaster.relayer.key, env.h.deployment.chain_id)
    nonce = await env.h.rpc.get_transaction_count(env.treasury, "pending")
    fees = await current_fees(EvmChain(env.h.rpc))
    away = relayer.sign_call(
        env.h.deployment.usdc,
        transfer_call(random_address(), SETTLE_PRICE),
        nonce,
        GAS_PAYOUT,
        fees,
    )
    await env.h.rpc.call("eth_sendRawTransaction", away.raw)

    async def gone() -> bool:
        return await env.h.usdc_balance(env.treasury) == 0

    await wait_for(gone, 30, "the treasury to be emptied")

    answer = await env.call("POST", "/v1/payouts", provider, json={})
    assert answer.status_code == 201, answer.text
    payout = answer.json()
    assert await env.decided(payout["id"]) == "failed"
    failed = (await env.call("GET", f"/v1/payouts/{payout['id']}", provider)).json()
    assert "reverted" in failed["error"]
    assert await env.h.usdc_balance(payee) == 0
    ledgered = await fetch_raw(
        env.store, "SELECT id FROM ledger_transactions WHERE kind = 'payout'"
    )
    assert ledgered == []
    balance = await _balance(env, provider.headers)
    assert (balance["available"], balance["in_payout"], balance["paid_out"]) == (
        str(CREDIT),
        "0",
        "0",
    )


async def test_a_provider_sees_and_asks_for_its_own_payouts_only(payout_env: PayoutEnv) -> None:
    env = payout_env
    alice, _ = await env.provider("alice")
    bob, _ = await env.provider("bob")
    operator = await env.account(Role.OPERATOR, "ops")
    agent = await env.account(Role.AGENT, "agent")
    await env.collect(alice.account.id, [8])
    created = await env.call("POST", "/v1/payouts", alice, json={"amount": "1000"})
    assert created.status_code == 201, created.text
    payout_id = created.json()["id"]

    # Bob: Alice's payout, balance and account are as unknown as ones that do not exist.
    for path in (f"/v1/payouts/{payout_id}", f"/v1/payouts/{uuid4()}"):
        answer = await env.call("GET", path, bob)
        assert (answer.status_code, answer.json()["error"]) == (404, "unknown_payout")
    listed = (await env.call("GET", "/v1/payouts", bob)).json()
    assert listed == {"payouts": [], "has_more": False}
    mine = (await env.call("GET", "/v1/payouts", alice)).json()
    assert [p["id"] for p in mine["payouts"]] == [payout_id]
    others = [
        ("GET", f"/v1/payouts?provider_id={alice.account.id}", None),
        ("GET", f"/v1/balance?provider_id={alice.account.id}", None),
        ("POST", "/v1/payouts", {"provider_id": str(alice.account.id)}),
        ("PATCH", f"/v1/accounts/{alice.account.id}", {"payout_threshold": "1"}),
    ]
    for method, path, body in others:
        answer = await env.call(method, path, bob, json=body)
        assert answer.status_code == 404, (path, answer.text)
    assert (await env.call("GET", "/v1/balance", bob)).json() == {"balances": []}
    # Only the operator sets a fee.
    answer = await env.call("PATCH", f"/v1/accounts/{bob.account.id}", bob, json={"fee_bps": 0})
    assert (answer.status_code, answer.json()["error"]) == (403, "forbidden")
    answer = await env.call(
        "PATCH", f"/v1/accounts/{bob.account.id}", operator, json={"fee_bps": 100}
    )
    assert answer.status_code == 200 and answer.json()["fee_bps"] == 100, answer.text
    # Agents have no payouts; no key is 401.
    for method, path in (("GET", "/v1/payouts"), ("GET", "/v1/balance"), ("POST", "/v1/payouts")):
        answer = await env.call(method, path, agent, json={} if method == "POST" else None)
        assert answer.status_code == 403, answer.text
        assert (await env.call(method, path)).status_code == 401
    # The operator sees everyone's, and names the provider for a balance.
    everyone = (await env.call("GET", "/v1/payouts", operator)).json()
    assert [p["id"] for p in everyone["payouts"]] == [payout_id]
    answer = await env.call("GET", "/v1/balance", operator)
    assert answer.status_code == 400, answer.text
    alice_balance = await _balance(env, operator.headers, f"?provider_id={alice.account.id}")
    assert alice_balance["in_payout"] in ("1000", "0")  # decided meanwhile, or not yet
    # Bad input: a clear 400, nothing written.
    bad: list[dict[str, object]] = [{"amount": "0"}, {"amount": "-5"}, {"amount": 1.5}, {"no": 1}]
    for wrong in bad:
        answer = await env.call("POST", "/v1/payouts", alice, json=wrong)
        assert (answer.status_code, answer.json()["error"]) == (400, "invalid_request"), wrong
    zero = {"payout_address": "0x" + "0" * 40}
    answer = await env.call("PATCH", f"/v1/accounts/{alice.account.id}", alice, json=zero)
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_request")
    no_address, _ = await env.provider("no address")
    await env.call(
        "PATCH",
        f"/v1/accounts/{no_address.account.id}",
        no_address,
        json={"payout_address": None},
    )
    answer = await env.call("POST", "/v1/payouts", no_address, json={"amount": "1"})
    assert answer.status_code == 400, answer.text
    assert await env.decided(payout_id) == "completed"
    assert len(await fetch_raw(env.store, "SELECT id FROM payouts")) == 1


async def _payfirst(env: PayoutEnv, pg_dsn: str, *args: str) -> tuple[int, str]:
    """`payfirst ARGS` as an operator runs it, on the test's schema and chain."""
    dsn = f"{pg_dsn}?search_path={env.store.schema}"
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "payfirst"),
        *args,
        env={
            **os.environ,
            "PAYFIRST_DATABASE_URL": dsn,
            "PAYFIRST_RPC_URL": env.h.deployment.rpc_url,
            "PAYFIRST_TREASURY_ADDRESS": env.treasury,
            "PAYFIRST_LOG_LEVEL": "WARNING",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    return int(process.returncode or 0), out.decode()
