"""Runtime settings: the one definition of each setting's type, default, bounds and meaning.

An operator changes them while payfirst runs (`payfirst settings set NAME VALUE`, stored in
the `system_settings` table, read by the worker loops at every tick). The table holds only
the values an operator set; every default lives here and nowhere else. Reading never
fails: a value out of its bounds (written into the table by hand) is reported and its
default used instead, so no setting can make a loop spin or stop. Writing validates first:
`check_setting` refuses, naming the bound.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields, replace
from typing import Any, Final


class SettingError(ValueError):
    """A runtime setting's name is unknown or its value outside its bounds."""


@dataclass(frozen=True, slots=True)
class SettingSpec:
    """One setting: its default and inclusive bounds (as stored: integers) and what it does."""

    name: str
    default: int
    minimum: int
    maximum: int
    description: str
    is_bool: bool = False

    def check(self, value: int) -> int:
        """`value` if it is within the bounds; SettingError naming the bound otherwise."""
        if isinstance(value, bool):
            value = int(value)
        if not isinstance(value, int):
            raise SettingError(f"{self.name} must be an integer, not {value!r}")
        if self.is_bool and value not in (0, 1):
            raise SettingError(f"{self.name} must be 0 (off) or 1 (on), not {value}")
        if value < self.minimum:
            raise SettingError(f"{self.name} must be at least {self.minimum}, not {value}")
        if value > self.maximum:
            raise SettingError(f"{self.name} must be at most {self.maximum}, not {value}")
        return value

    def parse(self, text: str) -> int:
        """A value typed by an operator: an integer (on/off, true/false for a switch)."""
        word = text.strip().lower()
        if self.is_bool and word in _SWITCH_WORDS:
            return _SWITCH_WORDS[word]
        try:
            value = int(word.replace("_", ""))
        except ValueError:
            raise SettingError(f"{self.name} must be an integer, not {text!r}") from None
        return self.check(value)


_SWITCH_WORDS: Final = {"on": 1, "true": 1, "yes": 1, "off": 0, "false": 0, "no": 0}

_HOUR_MS: Final = 3_600_000
_DAY_S: Final = 86_400


def _spec(
    default: int,
    minimum: int,
    maximum: int,
    description: str,
    *,
    is_bool: bool = False,
) -> Any:
    """A RuntimeSettings field: the dataclass default plus its spec in the metadata."""
    return field(
        default=bool(default) if is_bool else default,
        metadata={"spec": (default, minimum, maximum, description, is_bool)},
    )


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    """The validated runtime settings the worker loops run by (one snapshot per tick)."""

    payment_batch_size: int = _spec(
        50, 1, 1000, "most payments one settle tx carries (one tick signs up to 20 such txs)"
    )
    payment_batch_interval_ms: int = _spec(
        4000, 50, _HOUR_MS, "longest a queued payment waits for the sender (a queued one wakes it)"
    )
    payment_tx_batching: bool = _spec(
        1, 0, 1, "1: payments settle many to a BatchSettler tx; 0: one tx each", is_bool=True
    )
    confirmation_interval_ms: int = _spec(
        2000, 50, _HOUR_MS, "how often the confirmer checks sent txs (a broadcast wakes it)"
    )
    confirmation_batch_size: int = _spec(
        20, 1, 1000, "most sent txs (with all their payments) the confirmer checks per tick"
    )
    confirmation_depth: int = _spec(
        -1, -1, 10_000, "blocks built on a receipt before it counts; -1: the chain's default"
    )
    confirmation_timeout_s: int = _spec(
        300,
        10,
        _DAY_S,
        "a sent tx not mined this long is stuck: logged, re-sent with +10% fees "
        "(up to max_fee_per_gas_gwei); never failed for it",
    )
    fee_bump_after_s: int = _spec(
        30, 1, _DAY_S, "a tx unmined this long and below the market is re-sent with higher fees"
    )
    max_fee_per_gas_gwei: int = _spec(
        500, 1, 1_000_000, "the highest maxFeePerGas a fee bump may offer (gwei)"
    )
    mint_batch_size: int = _spec(10, 1, 500, "most mint items one batchMint tx carries")
    mint_interval_ms: int = _spec(
        3000,
        50,
        _HOUR_MS,
        "how often the minter looks for pending mint items (a completion wakes it)",
    )
    payout_interval_ms: int = _spec(
        10_000,
        100,
        _HOUR_MS,
        "how often the treasury's payout loop looks for payouts to create and sign",
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            _spec_of_field(f).check(int(getattr(self, f.name)))

    @classmethod
    def from_rows(cls, rows: Mapping[str, int]) -> tuple[RuntimeSettings, list[str]]:
        """The settings from the table's rows (name -> value; a missing row is the default),
        and a problem for every row ignored: an unknown name, or a value out of bounds
        (its default is used)."""
        values: dict[str, Any] = {}
        problems: list[str] = []
        for name, value in sorted(rows.items()):
            spec = SPECS.get(name)
            if spec is None:
                problems.append(f"unknown setting {name!r} in system_settings ignored")
                continue
            try:
                checked = spec.check(value)
            except SettingError as exc:
                problems.append(f"{exc}: the default {spec.default} is used")
                continue
            values[name] = bool(checked) if spec.is_bool else checked
        return replace(DEFAULTS, **values), problems

    def as_rows(self) -> dict[str, int]:
        """Every setting as stored (switches as 0/1)."""
        return {name: int(getattr(self, name)) for name in SPECS}


def _spec_of_field(f: Field[Any]) -> SettingSpec:
    default, minimum, maximum, description, is_bool = f.metadata["spec"]
    return SettingSpec(f.name, default, minimum, maximum, description, is_bool)


#: Every runtime setting by name, in the order `payfirst settings show` lists them.
SPECS: Final[dict[str, SettingSpec]] = {f.name: _spec_of_field(f) for f in fields(RuntimeSettings)}
#: All defaults.
DEFAULTS: Final = RuntimeSettings()


def spec_of(name: str) -> SettingSpec:
    spec = SPECS.get(name)
    if spec is None:
        raise SettingError(f"unknown setting {name!r}; known: {', '.join(SPECS)}")
    return spec


def check_setting(name: str, value: int) -> int:
    """`value` if `name` is a setting and `value` within its bounds, else SettingError."""
    return spec_of(name).check(value)
