"""An agent paying for a provider's route with `PayingClient`, within a spending policy
checked before anything is signed.

    python -m examples.agent http://127.0.0.1:8001/weather/paris

pays with anvil's dev account 1 (funded with demo USDC by `make run`); `PAYER_KEY` names
another key."""

from __future__ import annotations

import asyncio
import os
import sys

from payfirst.client import PaidResponse, PayingClient, SpendingPolicy

#: anvil's dev account 1: a public test key, for the local dev chain only.
ANVIL_KEY_1 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
#: The most this agent pays for one call: 0.05 USDC.
MAX_PER_CALL = 50_000


async def fetch(url: str, payer_key: str = ANVIL_KEY_1) -> PaidResponse:
    policy = SpendingPolicy(max_per_payment=MAX_PER_CALL, max_per_day=10 * MAX_PER_CALL)
    async with PayingClient(payer_key, policy, timeout=120) as client:
        return await client.get(url)


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8001/weather/paris"
    paid = asyncio.run(fetch(url, os.environ.get("PAYER_KEY", ANVIL_KEY_1)))
    print(paid.response.status_code, paid.response.text)
    if paid.payment is not None:
        print(f"paid {paid.payment.amount} atomic units as {paid.payment.payer}")
    if paid.settlement is not None:
        print(f"settled in {paid.settlement.transaction}")


if __name__ == "__main__":
    main()
