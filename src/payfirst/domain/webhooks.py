"""Webhooks, without IO: the event types, an endpoint, a delivery, the retry schedule and the
rules of which addresses a webhook may be sent to (the SSRF guard's decisions).

Done as Svix and Stripe do: a message has one id (the `webhook-id` header) kept on every
attempt and replay, so receivers dedupe on it; failed attempts are retried with
exponential backoff and full jitter for about three days; an endpoint with no success for
three days is disabled and its owner told."""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final
from urllib.parse import urlsplit
from uuid import UUID


class EventType(StrEnum):
    PAYMENT_QUEUED = "payment.queued"
    PAYMENT_AWAITING_APPROVAL = "payment.awaiting_approval"
    PAYMENT_COMPLETED = "payment.completed"
    PAYMENT_FAILED = "payment.failed"
    MINT_COMPLETED = "mint.completed"
    PAYOUT_COMPLETED = "payout.completed"
    # Sent to an account's other endpoints when one of its endpoints is disabled.
    WEBHOOK_DISABLED = "webhook.disabled"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


#: The delay before each retry (Svix's schedule), the last one repeated; each delay is
#: drawn uniformly from [0, it] (full jitter). A delivery is retried until RETRY_FOR after
#: its first attempt, then failed.
RETRY_DELAYS_S: Final = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0)
RETRY_FOR: Final = timedelta(days=3)
#: An endpoint with no success for this long is disabled.
DISABLE_AFTER: Final = timedelta(days=3)
#: How long a rotated-out secret keeps signing (receivers switch over meanwhile).
PREVIOUS_SECRET_FOR: Final = timedelta(hours=24)
#: The most of a response body kept in the attempts log.
MAX_RESPONSE_EXCERPT: Final = 1024
MAX_URL_CHARS: Final = 2048
MAX_DESCRIPTION_CHARS: Final = 1000


def retry_delay_s(attempts: int, rand: random.Random | None = None) -> float:
    """The delay after the `attempts`-th failed attempt (1-based), with full jitter."""
    base = RETRY_DELAYS_S[min(max(attempts, 1), len(RETRY_DELAYS_S)) - 1]
    return (rand or random).uniform(0.0, base)


def next_attempt(
    first_attempt_at: datetime, now: datetime, attempts: int, rand: random.Random | None = None
) -> datetime | None:
    """When to try again after the `attempts`-th failure; None: give up (past RETRY_FOR)."""
    at = now + timedelta(seconds=retry_delay_s(attempts, rand))
    return None if at - first_attempt_at > RETRY_FOR else at


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    id: UUID
    account_id: UUID
    url: str
    event_types: tuple[str, ...]  # empty: every event type
    secret: str
    description: str
    created_at: datetime
    updated_at: datetime
    disabled_at: datetime | None = None
    disabled_reason: str | None = None
    failing_since: datetime | None = None

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


@dataclass(frozen=True, slots=True)
class EndpointChange:
    """What a PATCH sets: only the fields named in `given`."""

    url: str | None = None
    event_types: tuple[str, ...] | None = None
    description: str | None = None
    given: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """A claimed delivery: what to send, where, and the lease its result is recorded under."""

    id: int
    lease: UUID
    attempts: int  # before this one
    started_at: datetime  # its first attempt since written or replayed
    message_id: str
    event_type: str
    payload: str  # the JSON text, signed and sent as is
    endpoint_id: UUID
    account_id: UUID
    url: str
    secret: str
    previous_secret: str | None = None  # also signs, for a while after a rotation


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """One attempt's outcome: a response (any status) or an error (no response)."""

    started_at: datetime
    latency_ms: int
    status: int | None = None
    body: str | None = None  # at most MAX_RESPONSE_EXCERPT characters
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class Attempt:
    """A row of the delivery log."""

    id: int
    delivery_id: int
    endpoint_id: UUID
    message_id: str
    started_at: datetime
    latency_ms: int
    status: int | None
    body: str | None
    error: str | None


# --- where a webhook may go (the SSRF guard's rules) -------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Which resolved addresses a webhook may be sent to: public ones only, unless the
    operator allows private ones (PAYFIRST_WEBHOOK_ALLOW_PRIVATE=1) or lists networks
    (PAYFIRST_WEBHOOK_ALLOWED_CIDRS)."""

    allow_private: bool = False
    allowed: tuple[Network, ...] = field(default_factory=tuple)


class UrlRefused(ValueError):
    """A webhook URL or the address it resolves to may not be used; the message says why."""


@dataclass(frozen=True, slots=True)
class WebhookUrl:
    scheme: str
    host: str  # without brackets
    port: int


def parse_url(url: object) -> WebhookUrl:
    """An http(s) URL with a host, no credentials, at most MAX_URL_CHARS."""
    if not isinstance(url, str) or not 0 < len(url) <= MAX_URL_CHARS:
        raise UrlRefused(f"url must be a string of 1..{MAX_URL_CHARS} characters")
    if any(c.isspace() or ord(c) < 0x21 for c in url):
        raise UrlRefused("url must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"url is malformed: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UrlRefused("url must be http:// or https://")
    if not parts.hostname:
        raise UrlRefused("url must name a host")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("url must not carry credentials")
    if port == 0:
        raise UrlRefused("url's port must be 1..65535")
    return WebhookUrl(
        parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)
    )


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")


def address_refusal(ip: Address, policy: AddressPolicy) -> str | None:
    """Why `ip` may not be sent to under `policy` (None: it may)."""
    if any(ip.version == net.version and ip in net for net in policy.allowed):
        return None
    inner = _embedded_v4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
    if inner is not None:
        refused = address_refusal(inner, policy)
        return None if refused is None else f"{ip} carries {inner}: {refused}"
    if ip.is_unspecified:
        return f"{ip} is unspecified"
    if ip.is_multicast:
        return f"{ip} is multicast"
    if policy.allow_private:
        return None
    if ip.is_loopback:
        return f"{ip} is a loopback address"
    if ip.is_link_local:
        return f"{ip} is link-local"
    if ip.is_private:
        return f"{ip} is a private address"
    if ip.is_reserved or not ip.is_global:
        return f"{ip} is not a public address"
    return None


def check_addresses(addresses: list[str], policy: AddressPolicy) -> list[str]:
    """`addresses` (a host's resolution) if EVERY one may be sent to; UrlRefused otherwise
    (one bad record is enough: a host must not mix public and private answers)."""
    if not addresses:
        raise UrlRefused("the host does not resolve")
    for text in addresses:
        try:
            ip = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            raise UrlRefused(f"the host resolves to {text!r}, not an IP address") from None
        refused = address_refusal(ip, policy)
        if refused is not None:
            raise UrlRefused(f"refused: {refused}")
    return addresses


def parse_networks(text: str) -> tuple[Network, ...]:
    """A comma-separated list of CIDRs (ValueError on a bad one)."""
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()
    )
