"""How payfirst logs: text lines for a terminal, or one JSON object per line
(`PAYFIRST_LOG_FORMAT=json`, python-json-logger) for a log pipeline. A record's `extra=`
fields (payment_id, tx_hash, network, count, ...) become JSON fields of their own."""

from __future__ import annotations

import logging
import sys
from typing import Final, Literal

from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["text", "json"]
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_JSON_FIELDS: Final = "%(asctime)s %(levelname)s %(name)s %(message)s"


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        _JSON_FIELDS,
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )


def configure(level: str, log_format: LogFormat = "text", *, access_log: bool = True) -> None:
    """Send every payfirst log record at `level` or above to stderr in `log_format`; the
    HTTP client's per-request lines only from WARNING (payfirst logs what they mean); the
    request log (`payfirst.access`) only with `access_log`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        json_formatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    logging.getLogger("payfirst.access").setLevel(logging.NOTSET if access_log else logging.WARNING)
