"""Pre-signing: distinct, validly signed v2 `PAYMENT-SIGNATURE` headers, made on all cores
before a phase's clock starts (signing is the buyers' cost, not the server's)."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from payfirst.adapters.devchain import ANVIL_KEYS
from payfirst.client.signing import Payer
from payfirst.x402 import PaymentRequiredV2, PaymentRequirementsV2, ResourceInfo

PAYER_KEYS = ANVIL_KEYS[1:10]  # the dev chain funds accounts 1-9


def _sign_chunk(args: tuple[list[str], dict[str, Any], dict[str, Any] | None, int]) -> list[str]:
    keys, requirements_wire, resource_wire, n = args
    requirements = PaymentRequirementsV2.model_validate(requirements_wire)
    resource = ResourceInfo.model_validate(resource_wire) if resource_wire else None
    payers = [Payer(k) for k in keys]
    return [payers[i % len(payers)].pay_v2(requirements, resource) for i in range(n)]


class Signer:
    """Signs with payers 1-9 and random nonces in a process pool (nothing else runs while
    it does)."""

    def __init__(self, required: PaymentRequiredV2) -> None:
        self.requirements = required.accepts[0].model_dump(by_alias=True)
        self.resource = required.resource.model_dump(by_alias=True) if required.resource else None
        self.workers = os.cpu_count() or 2
        self.pool = ProcessPoolExecutor(max_workers=self.workers)

    def sign(self, n: int) -> list[str]:
        workers = self.workers
        shares = [n // workers + (1 if i < n % workers else 0) for i in range(workers)]
        chunks = [
            (list(PAYER_KEYS[i::workers]) or list(PAYER_KEYS), self.requirements, self.resource, s)
            for i, s in enumerate(shares)
            if s
        ]
        headers: list[str] = []
        for part in self.pool.map(_sign_chunk, chunks):
            headers.extend(part)
        return headers

    def close(self) -> None:
        self.pool.shutdown()
