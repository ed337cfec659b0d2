"""Runtime settings: one typed definition, defaults, bounds, and reading rows that are bad."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from payfirst.cli import main, settings_json, settings_table
from payfirst.domain.settings import (
    DEFAULTS,
    SPECS,
    RuntimeSettings,
    SettingError,
    check_setting,
    spec_of,
)

# What the seed migrations wrote before the defaults moved into code; the defaults must not
# change by accident (a change is a decision: update this table with it).
EXPECTED_DEFAULTS = {
    "payment_batch_size": 50,
    "payment_batch_interval_ms": 4000,
    "payment_tx_batching": 1,
    "confirmation_interval_ms": 2000,
    "confirmation_batch_size": 20,
    "confirmation_depth": -1,
    "confirmation_timeout_s": 300,
    "fee_bump_after_s": 30,
    "max_fee_per_gas_gwei": 500,
    "mint_batch_size": 10,
    "mint_interval_ms": 3000,
    "payout_interval_ms": 10_000,
}


def test_defaults() -> None:
    assert RuntimeSettings() == DEFAULTS
    assert DEFAULTS.as_rows() == EXPECTED_DEFAULTS
    assert {name: spec.default for name, spec in SPECS.items()} == EXPECTED_DEFAULTS
    assert DEFAULTS.payment_tx_batching is True


def test_every_setting_is_typed_bounded_and_described() -> None:
    for f in dataclasses.fields(RuntimeSettings):
        spec = SPECS[f.name]
        assert f.type in ("int", "bool"), f.name
        assert spec.minimum <= spec.default <= spec.maximum, f.name
        assert spec.description and "\n" not in spec.description, f.name
    assert set(SPECS) == {f.name for f in dataclasses.fields(RuntimeSettings)}


@pytest.mark.parametrize(
    "name",
    [n for n in SPECS if n.endswith(("_size", "_interval_ms"))],
)
def test_no_batch_size_or_interval_lets_a_loop_spin(name: str) -> None:
    """A loop goes again at once after a full batch, and sleeps its interval otherwise:
    neither a size nor an interval may be 0."""
    assert SPECS[name].minimum > 0
    with pytest.raises(SettingError, match=f"{name} must be at least"):
        check_setting(name, 0)


def test_check_names_the_bound() -> None:
    with pytest.raises(SettingError, match=r"^payment_batch_size must be at least 1, not 0$"):
        check_setting("payment_batch_size", 0)
    with pytest.raises(SettingError, match=r"^mint_batch_size must be at most 500, not 501$"):
        check_setting("mint_batch_size", 501)
    with pytest.raises(SettingError, match=re.escape("must be 0 (off) or 1 (on), not 2")):
        check_setting("payment_tx_batching", 2)
    with pytest.raises(SettingError, match="unknown setting 'nope'; known: payment_batch_size"):
        check_setting("nope", 1)
    assert check_setting("confirmation_depth", -1) == -1
    assert check_setting("payment_tx_batching", True) == 1


def test_constructing_out_of_bounds_is_refused() -> None:
    with pytest.raises(SettingError, match="confirmation_batch_size must be at least 1"):
        RuntimeSettings(confirmation_batch_size=0)
    with pytest.raises(SettingError, match="fee_bump_after_s must be at most 86400"):
        dataclasses.replace(DEFAULTS, fee_bump_after_s=10**9)


def test_parse_what_an_operator_types() -> None:
    assert spec_of("payment_tx_batching").parse("off") == 0
    assert spec_of("payment_tx_batching").parse("TRUE") == 1
    assert spec_of("payment_batch_interval_ms").parse(" 10_000 ") == 10_000
    with pytest.raises(SettingError, match="payment_batch_size must be an integer, not 'ten'"):
        spec_of("payment_batch_size").parse("ten")
    with pytest.raises(SettingError, match="mint_batch_size must be an integer"):
        spec_of("mint_batch_size").parse("on")  # words only for switches
    with pytest.raises(SettingError, match="mint_interval_ms must be at least 50, not 0"):
        spec_of("mint_interval_ms").parse("0")


def test_rows_become_settings_bad_ones_reported_and_defaulted() -> None:
    settings, problems = RuntimeSettings.from_rows(
        {
            "payment_batch_size": 0,  # would spin the sender
            "confirmation_interval_ms": 0,
            "mint_batch_size": 7,
            "payment_tx_batching": 0,
            "gone_setting": 3,
        }
    )
    assert settings == dataclasses.replace(DEFAULTS, mint_batch_size=7, payment_tx_batching=False)
    assert problems == [
        "confirmation_interval_ms must be at least 50, not 0: the default 2000 is used",
        "unknown setting 'gone_setting' in system_settings ignored",
        "payment_batch_size must be at least 1, not 0: the default 50 is used",
    ]


def test_no_rows_are_the_defaults() -> None:
    assert RuntimeSettings.from_rows({}) == (DEFAULTS, [])


def test_settings_table_and_json() -> None:
    rows = {"mint_batch_size": 7, "payment_batch_size": 0}
    table = settings_table(rows).splitlines()
    assert table[0].split() == ["NAME", "VALUE", "DEFAULT", "DESCRIPTION"]
    by_name = {line.split()[0]: line.split() for line in table[1 : 1 + len(SPECS)]}
    assert list(by_name) == list(SPECS)
    assert by_name["mint_batch_size"][1:3] == ["7*", "10"]
    assert by_name["payment_batch_size"][1:3] == ["50*", "50"]  # stored 0: refused
    assert by_name["confirmation_depth"][1:3] == ["-1", "-1"]
    assert any(line.startswith("ignored: payment_batch_size must be at least 1") for line in table)

    data = json.loads(settings_json(rows))
    entries = {e["name"]: e for e in data["settings"]}
    assert entries["mint_batch_size"] == {
        "name": "mint_batch_size",
        "value": 7,
        "default": 10,
        "minimum": 1,
        "maximum": 500,
        "stored": 7,
        "description": SPECS["mint_batch_size"].description,
    }
    assert entries["payment_batch_size"]["value"] == 50
    assert entries["payment_batch_size"]["stored"] == 0
    assert entries["fee_bump_after_s"]["stored"] is None
    assert len(data["problems"]) == 1


def test_cli_set_refuses_a_bad_value_before_touching_the_database(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No database anywhere: the value is refused first.
    monkeypatch.setenv("PAYFIRST_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    assert main(["settings", "set", "payment_batch_size", "0"]) == 2
    assert capsys.readouterr().err.strip() == (
        "payfirst: payment_batch_size must be at least 1, not 0"
    )
    assert main(["settings", "set", "payment_tx_batching", "maybe"]) == 2
    assert "payment_tx_batching must be an integer, not 'maybe'" in capsys.readouterr().err


def test_cli_set_refuses_an_unknown_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["settings", "set", "payment_batch_sise", "10"]) == 2
    assert "invalid choice: 'payment_batch_sise'" in capsys.readouterr().err
