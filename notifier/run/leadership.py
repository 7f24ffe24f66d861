"""High availability: of several replicas sharing a PostgreSQL state, the lease holder acts.

`LeasedNotifier` runs under the same `Daemon` as the single-machine notifier. While this replica
holds the lease it builds a `Notifier` over the state read at election and runs its cycles; a
standby's cycles do nothing and report "standby". The state travels with the fence it was loaded
under (`ElectedState`): its deliveries stop, and its save is refused, as soon as the lease may
have lapsed or a new lease began (taken by another replica, or lost and retaken by this one);
the next cycle then starts afresh from the database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime

import structlog

from notifier.deliver.sink import Sink
from notifier.domain.models import MonitorInfo, Mute, NotifierState
from notifier.domain.outbox_requests import OutboxRequest
from notifier.domain.report import CycleReport
from notifier.route.admission import Router
from notifier.run.cycle import Notifier
from notifier.run.service_config import ServiceConfig
from notifier.store.postgres import LeaseLost, PostgresStateError, PostgresStore, StaleFence

log = structlog.get_logger(__name__)


class ElectedState:
    """The leader's `CycleStore` for one lease: `load` gives the state read at election, `save`
    writes only under the fence it was read under, and `may_deliver` is the fence check every
    delivery must pass. Mutes are re-read every cycle (`mute` writes them). Nothing else of the
    store goes through it: exports, imports and mutes are the CLI's, on the store itself."""

    def __init__(self, store: PostgresStore, state: NotifierState, fence: int) -> None:
        self._store = store
        self._state = state
        self.fence = fence

    async def load(self) -> NotifierState:
        return self._state

    async def save(self, state: NotifierState) -> bool:
        return await self._store.save(state, fence=self.fence)

    async def fresh_mutes(self) -> list[Mute]:
        return await self._store.mutes()

    async def outbox_requests(self) -> list[OutboxRequest]:
        return await self._store.outbox_requests()

    async def settle_outbox_requests(self, ids: Collection[str]) -> None:
        await self._store.settle_outbox_requests(ids)

    def may_deliver(self) -> bool:
        """Whether a delivery may start now: the lease is held, under the fence of this state."""
        return self._store.holds(self.fence)


