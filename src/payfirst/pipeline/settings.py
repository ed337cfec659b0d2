"""Reading the runtime settings for the loops: the store's rows made into a validated
`RuntimeSettings`, every ignored row (unknown name, value out of bounds) reported in the
log once, not at every tick."""

from __future__ import annotations

import logging

from payfirst.domain.settings import RuntimeSettings
from payfirst.ports.store import Store

log = logging.getLogger("payfirst.settings")


class SettingsReader:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._reported: set[str] = set()

    async def read(self) -> RuntimeSettings:
        """The settings now in force (defaults for rows that are absent or refused)."""
        settings, problems = RuntimeSettings.from_rows(await self.store.get_settings())
        for problem in problems:
            if problem not in self._reported:
                log.warning("system_settings: %s", problem)
        # A problem fixed and later made again is reported again.
        self._reported = set(problems)
        return settings
