"""The results: latest.json (everything measured), latest.md (the table), latest.png."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TARGETS = {
    "accept_rps_1000": 3000.0,
    "accept_p99_ms": 50.0,
    "settle_rps": 500.0,
    "mint_latency_p50_s": 3.0,
    "gas_ratio": 0.7,
    "rss_mb": 300.0,
}

Row = tuple[str, str, str, str]  # measure, result, target, met?


def met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**no**")


def accept_rows(results: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    accept = results.get("accept", {})
    for c in ("100", "1000"):
        run = accept.get(c)
        if not run:
            continue
        target = c == "1000"
        out.append(
            (
                f"accept, closed loop (`payfirst api` alone, {accept.get('processes', 1)} "
                f"processes), {c} connections: payments/s",
                f"{run['payments_per_s']:,.0f}",
                "≥ 3,000" if target else "",
                met(run["payments_per_s"] >= TARGETS["accept_rps_1000"]) if target else "",
            )
        )
        out.append(
            (
                f"accept, closed loop, {c} connections: latency p50 / p99",
                f"{run['p50_ms']:.1f} ms / {run['p99_ms']:.1f} ms",
                "",
                "",
            )
        )
    opened = results.get("accept_open", {})
    for key, run in opened.items():
        if not isinstance(run, dict) or "rate_per_s" not in run:
            continue
        lag = run["schedule_lag_ms"]
        kept = "" if run["client_kept_schedule"] else "; **client fell behind**"
        errors = sum(run["errors"].values())
        out.append(
            (
                f"accept, open loop at {int(key):,}/s for {run['seconds']:g} s: accepted/s; "
                "latency from the scheduled time p50 / p99 / max",
                f"{run['achieved_per_s']:,.0f}/s; {run['p50_ms']:.1f} / {run['p99_ms']:.1f} / "
                f"{run['max_ms']:.1f} ms ({errors} errors; client lag p99 {lag['p99']:.1f} ms"
                f"{kept})",
                "p99 < 50 ms",
                met(run["p99_ms"] < TARGETS["accept_p99_ms"] and errors == 0),
            )
        )
    return out


def pipeline_rows(results: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    settle = results.get("settle")
    if settle:
        out.append(
            (
                f"settlement: burst of {settle['payments']:,}, settled + confirmed payments/s",
                f"{settle['payments_per_s']} ({settle['completed']:,} in {settle['seconds']} s)",
                "≥ 500",
                met((settle["payments_per_s"] or 0) >= TARGETS["settle_rps"]),
            )
        )
        mints = settle.get("mints")
        if mints:
            out.append(
                (
                    "settlement burst: all its mints delivered, s after first accept",
                    f"{mints['seconds_from_first_accept']} s ({mints['open']} still open)",
                    "",
                    "",
                )
            )
    latency = results.get("latency")
    if latency:
        out.append(
            (
                f"request → mint confirmed, {latency['payments']} at {latency['rate_per_s']}/s:"
                " p50 / p99",
                f"{latency['mint_p50_s']} s / {latency['mint_p99_s']} s",
                "p50 ≤ 3 s",
                met(latency["mint_p50_s"] <= TARGETS["mint_latency_p50_s"]),
            )
        )
        out.append(
            (
                "request → payment confirmed: p50 / p99",
                f"{latency['payment_p50_s']} s / {latency['payment_p99_s']} s",
                "",
                "",
            )
        )
    out += gas_rows(results)
    memory = results.get("memory")
    if memory:
        out.append(
            (
                f"API peak RSS with {memory['queued']:,} queued",
                f"{memory['api_peak_rss_mb']:.0f} MB",
                "< 300 MB",
                met(memory["api_peak_rss_mb"] < TARGETS["rss_mb"]),
            )
        )
    if "worker_peak_rss_mb" in results:
        out.append(
            (
                "worker peak RSS (settlement burst)",
                f"{results['worker_peak_rss_mb']:.0f} MB",
                "",
                "",
            )
        )
    return out


def gas_rows(results: dict[str, Any]) -> list[Row]:
    compare = results.get("compare_payfirst", {})
    batched = (compare.get("batched") or {}).get("gas", {}).get("gas_per_payment")
    unbatched = (compare.get("unbatched") or compare.get("as is") or {}).get("gas", {})
    unbatched_gas = unbatched.get("gas_per_payment")
    if not unbatched_gas:
        return []
    if not batched:
        return [
            (
                "gas per settled payment (no batching setting: one tx each)",
                f"{unbatched_gas:,.0f}",
                "≤ 0.7x unbatched",
                met(False),
            )
        ]
    ratio = batched / unbatched_gas
    return [
        (
            "gas per settled payment, batched vs one tx each",
            f"{batched:,.0f} vs {unbatched_gas:,.0f} ({ratio:.2f}x)",
            "≤ 0.7x",
            met(ratio <= TARGETS["gas_ratio"]),
        )
    ]


def side_by_side_rows(results: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    for label, run in results.get("peer_payfirst", {}).items():
        out.append(
            (
                f"side by side: payfirst ({label}), {run['payments']} payments",
                f"{run['payments_per_s']} payments/s ({run['completed']} in {run['seconds']} s)",
                "",
                "",
            )
        )
    sdk = results.get("sdk")
    if not sdk:
        return out
    for concurrency, run in sdk.get("runs", {}).items():
        best = " (best)" if int(concurrency) == sdk.get("best_concurrency") else ""
        out.append(
            (
                f"side by side: x402 SDK facilitator, {run['attempted']} payments, "
                f"{concurrency} concurrent settles{best}",
                f"{run['payments_per_s']} payments/s ({run['settled']} in {run['seconds']} s)",
                "",
                "",
            )
        )
    gas = sdk.get("gas", {}).get("gas_per_payment")
    if gas:
        out.append(("gas per payment, x402 SDK facilitator", f"{gas:,.0f}", "", ""))
    return out


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    tree = "" if meta.get("clean") else ", **uncommitted changes: not for committing**"
    lines = [
        f"payfirst benchmark, {meta['date']} (commit {meta['commit']}{tree}, {meta['cpus']} "
        f"cores, anvil --block-time 1, PostgreSQL, phases {', '.join(meta['phases'])}, "
        f"run took {meta.get('run_s', 0):.0f} s)",
        "",
        "| measure | result | target | met? |",
        "|---|---|---|---|",
    ]
    rows = accept_rows(results) + pipeline_rows(results) + side_by_side_rows(results)
    lines += [f"| {m} | {r} | {t} | {ok} |" for m, r, t, ok in rows]
    if results.get("sdk"):
        lines += [
            "",
            "The SDK counts a payment settled when its receipt arrives (1 block); payfirst "
            "counts it completed at the confirmation depth (1 block below the head on anvil).",
        ]
    if results.get("errors"):
        lines += ["", "Phases that failed: " + "; ".join(results["errors"])]
    return "\n".join(lines) + "\n"


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    accept = results.get("accept", {})
    conns = [c for c in ("100", "1000") if c in accept]
    rates = [k for k, v in results.get("accept_open", {}).items() if isinstance(v, dict)]
    rates = [k for k in rates if "rate_per_s" in results["accept_open"][k]]
    ax = axes[0]
    ax.bar([f"{c} conn" for c in conns], [accept[c]["payments_per_s"] for c in conns], color="C0")
    ax.axhline(TARGETS["accept_rps_1000"], color="red", linestyle="--", label="target")
    ax.set_title("accept, closed loop: payments/s")
    ax.legend()
    ax = axes[1]
    labels = [f"{c} conn" for c in conns] + [f"open {r}/s" for r in rates]
    runs = [accept[c] for c in conns] + [results["accept_open"][r] for r in rates]
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], [run["p50_ms"] for run in runs], 0.4, label="p50")
    ax.bar([i + 0.2 for i in x], [run["p99_ms"] for run in runs], 0.4, label="p99")
    ax.set_xticks(list(x), labels)
    ax.axhline(TARGETS["accept_p99_ms"], color="red", linestyle="--")
    ax.set_title("accept latency (ms)")
    ax.legend()
    ax = axes[2]
    names: list[str] = []
    values: list[float] = []
    if "settle" in results:
        names.append(f"payfirst\nburst {results['settle']['payments']}")
        values.append(results["settle"]["payments_per_s"] or 0)
    for label, run in results.get("peer_payfirst", {}).items():
        names.append(f"payfirst\n{label} {run['payments']}")
        values.append(run["payments_per_s"] or 0)
    for concurrency, run in results.get("sdk", {}).get("runs", {}).items():
        names.append(f"x402 SDK\n{concurrency} conc.")
        values.append(run["payments_per_s"] or 0)
    ax.bar(names, values, color="C2")
    ax.set_yscale("log")
    ax.set_title("settled payments/s (log)")
    ax.tick_params(axis="x", labelsize=7)
    ax = axes[3]
    names, values = [], []
    for label, run in results.get("compare_payfirst", {}).items():
        if run["gas"]["gas_per_payment"]:
            names.append(f"payfirst\n{label}")
            values.append(run["gas"]["gas_per_payment"])
    if results.get("sdk", {}).get("gas", {}).get("gas_per_payment"):
        names.append("x402 SDK")
        values.append(results["sdk"]["gas"]["gas_per_payment"])
    ax.bar(names, values, color="C3")
    ax.set_title("gas per settled payment")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_results(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "latest.md").write_text(markdown(results))
    chart(results, out / "latest.png")
