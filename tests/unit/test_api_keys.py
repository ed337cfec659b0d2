"""API keys without IO: their text, parsing, hashing and constant-time comparison, and
authentication's rules (expiry, revocation, a use recorded at most once a minute) over a
store stub."""

from __future__ import annotations

import hashlib
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID, uuid4

import pytest
from eth_utils.address import to_checksum_address

from payfirst.domain.accounts import Account, ApiKey, Credential, Role
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.reasons import Reason
from payfirst.ports.store import Store
from payfirst.usecases import api_keys
from payfirst.usecases.accounts import (
    Accounts,
    IssuedKey,
    check_expires_in,
    check_fee_bps,
    check_id,
    check_limit,
    check_name,
    check_payout_address,
    check_role,
)
from payfirst.usecases.api_keys import (
    ALPHABET,
    MAX_KEY_CHARS,
    SECRET_CHARS,
    KeyMode,
    generate_key,
    hash_key,
    key_mode,
    key_prefix,
    matches,
)

KEY_FORMAT = re.compile(r"pf_(live|test)_[0-9A-Za-z]{8}_[0-9A-Za-z]{43}")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


# --- text ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(KeyMode))
def test_a_key_has_its_format_and_its_prefix_names_it(mode: KeyMode) -> None:
    new = generate_key(mode)
    assert KEY_FORMAT.fullmatch(new.text)
    assert len(new.text) == MAX_KEY_CHARS == 60
    assert new.text.startswith(f"pf_{mode.value}_")
    assert new.prefix == new.text[:16] and new.text[16] == "_"
    assert key_prefix(new.text) == new.prefix
    assert key_mode(new.prefix) is mode


def test_keys_carry_256_random_bits() -> None:
    assert SECRET_CHARS * math.log2(len(ALPHABET)) >= 256
    assert len(set(ALPHABET)) == 62
    keys = [generate_key() for _ in range(2000)]
    assert len({k.text for k in keys}) == len(keys)
    assert len({k.prefix for k in keys}) == len(keys)
    # Every base62 character turns up among 86,000 secret characters (each ~1,400 times).
    secrets_text = "".join(k.text[17:] for k in keys)
    assert set(secrets_text) == set(ALPHABET)


def test_a_key_is_never_in_a_repr() -> None:
    new = generate_key()
    key = ApiKey(uuid4(), uuid4(), new.prefix, new.secret_hash, "ci", T0)
    issued = IssuedKey(key, new.text)
    for text in (repr(new), repr(key), repr(issued)):
        assert new.text not in text
        assert new.text[17:] not in text
        assert new.secret_hash.hex() not in text and str(new.secret_hash) not in text
    assert new.prefix in repr(key)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "pf_live_",
        "pf_prod_abcdefgh_" + "a" * 43,  # unknown mode
        "sk_live_abcdefgh_" + "a" * 43,
        "pf_live_abcdefg_" + "a" * 44,  # id one short
        "pf_live_abcdefgh_" + "a" * 42,  # secret one short
        "pf_live_abcdefgh_" + "a" * 44,  # one too long
        "pf_live_abcdefgh-" + "a" * 43,
        "pf_live_abcdefgh_" + "a" * 42 + "-",
        "pf_live_abcdefgh_" + "a" * 42 + "\u0661",  # a non-ASCII digit
        "pf_live_abcdefgh_" + "a" * 42 + "\n",
        "PF_LIVE_abcdefgh_" + "a" * 43,
        "x" * 60,
        "pf_live_abcdefgh_" + "a" * 100_000,  # oversized
    ],
)
def test_a_malformed_key_has_no_prefix(text: str) -> None:
    assert key_prefix(text) is None


def test_an_oversized_key_is_refused_before_it_is_scanned(monkeypatch: pytest.MonkeyPatch) -> None:
    class Exploding:
        def fullmatch(self, text: str) -> None:
            raise AssertionError("scanned")

    monkeypatch.setattr(api_keys, "_KEY", Exploding())
    assert key_prefix("pf_live_abcdefgh_" + "a" * 10_000) is None


# --- hashing and comparison ----------------------------------------------------------------


def test_the_hash_is_the_sha256_of_the_whole_key() -> None:
    new = generate_key()
    assert new.secret_hash == hash_key(new.text) == hashlib.sha256(new.text.encode()).digest()
    assert len(new.secret_hash) == 32
    assert hash_key(new.text[:-1] + ("a" if new.text[-1] != "a" else "b")) != new.secret_hash


def test_matching_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = api_keys.hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(api_keys.hmac, "compare_digest", recording)
    new, other = generate_key(), generate_key()
    assert matches(new.text, new.secret_hash)
    assert not matches(other.text, new.secret_hash)
    # No stored hash (an unknown prefix) costs a comparison all the same, and never matches.
    assert not matches(new.text, None)
    assert len(calls) == 3
    assert calls[0] == (new.secret_hash, new.secret_hash)


# --- checks of what a caller gives ---------------------------------------------------------


