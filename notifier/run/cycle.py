"""One poll cycle: fetch → detect → queue → deliver → save.

`Notifier` depends only on small protocols (a run source, a state store, sinks), so a cycle runs
the same against Datafold or the simulator, a file or a test double.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import structlog

from notifier.deliver.sink import DeliveryError, DigestSink, Sink
from notifier.detect.links import build_links
from notifier.detect.runs import (
    DetectionPolicy,
    Notice,
    detect,
    due_reminder,
    listing_window,
    new_monitor_state,
    stale_in_progress,
)
from notifier.domain.models import (
    Incident,
    MessageRef,
    MonitorInfo,
    MonitorRun,
    Notification,
    NotifierState,
    OutboxEntry,
    RunDetail,
    RunEvent,
    is_in_progress,
)
from notifier.domain.report import CycleReport, Deferral
from notifier.fetch.source import ApiKeyRefused, DatafoldError, NotFound, RunSource
from notifier.route.rules import RouteDecision
from notifier.store.store import StateStore

log = structlog.get_logger(__name__)

#: In-progress runs that left the listing window are fetched one by one, at most this many per
#: monitor per cycle.
MAX_DIRECT_FETCHES = 20


#: A routing decision for one notification at one time (rules, quiet hours).
Router = Callable[[Notification, datetime], RouteDecision]


@dataclass(frozen=True)
class ServiceConfig:
    """What a cycle needs to know, taken from the settings once."""

    monitor_ids: Sequence[int]
    policy: DetectionPolicy
    lookback: timedelta
    outbox_expiry: timedelta
    #: After downtime, listings reach back to the last successful poll, but no further than this.
    catchup_limit: timedelta
    host: str
    monitor_url_template: str
    monitor_cache: timedelta = timedelta(hours=1)
    #: Polls start at a stable per-monitor offset within this window, not all at once.
    spread: timedelta = timedelta(0)
    #: "poll": list every monitor's runs each cycle. "feed": read the monitors listing first and
    #: list runs only where (last_run, state) changed, runs are in progress, or a sweep is due.
    mode: Literal["poll", "feed"] = "poll"
    #: In feed mode, every monitor's runs are still listed at least this often.
    sweep: timedelta = timedelta(hours=1)
    #: Monitors carrying any of these tags are watched too, found by listing monitors per tag.
    monitor_tags: tuple[str, ...] = ()
    discovery_interval: timedelta = timedelta(minutes=5)
    #: An incident with nothing queued about it for this long is re-notified; None: never.
    reminder_interval: timedelta | None = None
    #: The longest a destination's Retry-After defers it (NOTIFIER_MAX_RETRY_AFTER_SECONDS).
    retry_after_cap: timedelta = timedelta(seconds=60)
    #: Notifications waiting at most; past it the oldest are dropped (NOTIFIER_OUTBOX_MAX_ENTRIES).
    outbox_max: int = 5000


#: A wait this short is taken inside the destination's own worker and the send tried again;
#: a longer one defers the destination to a later cycle.
INLINE_WAIT_MAX = timedelta(seconds=2)
#: At most this many such short waits per destination per cycle.
INLINE_WAITS_MAX = 3


@dataclass
class _Poll:
    monitor_id: int
    runs: list[MonitorRun] | None = None
    gone: list[int] = field(default_factory=list)
    error: DatafoldError | None = None


class Notifier:
    """Owns the in-memory state between cycles and runs them one at a time."""

    def __init__(
        self,
        source: RunSource,
        store: StateStore,
        sinks: Mapping[str, Sink],
        config: ServiceConfig,
        *,
        clock: Callable[[], datetime] | None = None,
        route: Router | None = None,
        hold_without_details: bool = False,
        may_deliver: Callable[[], bool] | None = None,
        source_offset: Callable[[], float] | None = None,
    ) -> None:
        self._source = source
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
        #: Fencing (high availability): checked before every delivery; False stops them.
        self._may_deliver = may_deliver or (lambda: True)
        self._config = config
        self._clock = clock or (lambda: datetime.now(UTC))
        self._monitor_cache: dict[int, tuple[MonitorInfo, datetime]] = {}
        #: Monitors found by tag, and when; None until a discovery succeeds.
        self._discovered: set[int] | None = None
        self._discovered_at: datetime | None = None
        self._missing: dict[int, int] = {}
        #: Destinations deferred by their own Retry-After, until when.
        self._deferred: dict[str, Deferral] = {}
        #: Read from the store by `load`, at the latest before the first cycle.
        self.state = NotifierState()
        self._loaded = False

    @property
    def sinks(self) -> Mapping[str, Sink]:
        return self._sinks

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
        monitor_ids = await self.monitor_set(now, report)
        report.monitors = len(monitor_ids)
        self._housekeeping(now, report, monitor_ids)
        polling_done = asyncio.Event()
        wakeups = {name: asyncio.Event() for name in self._sinks}
        drains = [
            asyncio.create_task(self._drain(name, sink, report, wakeups[name], polling_done))
            for name, sink in self._sinks.items()
        ]
        spread = self._config.spread.total_seconds()
        try:
            keys = await self._feed(now, report) if self._config.mode == "feed" else {}
            to_poll = []
            for monitor_id in monitor_ids:
                if (
                    keys is not None
                    and monitor_id in keys
                    and not self._needs_poll(monitor_id, keys[monitor_id], now)
                ):
                    report.polled.append(monitor_id)
                    report.unchanged += 1
                else:
                    to_poll.append(monitor_id)
            feed_keys = keys or {}
            await asyncio.gather(
                *(
                    self._process(m, now, poll_offset(m, spread), report, wakeups, feed_keys.get(m))
                    for m in to_poll
                )
            )
            await self._remind(now, report, wakeups)
            polling_done.set()
            _wake(wakeups)
            await asyncio.gather(*drains)
        except BaseException:
            for drain in drains:
                drain.cancel()
            await asyncio.gather(*drains, return_exceptions=True)
            raise
        finally:
            self.state.outbox = [entry for entry in self.state.outbox if entry.pending]
            self._prune_messages()
            report.outbox_size = len(self.state.outbox)
            report.deferred = dict(self._deferred)
            report.finished_at = self._clock()
            report.state_saved = await self.save()
        log.info(
            "cycle_finished",
            monitors_polled=len(report.polled),
            monitors_failed=len(report.failed),
            events=report.events,
            muted=report.muted + report.quieted,
            delivered=report.delivered,
            delivery_failures=report.delivery_failures,
            outbox=report.outbox_size,
            duration_seconds=round((report.finished_at - now).total_seconds(), 3),
        )
        return report

    async def _process(
        self,
        monitor_id: int,
        now: datetime,
        delay: float,
        report: CycleReport,
        wakeups: Mapping[str, asyncio.Event],
        feed_key: str | None = None,
    ) -> None:
        """One monitor; a bug in its handling fails that monitor, not the whole cycle."""
        try:
            await self._process_one(monitor_id, now, delay, report, wakeups, feed_key)
        except Exception as exc:
            log.exception(
                "poll_failed", monitor_id=monitor_id, kind="internal", error=type(exc).__name__
            )
            if monitor_id in report.polled:
                report.polled.remove(monitor_id)
            report.failed[monitor_id] = "internal"

    async def _process_one(
        self,
        monitor_id: int,
        now: datetime,
        delay: float,
        report: CycleReport,
        wakeups: Mapping[str, asyncio.Event],
        feed_key: str | None,
    ) -> None:
        """Poll, detect, fetch details, then adopt and queue in one step."""
        poll = await self._poll(monitor_id, now, delay)
        monitors = self.state.monitors
        if poll.runs is None:
            report.failed[monitor_id] = poll.error.kind if poll.error else "unknown"
            if isinstance(poll.error, ApiKeyRefused):
                report.key_refused = True
            if monitor_id not in monitors:
                monitors[monitor_id] = new_monitor_state(now, self._config.policy)
            return
        report.polled.append(monitor_id)
        report.runs_seen += len(poll.runs)
        previous = monitors.get(monitor_id)
        offset = timedelta(seconds=self._source_offset())
        detection = detect(
            previous, poll.runs, now, self._config.policy, gone=poll.gone, source_offset=offset
        )
        if previous is None or not previous.baselined:
            log.info(
                "monitor_baselined",
                monitor_id=monitor_id,
                runs_listed=len(poll.runs),
                notified=len(detection.events),
            )
        for run_id in detection.abandoned:
            log.warning("run_abandoned", monitor_id=monitor_id, run_id=run_id)
        notifications = await asyncio.gather(
            *(self._notification(notice, now) for notice in detection.notices)
        )
        if self._hold_without_details and any(
            n.monitor.id not in self._monitor_cache for n in notifications
        ):
            # Routing rules may depend on the monitor's tags, type, owner or name: rather than
            # route by guesswork, leave the runs undecided and try again next cycle.
            log.warning(
                "notifications_held",
                monitor_id=monitor_id,
                reason="the monitor's details could not be fetched; routing needs them",
                runs=[n.event.run_id for n in notifications],
            )
            report.polled.remove(monitor_id)
            report.failed[monitor_id] = "details_unavailable"
            return
        # From here to the end: no await, so the state and the outbox change together.
        monitors[monitor_id] = detection.state
        if feed_key is not None:
            detection.state.feed_key = feed_key
        if notifications:
            self._enqueue(notifications, now, report)
            _wake(wakeups)

    async def _remind(
        self, now: datetime, report: CycleReport, wakeups: Mapping[str, asyncio.Event]
    ) -> None:
        """Re-notify incidents left open for the reminder interval, on monitors this cycle polled
        (so the incident is known to be still open, not just unseen)."""
        due: list[tuple[int, Incident]] = []
        for monitor_id in report.polled:
            incident = due_reminder(
                self.state.monitors.get(monitor_id), now, self._config.reminder_interval
            )
            if incident is not None:
                due.append((monitor_id, incident))
        if not due:
            return
        infos = await asyncio.gather(*(self._monitor_info(m, now) for m, _ in due))
        errors = await asyncio.gather(*(self._error_message(i.last) for _, i in due))
        notifications = []
        for (monitor_id, incident), info, error in zip(due, infos, errors, strict=True):
            if self._hold_without_details and monitor_id not in self._monitor_cache:
                continue  # routing needs the details; try again next cycle
            state = self.state.monitors.get(monitor_id)
            if state is None or state.incident is None or state.incident.id != incident.id:
                continue
            state.incident = incident
            notifications.append(self._reminder(incident, info, error, now))
        if notifications:
            self._enqueue(notifications, now, report)
            _wake(wakeups)

    def _reminder(
        self, incident: Incident, monitor: MonitorInfo, error: str | None, now: datetime
    ) -> Notification:
        event = incident.last
        links = build_links(
            event, host=self._config.host, monitor_url_template=self._config.monitor_url_template
        )
        log.info(
            "reminder_due",
            monitor_id=event.monitor_id,
            incident=incident.id,
            open_since=incident.opened_at.isoformat(),
            reminder=incident.reminders,
        )
        return Notification(
            id=f"{incident.id}-reminder-{incident.reminders}",
            kind="reminder",
            event=event,
            monitor=monitor,
            error_message=error,
            links=links,
            detected_at=now,
            incident=incident,
        )

    async def _feed(self, now: datetime, report: CycleReport) -> dict[int, str] | None:
        """The change feed: each monitor's (last_run, state), or None to poll everything."""
        try:
            summaries = await self._source.list_monitors()
        except DatafoldError as exc:
            log.warning(
                "feed_failed", kind=exc.kind, error=str(exc), fallback="polling every monitor"
            )
            report.feed_failed = True
            return None
        keys: dict[int, str] = {}
        for summary in summaries:
            keys[summary.id] = summary.feed_key
            # The listing carries what a notification shows of a monitor: no extra request.
            self._monitor_cache[summary.id] = (
                MonitorInfo.model_validate(summary.model_dump()),
                now,
            )
        return keys

    def _needs_poll(self, monitor_id: int, feed_key: str, now: datetime) -> bool:
        """Whether a monitor's runs must be listed although the feed may say nothing changed."""
        state = self.state.monitors.get(monitor_id)
        if state is None or not state.baselined or state.last_polled_at is None:
            return True
        if state.feed_key != feed_key:
            return True
        if any(is_in_progress(run.state) for run in state.runs.values()):
            return True
        # Sweeps are spread: each monitor's falls due between half and all of the sweep interval.
        sweep = self._config.sweep * (0.5 + poll_offset(monitor_id, 0.5))
        return now - state.last_polled_at >= sweep

    async def monitor_set(self, now: datetime, report: CycleReport | None = None) -> list[int]:
        """The configured IDs, then the monitors found by tag (refreshed every interval)."""
        ids = list(self._config.monitor_ids)
        if not self._config.monitor_tags:
            return ids
        due = self._discovered_at is None or (
            now - self._discovered_at >= self._config.discovery_interval
        )
        if due:
            await self._discover(now, report)
        known = set(ids)
        return ids + sorted(m for m in (self._discovered or ()) if m not in known)

    async def _discover(self, now: datetime, report: CycleReport | None) -> None:
        """List the monitors of each tag (any tag counts); on failure keep what was found before.

        A monitor missing from one listing is kept; it is dropped when two in a row miss it.
        """
        found: set[int] = set()
        try:
            for tag in self._config.monitor_tags:
                for summary in await self._source.list_monitors([tag]):
                    found.add(summary.id)
                    info = MonitorInfo.model_validate(summary.model_dump())
                    self._monitor_cache[summary.id] = (info, now)
        except DatafoldError as exc:
            log.warning(
                "discovery_failed",
                kind=exc.kind,
                error=str(exc),
                keeping=len(self._discovered or ()),
            )
            self._discovered_at = now
            if report is not None:
                report.discovery_failed = exc.kind
                report.key_refused |= isinstance(exc, ApiKeyRefused)
            return
        previous = self._discovered or set()
        missing = previous - found
        for monitor_id in list(self._missing):
            if monitor_id not in missing:
                del self._missing[monitor_id]
        for monitor_id in missing:
            self._missing[monitor_id] = self._missing.get(monitor_id, 0) + 1
            if self._missing[monitor_id] < 2:
                found.add(monitor_id)  # missed once: keep it until the next listing
        log.info(
            "monitors_discovered",
            tags=list(self._config.monitor_tags),
            monitors=len(found),
            added=sorted(found - previous),
            removed=sorted(previous - found),
        )
        self._discovered, self._discovered_at = found, now

    def _housekeeping(self, now: datetime, report: CycleReport, monitor_ids: list[int]) -> None:
        """Drop monitors no longer watched, expired notifications, removed destinations.

        Monitors found by tag are only dropped once a discovery has succeeded, so an API outage
        at start-up does not make the notifier forget (and later re-baseline) them.
        """
        watched = set(monitor_ids)
        can_drop = not self._config.monitor_tags or self._discovered is not None
        for monitor_id in [m for m in self.state.monitors if m not in watched and can_drop]:
            log.info("monitor_dropped", monitor_id=monitor_id, reason="no longer watched")
            del self.state.monitors[monitor_id]
        kept: list[OutboxEntry] = []
        for entry in self.state.outbox:
            notification = entry.notification
            if now - notification.detected_at > self._config.outbox_expiry:
                log.error(
                    "notification_expired",
                    notification_id=notification.id,
                    monitor_id=notification.event.monitor_id,
                    run_id=notification.event.run_id,
                    undelivered_to=entry.pending,
                    attempts=entry.attempts,
                    last_error=entry.last_error,
                )
                report.expired += 1
                continue
            for name in [p for p in entry.pending if p not in self._sinks]:
                log.error(
                    "notification_dropped",
                    reason="its destination is no longer configured",
                    notification_id=notification.id,
                    monitor_id=notification.event.monitor_id,
                    run_id=notification.event.run_id,
                    destination=name,
                )
                entry.pending.remove(name)
            if entry.pending:
                kept.append(entry)
        self.state.outbox = kept
        self._trim_outbox(report)

    def _trim_outbox(self, report: CycleReport) -> None:
        """Keep at most `outbox_max` notifications waiting: the oldest are dropped first, each
        logged and counted. Entries are emptied, not removed, so that the delivery workers'
        positions in the outbox stay valid; the cycle's end removes them."""
        waiting = [entry for entry in self.state.outbox if entry.pending]
        for entry in waiting[: max(0, len(waiting) - self._config.outbox_max)]:
            notification = entry.notification
            log.error(
                "notification_dropped",
                reason="outbox_full",
                limit=self._config.outbox_max,
                notification_id=notification.id,
                monitor_id=notification.event.monitor_id,
                run_id=notification.event.run_id,
                undelivered_to=list(entry.pending),
                attempts=entry.attempts,
            )
            entry.pending.clear()
            report.dropped += 1

    def _prune_messages(self) -> None:
        """Message anchors are kept while their incident is open or something about it waits."""
        live = {m.incident.id for m in self.state.monitors.values() if m.incident is not None}
        live.update(
            e.notification.incident.id for e in self.state.outbox if e.notification.incident
        )
        for incident_id in [i for i in self.state.messages if i not in live]:
            del self.state.messages[incident_id]

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

    async def _poll(self, monitor_id: int, now: datetime, delay: float = 0.0) -> _Poll:
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            window = listing_window(
                self.state.monitors.get(monitor_id),
                now,
                lookback=self._config.lookback,
                catchup_limit=self._config.catchup_limit,
                first_start_lookback=self._config.policy.first_start_lookback,
            )
            if window.limited:
                log.warning(
                    "catch_up_limited",
                    monitor_id=monitor_id,
                    since=window.since.isoformat(),
                    reason="the last successful poll is older than NOTIFIER_CATCHUP_LIMIT_SECONDS",
                )
            # Datafold's clock behind ours: its stamps are earlier than ours, so reach back as
            # far (an offset ahead only means listing a little more than needed).
            behind = timedelta(seconds=min(0.0, self._source_offset()))
            listed_runs = await self._source.list_runs(monitor_id, window.since + behind)
            runs = [run for run in listed_runs if run.monitor_id == monitor_id]
            if len(runs) != len(listed_runs):
                log.warning(
                    "foreign_runs_dropped",
                    monitor_id=monitor_id,
                    count=len(listed_runs) - len(runs),
                )
            listed = {run.run_id for run in runs}
            stale = stale_in_progress(self.state.monitors.get(monitor_id), listed)
            stale = stale[:MAX_DIRECT_FETCHES]
            found = await asyncio.gather(*(self._direct(monitor_id, run_id) for run_id in stale))
            gone = []
            for run_id, result in zip(stale, found, strict=True):
                if isinstance(result, _Gone):
                    gone.append(run_id)
                elif result is not None:
                    runs.append(result)
            return _Poll(monitor_id, runs=runs, gone=gone)
        except DatafoldError as exc:
            log.warning("poll_failed", monitor_id=monitor_id, kind=exc.kind, error=str(exc))
            return _Poll(monitor_id, error=exc)
        except Exception as exc:
            log.exception(
                "poll_failed", monitor_id=monitor_id, kind="internal", error=type(exc).__name__
            )
            return _Poll(monitor_id, error=DatafoldError(f"internal error: {type(exc).__name__}"))

    async def _direct(self, monitor_id: int, run_id: int) -> RunDetail | _Gone | None:
        """A run that left the window: its detail, `_GONE` if Datafold no longer has it, or None
        when it could not be fetched this time (it stays tracked)."""
        try:
            detail = await self._source.get_run(monitor_id, run_id)
        except NotFound:
            return _GONE
        except DatafoldError as exc:
            log.warning("run_fetch_failed", monitor_id=monitor_id, run_id=run_id, error=str(exc))
            return None
        if detail.run_id != run_id or detail.monitor_id != monitor_id:
            log.warning("run_fetch_mismatch", monitor_id=monitor_id, run_id=run_id)
            return None
        return detail

    async def _notification(self, notice: Notice, now: datetime) -> Notification:
        event = notice.event
        bound = log.bind(monitor_id=event.monitor_id, run_id=event.run_id)
        monitor = await self._monitor_info(event.monitor_id, now)
        error_message = await self._error_message(event) if notice.kind == "run" else None
        links = build_links(
            event, host=self._config.host, monitor_url_template=self._config.monitor_url_template
        )
        if notice.kind == "recovered":
            bound.info("monitor_recovered", monitor=monitor.title, incident=notice.incident.id)
        else:
            bound.info("run_detected", state=event.state, monitor=monitor.title)
        return Notification(
            id=event.key,
            kind=notice.kind,
            event=event,
            monitor=monitor,
            error_message=error_message,
            links=links,
            detected_at=now,
            incident=notice.incident,
        )

    async def _error_message(self, event: RunEvent) -> str | None:
        """An `error` run's message from its detail; None for other states or when unavailable."""
        if event.state != "error":
            return None
        try:
            detail = await self._source.get_run(event.monitor_id, event.run_id)
        except DatafoldError as exc:
            log.warning(
                "run_detail_failed",
                monitor_id=event.monitor_id,
                run_id=event.run_id,
                error=str(exc),
            )
            return None
        return detail.error

    async def _monitor_info(self, monitor_id: int, now: datetime) -> MonitorInfo:
        cached = self._monitor_cache.get(monitor_id)
        if cached and now - cached[1] < self._config.monitor_cache:
            return cached[0]
        try:
            info = await self._source.get_monitor(monitor_id)
        except DatafoldError as exc:
            log.warning("monitor_detail_failed", monitor_id=monitor_id, error=str(exc))
            return cached[0] if cached else MonitorInfo(id=monitor_id)
        self._monitor_cache[monitor_id] = (info, now)
        return info

    def _enqueue(
        self, notifications: Sequence[Notification], now: datetime, report: CycleReport
    ) -> None:
        """Queue each notification for its routes' destinations, unless a mute covers it or
        every route it matched is in quiet hours (logged and counted, never sent)."""
        queued = {entry.notification.id for entry in self.state.outbox}
        for notification in notifications:
            if notification.id in queued:
                continue
            report.events += 1
            report.events_by_state[notification.event_kind] += 1
            bound = log.bind(
                monitor_id=notification.event.monitor_id,
                run_id=notification.event.run_id,
                kind=notification.event_kind,
            )
            mute = next((m for m in self.state.mutes if m.covers(notification.monitor, now)), None)
            if mute is not None:
                bound.info(
                    "notification_muted",
                    mute=mute.id,
                    muted=mute.target,
                    until=mute.until.isoformat(),
                    reason=mute.reason,
                )
                report.muted += 1
                continue
            decision = self._route(notification, now)
            pending = [name for name in decision.to if name in self._sinks]
            if not pending and decision.quiet:
                bound.info("notification_quiet", routes=decision.quiet)
                report.quieted += 1
                continue
            if not pending:
                bound.warning(
                    "notification_unrouted",
                    reason="no route and no default route sends it anywhere",
                )
                continue
            if decision.quiet:
                bound.info("notification_quiet", routes=decision.quiet, still_sent_to=pending)
            self.state.outbox.append(OutboxEntry(notification=notification, pending=pending))
        self._trim_outbox(report)

    async def _drain(
        self,
        name: str,
        sink: Sink,
        report: CycleReport,
        wakeup: asyncio.Event,
        polling_done: asyncio.Event,
    ) -> None:
        """Send what waits for `name`, oldest first, until the polls are done and nothing is left.

        Entries are only appended during a cycle, so a position in the outbox stays valid. A
        failure of the whole destination ends its turn until the next cycle.
        """
        if self._still_deferred(name):
            return
        if isinstance(sink, DigestSink) and sink.digest_threshold is not None:
            # Whether a storm needs a digest is known only once every monitor was polled.
            await polling_done.wait()
            waiting = [entry for entry in self.state.outbox if name in entry.pending]
            if len(waiting) > sink.digest_threshold:
                await self._send_digest(name, sink, waiting, report)
                return
        position = 0
        inline_waits = 0
        while True:
            outbox = self.state.outbox
            while position < len(outbox):
                entry = outbox[position]
                if name not in entry.pending:
                    position += 1
                    continue
                if await self._send(name, sink, entry, report):
                    position += 1
                    continue
                # The destination failed as a whole: try again soon if it asked for a short
                # wait, else leave it until a later cycle.
                wait = self._short_wait(name)
                if wait is None or inline_waits >= INLINE_WAITS_MAX:
                    return
                inline_waits += 1
                await asyncio.sleep(wait)
                self._deferred.pop(name, None)
            if polling_done.is_set():
                return
            wakeup.clear()
            if position >= len(self.state.outbox):
                await wakeup.wait()

    def _still_deferred(self, name: str) -> bool:
        """Whether `name` asked to be left alone until later than now (its Retry-After)."""
        deferral = self._deferred.get(name)
        if deferral is None:
            return False
        if self._clock() < deferral.until:
            log.debug("destination_still_deferred", destination=name, until=deferral.until)
            return True
        del self._deferred[name]
        return False

    def _defer(self, name: str, error: DeliveryError) -> None:
        """Honour a destination's Retry-After, capped: it is left alone until then."""
        if error.retry_after is None or not error.whole_destination:
            return  # a refusal of one message does not put the destination on hold
        cap = self._config.retry_after_cap
        wait = timedelta(seconds=min(error.retry_after, cap.total_seconds()))
        until = self._clock() + wait
        self._deferred[name] = Deferral(until=until, reason=error.reason)
        if wait > INLINE_WAIT_MAX:
            log.warning(
                "destination_deferred",
                destination=name,
                reason=error.reason,
                asked_seconds=round(error.retry_after, 3),
                until=until.isoformat(),
                capped=error.retry_after > cap.total_seconds(),
                notifications_kept="in the outbox",
            )

    def _short_wait(self, name: str) -> float | None:
        """Seconds to wait before trying `name` again within this cycle, if it asked for a
        wait that short; None when it did not ask, or asked for longer."""
        deferral = self._deferred.get(name)
        if deferral is None:
            return None
        left = deferral.until - self._clock()
        return max(0.0, left.total_seconds()) if left <= INLINE_WAIT_MAX else None

    async def _send_digest(
        self, name: str, sink: DigestSink, entries: list[OutboxEntry], report: CycleReport
    ) -> None:
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
            report.delivery_failures += 1
            report.failed_by_destination[name] += 1
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
            report.delivery_failures += 1
            report.failed_by_destination[name] += 1
            bound.exception("delivery_failed", digest=True, reason="internal error")
        else:
            delivered = frozenset(n.id for n in notifications)
            bound.info("digest_sent")
        for entry in entries:
            if entry.notification.id in delivered and name in entry.pending:
                entry.pending.remove(name)
                report.delivered += 1
                report.digested += 1
                report.sent_by_destination[name] += 1

    def _fenced_ok(self, name: str) -> bool:
        """Whether deliveries may go on; once the lease may have lapsed, none starts."""
        if self._may_deliver():
            return True
        log.warning("delivery_fenced", destination=name, reason="this replica's lease may lapse")
        return False

    def _anchor(self, name: str, notification: Notification) -> MessageRef | None:
        """Where the first message of the notification's incident went in `name`, if known."""
        if notification.incident is None:
            return None
        return self.state.messages.get(notification.incident.id, {}).get(name)

    async def _send(self, name: str, sink: Sink, entry: OutboxEntry, report: CycleReport) -> bool:
        """One delivery attempt; False when the destination should not be tried again now."""
        notification = entry.notification
        bound = log.bind(
            monitor_id=notification.event.monitor_id,
            run_id=notification.event.run_id,
            destination=name,
        )
        if not self._fenced_ok(name):
            return False
        try:
            posted = await sink.send(notification, self._anchor(name, notification))
        except DeliveryError as exc:
            entry.attempts += 1
            entry.last_error = f"{name}: {exc.reason}"
            self._defer(name, exc)
            report.delivery_failures += 1
            report.failed_by_destination[name] += 1
            bound.warning(
                "delivery_failed",
                reason=exc.reason,
                attempts=entry.attempts,
                will_retry="next cycle",
                refused="destination" if exc.whole_destination else "this notification",
            )
            return not exc.whole_destination
        except Exception as exc:
            entry.attempts += 1
            entry.last_error = f"{name}: internal error {type(exc).__name__}"
            report.delivery_failures += 1
            report.failed_by_destination[name] += 1
            bound.exception("delivery_failed", reason="internal error")
            return False
        if name in entry.pending:
            entry.pending.remove(name)
        if (
            posted is not None
            and notification.incident is not None
            and (notification.opens_incident or self._anchor(name, notification) is None)
        ):
            # The incident's first message here anchors its thread and its resolved update.
            self.state.messages.setdefault(notification.incident.id, {})[name] = posted
        report.delivered += 1
        report.sent_by_destination[name] += 1
        bound.info("notification_sent", kind=notification.event_kind)
        return True


def _wake(wakeups: Mapping[str, asyncio.Event]) -> None:
    """Tell every destination's worker that the outbox may have something for it."""
    for wakeup in wakeups.values():
        wakeup.set()


def poll_offset(monitor_id: int, spread: float) -> float:
    """A monitor's stable start offset within the spread window, so polls do not burst."""
    if spread <= 0:
        return 0.0
    return spread * (zlib.crc32(str(monitor_id).encode()) / 2**32)


class _Gone:
    """Marks a run the API answered 404 for."""


_GONE = _Gone()
