"""What the HTTP routes need, handed to them by the composition root (payfirst.app)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.requests import Request

from payfirst.adapters.chain_rpc import RpcClient
from payfirst.ports.store import Store


@dataclass(slots=True)
class Services:
    store: Store
    # Only /health talks to the chain; the payment path never does.
    chain: RpcClient | None
    max_quantity_per_request: int = 100
    clock: Callable[[], float] = field(default=time.time)
    # Wakes an in-process sender at once; separate API processes leave it a no-op.
    on_payment_queued: Callable[[], None] = field(default=lambda: None)


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc
