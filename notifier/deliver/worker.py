"""Delivery workers: one per destination, draining the outbox while the cycle polls.

Each worker sends what waits for its destination, oldest first, as soon as it is queued; a storm
above a destination's digest threshold goes out as one digest once polling is done. Every send
first passes the fencing check (high availability). A destination that asks to wait (Retry-After)
is waited for inline when the wait is short, else left alone until a later cycle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping
from datetime import datetime, timedelta

import structlog

from notifier.deliver.sink import DeliveryError, DigestSink, HoldingSink, Sink
from notifier.domain.models import NotifierState, OutboxEntry
from notifier.domain.report import CycleReport, Deferral
from notifier.route.outbox import anchor, record_held, record_sent, refuse, still_held

log = structlog.get_logger(__name__)

#: A wait this short is taken inside the destination's own worker and the send tried again;
#: a longer one defers the destination to a later cycle.
INLINE_WAIT_MAX = timedelta(seconds=2)
#: At most this many such short waits per destination per cycle.
INLINE_WAITS_MAX = 3


class DeliveryWorkers:
    """The destinations' workers, and the deferrals that outlive a cycle.

    `start` launches one worker per destination over the cycle's state; `wake` tells them the
    outbox may hold something new; `finish` waits for them once every monitor was polled;
    `abort` cancels them (shutdown).
    """

    def __init__(
        self,
        sinks: Mapping[str, Sink],
        *,
        clock: Callable[[], datetime],
        may_deliver: Callable[[], bool],
        retry_after_cap: timedelta,
    ) -> None:
        self._sinks = sinks
        self._clock = clock
        #: Fencing (high availability): checked before every delivery; False stops them.
        self._may_deliver = may_deliver
        self._retry_after_cap = retry_after_cap
        #: Destinations deferred by their own Retry-After, until when.
        self.deferred: dict[str, Deferral] = {}
        self._state = NotifierState()
        self._report = CycleReport()
        self._wakeups: dict[str, asyncio.Event] = {}
        self._polling_done = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._keep_firing_now = True
        #: Notifications to send at once (`hurry`), this cycle.
        self._hurried: set[str] = set()

    def start(self, state: NotifierState, report: CycleReport, *, keep_firing: bool = True) -> None:
        """Launch the workers of one cycle over `state`'s outbox, counting into `report`; with
        `keep_firing` (not for a triggered partial cycle), tell Alertmanager-like destinations
        again what still fires once their outbox is drained."""
        self._state, self._report = state, report
        self._keep_firing_now = keep_firing
        self._hurried = set()
        self._polling_done = asyncio.Event()
        self._wakeups = {name: asyncio.Event() for name in self._sinks}
        self._tasks = [
            asyncio.create_task(self._work(name, sink, self._wakeups[name]))
            for name, sink in self._sinks.items()
        ]

    def resume(self, names: Collection[str]) -> list[str]:
        """Forget the Retry-After deferrals of `names` (`outbox retry`), so this cycle tries
        them; the names that were deferred."""
        return [name for name in sorted(names) if self.deferred.pop(name, None) is not None]

    def wake(self) -> None:
        """Tell every destination's worker that the outbox may have something for it."""
        for wakeup in self._wakeups.values():
            wakeup.set()

    async def finish(self) -> None:
        """Polling is done: let each worker send what is left (or its digest) and end."""
        self._polling_done.set()
        self.wake()
        await asyncio.gather(*self._tasks)

    async def abort(self) -> None:
        """Cancel the workers; a send in flight is abandoned and stays in the outbox."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _work(self, name: str, sink: Sink, wakeup: asyncio.Event) -> None:
        """Drain the destination's outbox; then, for a destination that forgets firing alerts
        unless told again, tell it what still fires (unless it failed or is on hold)."""
        failures = self._report.failed_by_destination[name]
        await self._drain(name, sink, wakeup)
        if not self._keep_firing_now or not isinstance(sink, HoldingSink) or name in self.deferred:
            return
        if self._report.failed_by_destination[name] == failures:
            await self._keep_firing(name, sink)

    async def _keep_firing(self, name: str, sink: HoldingSink) -> None:
        """Post again the latest firing alert of every incident still open at `name`."""
        held = still_held(self._state, name)
        if not held or not self._fenced_ok(name):
            return
        try:
            await sink.hold(held)
        except DeliveryError as exc:
            self._defer(name, exc)
            self._failed(name, None, exc.reason)
            log.warning(
                "keep_firing_failed", destination=name, incidents=len(held), reason=exc.reason
            )
        except Exception:
            self._failed(name, None, "internal error")
            log.exception("keep_firing_failed", destination=name, reason="internal error")
        else:
            self._report.kept_firing[name] += len(held)
            log.debug("kept_firing", destination=name, incidents=len(held))

    async def _drain(self, name: str, sink: Sink, wakeup: asyncio.Event) -> None:
        """Send what waits for `name`, oldest first, until the polls are done and nothing is left.

        Entries are only appended during a cycle, so a position in the outbox stays valid. A
        failure of the whole destination ends its turn until the next cycle.
        """
        if self._still_deferred(name):
            return
        if isinstance(sink, DigestSink) and sink.digest_threshold is not None:
            # Whether a storm needs a digest is known only once every monitor was polled; what
            # a push trigger's poll found goes out meanwhile.
            await self._send_hurried(name, sink, wakeup)
            if self._still_deferred(name):
                return
            waiting = [entry for entry in self._state.outbox if name in entry.pending]
            if len(waiting) > sink.digest_threshold:
                await self._send_digest(name, sink, waiting)
                return
        position = 0
        inline_waits = 0
        while True:
            outbox = self._state.outbox
            while position < len(outbox):
                entry = outbox[position]
                if name not in entry.pending:
                    position += 1
                    continue
                if await self._send(name, sink, entry):
                    position += 1
                    continue
                # The destination failed as a whole: try again soon if it asked for a short
                # wait, else leave it until a later cycle.
                wait = self._short_wait(name)
                if wait is None or inline_waits >= INLINE_WAITS_MAX:
                    return
                inline_waits += 1
                await asyncio.sleep(wait)
                self.deferred.pop(name, None)
            if self._polling_done.is_set():
                return
            wakeup.clear()
            if position >= len(self._state.outbox):
                await wakeup.wait()

    def hurry(self, notification_id: str) -> None:
        """Send this notification as soon as it is queued, even to a destination that waits
        for the end of the polls to decide on a digest (a push trigger's find)."""
        self._hurried.add(notification_id)
        self.wake()

    async def _send_hurried(self, name: str, sink: Sink, wakeup: asyncio.Event) -> None:
        """Until the polls are done, send `name` what was hurried, one by one as it comes."""
        while not self._polling_done.is_set():
            wakeup.clear()
            for entry in list(self._state.outbox):
                if entry.notification.id in self._hurried and name in entry.pending:
                    if not await self._send(name, sink, entry):
                        await self._polling_done.wait()  # it failed as a whole: no more now
                        return
            if not self._polling_done.is_set():
                await wakeup.wait()

    def _still_deferred(self, name: str) -> bool:
        """Whether `name` asked to be left alone until later than now (its Retry-After)."""
        deferral = self.deferred.get(name)
        if deferral is None:
            return False
        if deferral.holds(self._clock()):
            log.debug("destination_still_deferred", destination=name, until=deferral.until)
            return True
        del self.deferred[name]
        return False

    def _defer(self, name: str, error: DeliveryError) -> None:
        """Honour a destination's Retry-After, capped: it is left alone until then."""
        if error.retry_after is None or not error.whole_destination:
            return  # a refusal of one message does not put the destination on hold
        now = self._clock()
        deferral = Deferral.asked(error.retry_after, error.reason, now, self._retry_after_cap)
        self.deferred[name] = deferral
        if deferral.until - now > INLINE_WAIT_MAX:
            log.warning(
                "destination_deferred",
                destination=name,
                reason=error.reason,
                asked_seconds=round(error.retry_after, 3),
                until=deferral.until.isoformat(),
                capped=error.retry_after > self._retry_after_cap.total_seconds(),
                notifications_kept="in the outbox",
            )

    def _short_wait(self, name: str) -> float | None:
        """Seconds to wait before trying `name` again within this cycle, if it asked for a
        wait that short; None when it did not ask, or asked for longer."""
        deferral = self.deferred.get(name)
        return None if deferral is None else deferral.short_wait(self._clock(), INLINE_WAIT_MAX)

    def _fenced_ok(self, name: str) -> bool:
        """Whether deliveries may go on; once the lease may have lapsed, none starts."""
        if self._may_deliver():
            return True
        log.warning("delivery_fenced", destination=name, reason="this replica's lease may lapse")
        return False

    def _failed(self, name: str, entry: OutboxEntry | None, error: str) -> None:
        """Count a failed attempt at `name` (on `entry`, unless a digest counts its own)."""
        if entry is not None:
            entry.attempts += 1
            entry.last_error = f"{name}: {error}"
        self._report.delivery_failures += 1
        self._report.failed_by_destination[name] += 1

    async def _send_digest(self, name: str, sink: DigestSink, entries: list[OutboxEntry]) -> None:
        """Everything waiting for `name` as one digest; what went out before a failure is done."""
        notifications = [entry.notification for entry in entries]
        bound = log.bind(destination=name, notifications=len(notifications))
        if not self._fenced_ok(name):
            return
        delivered: frozenset[str]
        try:
            await sink.send_digest(notifications)
        except DeliveryError as exc:
            delivered = exc.delivered
            self._defer(name, exc)
            self._failed(name, None, exc.reason)
            bound.warning(
                "delivery_failed",
                digest=True,
                reason=exc.reason,
                delivered=len(delivered),
                will_retry="next cycle",
            )
            for entry in entries:
                if entry.notification.id not in delivered:
                    entry.attempts += 1
                    entry.last_error = f"{name}: {exc.reason}"
        except Exception:
            delivered = frozenset()
            self._failed(name, None, "internal error")
            bound.exception("delivery_failed", digest=True, reason="internal error")
        else:
            delivered = frozenset(n.id for n in notifications)
            bound.info("digest_sent")
        report = self._report
        for entry in entries:
            if entry.notification.id in delivered and name in entry.pending:
                record_sent(self._state, entry, name, None)
                report.delivered += 1
                report.digested += 1
                report.sent_by_destination[name] += 1

    async def _send(self, name: str, sink: Sink, entry: OutboxEntry) -> bool:
        """One delivery attempt; False when the destination should not be tried again now."""
        notification = entry.notification
        bound = log.bind(
            monitor_id=notification.event.monitor_id,
            run_id=notification.event.run_id,
            destination=name,
        )
        if not self._fenced_ok(name):
            return False
        bound.debug("delivery_started")  # past the fence: a pause from here may still send it
        try:
            posted = await sink.send(notification, anchor(self._state, name, notification))
        except DeliveryError as exc:
            self._failed(name, entry, exc.reason)
            if exc.permanent:
                refuse(entry, name)
                self._report.refused += 1
                bound.error("notification_dropped", reason="refused", detail=exc.reason)
                return True
            self._defer(name, exc)
            bound.warning(
                "delivery_failed",
                reason=exc.reason,
                attempts=entry.attempts,
                will_retry="next cycle",
                refused="destination" if exc.whole_destination else "this notification",
            )
            return not exc.whole_destination
        except Exception as exc:
            self._failed(name, entry, f"internal error {type(exc).__name__}")
            bound.exception("delivery_failed", reason="internal error")
            return False
        record_sent(self._state, entry, name, posted)
        if isinstance(sink, HoldingSink):
            record_held(self._state, name, notification)
        self._report.delivered += 1
        self._report.sent_by_destination[name] += 1
        bound.info("notification_sent", kind=notification.event_kind)
        return True
