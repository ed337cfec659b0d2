"""payfirst's Prometheus metrics (prometheus-client), served at `/metrics`.

Several `payfirst api` processes (and the workers of the same host) share one metrics
directory (`PAYFIRST_METRICS_DIR`, prometheus-client's multiprocess mode): `setup()` points
prometheus-client at it before the first metric is made, and any process's `/metrics` adds
up every process's files. Without it (one process, the tests) the metrics live in memory.

Label values are bounded: reasons are `Reason` members, networks the configured CAIP-2 ids,
JSON-RPC methods the ones payfirst calls (others are `other`). What is read at scrape time
(queue depth, relayer gas and nonce gap) is not kept here: `api/metrics.py` reads it then.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, values

#: Seconds, from a few milliseconds (an accept) to minutes (a confirmation at depth).
LATENCY_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip
RPC_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: The JSON-RPC methods payfirst calls: a method label outside them is `other`.
RPC_METHODS: Final = frozenset(
    {
        "eth_chainId",
        "eth_blockNumber",
        "eth_getBlockByNumber",
        "eth_getTransactionCount",
        "eth_getTransactionReceipt",
        "eth_sendRawTransaction",
        "eth_call",
        "eth_getLogs",
        "eth_getBalance",
        "eth_gasPrice",
        "eth_maxPriorityFeePerGas",
        "eth_feeHistory",
        "eth_estimateGas",
    }
)


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry | None
    payments_accepted: Counter
    payments_rejected: Counter
    settlement_seconds: Histogram
    txs: Counter
    rpc_requests: Counter
    rpc_seconds: Histogram
    webhook_deliveries: Counter
    policy_refusals: Counter


def _make(registry: CollectorRegistry | None) -> Metrics:
    return Metrics(
        registry=registry,
        payments_accepted=Counter(
            "payfirst_payments_accepted_total",
            "Payments accepted and queued, by route (mint, settle) and network.",
            ["route", "network"],
            registry=registry,
        ),
        payments_rejected=Counter(
            "payfirst_payments_rejected_total",
            "Payments refused before they were queued, by x402 reason.",
            ["reason"],
            registry=registry,
        ),
        settlement_seconds=Histogram(
            "payfirst_settlement_seconds",
            "Time between a payment's steps: accepted->sent, sent->confirmed, "
            "accepted->confirmed, confirmed->minted.",
            ["stage", "network"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        txs=Counter(
            "payfirst_txs_total",
            "Relayer transactions by event: sent, confirmed, replaced (fee bump), reverted.",
            ["event", "network"],
            registry=registry,
        ),
        rpc_requests=Counter(
            "payfirst_rpc_requests_total",
            "JSON-RPC requests by network, method (batch: one request) and outcome "
            "(ok, error: the node answered an error, unavailable: no answer).",
            ["network", "method", "outcome"],
            registry=registry,
        ),
        rpc_seconds=Histogram(
            "payfirst_rpc_seconds",
            "JSON-RPC request latency by network.",
            ["network"],
            buckets=RPC_BUCKETS,
            registry=registry,
        ),
        webhook_deliveries=Counter(
            "payfirst_webhook_deliveries_total",
            "Webhook delivery attempts by outcome (delivered, failed).",
            ["outcome"],
            registry=registry,
        ),
        policy_refusals=Counter(
            "payfirst_policy_refusals_total",
            "Payments refused by an agent's spending policy, by reason.",
            ["reason"],
            registry=registry,
        ),
    )


_metrics: Metrics | None = None


def setup(directory: str | None) -> None:
    """Use prometheus-client's multiprocess mode on `directory` (shared by the processes of
    the host: never emptied here, as another process may be writing to it; a deployment
    starts on an empty one), or keep the metrics in memory (None). Call before any metric
    is used, in the process that forks the others."""
    global _metrics
    if directory is not None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    else:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    _metrics = _make(None if directory is not None else CollectorRegistry())


def metrics() -> Metrics:
    """The process's metrics (in memory until `setup` says otherwise)."""
    global _metrics
    if _metrics is None:
        _metrics = _make(CollectorRegistry())
    return _metrics


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def rpc_method(payload: object) -> str:
    """The bounded method label of a JSON-RPC payload (a batch is `batch`)."""
    if isinstance(payload, list):
        return "batch"
    method = payload.get("method") if isinstance(payload, dict) else None
    return method if isinstance(method, str) and method in RPC_METHODS else "other"


def count_refusal(reason: str) -> None:
    """A payment refused before it was queued, by its x402 reason (a spending policy's
    `policy_*` reasons counted as policy refusals too)."""
    m = metrics()
    m.payments_rejected.labels(reason).inc()
    if reason.startswith("policy_"):
        m.policy_refusals.labels(reason).inc()
