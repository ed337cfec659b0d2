"""Parsers of command options: a duration, one of a few choices."""

from __future__ import annotations

import re
from collections.abc import Callable

import typer


def _seconds(value: str) -> int:
    """A duration option (90s, 5m, 1h, 30d or seconds) as seconds."""
    try:
        return _duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _choice(*choices: str) -> Callable[[str], str]:
    """A parser accepting one of `choices` (listed in the option's help)."""

    def parse(value: str) -> str:
        if value not in choices:
            shown = ", ".join(repr(c) for c in choices)
            raise typer.BadParameter(f"invalid choice: {value!r} (choose from {shown})")
        return value

    return parse


def _duration(text: str) -> int:
    match = re.fullmatch(r"(\d+)([smhd]?)", text.strip())
    if match is None:
        raise ValueError(f"not a duration: {text!r} (try 90s, 5m, 1h, 30d)")
    return int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
