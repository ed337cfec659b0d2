"""The webhook rules without IO: which addresses a webhook may go to, which URLs are
refused, the retry schedule with full jitter, the event types a registration may name."""

from __future__ import annotations

import ipaddress
import random
from datetime import UTC, datetime, timedelta

import pytest

from payfirst.domain.errors import PaymentRejected
from payfirst.domain.reasons import Reason
from payfirst.domain.webhooks import (
    RETRY_DELAYS_S,
    RETRY_FOR,
    AddressPolicy,
    UrlRefused,
    address_refusal,
    check_addresses,
    next_attempt,
    parse_networks,
    parse_url,
    retry_delay_s,
)
from payfirst.usecases.webhooks import check_event_types, new_secret

STRICT = AddressPolicy()

REFUSED = [
    "127.0.0.1",
    "127.8.9.10",
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # shared address space (carrier NAT)
    "0.0.0.0",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "ff02::1",
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::ffff:10.0.0.1",
    "2002:7f00:0001::",  # 6to4 of 127.0.0.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
]


@pytest.mark.parametrize("address", REFUSED)
def test_private_and_special_addresses_are_refused(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address), STRICT) is not None
    with pytest.raises(UrlRefused):
        check_addresses([address], STRICT)


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address), STRICT) is None


def test_one_private_record_refuses_the_host() -> None:
    with pytest.raises(UrlRefused, match="loopback"):
        check_addresses(["8.8.8.8", "127.0.0.1"], STRICT)
    with pytest.raises(UrlRefused):
        check_addresses([], STRICT)


def test_the_operator_allows_networks_or_private_addresses() -> None:
    loopback = AddressPolicy(allowed=parse_networks("127.0.0.0/8"))
    assert check_addresses(["127.0.0.1"], loopback) == ["127.0.0.1"]
    assert address_refusal(ipaddress.ip_address("::ffff:127.0.0.1"), loopback) is None
    assert address_refusal(ipaddress.ip_address("10.0.0.1"), loopback) is not None
    private = AddressPolicy(allow_private=True)
    assert address_refusal(ipaddress.ip_address("10.0.0.1"), private) is None
    assert address_refusal(ipaddress.ip_address("::1"), private) is None
    # Never: unspecified and multicast.
    assert address_refusal(ipaddress.ip_address("0.0.0.0"), private) is not None
    assert address_refusal(ipaddress.ip_address("224.0.0.1"), private) is not None
    with pytest.raises(ValueError, match="nope"):
        parse_networks("127.0.0.0/8,nope")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/",
        "file:///etc/passwd",
        "gopher://example.com/",
        "http://",
        "https://user:pw@example.com/",
        "http://example.com:0/",
        "http://example.com:99999/",
        "http://exa mple.com/",
        "http://example.com/\n",
        "https://example.com/" + "a" * 2100,
        "",
        "example.com/hook",
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(UrlRefused):
        parse_url(url)


def test_good_urls_parse_with_their_port() -> None:
    assert parse_url("https://hooks.example.com/x").port == 443
    assert parse_url("http://hooks.example.com/x").port == 80
    parsed = parse_url("http://[2606:4700::1]:8080/x")
    assert (parsed.host, parsed.port) == ("2606:4700::1", 8080)


def test_retry_delays_have_full_jitter_within_svix_schedule() -> None:
    rand = random.Random(7)
    for attempts, base in enumerate(RETRY_DELAYS_S, start=1):
        delays = [retry_delay_s(attempts, rand) for _ in range(200)]
        assert all(0 <= d <= base for d in delays)
        assert max(delays) > base * 0.8 and min(delays) < base * 0.2  # spread over [0, base]
    assert retry_delay_s(50, rand) <= RETRY_DELAYS_S[-1]


def test_retries_stop_three_days_after_the_first_attempt() -> None:
    first = datetime(2026, 1, 1, tzinfo=UTC)
    assert next_attempt(first, first, 1) is not None
    late = first + RETRY_FOR - timedelta(seconds=1)
    rand = random.Random(1)
    # Past the window: given up, whatever the draw.
    assert next_attempt(first, first + RETRY_FOR + timedelta(seconds=1), 9, rand) is None
    at = next_attempt(first, late, 9, random.Random(2))
    assert at is None or at - first <= RETRY_FOR


def test_secrets_and_event_types() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and len(secret) > 40
    assert new_secret() != secret
    assert check_event_types(None) == ()
    assert check_event_types(["payment.completed", "payment.completed"]) == ("payment.completed",)
    with pytest.raises(PaymentRejected) as refused:
        check_event_types(["payment.exploded"])
    assert refused.value.reason is Reason.INVALID_REQUEST
