"""The admin routes (`/v1/...`) through the HTTP app: 401 without a valid key (whatever is
wrong with it, one answer), 403 with the wrong role, another account's account or key
answered 404 like one that does not exist, keys shown once, bodies checked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
import pytest

from payfirst.domain.accounts import Account, Role
from payfirst.usecases.accounts import Accounts, IssuedKey
from payfirst.usecases.api_keys import KeyMode
from tests.e2e.harness import Harness

# Every admin route, with a placeholder for the ids of the caller's own resources.
ROUTES = [
    ("GET", "/v1/me"),
    ("POST", "/v1/accounts"),
    ("GET", "/v1/accounts"),
    ("GET", "/v1/accounts/{account}"),
    ("POST", "/v1/accounts/{account}/revoke"),
    ("POST", "/v1/keys"),
    ("GET", "/v1/keys"),
    ("POST", "/v1/keys/{key}/revoke"),
    # What providers read (api/views.py; a payment id no one has: 404 past the door).
    ("GET", "/v1/payments"),
    ("GET", "/v1/payments/7b5a3e8c-0000-4000-8000-0000000000ff"),
    ("GET", "/v1/ledger/entries"),
    # Paid endpoints (api/endpoints.py; an endpoint id no one has: 404 past the door).
    ("POST", "/v1/endpoints"),
    ("GET", "/v1/endpoints"),
    ("GET", "/v1/endpoints/7b5a3e8c-0000-4000-8000-0000000000ee"),
    ("PATCH", "/v1/endpoints/7b5a3e8c-0000-4000-8000-0000000000ee"),
    ("DELETE", "/v1/endpoints/7b5a3e8c-0000-4000-8000-0000000000ee"),
    # Payouts and balances (api/payouts.py; a payout id no one has: 404 past the door).
    ("PATCH", "/v1/accounts/{account}"),
    ("POST", "/v1/payouts"),
    ("GET", "/v1/payouts"),
    ("GET", "/v1/payouts/7b5a3e8c-0000-4000-8000-0000000000dd"),
    ("GET", "/v1/balance"),
    # Agents' payers, policies, approvals (api/policies.py; an address or payment id no one
    # has: 404 past the door).
    ("POST", "/v1/payers/challenge"),
    ("POST", "/v1/payers"),
    ("GET", "/v1/payers"),
    ("DELETE", "/v1/payers/0x00000000000000000000000000000000000000aA"),
    ("PUT", "/v1/payers/0x00000000000000000000000000000000000000aA/policy"),
    ("GET", "/v1/payers/0x00000000000000000000000000000000000000aA/policy"),
    ("DELETE", "/v1/payers/0x00000000000000000000000000000000000000aA/policy"),
    ("GET", "/v1/approvals"),
    ("POST", "/v1/approvals/7b5a3e8c-0000-4000-8000-0000000000bb/approve"),
    ("POST", "/v1/approvals/7b5a3e8c-0000-4000-8000-0000000000bb/reject"),
    # Webhooks (api/webhooks.py; an endpoint id no one has: 404 past the door).
    ("POST", "/v1/webhooks"),
    ("GET", "/v1/webhooks"),
    ("GET", "/v1/webhooks/7b5a3e8c-0000-4000-8000-0000000000cc"),
    ("PATCH", "/v1/webhooks/7b5a3e8c-0000-4000-8000-0000000000cc"),
    ("DELETE", "/v1/webhooks/7b5a3e8c-0000-4000-8000-0000000000cc"),
    ("GET", "/v1/webhooks/7b5a3e8c-0000-4000-8000-0000000000cc/secret"),
    ("POST", "/v1/webhooks/7b5a3e8c-0000-4000-8000-0000000000cc/secret/rotate"),
    ("GET", "/v1/webhooks/7b5a3e8c-0000-4000-8000-0000000000cc/attempts"),
    ("POST", "/v1/webhooks/7b5a3e8c-0000-4000-8000-0000000000cc/replay"),
    ("POST", "/v1/webhooks/7b5a3e8c-0000-4000-8000-0000000000cc/enable"),
    # The status page's decide (api/status.py; a payment no one has: 404 past the door). Its
    # stream never ends with the right key: tests/e2e/test_status_api.py checks its door.
    ("POST", "/v1/status/stuck/7b5a3e8c-0000-4000-8000-00000000005c/decide"),
]
OPERATOR_ONLY = [
    ("POST", "/v1/accounts"),
    ("GET", "/v1/accounts"),
    ("POST", "/v1/accounts/{account}/revoke"),
    ("POST", "/v1/status/stuck/7b5a3e8c-0000-4000-8000-00000000005c/decide"),
]


@dataclass
class Caller:
    account: Account
    issued: IssuedKey

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.issued.text}"}

    def path(self, template: str) -> str:
        return template.format(account=self.account.id, key=self.issued.key.id)


async def caller(h: Harness, role: Role, name: str, *, accounts: Accounts | None = None) -> Caller:
    account, issued = await (accounts or Accounts(h.store)).create_account(role, name)
    return Caller(account, issued)


async def call(
    h: Harness, method: str, path: str, who: Caller | None = None, **kwargs: Any
) -> httpx.Response:
    headers = {**(who.headers if who else {}), **kwargs.pop("headers", {})}
    return await h.http.request(method, path, headers=headers, **kwargs)


def assert_unauthorized(answer: httpx.Response) -> None:
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert answer.json() == {
        "error": "unauthorized",
        "message": "a valid API key is required: Authorization: Bearer <key>",
    }


@pytest.mark.parametrize(("method", "template"), ROUTES)
async def test_no_valid_key_is_401_whatever_is_wrong_with_it(
    harness: Harness, method: str, template: str
) -> None:
    h = harness
    operator = await caller(h, Role.OPERATOR, "ops")
    path = operator.path(template)
    revoked = await caller(h, Role.OPERATOR, "revoked key")
    await Accounts(h.store).revoke_key(revoked.issued.key.id)
    gone = await caller(h, Role.OPERATOR, "revoked account")
    await Accounts(h.store).revoke_account(gone.account.id)
    past = Accounts(h.store, now=lambda: datetime.now(UTC) - timedelta(hours=1))
    expired_account = await caller(h, Role.OPERATOR, "expired", accounts=past)
    expired = await past.issue_key(expired_account.account.id, expires_in=timedelta(minutes=1))
    text = operator.issued.text
    wrong = [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer nope"},
        {"Authorization": f"Basic {text}"},
        {"Authorization": text},
        {"Authorization": f"Bearer {text[:-1]}"},
        {"Authorization": f"Bearer {text}x"},
        {"Authorization": f"Bearer {text[:-1]}{'A' if text[-1] != 'A' else 'B'}"},
        {"Authorization": f"Bearer {text} {text}"},
        {"Authorization": "Bearer " + "A" * 5000},
        {"Authorization": f"Bearer {revoked.issued.text}"},
        {"Authorization": f"Bearer {gone.issued.text}"},
        {"Authorization": f"Bearer {expired.text}"},
        {"X-API-Key": text},
    ]
    for headers in wrong:
        assert_unauthorized(await call(h, method, path, headers=headers))
    # And the right key passes the door (what it then answers is the other tests' business).
    answer = await call(h, method, path, operator, json={} if method == "POST" else None)
    assert answer.status_code != 401, answer.text


@pytest.mark.parametrize(("method", "template"), OPERATOR_ONLY)
async def test_operator_routes_are_403_for_other_roles(
    harness: Harness, method: str, template: str
) -> None:
    h = harness
    for role in (Role.PROVIDER, Role.AGENT):
        who = await caller(h, role, role.value)
        answer = await call(h, method, who.path(template), who)
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"] == "forbidden"
    assert await h.store.get_account(who.account.id) == who.account  # nothing revoked


async def test_me_is_the_callers_account(harness: Harness) -> None:
    h = harness
    for role in Role:
        who = await caller(h, role, f"the {role.value}")
        answer = await call(h, "GET", "/v1/me", who)
        assert answer.status_code == 200
        assert answer.json()["id"] == str(who.account.id)
        assert answer.json()["role"] == role.value
        assert answer.json()["name"] == f"the {role.value}"


async def test_a_provider_never_sees_or_touches_another_providers_data(
    harness: Harness,
) -> None:
    h = harness
    a = await caller(h, Role.PROVIDER, "a")
    b = await caller(h, Role.PROVIDER, "b")
    nobody = uuid4()

    # B's account and a made-up one are answered alike.
    for account_id in (b.account.id, nobody):
        answer = await call(h, "GET", f"/v1/accounts/{account_id}", a)
        assert answer.status_code == 404
        assert answer.json() == {"error": "unknown_account", "message": "no such account"}
        answer = await call(h, "GET", "/v1/keys", a, params={"account_id": str(account_id)})
        assert answer.json() == {"error": "unknown_account", "message": "no such account"}
        answer = await call(h, "POST", "/v1/keys", a, json={"account_id": str(account_id)})
        assert answer.json() == {"error": "unknown_account", "message": "no such account"}
    for key_id in (b.issued.key.id, nobody):
        answer = await call(h, "POST", f"/v1/keys/{key_id}/revoke", a)
        assert answer.status_code == 404
        assert answer.json() == {"error": "unknown_api_key", "message": "no such API key"}
    answer = await call(h, "POST", f"/v1/accounts/{b.account.id}/revoke", a)
    assert answer.status_code == 403
    # B is untouched: its key works, it has one key, its account is active.
    me = await call(h, "GET", "/v1/me", b)
    assert me.status_code == 200 and me.json()["revoked_at"] is None
    keys = (await call(h, "GET", "/v1/keys", b)).json()["keys"]
    assert [k["id"] for k in keys] == [str(b.issued.key.id)]
    assert keys[0]["revoked_at"] is None
    # A's own things are A's.
    assert (await call(h, "GET", f"/v1/accounts/{a.account.id}", a)).status_code == 200
    own = await call(h, "GET", "/v1/keys", a, params={"account_id": str(a.account.id)})
    assert [k["id"] for k in own.json()["keys"]] == [str(a.issued.key.id)]


async def test_the_operator_sees_and_revokes_everyones(harness: Harness) -> None:
    h = harness
    operator = await caller(h, Role.OPERATOR, "ops")
    b = await caller(h, Role.PROVIDER, "b")
    answer = await call(h, "GET", f"/v1/accounts/{b.account.id}", operator)
    assert answer.status_code == 200 and answer.json()["name"] == "b"
    listed = await call(h, "GET", "/v1/keys", operator, params={"account_id": str(b.account.id)})
    assert [k["prefix"] for k in listed.json()["keys"]] == [b.issued.key.prefix]
    made = await call(h, "POST", "/v1/keys", operator, json={"account_id": str(b.account.id)})
    assert made.status_code == 201 and made.json()["account_id"] == str(b.account.id)
    b_second = made.json()["key"]
    by_b_second = {"Authorization": f"Bearer {b_second}"}
    assert (await call(h, "GET", "/v1/me", headers=by_b_second)).json()["id"] == str(b.account.id)
    revoked = await call(h, "POST", f"/v1/keys/{b.issued.key.id}/revoke", operator)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert_unauthorized(await call(h, "GET", "/v1/me", b))
    gone = await call(h, "POST", f"/v1/accounts/{b.account.id}/revoke", operator)
    assert gone.status_code == 200 and gone.json()["revoked_at"] is not None
    assert_unauthorized(
        await call(h, "GET", "/v1/me", headers={"Authorization": f"Bearer {b_second}"})
    )
    # Not its own account: the instance keeps an operator.
    itself = await call(h, "POST", f"/v1/accounts/{operator.account.id}/revoke", operator)
    assert itself.status_code == 400 and itself.json()["error"] == "invalid_request"
    assert (await call(h, "GET", "/v1/me", operator)).status_code == 200


async def test_a_key_is_shown_once(harness: Harness) -> None:
    h = harness
    operator = await caller(h, Role.OPERATOR, "ops")
    created = await call(
        h,
        "POST",
        "/v1/accounts",
        operator,
        json={
            "role": "provider",
            "name": "shop",
            "fee_bps": 250,
            "payout_address": "0x" + "ab" * 20,
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["account"]["role"] == "provider" and body["account"]["fee_bps"] == 250
    key = body["api_key"]["key"]
    assert key.startswith(body["api_key"]["prefix"] + "_")
    # A test key's holder makes test keys (the operator here holds a live one).
    assert key.startswith("pf_live_")
    shop = {"Authorization": f"Bearer {key}"}
    assert (await call(h, "GET", "/v1/me", headers=shop)).json()["name"] == "shop"
    made = await call(
        h, "POST", "/v1/keys", headers=shop, json={"name": "ci", "expires_in_s": 3600}
    )
    assert made.status_code == 201 and made.json()["name"] == "ci"
    second = made.json()["key"]
    by_second = {"Authorization": f"Bearer {second}"}
    assert (await call(h, "GET", "/v1/me", headers=by_second)).json()["name"] == "shop"
    listings = [
        (await call(h, "GET", "/v1/keys", headers=shop)).text,
        (await call(h, "GET", "/v1/accounts", operator)).text,
        (await call(h, "GET", "/v1/me", headers=shop)).text,
    ]
    for text in listings:
        for secret in (key, second, operator.issued.text):
            assert secret not in text and secret[17:] not in text
        assert "hash" not in text
    listed = (await call(h, "GET", "/v1/keys", headers=shop)).json()
    assert {k["prefix"] for k in listed["keys"]} == {key[:16], second[:16]}
    assert all(k["last_used_at"] is not None for k in listed["keys"])  # both were used
    expires = [k["expires_at"] for k in listed["keys"] if k["prefix"] == second[:16]]
    assert expires[0] is not None
    # A key may revoke itself.
    own_id = next(k["id"] for k in listed["keys"] if k["prefix"] == second[:16])
    gone = await call(
        h, "POST", f"/v1/keys/{own_id}/revoke", headers={"Authorization": f"Bearer {second}"}
    )
    assert gone.status_code == 200
    assert_unauthorized(
        await call(h, "GET", "/v1/me", headers={"Authorization": f"Bearer {second}"})
    )


async def test_a_test_keys_holder_makes_test_keys(harness: Harness) -> None:
    h = harness
    account, first = await Accounts(h.store).create_account(Role.OPERATOR, "dev", mode=KeyMode.TEST)
    dev = {"Authorization": f"Bearer {first.text}"}
    created = await call(
        h, "POST", "/v1/accounts", headers=dev, json={"role": "agent", "name": "bot"}
    )
    assert created.json()["api_key"]["key"].startswith("pf_test_")
    made = await call(h, "POST", "/v1/keys", headers=dev)
    assert made.json()["key"].startswith("pf_test_")
    assert made.json()["account_id"] == str(account.id)


async def test_accounts_are_listed_a_page_at_a_time(harness: Harness) -> None:
    h = harness
    operator = await caller(h, Role.OPERATOR, "ops")
    for i in range(4):
        await caller(h, Role.AGENT, f"agent {i}")
    seen: list[str] = []
    after: str | None = None
    while True:
        params = {"limit": "2", **({"after": after} if after else {})}
        page = (await call(h, "GET", "/v1/accounts", operator, params=params)).json()
        assert len(page["accounts"]) <= 2
        seen += [a["name"] for a in page["accounts"]]
        if not page["has_more"]:
            break
        after = page["accounts"][-1]["id"]
    assert seen == ["ops"] + [f"agent {i}" for i in range(4)]


BAD_INPUT: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/accounts", {"content": b"{not json"}),
    ("POST", "/v1/accounts", {"json": [1]}),
    ("POST", "/v1/accounts", {"json": {}}),
    ("POST", "/v1/accounts", {"json": {"role": "root", "name": "x"}}),
    ("POST", "/v1/accounts", {"json": {"role": "agent", "name": ""}}),
    ("POST", "/v1/accounts", {"json": {"role": "agent", "name": "x" * 101}}),
    ("POST", "/v1/accounts", {"json": {"role": "agent", "name": "x", "fee_bps": 1}}),
    ("POST", "/v1/accounts", {"json": {"role": "provider", "name": "x", "fee_bps": 10001}}),
    ("POST", "/v1/accounts", {"json": {"role": "provider", "name": "x", "fee_bps": "1"}}),
    ("POST", "/v1/accounts", {"json": {"role": "provider", "name": "x", "payout_address": "0x1"}}),
    ("POST", "/v1/accounts", {"json": {"role": "agent", "name": "x", "admin": True}}),
    ("POST", "/v1/keys", {"json": {"expires_in_s": 1}}),
    ("POST", "/v1/keys", {"json": {"expires_in_s": "1d"}}),
    ("POST", "/v1/keys", {"json": {"name": 5}}),
    ("POST", "/v1/keys", {"json": {"account_id": "me"}}),
    ("POST", "/v1/keys", {"json": {"secret": "mine"}}),
    ("GET", "/v1/accounts", {"params": {"limit": "0"}}),
    ("GET", "/v1/accounts", {"params": {"limit": "101"}}),
    ("GET", "/v1/accounts", {"params": {"limit": "-1"}}),
    ("GET", "/v1/accounts", {"params": {"limit": "1e3"}}),
    ("GET", "/v1/accounts", {"params": {"after": "x"}}),
    ("GET", "/v1/keys", {"params": {"account_id": "x" * 5000}}),
    ("GET", "/v1/accounts/not-a-uuid", {}),
    ("POST", "/v1/accounts/not-a-uuid/revoke", {}),
    ("POST", "/v1/keys/not-a-uuid/revoke", {}),
    ("POST", "/v1/keys/00000000-0000-0000-0000-000000000000/revoke", {"json": {"x": 1}}),
]


async def test_bad_input_is_400_with_a_reason_and_changes_nothing(harness: Harness) -> None:
    h = harness
    operator = await caller(h, Role.OPERATOR, "ops")
    for method, path, request_kwargs in BAD_INPUT:
        answer = await call(h, method, path, operator, **request_kwargs)
        label = f"{method} {path} {request_kwargs}"
        assert answer.status_code == 400, (label, answer.text)
        assert answer.json()["error"] == "invalid_request", label
        assert answer.json()["message"], label
    assert [a.id for a in (await Accounts(h.store).accounts(100)).items] == [operator.account.id]
    assert len((await Accounts(h.store).keys(operator.account.id, 100)).items) == 1


async def test_a_key_never_outlives_the_key_that_made_it(harness: Harness) -> None:
    """An expiring key makes no longer-lived key: not of its own account, not (as the
    operator) of another one, nor a new account's first key."""
    h = harness
    operator = await caller(h, Role.OPERATOR, "ops")
    shop = await caller(h, Role.PROVIDER, "shop")
    accounts = Accounts(h.store)
    short_operator = await accounts.issue_key(operator.account.id, expires_in=timedelta(hours=1))
    short_shop = await accounts.issue_key(shop.account.id, expires_in=timedelta(hours=1))
    asked: list[tuple[IssuedKey, str, dict[str, Any]]] = [
        (short_shop, "/v1/keys", {}),  # never expiring asked
        (short_shop, "/v1/keys", {"expires_in_s": 86_400}),  # a day asked
        (short_operator, "/v1/keys", {"account_id": str(shop.account.id)}),
        (short_operator, "/v1/keys", {}),
    ]
    for issuer, path, body in asked:
        made = await call(
            h, "POST", path, headers={"Authorization": f"Bearer {issuer.text}"}, json=body
        )
        assert made.status_code == 201, made.text
        assert issuer.key.expires_at is not None
        assert datetime.fromisoformat(made.json()["expires_at"]) == issuer.key.expires_at
    created = await call(
        h,
        "POST",
        "/v1/accounts",
        headers={"Authorization": f"Bearer {short_operator.text}"},
        json={"role": "agent", "name": "bot"},
    )
    assert created.status_code == 201, created.text
    first = created.json()["api_key"]["expires_at"]
    assert datetime.fromisoformat(first) == short_operator.key.expires_at
    # A shorter expiry than the issuer's is kept; a key with no expiry makes any.
    sooner = await call(
        h,
        "POST",
        "/v1/keys",
        headers={"Authorization": f"Bearer {short_shop.text}"},
        json={"expires_in_s": 600},
    )
    sooner_at = datetime.fromisoformat(sooner.json()["expires_at"])
    assert short_shop.key.expires_at is not None and sooner_at < short_shop.key.expires_at
    forever = await call(h, "POST", "/v1/keys", shop)
    assert forever.status_code == 201 and forever.json()["expires_at"] is None
