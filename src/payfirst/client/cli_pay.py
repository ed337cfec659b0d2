"""`payfirst pay URL`: pay one x402 resource from the shell, what `curl` is for HTTP.

The request is sent; a `402` is paid once with `PayingClient`, never above `max_amount`
(atomic units of the asset asked for): a dearer payment is refused before anything is
signed. The payer's key comes from `PAYFIRST_PAYER_KEY` or from a key file only its owner
can read, never from a command-line argument (shell history and `ps` would show it).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from payfirst.client.paying import PayingClient
from payfirst.client.policy import SpendingPolicy
from payfirst.x402 import chain_id_of

__all__ = [
    "KEY_ENV",
    "Paid",
    "PayOutcome",
    "PayerKeyError",
    "Settlement",
    "outcome_lines",
    "pay",
    "payer_key",
]

#: The environment variable holding the payer's private key.
KEY_ENV = "PAYFIRST_PAYER_KEY"

_KEY = re.compile(r"(0x)?[0-9a-fA-F]{64}")


class PayerKeyError(Exception):
    """No usable payer key: none given, unreadable, malformed, or a key file others can
    read. The message never holds the key."""


@dataclass(frozen=True, slots=True)
class Paid:
    """What was signed and sent for the answer."""

    amount: int  # atomic units of `asset`
    asset: str
    network: str
    pay_to: str
    payer: str
    x402_version: int


@dataclass(frozen=True, slots=True)
class Settlement:
    """The server's PAYMENT-RESPONSE (X-PAYMENT-RESPONSE in v1): settled on chain in
    `transaction`, or not (`error_reason`)."""

    success: bool
    transaction: str
    network: str
    error_reason: str | None = None


@dataclass(frozen=True, slots=True)
class PayOutcome:
    """The final answer: its status, content type and body, what was paid for it (None:
    the server asked for nothing), and the settlement when the server sent one (a
    payfirst mint answers 202 and settles later: none)."""

    status: int
    content_type: str
    body: str
    paid: Paid | None
    settlement: Settlement | None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def payer_key(*, key_file: str | Path | None = None, env: Mapping[str, str] | None = None) -> str:
    """The payer's private key (0x-hex): from `key_file` when given, which must be a file
    only its owner can read or write (mode 0600 or 0400), else from PAYFIRST_PAYER_KEY.
    Raises PayerKeyError."""
    if key_file is not None:
        return _key_from_file(Path(key_file))
    value = (os.environ if env is None else env).get(KEY_ENV, "").strip()
    if not value:
        raise PayerKeyError(
            f"no payer key: set {KEY_ENV}, or pass --key-file with a file only you can read "
            "(a key is never taken from the command line: shell history and ps would show it)"
        )
    return _checked(value, KEY_ENV)


def _key_from_file(path: Path) -> str:
    try:
        info = path.stat()
    except OSError as exc:
        raise PayerKeyError(f"key file {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise PayerKeyError(f"key file {path} is not a regular file")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise PayerKeyError(
            f"key file {path} can be read or written by others (mode {mode:04o}): run "
            f"`chmod 600 {path}` first"
        )
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise PayerKeyError(f"key file {path} cannot be read: {exc}") from None
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    keys = [line for line in lines if line]
    if len(keys) != 1:
        raise PayerKeyError(f"key file {path} must hold one key, it holds {len(keys)}")
    return _checked(keys[0], f"key file {path}")


def _checked(value: str, source: str) -> str:
    if not _KEY.fullmatch(value):
        # Never echo the value: it may be a real key with a typo.
        raise PayerKeyError(f"{source} must hold a 32-byte hex private key (64 hex digits)")
    return value if value.startswith("0x") else "0x" + value


async def pay(
    url: str,
    *,
    method: str = "GET",
    json_body: Any = None,
    max_amount: int,
    key: str,
    network: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 60.0,
    client: httpx.AsyncClient | None = None,
) -> PayOutcome:
    """Sends `method url` (with `json_body` as JSON when not None) and pays a 402 once,
    at most `max_amount` atomic units and, with `network` (a CAIP-2 id or x402 v1 name),
    only on that network. `client`: an httpx client to send through (tests); by default
    one of its own with `timeout_s`.

    Raises PaymentRefused (payfirst.client) when every payment asked for is above
    `max_amount` or on another network: nothing is signed then; PaymentError when the
    402 asks for nothing this client can sign; ValueError for a bad `max_amount` or
    `network`; httpx.HTTPError when the server cannot be reached."""
    if network is not None:
        chain_id_of(network)  # ValueError: unknown network
    policy = SpendingPolicy(
        max_per_payment=max_amount,
        allowed_networks=None if network is None else [network],
    )
    kwargs: dict[str, Any] = {}
    if json_body is not None:
        kwargs["json"] = json_body
    if headers:
        kwargs["headers"] = dict(headers)
    if client is not None:
        paying = PayingClient(key, policy, client=client)
    else:
        paying = PayingClient(key, policy, timeout=timeout_s)
    async with paying:
        answer = await paying.request(method.upper(), url, **kwargs)
    made = answer.payment
    settled = answer.settlement
    return PayOutcome(
        status=answer.status_code,
        content_type=answer.headers.get("content-type", ""),
        body=answer.text,
        paid=None
        if made is None
        else Paid(
            amount=made.amount,
            asset=made.asset,
            network=made.network,
            pay_to=made.pay_to,
            payer=made.payer,
            x402_version=made.x402_version,
        ),
        settlement=None
        if settled is None
        else Settlement(
            success=settled.success,
            transaction=settled.transaction,
            network=settled.network,
            error_reason=settled.error_reason,
        ),
    )


def outcome_lines(outcome: PayOutcome) -> list[str]:
    """What `payfirst pay` prints on stderr; the body goes to stdout, as curl's does."""
    lines = [f"HTTP {outcome.status}"]
    paid = outcome.paid
    if paid is None:
        lines.append("nothing paid: the server asked for no payment")
        return lines
    lines.append(
        f"paid {paid.amount} atomic units of {paid.asset} to {paid.pay_to} on {paid.network} "
        f"from {paid.payer} (x402 v{paid.x402_version})"
    )
    if not outcome.ok:
        lines.append("the server did not accept the payment (see the body)")
    settlement = outcome.settlement
    if settlement is None:
        if outcome.ok:
            lines.append("settlement: not in the answer (the server settles later)")
    elif settlement.success:
        lines.append(f"settled: tx {settlement.transaction} on {settlement.network}")
    else:
        lines.append(
            f"settlement failed: {settlement.error_reason or 'no reason given'}"
            + (f" (tx {settlement.transaction})" if settlement.transaction else "")
        )
    return lines
