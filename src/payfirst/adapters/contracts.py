"""The compiled contracts payfirst deploys on a dev chain (the ABI encoding and signing
helpers are `payfirst.evm`'s).

The compiled artifacts are package data (`payfirst/contract_artifacts/*.json`, written by
`make contracts` and committed), so an installed wheel has them; `PAYFIRST_CONTRACTS_DIR`
names another directory to read them from.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from eth_abi.abi import encode as abi_encode

from payfirst.domain.errors import ConfigError

__all__ = ["CONTRACTS_DIR_ENV", "Artifact", "build_dir", "deploy_data", "load_artifact"]

CONTRACTS_DIR_ENV = "PAYFIRST_CONTRACTS_DIR"


# -- artifacts ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Artifact:
    contract_name: str
    abi: list[dict[str, Any]]
    bytecode: str
    solc_version: str


def build_dir() -> Traversable:
    """Where the artifacts live: `$PAYFIRST_CONTRACTS_DIR`, else the package data
    `payfirst/contract_artifacts` (a source checkout, an editable install or a wheel)."""
    override = os.environ.get(CONTRACTS_DIR_ENV)
    if override:
        return Path(override)
    return resources.files("payfirst.contract_artifacts")


@cache
def load_artifact(name: str) -> Artifact:
    """Loads the artifact `<name>.json` ("DemoUSDC", "MintToken", "BatchSettler")."""
    path = build_dir() / f"{name}.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"contract artifact {path} not found: run `make contracts` in the repository, "
            f"or set {CONTRACTS_DIR_ENV} to the directory holding {name}.json"
        ) from None
    return Artifact(
        contract_name=str(data["contractName"]),
        abi=list(data["abi"]),
        bytecode=str(data["bytecode"]),
        solc_version=str(data["solcVersion"]),
    )


# -- deployment ---------------------------------------------------------------------


def deploy_data(artifact: Artifact, constructor_types: list[str], args: list[Any]) -> str:
    """Creation code with ABI-encoded constructor arguments appended."""
    return artifact.bytecode + abi_encode(constructor_types, args).hex()
