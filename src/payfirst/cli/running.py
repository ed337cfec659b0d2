"""Running a command: its configuration, its async work, its exit status."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, NoReturn
from uuid import uuid4

import typer

from payfirst.app import Unreachable
from payfirst.config import Config, load_config
from payfirst.domain.accounts import Account, Role
from payfirst.domain.errors import ConfigError
from payfirst.domain.settings import SettingError
from payfirst.logs import configure as configure_logging


def _config() -> Config:
    try:
        config = load_config()
    except ConfigError as exc:
        _fail(f"configuration error: {exc}", 2)
    configure_logging(config.log_level, config.log_format, access_log=config.access_log)
    return config


def _fail(message: str, code: int) -> NoReturn:
    print(f"payfirst: {message}", file=sys.stderr)
    raise typer.Exit(code)


def _exit_of(call: Callable[[], int | None]) -> NoReturn:
    """Runs a command's work and leaves with its exit status: 2 for a configuration or
    setting error, 1 when a database or chain cannot be reached."""
    try:
        code = call() or 0
    except ConfigError as exc:
        _fail(f"configuration error: {exc}", 2)
    except SettingError as exc:
        _fail(str(exc), 2)
    except Unreachable as exc:
        _fail(f"cannot start: {exc}", 1)
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)


def _run(work: Callable[[Config], Coroutine[Any, Any, int | None]]) -> NoReturn:
    """A command's async work with the configuration from the environment."""
    config = _config()
    _exit_of(lambda: asyncio.run(work(config)))


def _operator() -> Account:
    return Account(uuid4(), Role.OPERATOR, "command line", datetime.now(UTC))
