"""The one JSON parser for client input: bodies and decoded payment headers.

`json.loads` recurses once per nesting level, in C. py_ecc (imported through eth-account)
raises the interpreter's recursion limit to 100,000, so a body of 60,000 `[` overflows the C
stack and kills the process before any RecursionError. `loads` therefore measures the
nesting depth with an O(n) scan that never recurses and refuses anything deeper than
`MAX_DEPTH` before `json.loads` sees it. It also refuses what parses in Python but cannot be
answered as JSON: NaN/Infinity and lone UTF-16 surrogates (`"\\ud800"`), which an echo of the
value would fail to encode."""

from __future__ import annotations

import json
import re
from typing import Any, Final

# An x402 request nests 4 levels deep (body > paymentPayload > payload > authorization);
# the extensions an SDK adds stay well within this.
MAX_DEPTH: Final = 32

# Outside strings only brackets matter; inside, `\x` pairs are skipped so `\"` never ends one.
_TOKENS: Final = re.compile(r'\\.|["\[\]{}]', re.DOTALL)
# A `\uD800`-`\uDFFF` escape: half of a surrogate pair, or a lone one.
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")


class JsonRejected(ValueError):
    """Input that is not JSON payfirst accepts; the message says why (never echoes it)."""


def _reject_constant(name: str) -> Any:
    raise JsonRejected(f"{name} is not a JSON number")


def nesting_depth_exceeds(text: str, max_depth: int) -> bool:
    """Whether `text` nests arrays/objects deeper than `max_depth` (strings are skipped).

    Exact for valid JSON; for invalid JSON exact up to the first error, which is as far as
    any parser gets. Stops at the first level too deep, so a deep attack costs ~max_depth
    steps."""
    if text.count("[") + text.count("{") <= max_depth:
        return False  # the common case, at C speed
    depth = 0
    in_string = False
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token == '"':
            in_string = not in_string
        elif in_string or len(token) == 2:
            continue
        elif token in "[{":
            depth += 1
            if depth > max_depth:
                return True
        else:
            depth -= 1
    return False


def loads(data: bytes | bytearray | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse client JSON (UTF-8). Raises JsonRejected (a ValueError) for anything invalid,
    nested deeper than `max_depth`, holding NaN/Infinity or a lone surrogate."""
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise JsonRejected("not UTF-8") from None
    else:
        text = data
    if nesting_depth_exceeds(text, max_depth):
        raise JsonRejected(f"nested deeper than {max_depth} levels")
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except JsonRejected:
        raise
    except (ValueError, RecursionError):
        raise JsonRejected("not valid JSON") from None
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        # Paired escapes became one code point; a lone one cannot be encoded as UTF-8.
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise JsonRejected("holds a lone UTF-16 surrogate") from None
    return value
