"""One poll cycle: fetch → detect → route → deliver → save.

`Notifier` only orchestrates: what to list is decided in `detect.feed`, what is news in
`detect.runs`, how it reads in `detect.notices`, who gets it in `route.admission` and
`route.outbox`; `fetch.monitors` talks to the run source and `deliver.worker` to the
destinations. It depends only on small protocols (a run source, a state store, sinks), so a cycle
runs the same against Datafold or the simulator, a file or a test double.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import structlog

from notifier.deliver.sink import Sink
from notifier.deliver.worker import DeliveryWorkers
from notifier.detect import feed
from notifier.detect.feed import poll_offset, watched_monitors
from notifier.detect.notices import (
    LinkTemplate,
    build_notification,
    due_reminders,
    told,
    wants_error_message,
)
from notifier.detect.runs import Notice, detect, new_monitor_state
from notifier.domain.models import MonitorInfo, Notification, NotifierState
from notifier.domain.report import CycleReport
from notifier.fetch.datafold import URGENT, urgent
from notifier.fetch.monitors import ListingReach, Monitors, Poll, fan_out
from notifier.fetch.source import ApiKeyRefused, RunSource
from notifier.route import admission, outbox
from notifier.route.admission import Router
from notifier.route.rules import RouteDecision
from notifier.run.expedite import Expedite
from notifier.run.housekeeping import give_up, housekeeping
from notifier.run.outbox_requests import apply_outbox_requests, settle_outbox_requests
from notifier.run.service_config import ServiceConfig
from notifier.store.store import CycleStore

log = structlog.get_logger(__name__)


class Notifier:
    """Owns the in-memory state between cycles and runs them one at a time."""

    def __init__(
        self,
        source: RunSource,
        store: CycleStore,
        sinks: Mapping[str, Sink],
        config: ServiceConfig,
        *,
        clock: Callable[[], datetime] | None = None,
        route: Router | None = None,
        hold_without_details: bool = False,
        may_deliver: Callable[[], bool] | None = None,
        source_offset: Callable[[], float] | None = None,
    ) -> None:
        #: Seconds the run source's clock (Datafold's) is ahead of ours, as far as it is trusted:
        #: listings reach back further when it is behind, and a first listing's history cutoff
        #: is read on its clock. Everything else runs on our clock.
        self._source_offset = source_offset or (lambda: 0.0)
        self._store = store
        self._sinks = dict(sinks)
        #: Which destinations a notification goes to (routing rules); default: every sink.
        self._route: Router = route or (
            lambda n, now: RouteDecision(to=list(self._sinks), quiet=[])
        )
        #: Do not queue a notification whose monitor details (tags, type, owner, name) are unknown.
        self._hold_without_details = hold_without_details
        self._config = config
        self._clock = clock or (lambda: datetime.now(UTC))
        self._links = LinkTemplate(config.host, config.monitor_url_template)
        reach = ListingReach(
            config.lookback, config.catchup_limit, config.policy.first_start_lookback
        )
        self._monitors = Monitors(
            source, reach=reach, cache=config.monitor_cache, source_offset=self._source_offset
        )
        self._deliveries = DeliveryWorkers(
            self._sinks,
            clock=self._clock,
            may_deliver=may_deliver or (lambda: True),
            retry_after_cap=config.retry_after_cap,
        )
        #: Read from the store by `load`, at the latest before the first cycle.
        self.state = NotifierState()
        self._loaded = False
        self._lane = Expedite()

    async def run_cycle(self) -> CycleReport:
        """Poll every monitor and deliver what it finds as soon as it is found; save once.

        Each monitor's new state is adopted together with its notifications, after their details
        were fetched, so a stop before that leaves its runs to be detected again. Deliveries run
        alongside the polls, one worker per destination, oldest notification first. A cancelled
        cycle (shutdown) still saves what was decided and delivered.
        """
        await self.load()
        now = self._clock()
        report = CycleReport(started_at=now)
        await self._refresh_mutes()
        requests = await apply_outbox_requests(
            self._store, self.state, self._deliveries, list(self._sinks)
        )
        monitor_ids = await self.monitor_set(now, report)
        report.monitors = len(monitor_ids)
        discovered = not self._config.monitor_tags or self._monitors.discovery.monitors is not None
        housekeeping(self.state, now, report, monitor_ids, self._config, self._sinks, discovered)
        spread = self._config.spread.total_seconds()

        async def poll_all() -> None:
            to_poll, keys = await self._changed(monitor_ids, now, report)
            lane = self._lane
            async with lane.window(lambda m: self._process_urgently(m, report)):
                await fan_out(
                    to_poll,
                    lambda m: lane.exclusive(m, lambda: self._process(m, now, report, keys.get(m))),
                    offset=lambda m: poll_offset(m, spread),
                    width=self._config.polls_at_once,
                )
            await self._remind(now, report)

        await self._deliver_while(poll_all, report)
        await settle_outbox_requests(self._store, requests)
        log.info("cycle_finished", **report.summary())
        return report

    async def run_partial_cycle(self, monitor_ids: Collection[int]) -> CycleReport:
        """Poll just `monitor_ids` (those watched; in feed mode too, bypassing the feed), deliver
        what they turn up through the outbox as a cycle does, save (a push trigger's hint).

        Nothing that assumes every monitor was seen: no discovery, no dropping of unwatched
        monitors' state, no reminders, no outbox expiry, no outbox commands; those wait for the
        next full cycle. Logs `triggered_cycle_finished`.
        """
        await self.load()
        now = self._clock()
        report = CycleReport(started_at=now)
        await self._refresh_mutes()
        watched = set(self.watched_monitors())
        chosen = [m for m in monitor_ids if m in watched]
        report.monitors = len(chosen)

        async def poll_chosen() -> None:
            await fan_out(
                chosen,
                lambda m: self._process(m, now, report, None),
                width=self._config.polls_at_once,
            )

        await self._deliver_while(poll_chosen, report, keep_firing=False)
        sent = dict(report.sent_by_destination)
        log.info("triggered_cycle_finished", monitors=chosen, sent=sent, **report.summary())
        return report

    async def _deliver_while(
        self, polls: Callable[[], Awaitable[None]], report: CycleReport, *, keep_firing: bool = True
    ) -> None:
        """Run `polls` beside the delivery workers, let them finish, and save in any case."""
        deliveries = self._deliveries
        deliveries.start(self.state, report, keep_firing=keep_firing)
        try:
            await polls()
            await deliveries.finish()
        except BaseException:
            await deliveries.abort()
            raise
        finally:
            self.state.outbox = outbox.settle(self.state.outbox)
            outbox.prune_anchors(self.state)
            report.outbox_size = len(self.state.outbox)
            report.deferred = dict(deliveries.deferred)
            report.finished_at = self._clock()
            report.state_saved = await self.save()

    def expedite(self, monitor_ids: Collection[int]) -> bool:
        """Poll the watched `monitor_ids` now, inside the regular cycle that is polling (a
        trigger's fast lane, `run/expedite.py`); False when no cycle is polling."""
        watched = set(self.watched_monitors())
        return self._lane.offer([m for m in monitor_ids if m in watched])

    def watched_monitors(self) -> list[int]:
        """The monitors watched now: the configured IDs, then those found by tag so far."""
        return watched_monitors(self._config.monitor_ids, self._monitors.discovery.monitors)

    async def monitor_set(self, now: datetime, report: CycleReport | None = None) -> list[int]:
        """The configured IDs, then the monitors found by tag (refreshed every interval)."""
        tags = self._config.monitor_tags
        if tags and self._monitors.discovery.due(now, self._config.discovery_interval):
            error = await self._monitors.discover(tags, now)
            if error is not None and report is not None:
                report.discovery_failed = error.kind
                report.key_refused |= isinstance(error, ApiKeyRefused)
        return self.watched_monitors()

    async def _changed(
        self, monitor_ids: list[int], now: datetime, report: CycleReport
    ) -> tuple[list[int], dict[int, str]]:
        """The monitors whose runs to list, and the feed's key of each: in feed mode, those the
        feed shows unchanged are counted as polled instead (all are listed if the feed fails)."""
        if self._config.mode != "feed":
            return monitor_ids, {}
        keys = await self._monitors.feed(now)
        if keys is None:
            report.feed_failed = True
            return monitor_ids, {}
        states, sweep = self.state.monitors, self._config.sweep
        to_list, unchanged = feed.to_list(monitor_ids, keys, states, now, sweep=sweep)
        report.polled.extend(unchanged)
        report.unchanged += len(unchanged)
        return to_list, keys

    async def _process(
        self, monitor_id: int, now: datetime, report: CycleReport, key: str | None
    ) -> None:
        """One monitor; a bug in its handling fails that monitor, not the whole cycle."""
        try:
            state = self.state.monitors.get(monitor_id)
            await self._adopt(await self._monitors.poll(monitor_id, state, now), now, report, key)
        except Exception as exc:
            log.exception(
                "poll_failed", monitor_id=monitor_id, kind="internal", error=type(exc).__name__
            )
            report.fail(monitor_id, "internal")

    async def _process_urgently(self, monitor_id: int, report: CycleReport) -> None:
        """A triggered poll inside a regular cycle: now, ahead of the cycle's listings."""
        with urgent():
            await self._process(monitor_id, self._clock(), report, None)

    async def _adopt(
        self, poll: Poll, now: datetime, report: CycleReport, feed_key: str | None
    ) -> None:
        """Detect, fetch the notifications' details, then adopt the state and queue in one step."""
        monitor_id, monitors, policy = poll.monitor_id, self.state.monitors, self._config.policy
        if poll.runs is None:
            report.failed[monitor_id] = poll.error.kind if poll.error else "unknown"
            if isinstance(poll.error, ApiKeyRefused):
                report.key_refused = True
            if monitor_id not in monitors:
                monitors[monitor_id] = new_monitor_state(now, policy)
            return
        report.polled.append(monitor_id)
        report.runs_seen += len(poll.runs)
        previous = monitors.get(monitor_id)
        offset = timedelta(seconds=self._source_offset())
        detection = detect(previous, poll.runs, now, policy, gone=poll.gone, source_offset=offset)
        if (baseline := detection.baseline) is not None:
            log.info("monitor_baselined", monitor_id=monitor_id, **baseline.log_fields())
            if baseline.catchup_since is not None:
                since, runs = baseline.catchup_since.isoformat(), baseline.notified
                log.warning(
                    "catchup_after_failed_polls", monitor_id=monitor_id, runs=runs, since=since
                )
        for run_id in detection.abandoned:
            log.warning("run_abandoned", monitor_id=monitor_id, run_id=run_id)
        notifications = await asyncio.gather(*(self._notify(n, now) for n in detection.notices))
        if self._hold_without_details and self._lacks_details(n.monitor.id for n in notifications):
            # Routing rules may depend on the monitor's tags, type, owner or name: rather than
            # route by guesswork, leave the runs undecided and try again next cycle.
            log.warning(
                "notifications_held",
                monitor_id=monitor_id,
                reason="the monitor's details could not be fetched; routing needs them",
                runs=[n.event.run_id for n in notifications],
            )
            report.fail(monitor_id, "details_unavailable")
            return
        # From here to the end: no await, so the state and the outbox change together.
        monitors[monitor_id] = detection.state
        if feed_key is not None:
            detection.state.feed_key = feed_key
        self._enqueue(notifications, now, report)

    async def _remind(self, now: datetime, report: CycleReport) -> None:
        """Re-notify incidents left open for the reminder interval, on monitors this cycle polled
        (so the incident is known to be still open, not just unseen)."""
        monitors = self.state.monitors
        due = due_reminders(monitors, report.polled, now, self._config.reminder_interval)
        if not due:
            return
        notifications = await asyncio.gather(*(self._notify(n, now) for n in due))
        reminders = []
        for notice, notification in zip(due, notifications, strict=True):
            monitor_id = notice.event.monitor_id
            if self._hold_without_details and self._lacks_details([monitor_id]):
                continue  # routing needs the details; try again next cycle
            state = monitors.get(monitor_id)
            if state is None or state.incident is None or state.incident.id != notice.incident.id:
                continue
            state.incident = notice.incident
            said, fields = told(notice, notification.monitor)
            log.info(said, **fields)
            reminders.append(notification)
        self._enqueue(reminders, now, report)

    def _lacks_details(self, monitor_ids: Iterable[int]) -> bool:
        """Whether some monitor's details (which routing may need) were never read."""
        return any(not self._monitors.has_details(m) for m in monitor_ids)

    async def _notify(self, notice: Notice, now: datetime) -> Notification:
        """The notice's notification, with its monitor's details and error message fetched."""
        event = notice.event
        monitor = await self._monitors.info(event.monitor_id, now)
        wanted = wants_error_message(notice)
        error_message = await self._monitors.error_message(event) if wanted else None
        notification = build_notification(
            notice, monitor=monitor, error_message=error_message, now=now, links=self._links
        )
        if notice.kind != "reminder":
            said, fields = told(notice, monitor)
            log.info(said, **fields)
        return notification

    def _enqueue(
        self, notifications: Sequence[Notification], now: datetime, report: CycleReport
    ) -> None:
        """Queue each notification for its routes' destinations, unless a mute covers it or
        every route it matched is in quiet hours (logged and counted, never sent)."""
        if not notifications:
            return
        for notification in outbox.unqueued(self.state.outbox, notifications):
            report.events += 1
            report.events_by_state[notification.event_kind] += 1
            verdict = admission.admit(
                notification,
                mutes=self.state.mutes,
                route=self._route,
                destinations=self._sinks,
                now=now,
            )
            if (said := verdict.told()) is not None:
                event = notification.event
                kind = notification.event_kind
                bound = log.bind(monitor_id=event.monitor_id, run_id=event.run_id, kind=kind)
                tell = bound.warning if verdict.outcome == "unrouted" else bound.info
                tell(said[0], **said[1])
            if verdict.outcome == "queued":
                outbox.admit(self.state.outbox, notification, verdict.pending)
                if URGENT.get():  # a push trigger's poll: no destination waits for a digest
                    self._deliveries.hurry(notification.id)
            elif verdict.outcome == "muted":
                report.muted += 1
            elif verdict.outcome == "quiet":
                report.quieted += 1
        give_up(outbox.trim(self.state.outbox, self._config.outbox_max), report)
        self._deliveries.wake()

    async def _refresh_mutes(self) -> None:
        """Adopt mutes set or lifted (by `mute`/`unmute`) since the state was last read."""
        try:
            mutes = await self._store.fresh_mutes()
        except Exception as exc:
            log.warning("mutes_unreadable", error=str(exc), keeping=len(self.state.mutes))
            return
        if mutes is not None and mutes != self.state.mutes:
            log.info("mutes_changed", mutes=[m.target for m in mutes])
            self.state.mutes = mutes

    def reconfigure(
        self, sinks: Mapping[str, Sink], config: ServiceConfig, route: Router, *, hold: bool
    ) -> None:
        """Adopt a reloaded configuration (`hold`: `hold_without_details`), between cycles only;
        what waits for a destination not in `sinks` is dropped by the next cycle's housekeeping."""
        for name in set(self._sinks) - set(sinks):
            self._deliveries.deferred.pop(name, None)
        self._sinks.clear()
        self._sinks.update(sinks)  # in place: the delivery workers hold this very dict
        self._config, self._route, self._hold_without_details = config, route, hold
        self._links = LinkTemplate(config.host, config.monitor_url_template)

    def monitor_details(self) -> dict[int, MonitorInfo]:
        """The last details read from Datafold of each monitor (names for the status page)."""
        return self._monitors.known()

    async def save(self) -> bool:
        """Write the state if it changed since the last save."""
        await self.load()
        return await self._store.save(self.state)

    async def load(self) -> None:
        """Read the saved state, once: the command calls it at start, so that a state it cannot
        use stops it there; otherwise the first cycle (or save) does."""
        if not self._loaded:
            self.state = await self._store.load()
            self._loaded = True
