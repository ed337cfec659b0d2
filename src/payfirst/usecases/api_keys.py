"""API key text: generated, parsed and hashed, with no IO.

A key reads `pf_live_<8 id chars>_<43 secret chars>` (base62). `pf_live_ab12CD34`, its
prefix, names it in listings, logs and support requests and is how it is looked up; the 43
secret characters carry 256 bits from `secrets`. Only the SHA-256 of the whole key is
stored: a key is as random as a hash output, so a slow password hash would add nothing (as
Stripe and GitHub do). The stored hash is compared with `hmac.compare_digest`.

`pf_test_` keys are those of a dev instance: the operator key `payfirst serve` prints when
it runs its embedded database and its own local dev chain (no PAYFIRST_RPC_URL, no networks
file), and the keys made with a test key. The mode is a label, not a permission: both modes
are accepted alike, so a test key is kept as secret as any (the mode only tells people
which kind of instance a key belongs to)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

ALPHABET: Final = string.digits + string.ascii_letters  # base62
ID_CHARS: Final = 8
SECRET_CHARS: Final = 43  # 43 x log2(62) = 256.03 bits

_KEY: Final = re.compile(
    rf"(pf_(?:live|test)_[0-9A-Za-z]{{{ID_CHARS}}})_[0-9A-Za-z]{{{SECRET_CHARS}}}", re.ASCII
)
#: The longest key there is: anything longer is refused before it is parsed.
MAX_KEY_CHARS: Final = len("pf_live_") + ID_CHARS + 1 + SECRET_CHARS

# Hashed when the prefix is unknown, so a lookup costs the same whether it is or not.
_NOTHING: Final = hashlib.sha256(b"").digest()


class KeyMode(StrEnum):
    LIVE = "live"
    TEST = "test"  # a dev instance's keys


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly generated key: `text` is shown once and never stored."""

    text: str = field(repr=False)
    prefix: str
    secret_hash: bytes = field(repr=False)


def _random(chars: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(chars))


def generate_key(mode: KeyMode = KeyMode.LIVE) -> NewKey:
    prefix = f"pf_{mode.value}_{_random(ID_CHARS)}"
    text = f"{prefix}_{_random(SECRET_CHARS)}"
    return NewKey(text, prefix, hash_key(text))


def key_prefix(text: str) -> str | None:
    """The prefix of a well-formed key, else None (an oversized text is never scanned)."""
    if len(text) != MAX_KEY_CHARS:
        return None
    match = _KEY.fullmatch(text)
    return None if match is None else match.group(1)


def key_mode(prefix: str) -> KeyMode:
    """The mode of a key, by its prefix: a key issued by the holder of a test key is one too."""
    return KeyMode.TEST if prefix.startswith("pf_test_") else KeyMode.LIVE


def hash_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def matches(text: str, stored_hash: bytes | None) -> bool:
    """Whether `text` hashes to `stored_hash`, compared in constant time. None (no key of
    that prefix) compares against a fixed hash, so both cases cost the same."""
    expected = _NOTHING if stored_hash is None else stored_hash
    return hmac.compare_digest(hash_key(text), expected) and stored_hash is not None
