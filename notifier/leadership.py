"""High availability: of several replicas sharing a PostgreSQL state, the lease holder acts.

`LeasedNotifier` runs under the same `Daemon` as the single-machine notifier. While this replica
holds the lease it builds a `Notifier` over the state read at election and runs its cycles; a
standby's cycles do nothing and report "standby". Deliveries are fenced: none starts once the
lease may have lapsed, which is before the database lets another replica take it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from notifier.models import Mute, NotifierState
from notifier.pgstate import LeaseLost, PostgresStateError, PostgresStore
from notifier.service import CycleReport, Notifier, StateStore

log = structlog.get_logger(__name__)


class ElectedState:
    """The service's `StateStore` over PostgreSQL: `load` gives the state read at election;
    saves are fenced by the lease; mutes are re-read every cycle (`mute` writes the table)."""

    def __init__(self, store: PostgresStore, state: NotifierState) -> None:
        self._store = store
        self._state = state

    def load(self) -> NotifierState:
        return self._state

    async def save(self, state: NotifierState) -> bool:
        return await self._store.save(state)

    async def fresh_mutes(self) -> list[Mute]:
        return await self._store.mutes()


class LeasedNotifier:
    """Acts as the notifier only while this replica holds the lease.

    `keep_lease` runs beside the scheduler: it takes or renews the lease every third of its
    length and calls `elected` when this replica becomes the leader, so a cycle starts at once.
    """

    def __init__(
        self,
        store: PostgresStore,
        build: Callable[[StateStore], Notifier],
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._store = store
        self._build = build
        self._clock = clock or (lambda: datetime.now(UTC))
        self._notifier: Notifier | None = None
        #: The lease's fence when the state was loaded: a new one means someone led meanwhile.
        self._fence: int | None = None

    @property
    def leading(self) -> bool:
        """Whether this replica currently acts (holds the lease and has loaded the state)."""
        return self._notifier is not None and self._store.has_lease()

    async def keep_lease(self, elected: Callable[[], None]) -> None:
        """Take or renew the lease until cancelled; a database outage is logged, not fatal."""
        period = self._store.lease_ttl.total_seconds() / 3
        leading = False
        while True:
            try:
                await self._store.try_acquire()
            except PostgresStateError as exc:
                log.warning("lease_renewal_failed", error=str(exc), leading=leading)
            if self._store.has_lease() and not leading:
                leading = True
                log.info("leadership_acquired", replica=self._store.holder)
                elected()
            elif leading and not self._store.has_lease():
                leading = False
                log.warning("leadership_lost", replica=self._store.holder)
            await asyncio.sleep(period)

    async def run_cycle(self) -> CycleReport:
        """The leader's cycle, or a standby's empty one."""
        if not self._store.has_lease():
            return self._standby("no lease")
        if self._notifier is not None and self._fence != self._store.fence:
            self._standby("another replica may have led since this one loaded the state")
        if self._notifier is None:
            # Another replica may have written since we last led: start from the database.
            state = await self._store.load()
            self._notifier = self._build(ElectedState(self._store, state))
            self._fence = self._store.fence
            log.info(
                "leading",
                replica=self._store.holder,
                monitors=len(state.monitors),
                outbox=len(state.outbox),
            )
        try:
            return await self._notifier.run_cycle()
        except LeaseLost:
            return self._standby("the lease was lost before the state was saved")

    async def save(self) -> bool:
        """The leader's final save (shutdown); nothing for a standby."""
        if self._notifier is None or not self._store.has_lease():
            return False
        try:
            return await self._notifier.save()
        except LeaseLost:
            self._notifier = None
            return False

    async def release(self) -> None:
        """At shutdown, after the final save: let a standby take over at once."""
        self._notifier = None
        try:
            await self._store.release()
        except PostgresStateError as exc:
            log.warning("lease_release_failed", error=str(exc))

    def _standby(self, reason: str) -> CycleReport:
        if self._notifier is not None:
            log.warning("standing_by", replica=self._store.holder, reason=reason)
            self._notifier = None
        now = self._clock()
        return CycleReport(standby=True, started_at=now, finished_at=now)
