"""Make a provider on a payfirst instance and register one paid endpoint for it.

With the operator key `make run` prints::

    PAYFIRST_URL=http://127.0.0.1:4021 PAYFIRST_OPERATOR_KEY=pf_test_... \\
        python -m examples.setup_provider

It creates the provider account "weather demo" (its payouts go to anvil's dev account 9),
registers `GET /weather/{city}` at 0.01 USDC, paid to the platform's treasury, and prints
the provider's API key for `examples.provider_app`."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

import httpx

#: anvil's dev account 9: where the demo provider's payouts go.
PAYOUT_ADDRESS = "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720"
PRICE = 10_000  # 0.01 USDC (6 decimals)


@dataclass(frozen=True)
class Provider:
    account_id: str
    api_key: str
    endpoint: dict[str, Any]


async def setup_provider(
    payfirst_url: str, operator_key: str, *, client: httpx.AsyncClient | None = None
) -> Provider:
    """The new provider's account id, its key, and its registered endpoint."""
    async with client or httpx.AsyncClient(timeout=30) as http:
        created = await http.post(
            f"{payfirst_url}/v1/accounts",
            headers={"Authorization": f"Bearer {operator_key}"},
            json={"role": "provider", "name": "weather demo", "payout_address": PAYOUT_ADDRESS},
        )
        created.raise_for_status()
        account = created.json()
        api_key = account["api_key"]["key"]
        registered = await http.post(
            f"{payfirst_url}/v1/endpoints",
            headers={"Authorization": f"Bearer {api_key}"},
            json={
                "method": "GET",
                "resource": "/weather/{city}",
                "amount": str(PRICE),
                "description": "Today's weather in a city",
                "mime_type": "application/json",
                "output_schema": {"type": "object", "properties": {"forecast": {"type": "string"}}},
            },
        )
        registered.raise_for_status()
        return Provider(account["account"]["id"], api_key, registered.json())


def main() -> None:
    provider = asyncio.run(
        setup_provider(
            os.environ.get("PAYFIRST_URL", "http://127.0.0.1:4021"),
            os.environ["PAYFIRST_OPERATOR_KEY"],
        )
    )
    print(f"provider {provider.account_id}: endpoint {provider.endpoint['id']}")
    print(f"PAYFIRST_API_KEY={provider.api_key}")


if __name__ == "__main__":
    main()
