"""Configuration from environment variables, with embedded defaults for a local run.

Every problem is reported as a ConfigError naming the variable, so an operator knows
what to fix without reading code."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from eth_utils.address import is_checksum_address, to_checksum_address

from payfirst.domain.errors import ConfigError
from payfirst.domain.webhooks import parse_networks

#: Where `payfirst serve` keeps its embedded PostgreSQL when PAYFIRST_DATABASE_URL is unset.
EMBEDDED_DATABASE_DIR = "var/postgres"
_KEY_RE = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
_ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")


@dataclass(frozen=True, slots=True)
class Config:
    # None: the embedded PostgreSQL under var/postgres (`payfirst serve` starts it).
    database_url: str | None = None
    # PAYFIRST_RESET=1 or `payfirst serve --reset`: start the embedded database and the dev
    # chain afresh (every payment and the chain's state under var/ deleted).
    reset: bool = False
    # None: `payfirst dev` starts a local anvil chain and deploys the demo contracts.
    rpc_url: str | None = None
    # Several keys share the load; each worker process leases the ones it uses.
    relayer_keys: tuple[str, ...] = ()
    # The BatchSettler contract (EIP-55 checksummed); None: one tx per payment (except on
    # the local dev chain, which deploys its own settler).
    settler_address: str | None = None
    host: str = "127.0.0.1"
    port: int = 4021
    anvil_port: int = 8545
    max_quantity_per_request: int = 100
    # `payfirst api` processes sharing the listening socket (one per core is typical).
    api_processes: int = 1
    # How long POST /settle waits for on-chain confirmation before `settlement_pending`.
    settle_timeout_s: int = 30
    log_level: str = "INFO"
    # "text" lines, or one JSON object per line (payfirst.logs).
    log_format: Literal["text", "json"] = "text"
    # One line per HTTP request at INFO (payfirst.api.access_log).
    access_log: bool = True
    # The status page (/status and its data routes, operator key); 0: all of it 404.
    status_page: bool = True
    # Who /settle may pay: the pay-to addresses an operator allowed. Empty: /settle and
    # /verify refuse every payment (an open facilitator makes the relayer a gas faucet).
    settle_pay_to: tuple[str, ...] = ()
    # The smallest payment /settle and /verify accept, in the asset's atomic units (dust
    # costs more gas than it moves); zero-value payments are refused on every route.
    min_settle_amount: int = 1000
    # Accepted payment requests per minute per client address and per payer (0: no
    # limit); a token bucket holding one minute's worth, so a launch burst passes.
    rate_limit_per_client: int = 6000
    rate_limit_per_payer: int = 600
    # Clients one API process holds waiting at once (?wait= long-polls, SSE streams, /settle).
    max_waiters: int = 10_000
    # Where the processes of this host keep their Prometheus metrics (multiprocess mode);
    # None: in memory, or a new temporary directory when `payfirst api` forks.
    metrics_dir: str | None = None
    # The HTTP edge (payfirst.api.http_limits, payfirst.server): request bodies and headers
    # are size-limited and must arrive in time; idle and excess connections are closed.
    max_body_bytes: int = 64 * 1024
    max_header_bytes: int = 32 * 1024
    header_timeout_s: int = 10
    body_timeout_s: int = 10
    keep_alive_s: int = 5
    max_connections: int = 2048
    # PAYFIRST_NETWORKS_FILE: a TOML file of networks (payfirst.networks_config); None: the
    # single chain of PAYFIRST_RPC_URL (or the dev chain) only.
    networks_file: Path | None = None
    # PAYFIRST_TREASURY_ADDRESS: the platform's treasury on the legacy single chain (a
    # networks file gives each network its own `treasury_address`); None: none.
    treasury_address: str | None = None
    # PAYFIRST_PLATFORM_FEE_BPS: the platform's fee, in basis points of a payment collected
    # for a provider, unless the provider has its own; fixed on the payment when it is
    # accepted. 0 by default: the operator decides what the platform takes.
    platform_fee_bps: int = 0
    # Webhooks (payfirst.adapters.webhook_http): sent only to public addresses, unless
    # PAYFIRST_WEBHOOK_ALLOW_PRIVATE=1 (any but unspecified and multicast) or the address is in
    # PAYFIRST_WEBHOOK_ALLOWED_CIDRS (comma-separated, e.g. 127.0.0.0/8,10.1.0.0/16); at most
    # PAYFIRST_WEBHOOK_CONCURRENCY sends at once per worker process.
    webhook_allow_private: bool = False
    webhook_allowed_cidrs: tuple[str, ...] = ()
    webhook_concurrency: int = 64


def load_config(env: Mapping[str, str] | None = None) -> Config:
    """Read PAYFIRST_* variables from `env` (default: the process environment)."""
    env = os.environ if env is None else env
    return Config(
        database_url=_database_url(env),
        reset=_int(env, "PAYFIRST_RESET", 0, 0, 1) == 1,
        rpc_url=_rpc_url(env),
        relayer_keys=_relayer_keys(env),
        settler_address=_address(env, "PAYFIRST_SETTLER_ADDRESS"),
        host=env.get("PAYFIRST_HOST", "127.0.0.1"),
        port=_int(env, "PAYFIRST_PORT", 4021, 1, 65535),
        anvil_port=_int(env, "PAYFIRST_ANVIL_PORT", 8545, 1, 65535),
        max_quantity_per_request=_int(env, "PAYFIRST_MAX_QUANTITY", 100, 1, 10_000),
        settle_timeout_s=_int(env, "PAYFIRST_SETTLE_TIMEOUT_S", 30, 0, 600),
        api_processes=_int(env, "PAYFIRST_API_PROCESSES", 1, 1, 64),
        log_level=_choice(env, "PAYFIRST_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
        log_format="json"
        if _choice(env, "PAYFIRST_LOG_FORMAT", "text", ("TEXT", "JSON")) == "JSON"
        else "text",
        settle_pay_to=_addresses(env, "PAYFIRST_SETTLE_PAY_TO"),
        min_settle_amount=_int(env, "PAYFIRST_MIN_SETTLE_AMOUNT", 1000, 1, 10**30),
        rate_limit_per_client=_int(env, "PAYFIRST_RATE_LIMIT_PER_CLIENT", 6000, 0, 10**9),
        rate_limit_per_payer=_int(env, "PAYFIRST_RATE_LIMIT_PER_PAYER", 600, 0, 10**9),
        max_waiters=_int(env, "PAYFIRST_MAX_WAITERS", 10_000, 0, 1_000_000),
        metrics_dir=env.get("PAYFIRST_METRICS_DIR") or None,
        access_log=_int(env, "PAYFIRST_ACCESS_LOG", 1, 0, 1) == 1,
        status_page=_int(env, "PAYFIRST_STATUS_PAGE", 1, 0, 1) == 1,
        max_body_bytes=_int(env, "PAYFIRST_MAX_BODY_BYTES", 64 * 1024, 1024, 16 * 1024 * 1024),
        max_header_bytes=_int(env, "PAYFIRST_MAX_HEADER_BYTES", 32 * 1024, 4096, 1024 * 1024),
        header_timeout_s=_int(env, "PAYFIRST_HEADER_TIMEOUT_S", 10, 1, 600),
        body_timeout_s=_int(env, "PAYFIRST_BODY_TIMEOUT_S", 10, 1, 600),
        keep_alive_s=_int(env, "PAYFIRST_KEEP_ALIVE_S", 5, 1, 600),
        max_connections=_int(env, "PAYFIRST_MAX_CONNECTIONS", 2048, 1, 1_000_000),
        networks_file=_networks_file(env),
        treasury_address=_address(env, "PAYFIRST_TREASURY_ADDRESS"),
        platform_fee_bps=_int(env, "PAYFIRST_PLATFORM_FEE_BPS", 0, 0, 10_000),
        webhook_allow_private=_int(env, "PAYFIRST_WEBHOOK_ALLOW_PRIVATE", 0, 0, 1) == 1,
        webhook_allowed_cidrs=_cidrs(env, "PAYFIRST_WEBHOOK_ALLOWED_CIDRS"),
        webhook_concurrency=_int(env, "PAYFIRST_WEBHOOK_CONCURRENCY", 64, 1, 1024),
    )


def _networks_file(env: Mapping[str, str]) -> Path | None:
    raw = env.get("PAYFIRST_NETWORKS_FILE", "").strip()
    if not raw:
        return None
    path = Path(raw)
    if not path.is_file():
        raise ConfigError(f"PAYFIRST_NETWORKS_FILE: no such file {raw!r}")
    return path


def _database_url(env: Mapping[str, str]) -> str | None:
    url = env.get("PAYFIRST_DATABASE_URL", "")
    if url == "":
        return None
    if not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            f"PAYFIRST_DATABASE_URL must start with postgresql:// or postgres://, got {url!r}"
        )
    return url


def _rpc_url(env: Mapping[str, str]) -> str | None:
    url = env.get("PAYFIRST_RPC_URL")
    if url is None or url == "":
        return None
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"PAYFIRST_RPC_URL must be an http(s) URL, got {url!r}")
    return url


def _relayer_keys(env: Mapping[str, str]) -> tuple[str, ...]:
    """PAYFIRST_RELAYER_KEY (one key), PAYFIRST_RELAYER_KEYS (comma-separated) or
    PAYFIRST_RELAYER_KEY_FILE (one key per line, # comments)."""
    given = [name for name in _KEY_VARIABLES if env.get(name)]
    if len(given) > 1:
        raise ConfigError(f"set only one of {', '.join(_KEY_VARIABLES)} (got {', '.join(given)})")
    if not given:
        return ()
    source = given[0]
    raw = env[source]
    if source == "PAYFIRST_RELAYER_KEY_FILE":
        return read_key_file(raw, source)
    return parse_relayer_keys([k.strip() for k in raw.split(",")], source)


def read_key_file(path: str, source: str) -> tuple[str, ...]:
    """The keys of a key file (one per line, # comments); `source` names it in errors."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read {path!r}: {exc}") from exc
    return parse_relayer_keys([line.split("#", 1)[0].strip() for line in text.splitlines()], source)


def parse_relayer_keys(candidates: list[str], source: str) -> tuple[str, ...]:
    """Checked, 0x-prefixed private keys (blank entries dropped); `source` names where they
    came from in errors, which never echo a key."""
    keys = [k for k in candidates if k]
    if not keys:
        raise ConfigError(f"{source} holds no key")
    for number, key in enumerate(keys, 1):
        if not _KEY_RE.match(key):
            # Never echo the value: it may be a real key with a typo.
            raise ConfigError(
                f"{source}: key {number} must be a 32-byte hex private key (64 hex digits)"
            )
    normalised = tuple(k if k.startswith("0x") else "0x" + k for k in keys)
    if len(set(k.lower() for k in normalised)) != len(normalised):
        raise ConfigError(f"{source} lists a key twice")
    return normalised


_KEY_VARIABLES = ("PAYFIRST_RELAYER_KEY", "PAYFIRST_RELAYER_KEYS", "PAYFIRST_RELAYER_KEY_FILE")


def _address(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name, "").strip()
    return check_address(raw, name) if raw else None


def check_address(raw: str, name: str) -> str:
    """`raw` as an EIP-55 checksummed address; a ConfigError naming `name` otherwise."""
    body = raw[2:] if raw.startswith("0x") else ""
    if len(body) != 40 or any(c not in "0123456789abcdefABCDEF" for c in body):
        raise ConfigError(f"{name} must be a 0x-prefixed 20-byte hex address, got {raw!r}")
    mixed_case = body != body.lower() and body != body.upper()
    if mixed_case and not is_checksum_address(raw):
        raise ConfigError(f"{name} has a wrong EIP-55 checksum: {raw!r} (a typo?)")
    return str(to_checksum_address(raw))


def _addresses(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list of addresses, each checked as `_address` checks one."""
    parts = [part.strip() for part in env.get(name, "").split(",") if part.strip()]
    checked = [_address({name: part}, name) for part in parts]
    return tuple(dict.fromkeys(a for a in checked if a is not None))


def _cidrs(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(name, "")
    try:
        return tuple(str(n) for n in parse_networks(raw))
    except ValueError as exc:
        raise ConfigError(f"{name} must be comma-separated CIDRs: {exc}") from None


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name, default).upper()
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw
