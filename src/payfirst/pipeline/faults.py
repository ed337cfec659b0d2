"""Crash points for the crash-safety tests.

`PAYFIRST_CRASH_AT=<point>` makes the worker SIGKILL itself the first time it reaches that
point, exactly as a power cut would. Unset (always, in production) it does nothing."""

from __future__ import annotations

import os
import signal

AFTER_PERSIST = "after_persist"  # signed txs are in the database, nothing broadcast
AFTER_BROADCAST = "after_broadcast"  # txs broadcast, `sent` not written
IN_CALLBACK = "in_callback"  # mint items inserted, the completing transaction not committed

_armed = os.environ.get("PAYFIRST_CRASH_AT")


def crash_point(name: str) -> None:
    if _armed == name:
        os.kill(os.getpid(), signal.SIGKILL)
