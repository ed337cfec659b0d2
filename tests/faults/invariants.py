"""The one invariant every fault case ends with (SPEC §8; issue 8, "fault suite"): every
accepted payment is in exactly one terminal state and it matches the chain (its
authorization used on chain <=> `completed`), mint items exist only for completed payments
and each mint id is minted once, and the payTo, payer and token balances moved by exactly
the completed sums. Builds on `tests.e2e.harness.check_invariants` (SPEC §2 rules 1-3 and
supply accounting)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from payfirst.evm import abi, calls
from payfirst.pipeline.mint_ids import mint_ids
from tests.e2e.harness import MINTED_TOPIC, Harness, check_invariants, erc20_balance
from tests.fixtures.store import fetch_raw

TERMINAL = {"completed", "failed", "confirmation_failed"}


@dataclass
class Ledger:
    """USDC and mint-token balances before a scenario."""

    usdc: dict[str, int]
    tokens: dict[str, int]


async def snapshot(h: Harness, addresses: list[str]) -> Ledger:
    d = h.deployment
    everyone = sorted({*addresses, d.token})
    return Ledger(
        usdc={a: await erc20_balance(h.rpc, d.usdc, a) for a in everyone},
        tokens={a: await erc20_balance(h.rpc, d.token, a) for a in everyone},
    )


async def authorization_used(h: Harness, asset: str, payer: str, nonce: str) -> bool:
    raw = await h.rpc.eth_call(asset, calls.authorization_state(payer, nonce))
    return bool(abi.decode_result(["bool"], raw)[0])


async def assert_chain_matches(
    h: Harness, before: Ledger, *, external: dict[str, int] | None = None
) -> Counter[str]:
    """Checks the invariant; returns the payments' count per status. `external`: USDC
    moved outside payfirst during the scenario (address -> signed delta)."""
    d = h.deployment
    payments = await fetch_raw(
        h.store,
        "SELECT id, status, payment_type, payer, amount, payment_asset, token_address,"
        " quantity, auth_nonce, error FROM payment_queue",
    )
    statuses: Counter[str] = Counter(str(p["status"]) for p in payments)
    open_rows = [p for p in payments if p["status"] not in TERMINAL]
    assert not open_rows, f"payments not in a terminal state: {open_rows}"
    mismatched: list[dict[str, Any]] = []
    for p in payments:
        used = await authorization_used(h, p["payment_asset"], p["payer"], p["auth_nonce"])
        if used != (p["status"] == "completed"):
            mismatched.append({**p, "used_on_chain": used})
    assert not mismatched, f"payments whose state does not match the chain: {mismatched}"

    items = await fetch_raw(h.store, "SELECT payment_id, mint_id, status FROM mint_queue")
    by_payment: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        by_payment.setdefault(str(item["payment_id"]), []).append(item)
    expected_ids: set[str] = set()
    for p in payments:
        mine = by_payment.get(str(p["id"]), [])
        if p["status"] != "completed" or p["payment_type"] != "mint":
            assert not mine, f"mint items of a payment not completed: {p}"
            continue
        ids = mint_ids(p["payer"], p["id"], int(p["quantity"]))
        assert sorted(m["mint_id"] for m in mine) == sorted(ids), p
        assert {m["status"] for m in mine} == {"completed"}, (p, mine)
        expected_ids.update(ids)
    logs = await h.rpc.call(
        "eth_getLogs",
        {"address": d.token, "fromBlock": "0x0", "toBlock": "latest", "topics": [MINTED_TOPIC]},
    )
    minted = [entry["topics"][1] for entry in logs]
    assert len(minted) == len(set(minted)), "a mint id was minted twice on chain"
    assert set(minted) == expected_ids, "minted on chain != mint ids of completed payments"

    # Balances: every address moved by exactly the completed sums (plus `external`).
    usdc_delta: Counter[str] = Counter(external or {})
    token_delta: Counter[str] = Counter()
    for p in payments:
        if p["status"] != "completed":
            continue
        amount = int(p["amount"])
        usdc_delta[p["payer"]] -= amount
        usdc_delta[p["token_address"]] += amount
        if p["payment_type"] == "mint":
            token_delta[p["payer"]] += int(p["quantity"]) * d.mint_amount
    for address in sorted(set(before.usdc) | set(usdc_delta)):
        now = await erc20_balance(h.rpc, d.usdc, address)
        assert now - before.usdc.get(address, 0) == usdc_delta[address], (
            f"USDC of {address}: moved {now - before.usdc.get(address, 0)}, "
            f"completed payments say {usdc_delta[address]}"
        )
    for address in sorted(set(before.tokens) | set(token_delta)):
        now = await erc20_balance(h.rpc, d.token, address)
        assert now - before.tokens.get(address, 0) == token_delta[address], address
    await check_invariants(h.store, h.rpc)
    return statuses
