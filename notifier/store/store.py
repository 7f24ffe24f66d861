"""The state store port: where the notifier's state lives between cycles and restarts.

Both stores implement all of it, the state file (`store/file.py`) and PostgreSQL
(`store/postgres/`), and `tests/test_store_conformance.py` runs the same assertions against
each. Only the wiring (`run/wiring.py`) knows which one it opened; PostgreSQL's leadership
(`run/leadership.py`) is chosen there too.
"""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from notifier.domain.models import Mute, NotifierState
from notifier.domain.mutes import MuteSelector
from notifier.domain.outbox_requests import OutboxRequest


class StateError(Exception):
    """The state cannot be used (unreadable, newer, locked, unwritable); the message is one line
    that names the file or the database, never a password."""


class StoreBusy(Exception):
    """Exclusive use of the store was refused: another process has it (a replica holds the
    PostgreSQL lease). A state file held by another daemon is a `StateError` instead."""


class CycleStore(Protocol):
    """What a cycle needs of the state: read it once, learn of mutes changed and outbox requests
    made beside it, save it. The leader's per-lease view (`run/leadership.py` `ElectedState`) is
    only this."""

    async def load(self) -> NotifierState:
        """The saved state, or an empty one when none was saved yet."""
        ...

    async def save(self, state: NotifierState) -> bool:
        """Write `state` when it changed since the last load or save; True if written."""
        ...

    async def fresh_mutes(self) -> list[Mute] | None:
        """The mutes, if someone else (`mute`, `unmute`) may have changed them since this store
        last read or wrote them; else None."""
        ...

    async def outbox_requests(self) -> list[OutboxRequest]:
        """The requests `outbox retry` and `outbox drop` left for the next cycle, oldest first."""
        ...

    async def settle_outbox_requests(self, ids: Collection[str]) -> None:
        """Forget the requests with these IDs: applied, and the state they changed saved."""
        ...


class StateStore(CycleStore, Protocol):
    """The state between cycles: read once at start, saved after each cycle, its mutes changed
    by `mute` and `unmute` and its outbox requests left by `outbox retry/drop` beside a running
    daemon, and moved whole by `state export/import` (the requests stay behind).

    Setting or lifting a mute follows `notifier.domain.mutes` in every store: mutes that have
    run out are dropped, and `remove_mutes` lifts the active mutes its selector matches.
    """

    @property
    def where(self) -> str:
        """How messages name the store: the file's path, or "PostgreSQL host:port/db"."""
        ...

    async def mutes(self) -> list[Mute]:
        """Every mute kept, oldest first (some may have run out)."""
        ...

    async def add_mute(self, mute: Mute, now: datetime) -> None:
        """Set `mute` (replacing one with its ID), dropping mutes run out by `now`."""
        ...

    async def remove_mutes(self, selector: MuteSelector, now: datetime) -> list[Mute]:
        """Lift the mutes active at `now` that `selector` matches, dropping those run out;
        returns the lifted ones."""
        ...

    async def request_outbox(self, request: OutboxRequest) -> None:
        """Leave `request` for the next cycle (beside a running daemon, like the mutes); a
        `StateError` when `REQUESTS_MAX` already wait."""
        ...

    async def export_state(self) -> NotifierState | None:
        """A consistent copy of the whole state, mutes included, changing nothing; None when
        there is none yet (a state file not written yet; an opened database always has one)."""
        ...

    async def import_state(self, state: NotifierState, *, force: bool = False) -> str | None:
        """Replace the whole state, mutes included. Refused while a daemon uses the store (the
        file's lock; a live lease, unless `force`, which fences that leader out); returns the
        name of the leader fenced out, if any."""
        ...

    def exclusive(self) -> AbstractAsyncContextManager[None]:
        """Exclusive use while the block runs (`once`, a daemon on a file): the file's lock, or
        the PostgreSQL lease taken and kept. `StoreBusy` or `StateError` when refused."""
        ...

    async def close(self) -> None:
        """Let go of what the store holds open (a connection); the state stays."""
        ...
