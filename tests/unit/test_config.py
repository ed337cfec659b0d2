from pathlib import Path

import pytest

from payfirst.config import DEFAULT_DATABASE_URL, load_config
from payfirst.domain.errors import ConfigError

DEV_KEY = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


def test_defaults_need_no_environment() -> None:
    config = load_config({})
    assert config.database_url == DEFAULT_DATABASE_URL
    assert config.rpc_url is None
    assert config.relayer_key is None
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
    assert config.database_url.startswith("postgresql://")
    assert config.rpc_url == "http://127.0.0.1:9545"
    assert config.relayer_key == "0x" + DEV_KEY
    assert config.port == 5000
    assert config.log_level == "DEBUG"


def test_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "relayer.key"
    key_file.write_text("0x" + DEV_KEY + "\n")
    assert load_config({"PAYFIRST_RELAYER_KEY_FILE": str(key_file)}).relayer_key == "0x" + DEV_KEY


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"PAYFIRST_PORT": "http"}, "PAYFIRST_PORT"),
        ({"PAYFIRST_PORT": "70000"}, "PAYFIRST_PORT"),
        ({"PAYFIRST_DATABASE_URL": "mysql://x"}, "PAYFIRST_DATABASE_URL"),
        ({"PAYFIRST_RPC_URL": "ws://127.0.0.1:8545"}, "PAYFIRST_RPC_URL"),
        ({"PAYFIRST_RELAYER_KEY": "0x1234"}, "PAYFIRST_RELAYER_KEY"),
        ({"PAYFIRST_RELAYER_KEY_FILE": "/nonexistent/key"}, "PAYFIRST_RELAYER_KEY_FILE"),
        ({"PAYFIRST_LOG_LEVEL": "LOUD"}, "PAYFIRST_LOG_LEVEL"),
        ({"PAYFIRST_MAX_QUANTITY": "0"}, "PAYFIRST_MAX_QUANTITY"),
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
