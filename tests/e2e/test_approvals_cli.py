"""`payfirst payers list` and `payfirst approvals list|approve|reject`, run as processes the
way an operator runs them, against the database of a running app."""

from __future__ import annotations

from uuid import UUID

from payfirst.domain.accounts import Role
from payfirst.domain.statuses import PaymentStatus
from tests.e2e.harness import Harness
from tests.e2e.test_accounts_cli import payfirst
from tests.e2e.test_admin_auth import caller
from tests.e2e.test_spending_policies_api import PAYER_INDEX, prove, put_policy
from tests.fixtures.store import stored_payment


async def test_held_payments_from_the_command_line(harness: Harness, pg_dsn: str) -> None:
    h = harness
    agent = await caller(h, Role.AGENT, "agent")
    payer = await prove(h, agent)
    await put_policy(h, agent, payer, approval_threshold="0")
    code, out, _ = await payfirst(h, pg_dsn, "payers", "list")
    assert code == 0 and payer in out and str(agent.account.id) in out

    first = (await h.buy(h.payer(PAYER_INDEX))).json()["paymentQueueId"]
    second = (await h.buy(h.payer(PAYER_INDEX))).json()["paymentQueueId"]
    code, out, _ = await payfirst(h, pg_dsn, "approvals", "list")
    assert code == 0 and first in out and second in out

    code, out, _ = await payfirst(h, pg_dsn, "approvals", "reject", first)
    assert code == 0 and "failed" in out
    code, out, _ = await payfirst(h, pg_dsn, "approvals", "approve", second)
    assert code == 0 and "pending" in out
    # Decided once: a second decision is refused, nothing written.
    code, _, err = await payfirst(h, pg_dsn, "approvals", "approve", first)
    assert code == 2 and "unknown_payment" in err
    code, _, err = await payfirst(h, pg_dsn, "approvals", "approve", "not-an-id")
    assert code == 2 and "invalid_request" in err

    await h.settled()
    rejected = await stored_payment(h.store, UUID(first))
    assert rejected.status is PaymentStatus.FAILED
    approved = await stored_payment(h.store, UUID(second))
    assert approved.status is PaymentStatus.COMPLETED
