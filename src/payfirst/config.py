"""Configuration from environment variables, with embedded defaults for a local run.

Every problem is reported as a ConfigError naming the variable, so an operator knows
what to fix without reading code."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from payfirst.domain.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite:///var/payfirst.db"
_KEY_RE = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")


@dataclass(frozen=True, slots=True)
class Config:
    database_url: str = DEFAULT_DATABASE_URL
    # None: `payfirst dev` starts a local anvil chain and deploys the demo contracts.
    rpc_url: str | None = None
    relayer_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 4021
    anvil_port: int = 8545
    max_quantity_per_request: int = 100
    log_level: str = "INFO"


def load_config(env: Mapping[str, str] | None = None) -> Config:
    """Read PAYFIRST_* variables from `env` (default: the process environment)."""
    env = os.environ if env is None else env
    return Config(
        database_url=_database_url(env),
        rpc_url=_rpc_url(env),
        relayer_key=_relayer_key(env),
        host=env.get("PAYFIRST_HOST", "127.0.0.1"),
        port=_int(env, "PAYFIRST_PORT", 4021, 1, 65535),
        anvil_port=_int(env, "PAYFIRST_ANVIL_PORT", 8545, 1, 65535),
        max_quantity_per_request=_int(env, "PAYFIRST_MAX_QUANTITY", 100, 1, 10_000),
        log_level=_choice(env, "PAYFIRST_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
    )


def _database_url(env: Mapping[str, str]) -> str:
    url = env.get("PAYFIRST_DATABASE_URL", DEFAULT_DATABASE_URL)
    if not url.startswith(("postgresql://", "postgres://", "sqlite:///")):
        raise ConfigError(
            "PAYFIRST_DATABASE_URL must start with postgresql://, postgres:// or sqlite:///, "
            f"got {url!r}"
        )
    return url


def _rpc_url(env: Mapping[str, str]) -> str | None:
    url = env.get("PAYFIRST_RPC_URL")
    if url is None or url == "":
        return None
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"PAYFIRST_RPC_URL must be an http(s) URL, got {url!r}")
    return url


def _relayer_key(env: Mapping[str, str]) -> str | None:
    key = env.get("PAYFIRST_RELAYER_KEY")
    source = "PAYFIRST_RELAYER_KEY"
    key_file = env.get("PAYFIRST_RELAYER_KEY_FILE")
    if key and key_file:
        raise ConfigError("set PAYFIRST_RELAYER_KEY or PAYFIRST_RELAYER_KEY_FILE, not both")
    if key_file:
        source = "PAYFIRST_RELAYER_KEY_FILE"
        try:
            key = Path(key_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"PAYFIRST_RELAYER_KEY_FILE: cannot read {key_file!r}: {exc}"
            ) from exc
    if not key:
        return None
    if not _KEY_RE.match(key):
        # Never echo the value: it may be a real key with a typo.
        raise ConfigError(f"{source} must be a 32-byte hex private key (64 hex digits)")
    return key if key.startswith("0x") else "0x" + key


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
