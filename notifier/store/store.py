"""The state store port: where the notifier's state lives between cycles and restarts.

Both stores implement it in full, the state file (`store/file.py`) and PostgreSQL
(`store/postgres.py`); only the wiring (`run/wiring.py`) knows which one it opened.
"""

from __future__ import annotations

from typing import Protocol

from notifier.domain.models import Mute, NotifierState


class StateStore(Protocol):
    """The state between cycles: read once at start, saved after each cycle.

    `save` writes only when the state changed (True if written); `fresh_mutes` gives the mutes
    when someone else (`mute`, `unmute`) changed them since this store last read or wrote them,
    else None.
    """

    async def load(self) -> NotifierState: ...

    async def save(self, state: NotifierState) -> bool: ...

    async def fresh_mutes(self) -> list[Mute] | None: ...
