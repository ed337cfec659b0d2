"""How fast payfirst checks x402 payments on one core (no RPC, no database).

Builds N distinct signed v2 `PAYMENT-SIGNATURE` headers up front (distinct payers and
nonces), then times what the API does per request (`parse_payment_header`, building the
requirements, `verify_exact_evm`), and `verify_exact_evm` alone on the parsed payloads.

    .venv/bin/python bench/verify.py [N]        # default 20,000; target >= 10,000/s
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time

from coincurve import PrivateKey

from payfirst.domain.models import Token
from payfirst.x402 import (
    PaymentPayloadV1,
    PaymentPayloadV2,
    digest,
    encode_header,
    mint_requirements_v2,
    parse_payment_header,
    to_checksum_address,
    verify_exact_evm,
)
from payfirst.x402.exact_evm import keccak256

TOKEN = Token(
    address="0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
    chain_id=31337,
    name="Bench Token",
    symbol="BENCH",
    payment_asset="0x5FbDB2315678afecb367f032d93F642f64180aa3",
    asset_name="USD Coin",
    asset_version="2",
    asset_decimals=6,
    price_per_mint=1_000_000,
    mint_amount=10**21,
    max_mint_count=10**9,
)
QUANTITY = 2
RESOURCE = f"http://127.0.0.1:8402/api/mint/{TOKEN.address}"


def build_headers(n: int, now: int) -> list[dict[str, str]]:
    requirements = mint_requirements_v2(TOKEN, QUANTITY, RESOURCE)
    accepted = requirements.model_dump(by_alias=True)
    headers = []
    for _ in range(n):
        key = PrivateKey(os.urandom(32))
        payer = to_checksum_address(keccak256(key.public_key.format(compressed=False)[1:])[12:])
        nonce = os.urandom(32)
        authorization = {
            "from": payer,
            "to": TOKEN.address,
            "value": requirements.amount,
            "validAfter": str(now - 10),
            "validBefore": str(now + 300),
            "nonce": "0x" + nonce.hex(),
        }
        message_hash = digest(
            asset=TOKEN.payment_asset,
            chain_id=TOKEN.chain_id,
            name=TOKEN.asset_name,
            version=TOKEN.asset_version,
            from_=payer,
            to=TOKEN.address,
            value=int(requirements.amount),
            valid_after=now - 10,
            valid_before=now + 300,
            nonce=nonce,
        )
        rsv = key.sign_recoverable(message_hash, hasher=None)
        signature = "0x" + rsv[:64].hex() + format(rsv[64] + 27, "02x")
        payload = {
            "x402Version": 2,
            "resource": {"url": RESOURCE, "mimeType": "application/json"},
            "accepted": accepted,
            "payload": {"signature": signature, "authorization": authorization},
        }
        headers.append(
            {"content-type": "application/json", "payment-signature": encode_header(payload)}
        )
    return headers


def rate(label: str, n: int, seconds: float) -> None:
    print(f"{label}: {n} payloads in {seconds:.3f} s = {n / seconds:,.0f} verifications/s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=20_000)
    n = parser.parse_args().n
    now = int(time.time())
    started = time.perf_counter()
    headers = build_headers(n, now)
    print(f"built {n} signed payloads in {time.perf_counter() - started:.1f} s")

    # The prepared headers are fixture data, not request garbage: keep the collector from
    # walking them over and over (a server does not hold 20,000 requests either).
    gc.collect()
    gc.freeze()

    started = time.perf_counter()
    for request_headers in headers:
        payload = parse_payment_header(request_headers)
        assert payload is not None
        requirements = mint_requirements_v2(TOKEN, QUANTITY, RESOURCE)
        verify_exact_evm(payload, requirements, now)
    full = time.perf_counter() - started

    parsed: list[PaymentPayloadV1 | PaymentPayloadV2] = []
    for request_headers in headers:
        payload = parse_payment_header(request_headers)
        assert payload is not None
        parsed.append(payload)
    gc.collect()
    gc.freeze()
    requirements = mint_requirements_v2(TOKEN, QUANTITY, RESOURCE)
    started = time.perf_counter()
    for payload in parsed:
        verify_exact_evm(payload, requirements, now)
    alone = time.perf_counter() - started

    rate("verify", n, full)
    rate("verify alone", n, alone)
    return 0 if n / full >= 10_000 else 1


if __name__ == "__main__":
    sys.exit(main())