class LeasedNotifier:
    """Acts as the notifier only while this replica holds the lease.

    `keep_lease` runs beside the scheduler: it takes or renews the lease every third of its
    length and calls `elected` whenever this replica begins a lease (elected, or its lease lost
    and retaken), so a cycle starts at once on freshly loaded state. `build` makes the cycle's
    `Notifier` over an `ElectedState`; it must pass `elected.may_deliver` as the notifier's
    delivery check.
    """

    def __init__(
        self,
        store: PostgresStore,
        build: Callable[[ElectedState], Notifier],
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._store = store
        self._build = build
        self._clock = clock or (lambda: datetime.now(UTC))
        self._notifier: Notifier | None = None
        self._elected: ElectedState | None = None

    @property
    def state(self) -> NotifierState | None:
        """The leader's state as of its last cycle (the status page); None on a standby."""
        return self._notifier.state if self._notifier is not None and self.leading else None

    def monitor_details(self) -> dict[int, MonitorInfo]:
        """The leader's last details read of each monitor; none on a standby."""
        return self._notifier.monitor_details() if self._notifier is not None else {}

    @property
    def leading(self) -> bool:
        """Whether this replica currently acts (holds the lease and has loaded the state)."""
        return self._elected is not None and self._elected.may_deliver()

    def may_deliver(self) -> bool:
        """Whether the current cycle's deliveries may go on: False once its state is stale."""
        return self._elected is not None and self._elected.may_deliver()

    async def keep_lease(self, elected: Callable[[], None]) -> None:
        """Take or renew the lease until cancelled; a database outage is logged, not fatal."""
        period = self._store.lease_ttl.total_seconds() / 3
        led: int | None = None  # the fence of the lease this loop last saw us holding
        while True:
            try:
                await self._store.try_acquire()
            except PostgresStateError as exc:
                log.warning("lease_renewal_failed", error=str(exc), leading=led is not None)
            fence = self._store.fence if self._store.has_lease() else None
            if fence is not None and fence != led:
                if led is None:
                    log.info("leadership_acquired", replica=self._store.holder, fence=fence)
                else:
                    log.warning(
                        "leadership_retaken",
                        replica=self._store.holder,
                        fence=fence,
                        previous_fence=led,
                        consequence="state read afresh before anything more is delivered",
                    )
                led = fence
                elected()
            elif led is not None and fence is None:
                led = None
                log.warning("leadership_lost", replica=self._store.holder)
            await asyncio.sleep(period)

    async def run_cycle(self) -> CycleReport:
        """The leader's cycle, or a standby's empty one.

        State loaded under an older fence than the lease's is discarded, and read afresh, before
        the cycle begins; a cycle whose lease changed under it ends with its save refused.
        """
        if not self._store.has_lease():
            return self._standby("no lease")
        if self._elected is not None and self._elected.fence != self._store.fence:
            self._standby("a new lease began since this replica loaded the state")
        if self._notifier is None or self._elected is None:
            # Another replica may have written since we last led: start from the database.
            state, fence = await self._store.load_leased()
            self._elected = ElectedState(self._store, state, fence)
            self._notifier = self._build(self._elected)
            log.info(
                "leading",
                replica=self._store.holder,
                fence=fence,
                monitors=len(state.monitors),
                outbox=len(state.outbox),
            )
        elected = self._elected
        try:
            report = await self._notifier.run_cycle()
        except StaleFence:
            return self._standby("a new lease began during the cycle; its results are discarded")
        except LeaseLost:
            return self._standby("the lease was lost before the state was saved")
        if report.polled:
            # Only a cycle that polled something counts: with Datafold unreachable, every
            # replica's /healthz should say that nobody is polling.
            try:
                await self._store.record_cycle(fence=elected.fence)
            except PostgresStateError as exc:
                log.warning("cycle_record_failed", error=str(exc))
        return report

    async def run_partial_cycle(self, monitor_ids: Collection[int]) -> CycleReport | None:
        """The leader's triggered poll of `monitor_ids`; None on a standby (nothing polled: the
        next leader's cycles find the runs within the poll interval)."""
        if self._notifier is None or not self.leading:
            return None
        try:
            return await self._notifier.run_partial_cycle(monitor_ids)
        except StaleFence:
            return self._standby("a new lease began during the cycle; its results are discarded")
        except LeaseLost:
            return self._standby("the lease was lost before the state was saved")

    def expedite(self, monitor_ids: Collection[int]) -> bool:
        """The leader's fast lane: poll `monitor_ids` inside its polling cycle (False if none)."""
        return self._notifier is not None and self.leading and self._notifier.expedite(monitor_ids)

    def watched_monitors(self) -> list[int] | None:
        """The leader's watched monitors; None before it has built its notifier."""
        return self._notifier.watched_monitors() if self._notifier is not None else None

    async def save(self) -> bool:
        """The leader's final save (shutdown); nothing for a standby."""
        if self._notifier is None or not self._store.has_lease():
            return False
        try:
            return await self._notifier.save()
        except LeaseLost:
            self._notifier = self._elected = None
            return False

    def reconfigure(
        self, sinks: Mapping[str, Sink], config: ServiceConfig, route: Router, *, hold: bool
    ) -> None:
        """A reloaded configuration: the current term's notifier adopts it (between cycles);
        the next term's is built from the reloaded runtime anyway."""
        if self._notifier is not None:
            self._notifier.reconfigure(sinks, config, route, hold=hold)

    def forget(self) -> None:
        """Drop the loaded state and its notifier: the next cycle, if any, starts elected anew."""
        self._notifier = self._elected = None

    async def release(self) -> None:
        """At shutdown, after the final save: let a standby take over at once."""
        self.forget()
        try:
            await self._store.release()
        except PostgresStateError as exc:
            log.warning("lease_release_failed", error=str(exc))

    def _standby(self, reason: str) -> CycleReport:
        if self._notifier is not None:
            log.warning("standing_by", replica=self._store.holder, reason=reason)
        self._notifier = self._elected = None
        now = self._clock()
        return CycleReport(standby=True, started_at=now, finished_at=now)