@pytest.mark.parametrize(
    ("check", "value"),
    [
        (check_role, "admin"),
        (check_role, None),
        (check_role, 1),
        (check_name, ""),
        (check_name, "   "),
        (check_name, "x" * 101),
        (check_name, "tab\there"),
        (check_name, 7),
        (check_fee_bps, -1),
        (check_fee_bps, 10_001),
        (check_fee_bps, 2.5),
        (check_fee_bps, True),
        (check_fee_bps, "250"),
        (check_payout_address, "0x123"),
        (check_payout_address, "0x" + "g" * 40),
        (check_payout_address, 5),
        (check_expires_in, 59),
        (check_expires_in, 10**12),
        (check_expires_in, "60"),
        (check_limit, 0),
        (check_limit, 101),
        (check_limit, False),
    ],
)
def test_bad_values_are_refused_with_a_reason(check: Any, value: object) -> None:
    with pytest.raises(PaymentRejected) as refused:
        check(value)
    assert refused.value.reason is Reason.INVALID_REQUEST
    assert refused.value.message


def test_good_values_pass_the_checks() -> None:
    assert check_role("provider") is Role.PROVIDER
    assert check_name("  shop  ") == "shop"
    assert check_fee_bps(None) is None and check_fee_bps(10_000) == 10_000
    address = "0x" + "ab" * 20
    assert check_payout_address(address) == to_checksum_address(address) != address
    assert check_expires_in(60) == timedelta(minutes=1)
    assert check_limit(None) == 50
    some = uuid4()
    assert check_id(str(some), "id") == some
    with pytest.raises(PaymentRejected):
        check_id("x" * 1000, "id")


# --- authentication over a stub store ------------------------------------------------------


class StubStore:
    """The two methods authentication uses, over one key."""

    def __init__(self, credential: Credential | None) -> None:
        self.credential = credential
        self.touched: list[datetime] = []
        self.lookups: list[str] = []

    async def find_api_key_by_prefix(self, prefix: str) -> Credential | None:
        self.lookups.append(prefix)
        if self.credential is None or self.credential.key.prefix != prefix:
            return None
        return self.credential

    async def touch_api_key(self, key_id: UUID, at: datetime) -> None:
        assert self.credential is not None
        self.touched.append(at)
        key = self.credential.key
        self.credential = Credential(
            ApiKey(
                key.id,
                key.account_id,
                key.prefix,
                key.secret_hash,
                key.name,
                key.created_at,
                key.expires_at,
                key.revoked_at,
                at,
            ),
            self.credential.account,
        )


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _credential(
    *,
    expires_at: datetime | None = None,
    revoked_at: datetime | None = None,
    account_revoked_at: datetime | None = None,
) -> tuple[str, Credential]:
    new = generate_key()
    account = Account(uuid4(), Role.PROVIDER, "shop", T0, revoked_at=account_revoked_at)
    key = ApiKey(
        uuid4(),
        account.id,
        new.prefix,
        new.secret_hash,
        None,
        T0,
        expires_at=expires_at,
        revoked_at=revoked_at,
    )
    return new.text, Credential(key, account)


def _accounts(store: StubStore, clock: Clock) -> Accounts:
    return Accounts(cast(Store, store), now=clock)


async def test_a_key_authenticates_and_its_use_is_recorded_once_a_minute() -> None:
    text, credential = _credential()
    store, clock = StubStore(credential), Clock()
    accounts = _accounts(store, clock)
    for seconds in (0, 1, 30, 59):
        clock.now = T0 + timedelta(seconds=seconds)
        found = await accounts.authenticate(text)
        assert found is not None and found.account == credential.account
    assert store.touched == [T0]
    clock.now = T0 + timedelta(seconds=60)
    assert await accounts.authenticate(text) is not None
    assert store.touched == [T0, T0 + timedelta(seconds=60)]


@pytest.mark.parametrize(
    "state",
    [
        {"expires_at": T0},  # expired at this very instant
        {"expires_at": T0 - timedelta(days=1)},
        {"revoked_at": T0 - timedelta(seconds=1)},
        {"account_revoked_at": T0 - timedelta(seconds=1)},
    ],
)
async def test_an_expired_or_revoked_key_is_refused_like_an_unknown_one(
    state: dict[str, datetime],
) -> None:
    text, credential = _credential(**state)
    store = StubStore(credential)
    assert await _accounts(store, Clock()).authenticate(text) is None
    assert store.touched == []


async def test_a_wrong_secret_or_malformed_key_is_refused() -> None:
    text, credential = _credential()
    store = StubStore(credential)
    accounts = _accounts(store, Clock())
    forged = credential.key.prefix + "_" + "A" * SECRET_CHARS
    assert await accounts.authenticate(forged) is None
    assert await accounts.authenticate(generate_key().text) is None  # unknown prefix
    assert len(store.lookups) == 2
    for malformed in ("", "Bearer " + text, text + "x", text[:-1]):
        assert await accounts.authenticate(malformed) is None
    assert len(store.lookups) == 2  # a malformed key never reaches the store
    assert store.touched == []
