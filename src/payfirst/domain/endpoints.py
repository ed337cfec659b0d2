"""Providers' paid endpoints: what payfirst sells for a provider, and at what price.

The price is the registry's, never what a client or the provider says at payment time: a
fixed price is `amount` per call; a per-unit price is `amount` per unit, the count (1 ..
`max_units`) taken from the request's `unit_param`. `resource` is a path pattern with
Starlette-style `{name}` segments ('/weather/{city}') or a full http(s) URL. An endpoint
is never deleted, only disabled: payments and ledger entries keep pointing at it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final
from uuid import UUID

ANY_METHOD: Final = "*"
METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
MAX_RESOURCE_CHARS: Final = 512
MAX_DESCRIPTION_CHARS: Final = 1000
DEFAULT_MAX_UNITS: Final = 1000
MAX_UNITS_LIMIT: Final = 1_000_000
DEFAULT_TIMEOUT_S: Final = 300
#: The provider middleware's Price floor: a payment's validity window is never shorter.
MIN_TIMEOUT_S: Final = 10
MAX_TIMEOUT_S: Final = 86_400
#: The most enabled endpoints one provider has (a disabled one frees its place).
MAX_ENDPOINTS_PER_PROVIDER: Final = 1000
#: Bounds of an input or output schema, apart from the body's: its JSON size and depth.
MAX_SCHEMA_BYTES: Final = 16 * 1024
MAX_SCHEMA_DEPTH: Final = 16
DEFAULT_MIME_TYPE: Final = "application/json"
UINT256_MAX: Final = 2**256 - 1

# `{name}` or `{name:converter}`, as Starlette routes write them.
_PARAM: Final = re.compile(r"{([a-zA-Z_][a-zA-Z0-9_]*)(?::([a-z]+))?}")
_CONVERTERS: Final = {
    "str": "[^/]+",
    "path": ".*",
    "int": "[0-9]+",
    "float": r"[0-9]+(?:\.[0-9]+)?",
    "uuid": "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
}
# What a path pattern may hold outside its `{...}` segments: a URL path's characters.
_PATH_TEXT: Final = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*")


class Pricing(StrEnum):
    FIXED = "fixed"
    PER_UNIT = "per_unit"


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: UUID
    provider_id: UUID
    method: str  # one of METHODS, or ANY_METHOD
    resource: str  # a path pattern or a full URL
    pricing: Pricing
    amount: int  # atomic units of `asset`, per call (fixed) or per unit (per_unit)
    unit_param: str | None  # per_unit only: the request's query parameter or body field
    max_units: int | None  # per_unit only
    asset: str  # EIP-55
    chain_id: int
    pay_to: str  # EIP-55
    description: str
    mime_type: str
    input_schema: dict[str, Any] | None
    output_schema: dict[str, Any] | None
    discoverable: bool
    max_timeout_seconds: int
    created_at: datetime
    updated_at: datetime
    disabled_at: datetime | None = None

    @property
    def enabled(self) -> bool:
        return self.disabled_at is None

    @property
    def is_url(self) -> bool:
        """The resource is a full URL (not a path pattern)."""
        return is_url(self.resource)

    def units_allowed(self, units: int) -> bool:
        """Whether one payment may buy `units` (a fixed price: exactly 1)."""
        if isinstance(units, bool) or not isinstance(units, int):
            return False
        if self.pricing is Pricing.FIXED:
            return units == 1
        return 1 <= units <= (self.max_units or 0)

    def price(self, units: int) -> int:
        """What `units` cost; ValueError for a count the endpoint does not sell."""
        if not self.units_allowed(units):
            raise ValueError(f"this endpoint does not sell {units!r} units")
        return self.amount * units


def is_url(resource: str) -> bool:
    return resource.startswith(("http://", "https://"))


def path_regex(pattern: str) -> re.Pattern[str]:
    """The regular expression matching the paths of a path pattern ('/items/{id}',
    '/files/{rest:path}'); ValueError for a malformed pattern."""
    if not pattern.startswith("/"):
        raise ValueError("a path pattern starts with /")
    parts: list[str] = []
    names: set[str] = set()
    position = 0
    for match in _PARAM.finditer(pattern):
        parts.append(_literal(pattern[position : match.start()]))
        name, converter = match.group(1), match.group(2) or "str"
        if converter not in _CONVERTERS:
            raise ValueError(f"unknown converter {converter[:20]!r} in the path pattern")
        if name in names:
            raise ValueError(f"the path pattern names {name!r} twice")
        names.add(name)
        parts.append(f"(?:{_CONVERTERS[converter]})")
        position = match.end()
    parts.append(_literal(pattern[position:]))
    return re.compile("".join(parts))


def _literal(text: str) -> str:
    if not _PATH_TEXT.fullmatch(text):
        raise ValueError("the path pattern holds characters a URL path cannot")
    return re.escape(text)


def path_matches(pattern: str, path: str) -> bool:
    return path_regex(pattern).fullmatch(path) is not None
