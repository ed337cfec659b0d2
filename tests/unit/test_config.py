from pathlib import Path

import pytest

from payfirst.config import load_config
from payfirst.domain.errors import ConfigError

DEV_KEY = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


def test_defaults_need_no_environment() -> None:
    config = load_config({})
    assert config.database_url is None  # the embedded PostgreSQL under var/postgres
    assert config.reset is False
    assert config.rpc_url is None
    assert config.relayer_keys == ()
    assert config.settler_address is None
    assert (config.host, config.port, config.anvil_port) == ("127.0.0.1", 4021, 8545)


def test_values_are_read() -> None:
    config = load_config(
        {
            "PAYFIRST_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/test",
            "PAYFIRST_RPC_URL": "http://127.0.0.1:9545",
            "PAYFIRST_RELAYER_KEY": DEV_KEY,
            "PAYFIRST_PORT": "5000",
            "PAYFIRST_LOG_LEVEL": "debug",
        }
    )
    assert config.database_url is not None
    assert config.database_url.startswith("postgresql://")
    assert config.rpc_url == "http://127.0.0.1:9545"
    assert config.relayer_keys == ("0x" + DEV_KEY,)
    assert config.port == 5000
    assert config.log_level == "DEBUG"


OTHER_KEY = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"


def test_key_file_with_several_keys(tmp_path: Path) -> None:
    key_file = tmp_path / "relayer.keys"
    key_file.write_text(f"# relayers\n0x{DEV_KEY}\n\n{OTHER_KEY}  # second\n")
    keys = load_config({"PAYFIRST_RELAYER_KEY_FILE": str(key_file)}).relayer_keys
    assert keys == ("0x" + DEV_KEY, "0x" + OTHER_KEY)


def test_comma_separated_keys() -> None:
    keys = load_config({"PAYFIRST_RELAYER_KEYS": f"{DEV_KEY}, 0x{OTHER_KEY}"}).relayer_keys
    assert keys == ("0x" + DEV_KEY, "0x" + OTHER_KEY)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"PAYFIRST_PORT": "http"}, "PAYFIRST_PORT"),
        ({"PAYFIRST_PORT": "70000"}, "PAYFIRST_PORT"),
        ({"PAYFIRST_DATABASE_URL": "mysql://x"}, "PAYFIRST_DATABASE_URL"),
        ({"PAYFIRST_DATABASE_URL": "sqlite:///var/payfirst.db"}, "PAYFIRST_DATABASE_URL"),
        ({"PAYFIRST_RESET": "yes"}, "PAYFIRST_RESET"),
        ({"PAYFIRST_RPC_URL": "ws://127.0.0.1:8545"}, "PAYFIRST_RPC_URL"),
        ({"PAYFIRST_RELAYER_KEY": "0x1234"}, "PAYFIRST_RELAYER_KEY"),
        ({"PAYFIRST_RELAYER_KEY_FILE": "/nonexistent/key"}, "PAYFIRST_RELAYER_KEY_FILE"),
        ({"PAYFIRST_LOG_LEVEL": "LOUD"}, "PAYFIRST_LOG_LEVEL"),
        ({"PAYFIRST_MAX_QUANTITY": "0"}, "PAYFIRST_MAX_QUANTITY"),
        ({"PAYFIRST_RELAYER_KEYS": f"{DEV_KEY},{DEV_KEY}"}, "PAYFIRST_RELAYER_KEYS"),
        ({"PAYFIRST_RELAYER_KEYS": f"{DEV_KEY},0x12"}, "PAYFIRST_RELAYER_KEYS: key 2"),
        (
            {"PAYFIRST_RELAYER_KEY": DEV_KEY, "PAYFIRST_RELAYER_KEYS": DEV_KEY},
            "PAYFIRST_RELAYER_KEY, PAYFIRST_RELAYER_KEYS",
        ),
        ({"PAYFIRST_SETTLER_ADDRESS": "0x1234"}, "PAYFIRST_SETTLER_ADDRESS"),
        (
            {"PAYFIRST_SETTLER_ADDRESS": "5FbDB2315678afecb367f032d93F642f64180aa3"},
            "PAYFIRST_SETTLER_ADDRESS",
        ),
        # One letter's case flipped: a bad EIP-55 checksum.
        (
            {"PAYFIRST_SETTLER_ADDRESS": "0x5fbDB2315678afecb367f032d93F642f64180aa3"},
            "PAYFIRST_SETTLER_ADDRESS",
        ),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_config(env)


def test_bad_key_is_not_echoed() -> None:
    secret = "ab" * 31 + "zz"
    with pytest.raises(ConfigError) as caught:
        load_config({"PAYFIRST_RELAYER_KEY": secret})
    assert secret not in str(caught.value)


def test_settler_address_is_checksummed() -> None:
    lower = "0x5fbdb2315678afecb367f032d93f642f64180aa3"
    config = load_config({"PAYFIRST_SETTLER_ADDRESS": lower})
    assert config.settler_address == "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    assert load_config({"PAYFIRST_SETTLER_ADDRESS": ""}).settler_address is None
