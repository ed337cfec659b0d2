"""Schemathesis against the admin routes (`/v1/...`) WITH an operator's key, so the bodies,
queries and ids are fuzzed past the door (test_openapi_fuzz.py, without a key, only ever
reaches the 401). The contract is the same: no 5xx, every 4xx a JSON `error`, and every
answer what the document says."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from payfirst.api.openapi import OPERATIONS
from payfirst.domain.accounts import Role
from payfirst.usecases.accounts import Accounts
from tests.e2e.harness import Harness
from tests.fuzz.test_openapi_fuzz import DOCUMENT_CHECKS, SCHEMA, assert_contract, send

# An event stream never ends with a valid key (tests/e2e/test_status_api.py checks it).
ADMIN_OPERATIONS = sorted(
    key
    for key, op in OPERATIONS.items()
    if key[0].startswith("/v1/") and op.media_type != "text/event-stream"
)
EXAMPLES_PER_OPERATION = 60


def _strategy(path: str, method: str, headers: dict[str, str], own: dict[str, str]) -> Any:
    operation = SCHEMA[path][method.upper()]
    strategies = [operation.as_strategy(mode, headers=headers) for mode in GenerationMode]
    ids = {name: value for name, value in own.items() if "{" + name + "}" in path}
    if ids:  # also the caller's own ids, so lookups find something
        strategies += [
            operation.as_strategy(mode, headers=headers, path_parameters=ids)
            for mode in GenerationMode
        ]
    return st.one_of(strategies)


@pytest_asyncio.fixture
async def operator(harness: Harness) -> tuple[Harness, dict[str, str], dict[str, str]]:
    """The harness, an operator's Authorization header, and its own ids (one operator for
    all of a test's examples: the fixture is made once per test)."""
    account, issued = await Accounts(harness.store).create_account(Role.OPERATOR, "fuzz")
    return harness, {"Authorization": f"Bearer {issued.text}"}, {"account_id": str(account.id)}


@pytest.mark.parametrize(("path", "method"), ADMIN_OPERATIONS)
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
@given(data=st.data())
async def test_admin_routes_with_a_key(
    operator: tuple[Harness, dict[str, str], dict[str, str]],
    path: str,
    method: str,
    data: st.DataObject,
) -> None:
    h, headers, own = operator
    case = data.draw(_strategy(path, method, headers, own), label="case")
    response = await send(h.http, case)
    assert_contract(response, f"{method.upper()} {path}")
    case.validate_response(response, checks=DOCUMENT_CHECKS)
    # The operator's own key survives whatever was sent.
    assert (await h.http.get("/v1/me", headers=headers)).status_code == 200
