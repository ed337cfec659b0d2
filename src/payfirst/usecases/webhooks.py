"""Webhook endpoints, without HTTP: who may register, see, change, replay or enable one, and
what a registration may hold. The routes (payfirst.api.webhooks) and the command line
(`payfirst webhooks`) share it.

Any account (provider, agent, operator) registers endpoints for itself; the operator also
for another account (naming it) and sees every endpoint. Another account's endpoint is
answered like one that does not exist. The URL is checked when registered (and again at
every delivery by the sender): http or https, and every address its host resolves to
allowed (no loopback, private, link-local, ... unless the operator allows them). The
signing secret (`whsec_` + base64 of 32 random bytes) is shown at creation and to its owner
on request, as Svix does."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Final
from uuid import UUID, uuid4

from payfirst.domain.accounts import Account, Role
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.reasons import Reason
from payfirst.domain.webhooks import (
    MAX_DESCRIPTION_CHARS,
    PREVIOUS_SECRET_FOR,
    Attempt,
    EndpointChange,
    EventType,
    UrlRefused,
    WebhookEndpoint,
    parse_url,
)
from payfirst.ports.store import Store
from payfirst.usecases.accounts import Now, check_limit, may_act_for, utc_now

#: Checks a URL's addresses (resolving its host); raises UrlRefused. The composition root
#: gives the SSRF guard's (payfirst.adapters.webhook_http.checked_addresses).
UrlCheck = Callable[[str], Awaitable[object]]

SECRET_PREFIX: Final = "whsec_"
SECRET_BYTES: Final = 32
MAX_REPLAY_RANGE_DAYS: Final = 31
_EVENT_TYPES: Final = frozenset(t.value for t in EventType)


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _invalid(message: str) -> PaymentRejected:
    return PaymentRejected(Reason.INVALID_REQUEST, message)


def _unknown() -> PaymentRejected:
    return PaymentRejected(Reason.UNKNOWN_WEBHOOK, "no such webhook endpoint")


def check_event_types(value: object) -> tuple[str, ...]:
    """None or a list of known event types (empty or None: every type)."""
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > len(_EVENT_TYPES):
        raise _invalid("event_types must be a list of event types")
    types: list[str] = []
    for item in value:
        if not isinstance(item, str) or item not in _EVENT_TYPES:
            raise _invalid(f"event_types: unknown type (known: {', '.join(sorted(_EVENT_TYPES))})")
        if item not in types:
            types.append(item)
    return tuple(types)


def check_description(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION_CHARS:
        raise _invalid(f"description must be a string of at most {MAX_DESCRIPTION_CHARS}")
    return value


def check_time(value: object, what: str) -> datetime | None:
    """None, or an ISO 8601 time with its offset."""
    if value is None:
        return None
    if isinstance(value, str) and len(value) <= 40:
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if at.tzinfo is not None:
                return at
    raise _invalid(f"{what} must be an ISO 8601 time with its offset (2026-01-31T12:00:00Z)")


class Webhooks:
    def __init__(self, store: Store, check_url: UrlCheck, now: Now = utc_now) -> None:
        self._store = store
        self._check_url = check_url
        self._now = now

    async def _url(self, value: object) -> str:
        try:
            parse_url(value)
            assert isinstance(value, str)
            await self._check_url(value)
        except UrlRefused as exc:
            raise PaymentRejected(Reason.INVALID_WEBHOOK_URL, str(exc)) from None
        return value

    async def create(
        self,
        caller: Account,
        url: object,
        *,
        event_types: object = None,
        description: object = None,
        account_id: UUID | None = None,
    ) -> WebhookEndpoint:
        owner = caller.id if account_id is None else account_id
        if not may_act_for(caller, owner):
            raise PaymentRejected(Reason.UNKNOWN_ACCOUNT, "no such account")
        if owner != caller.id:
            account = await self._store.get_account(owner)
            if account is None or account.revoked_at is not None:
                raise PaymentRejected(Reason.UNKNOWN_ACCOUNT, "no such account")
        types = check_event_types(event_types)
        text = check_description(description)
        checked = await self._url(url)
        now = self._now()
        endpoint = WebhookEndpoint(
            id=uuid4(),
            account_id=owner,
            url=checked,
            event_types=types,
            secret=new_secret(),
            description=text,
            created_at=now,
            updated_at=now,
        )
        await self._store.create_webhook_endpoint(endpoint)
        return endpoint

    async def endpoint(self, caller: Account, endpoint_id: UUID) -> WebhookEndpoint:
        endpoint = await self._store.webhook_endpoint(endpoint_id)
        if endpoint is None or not may_act_for(caller, endpoint.account_id):
            raise _unknown()
        return endpoint

    async def endpoints(
        self,
        caller: Account,
        limit: object = None,
        after: UUID | None = None,
        account_id: UUID | None = None,
    ) -> tuple[list[WebhookEndpoint], bool]:
        """A page of endpoints (the caller's; the operator's: all, or one account's) and
        whether more follow."""
        size = check_limit(limit)
        if caller.role is not Role.OPERATOR:
            if account_id is not None and account_id != caller.id:
                raise PaymentRejected(Reason.UNKNOWN_ACCOUNT, "no such account")
            account_id = caller.id
        rows = await self._store.webhook_endpoints(account_id, size + 1, after)
        return rows[:size], len(rows) > size

    async def update(
        self,
        caller: Account,
        endpoint_id: UUID,
        *,
        url: object = None,
        event_types: object = None,
        description: object = None,
        given: frozenset[str] = frozenset(),
    ) -> WebhookEndpoint:
        await self.endpoint(caller, endpoint_id)
        change = EndpointChange(
            url=await self._url(url) if "url" in given else None,
            event_types=check_event_types(event_types) if "event_types" in given else None,
            description=check_description(description) if "description" in given else None,
            given=given,
        )
        updated = await self._store.update_webhook_endpoint(endpoint_id, change, self._now())
        if updated is None:
            raise _unknown()
        return updated

    async def rotate_secret(self, caller: Account, endpoint_id: UUID) -> WebhookEndpoint:
        """A new secret; the old one keeps signing for PREVIOUS_SECRET_FOR (both
        signatures are sent meanwhile), so the receiver can switch without losing events."""
        await self.endpoint(caller, endpoint_id)
        rotated = await self._store.rotate_webhook_secret(
            endpoint_id, new_secret(), self._now() + PREVIOUS_SECRET_FOR
        )
        if rotated is None:
            raise _unknown()
        return rotated

    async def delete(self, caller: Account, endpoint_id: UUID) -> None:
        await self.endpoint(caller, endpoint_id)
        if not await self._store.delete_webhook_endpoint(endpoint_id):
            raise _unknown()

    async def enable(self, caller: Account, endpoint_id: UUID) -> WebhookEndpoint:
        await self.endpoint(caller, endpoint_id)
        enabled = await self._store.enable_webhook_endpoint(endpoint_id, self._now())
        if enabled is None:
            raise _unknown()
        return enabled

    async def attempts(
        self, caller: Account, endpoint_id: UUID, limit: object = None, before: int | None = None
    ) -> tuple[list[Attempt], bool]:
        size = check_limit(limit)
        await self.endpoint(caller, endpoint_id)
        rows = await self._store.webhook_attempts(endpoint_id, size + 1, before)
        return rows[:size], len(rows) > size

    async def replay(
        self,
        caller: Account,
        endpoint_id: UUID,
        *,
        message_id: object = None,
        since: object = None,
        until: object = None,
    ) -> int:
        """Send one message (by id) or the messages created in [since, until) to the
        endpoint again, under their own ids (receivers dedupe); how many."""
        await self.endpoint(caller, endpoint_id)
        if message_id is not None:
            if since is not None or until is not None:
                raise _invalid("give message_id, or since and until, not both")
            if not isinstance(message_id, str) or not 0 < len(message_id) <= 64:
                raise _invalid("message_id must be a message id (msg_...)")
            count = await self._store.replay_webhook_messages(endpoint_id, message_id=message_id)
            if count == 0:
                raise PaymentRejected(Reason.UNKNOWN_WEBHOOK_MESSAGE, "no such message")
            return count
        start, end = check_time(since, "since"), check_time(until, "until")
        if start is None:
            raise _invalid("give message_id, or since (and until: default now)")
        end = end or self._now()
        if end <= start:
            raise _invalid("until must be after since")
        if (end - start).days > MAX_REPLAY_RANGE_DAYS:
            raise _invalid(f"a replay covers {MAX_REPLAY_RANGE_DAYS} days at most")
        return await self._store.replay_webhook_messages(endpoint_id, since=start, until=end)
