"""Who is calling an admin route: `Authorization: Bearer <API key>`, and its role.

No valid key (none, malformed, unknown, revoked, expired, or its account revoked) is 401
with `WWW-Authenticate: Bearer` and one message for all, so the answer never tells what
exists; a valid key whose role may not use the route is 403. The operator may use every
route. A key is looked up at every request (no cache), so a revocation applies at once."""

from __future__ import annotations

from typing import Final

from starlette.requests import Request
from starlette.responses import JSONResponse

from payfirst.api.responses import rejection
from payfirst.api.services import services
from payfirst.domain.accounts import Credential, Role
from payfirst.domain.errors import PaymentRejected
from payfirst.domain.reasons import Reason
from payfirst.usecases.accounts import Accounts
from payfirst.usecases.api_keys import MAX_KEY_CHARS

SCHEME: Final = "bearer"
#: `Bearer <key>` with room for stray spaces; a longer header is refused unparsed.
MAX_HEADER_CHARS: Final = len(SCHEME) + MAX_KEY_CHARS + 16
CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="payfirst"'}


def unauthorized() -> PaymentRejected:
    return PaymentRejected(
        Reason.UNAUTHORIZED, "a valid API key is required: Authorization: Bearer <key>"
    )


def accounts(request: Request) -> Accounts:
    return Accounts(services(request).store)


async def require(request: Request, *roles: Role) -> Credential:
    """The request's key and its account, if the account's role is one of `roles` (none
    given: any role; the operator always). Raises PaymentRejected(UNAUTHORIZED or
    FORBIDDEN)."""
    header = request.headers.get("authorization")
    if header is None or len(header) > MAX_HEADER_CHARS:
        raise unauthorized()
    scheme, _, key = header.strip().partition(" ")
    if scheme.lower() != SCHEME:
        raise unauthorized()
    caller = await accounts(request).authenticate(key.strip())
    if caller is None:
        raise unauthorized()
    role = caller.account.role
    if roles and role is not Role.OPERATOR and role not in roles:
        raise PaymentRejected(Reason.FORBIDDEN, "this API key's role may not use this route")
    return caller


def refusal(exc: PaymentRejected) -> JSONResponse:
    """The JSON answer of a refused admin request (401 carries the Bearer challenge)."""
    answer = rejection(exc)
    if exc.reason is Reason.UNAUTHORIZED:
        answer.headers.update(CHALLENGE)
    return answer
