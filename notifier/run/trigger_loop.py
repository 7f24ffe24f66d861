"""The push trigger's one task: it polls the monitors triggers named, a few at a time, as the
trigger's bucket (NOTIFIER_TRIGGER_MAX_POLLS_PER_MINUTE) allows, under the daemon's cycle lock.

Triggers coalesce into one pending set: a monitor triggered a hundred times while it waits is
polled once; one triggered during any cycle is polled right after it, and one waiting when a
regular cycle begins is polled by that cycle (in poll mode). The most recently triggered go
first, and a monitor is polled by triggers at most once per `monitor_gap` (`TriggerQueue`), so
that a flood, of one monitor or of many, leaves room for the next real alert. Nothing is
dropped and nothing exceeds the bucket: past it, monitors wait for its refill (or the next
regular cycle). The listings also pass the Datafold client's own limiter
(NOTIFIER_MAX_REQUESTS_PER_SECOND). A trigger naming no monitor asks the daemon for its regular
cycle now (`full_cycle`), which spaces them (`FULL_CYCLE_GAP`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

import structlog
from aiolimiter import AsyncLimiter

from notifier.domain.report import CycleReport
from notifier.run.trigger import Outcome, TriggerConfig, TriggerQueue, triggered

log = structlog.get_logger(__name__)

#: How often a trigger waiting for the cycle lock checks whether the regular cycle holding it
#: polls (then its monitors join that cycle's fast lane at once).
LANE_RETRY_SECONDS = 0.05


@runtime_checkable
class PartialCycles(Protocol):
    """A cycle runner that can poll some monitors only (`Notifier`, `LeasedNotifier`)."""

    async def run_partial_cycle(self, monitor_ids: Collection[int]) -> CycleReport | None: ...

    def watched_monitors(self) -> Collection[int] | None: ...


class TriggerLoop:
    """Takes triggers (`offer`) and runs their partial cycles (`run`, the daemon's task).

    `lock` is the daemon's cycle lock; `record` folds a partial cycle's report into the metrics;
    `full_cycle` asks the daemon for its regular cycle as soon as it may run.
    """

    def __init__(
        self,
        runner: PartialCycles,
        config: TriggerConfig,
        *,
        lock: asyncio.Lock,
        record: Callable[[CycleReport], None],
        full_cycle: Callable[[], None],
        clock: Callable[[], datetime] | None = None,
        count_polls: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.config = config
        self.queue = TriggerQueue(gap=config.monitor_gap)
        self._runner = runner
        self._lock = lock
        self._record = record
        self._full_cycle = full_cycle
        self._count_polls = count_polls
        self._clock = clock or (lambda: datetime.now(UTC))
        # A bucket of the cap, refilled at the cap per minute: a burst of that many listings,
        # then one every 60/cap seconds (aiolimiter, as the Datafold client's own limiter).
        self._bucket = AsyncLimiter(config.max_polls_per_minute, 60)
        self._wake = asyncio.Event()
        #: Set while no partial cycle runs (what a graceful stop waits for).
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False

    def offer(self, monitor_id: int | None) -> Outcome:
        """Take a trigger for `monitor_id` (None: every monitor); "ignored" for one not watched.
        Never waits: the poll happens in `run`."""
        outcome = triggered(monitor_id, self._runner.watched_monitors())
        if outcome == "accepted" and not self._closed:
            self.queue.add(monitor_id, self._clock())
            self._wake.set()
        return outcome

    async def run(self) -> None:
        """Until cancelled: wait for triggers, then poll what waits, as the bucket allows."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.queue.take_everything():
                self._full_cycle()
            while self.queue.pending:
                if wait := self.queue.due_in(self._clock()):  # each waits out its gap
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), wait)
                    if self._wake.is_set():
                        break  # new triggers: from the top (a full cycle may be asked for)
                    continue
                await self._bucket.acquire()  # at least one listing's worth, outside the lock
                if not await self._lock_or_lane():
                    continue  # a polling regular cycle took them into its fast lane
                self._idle.clear()
                try:
                    await self._poll_pending()
                finally:
                    self._idle.set()
                    self._lock.release()

    async def _lock_or_lane(self) -> bool:
        """Take the cycle lock (True), or, while a regular cycle holds it and polls, hand the
        monitors waiting to its fast lane instead of waiting for its end (False)."""
        while self._lock.locked():
            if await self._to_lane():
                return False
            await asyncio.sleep(LANE_RETRY_SECONDS)
        await self._lock.acquire()
        return True

    async def _to_lane(self) -> bool:
        """Hand as many waiting monitors as the bucket holds (one already taken from it) to the
        runner's fast lane (`Notifier.expedite`), if a regular cycle is polling."""
        expedite = getattr(self._runner, "expedite", None)
        if expedite is None or not expedite(()):  # nothing polling: no lane to join
            return False
        monitors = await self._take_granted()
        if not monitors:  # a regular cycle polled them meanwhile
            return True
        if not expedite(monitors):  # not reached: nothing awaited since the lane was open
            self.queue.give_back(monitors, self._clock())
            return False
        self._count_polls(len(monitors))
        log.debug("trigger_expedited", monitors=monitors)
        return True

    async def _take_granted(self) -> list[int]:
        """The monitors ready to poll, as many as the bucket holds (one already taken from it),
        newest first."""
        granted, ready = 1, self.queue.ready(self._clock())
        while granted < ready and self._bucket.has_capacity():
            await self._bucket.acquire()  # immediate: there is capacity
            granted += 1
        return self.queue.take(granted, self._clock())

    def cycle_finished(self, report: CycleReport) -> None:
        """A regular cycle polled `report.polled`: monitors triggered before it began are done
        (a backlog never outlives a poll interval); those triggered since still get a poll.
        Not in feed mode, whose cycles may take a monitor for unchanged without listing it."""
        if report.started_at is not None and self.config.cycles_list_every_monitor:
            self.queue.polled(report.polled, report.started_at)

    async def _poll_pending(self) -> None:
        """One partial cycle over the newest monitors ready, as many as the bucket holds (one
        of them already taken from it); those triggered meanwhile wait for the next."""
        monitors = await self._take_granted()
        if not monitors:  # a regular cycle polled them meanwhile
            return
        try:
            report = await self._runner.run_partial_cycle(monitors)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("triggered_cycle_failed", monitors=monitors)
            return
        if report is not None:
            self._record(report)

    async def stop(self, task: asyncio.Task[None], grace: float) -> None:
        """Take no more triggers; let a partial cycle under way finish within `grace` seconds,
        then end `task` (this loop's `run`)."""
        self._closed = True
        self.queue = TriggerQueue(gap=self.config.monitor_gap)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout=grace)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
