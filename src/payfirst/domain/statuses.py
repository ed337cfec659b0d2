"""Status names of payments and mint items. They are part of the interface: operators
query them in SQL, so never rename one."""

from enum import StrEnum


class PaymentStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    SENT = "sent"
    COMPLETED = "completed"
    FAILED = "failed"
    CONFIRMATION_FAILED = "confirmation_failed"
    # Held by its payer's spending policy (above its approval threshold) until the payer's
    # owner approves it (-> pending) or rejects it (-> failed); the sender never claims it.
    AWAITING_APPROVAL = "awaiting_approval"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_PAYMENT_STATUSES


TERMINAL_PAYMENT_STATUSES = frozenset(
    {PaymentStatus.COMPLETED, PaymentStatus.FAILED, PaymentStatus.CONFIRMATION_FAILED}
)


class MintStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    SENT = "sent"
    COMPLETED = "completed"
    FAILED = "failed"


class PaymentType(StrEnum):
    MINT = "mint"  # delivers mint items once confirmed; reserves supply when queued
    SETTLE = "settle"  # a facilitator /settle: the payment itself is what was asked for
