"""PAYFIRST_LOG_FORMAT: text lines, or one JSON object per line with a record's extra
fields as fields of their own."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from payfirst.config import load_config
from payfirst.domain.errors import ConfigError
from payfirst.logs import configure


@pytest.fixture(autouse=True)
def keep_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_the_records_fields(capsys: pytest.CaptureFixture[str]) -> None:
    configure("INFO", "json")
    logging.getLogger("payfirst.confirmer").info(
        "completed %d payments", 3, extra={"tx_hash": "0xab", "network": "eip155:8453"}
    )
    logging.getLogger("payfirst.confirmer").debug("not at INFO")
    [line] = capsys.readouterr().err.splitlines()
    record = json.loads(line)
    assert record["message"] == "completed 3 payments"
    assert (record["level"], record["logger"]) == ("INFO", "payfirst.confirmer")
    assert (record["tx_hash"], record["network"]) == ("0xab", "eip155:8453")
    assert record["time"]


def test_text_lines_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    configure("WARNING", load_config({}).log_format)
    logging.getLogger("payfirst").warning("relayer low on gas")
    [line] = capsys.readouterr().err.splitlines()
    assert line.endswith("WARNING payfirst: relayer low on gas")


def test_an_unknown_format_names_the_variable() -> None:
    assert load_config({"PAYFIRST_LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(ConfigError, match="PAYFIRST_LOG_FORMAT"):
        load_config({"PAYFIRST_LOG_FORMAT": "xml"})


def test_the_request_log_can_be_turned_off(capsys: pytest.CaptureFixture[str]) -> None:
    configure("INFO", "text", access_log=False)
    logging.getLogger("payfirst.access").info("GET /health 200")
    logging.getLogger("payfirst.access").warning("kept")
    assert [line.split(": ", 1)[1] for line in capsys.readouterr().err.splitlines()] == ["kept"]
    assert load_config({"PAYFIRST_ACCESS_LOG": "0"}).access_log is False
