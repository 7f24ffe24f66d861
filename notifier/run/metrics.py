"""Prometheus metrics, fed from each cycle's report. Own registry: no global state."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from notifier.domain.report import CycleReport

PREFIX = "datafold_notifier"

# `*_created` series double the output and say nothing a scraper needs.
disable_created_metrics()  # type: ignore[no-untyped-call]


class Metrics:
    """The daemon's counters; `render()` is the /metrics text."""

    def __init__(self) -> None:
        self._deferred_seen: set[str] = set()
        self._held_seen: set[str] = set()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.cycles = Counter(f"{PREFIX}_poll_cycles", "Poll cycles finished.", registry=r)
        self.cycles_skipped = Counter(
            f"{PREFIX}_poll_cycles_skipped",
            "Cycles skipped because the previous one was still running.",
            registry=r,
        )
        self.poll_errors = Counter(
            f"{PREFIX}_poll_errors",
            "Monitor polls that failed, by kind (refused, not_found, malformed, unavailable, ...).",
            ["kind"],
            registry=r,
        )
        self.runs_seen = Counter(f"{PREFIX}_runs_seen", "Runs listed by Datafold.", registry=r)
        self.events = Counter(
            f"{PREFIX}_events_detected",
            "New runs worth a notification, by state.",
            ["state"],
            registry=r,
        )
        self.sent = Counter(
            f"{PREFIX}_notifications_sent",
            "Notifications accepted by a destination.",
            ["destination"],
            registry=r,
        )
        self.failed = Counter(
            f"{PREFIX}_notifications_failed",
            "Delivery attempts a destination did not accept (retried later).",
            ["destination"],
            registry=r,
        )
        self.expired = Counter(
            f"{PREFIX}_notifications_expired",
            "Notifications dropped undelivered after NOTIFIER_OUTBOX_EXPIRY_SECONDS.",
            registry=r,
        )
        self.outbox = Gauge(
            f"{PREFIX}_outbox_size", "Notifications waiting for some destination.", registry=r
        )
        self.duration = Histogram(
            f"{PREFIX}_cycle_duration_seconds",
            "Wall time of a poll cycle, delivery included.",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
            registry=r,
        )
        self.last_success = Gauge(
            f"{PREFIX}_last_successful_poll_timestamp_seconds",
            "Unix time of the last cycle in which at least one monitor was polled.",
            registry=r,
        )
        self.monitors = Gauge(
            f"{PREFIX}_monitors", "Monitors watched (configured and found by tag).", registry=r
        )
        self.dropped = Counter(
            f"{PREFIX}_notifications_dropped",
            "Notifications dropped undelivered, by reason (outbox_full: the oldest go first; "
            "refused: a destination refused one for good).",
            ["reason"],
            registry=r,
        )
        self.clock_offset = Gauge(
            f"{PREFIX}_clock_offset_seconds",
            "How far a clock is ahead of this replica's (negative: behind), by whose: datafold "
            "(its Date headers; listing windows follow it), database (PostgreSQL's now()).",
            ["against"],
            registry=r,
        )
        self.name_clashes = Gauge(
            f"{PREFIX}_replica_name_clashes",
            "Other live processes found holding the lease under this replica's name since start "
            "(NOTIFIER_REPLICA_NAME must differ per replica; each is also logged).",
            registry=r,
        )
        self.deferred_until = Gauge(
            f"{PREFIX}_destination_deferred_until_timestamp_seconds",
            "Unix time until which a destination is left alone at its own request (Retry-After); "
            "0 when it is not deferred.",
            ["destination"],
            registry=r,
        )
        self.silenced = Counter(
            f"{PREFIX}_notifications_silenced",
            "Events not sent, by reason: mute, or quiet hours of every route they matched.",
            ["reason"],
            registry=r,
        )
        self.digested = Counter(
            f"{PREFIX}_notifications_digested",
            "Notifications delivered inside a digest (also counted as sent).",
            registry=r,
        )
        self.kept_firing = Gauge(
            f"{PREFIX}_alerts_kept_firing",
            "Open incidents a destination was told again, in the last cycle, still fire "
            "(Alertmanager).",
            ["destination"],
            registry=r,
        )
        self.leader = Gauge(
            f"{PREFIX}_leader",
            "1 while this replica polls and delivers, 0 while it stands by (PostgreSQL state).",
            registry=r,
        )
        # Named as Prometheus and Alertmanager name theirs, so the same alert rules fit.
        self.config_reload_successful = Gauge(
            f"{PREFIX}_config_last_reload_successful",
            "Whether the last configuration reload succeeded (1; also at start) or failed (0).",
            registry=r,
        )
        self.config_reload_success_at = Gauge(
            f"{PREFIX}_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load (start-up or reload).",
            registry=r,
        )
        self.triggers = Counter(
            f"{PREFIX}_triggers",
            "Push triggers received, by outcome (accepted, ignored: a monitor not watched, "
            "unauthorized, standby, too_large).",
            ["outcome"],
            registry=r,
        )
        self.triggered_polls = Counter(
            f"{PREFIX}_triggered_polls",
            "Monitor listings a push trigger made (NOTIFIER_TRIGGER_MAX_POLLS_PER_MINUTE caps "
            "them).",
            registry=r,
        )

    def config_loaded(self, at: datetime) -> None:
        """The configuration was loaded (at start) or reloaded at `at`."""
        self.config_reload_successful.set(1)
        self.config_reload_success_at.set(at.timestamp())

    def watch_clock(self, against: str, offset: Callable[[], float | None]) -> None:
        """Expose how far `against`'s clock is ahead of ours (seconds), read at each scrape."""
        self.clock_offset.labels(against=against).set_function(lambda: offset() or 0.0)

    def watch_name_clashes(self, count: Callable[[], int]) -> None:
        """Expose how many other live processes were found leading under this replica's name."""
        self.name_clashes.set_function(lambda: float(count()))

    def record(self, report: CycleReport) -> None:
        """Fold one finished cycle into the metrics."""
        self.leader.set(0 if report.standby else 1)
        if report.standby:
            return
        self.cycles.inc()
        self._fold(report)
        self.expired.inc(report.expired)
        self.monitors.set(report.monitors)
        for name in self._deferred_seen - set(report.deferred):
            self.deferred_until.labels(destination=name).set(0)
        for name, deferral in report.deferred.items():
            self.deferred_until.labels(destination=name).set(deferral.until.timestamp())
        self._deferred_seen |= set(report.deferred)
        for name in self._held_seen - set(report.kept_firing):
            self.kept_firing.labels(destination=name).set(0)
        for name, count in report.kept_firing.items():
            self.kept_firing.labels(destination=name).set(count)
        self._held_seen |= set(report.kept_firing)
        if report.started_at and report.finished_at:
            self.duration.observe((report.finished_at - report.started_at).total_seconds())
        if report.polled and report.finished_at:
            self.last_success.set(report.finished_at.timestamp())

    def record_partial(self, report: CycleReport) -> None:
        """Fold a triggered partial cycle in: its polls, events and deliveries, but not as a
        cycle (no cycle count, duration, monitor count, expiry or last-success time)."""
        if report.standby:
            return
        self.triggered_polls.inc(len(report.polled) + len(report.failed))
        self._fold(report)

    def _fold(self, report: CycleReport) -> None:
        """What any cycle, full or partial, adds: polls, events, deliveries, the outbox."""
        for kind in report.failed.values():
            self.poll_errors.labels(kind=kind).inc()
        self.runs_seen.inc(report.runs_seen)
        for state, count in report.events_by_state.items():
            self.events.labels(state=state).inc(count)
        for name, count in report.sent_by_destination.items():
            self.sent.labels(destination=name).inc(count)
        for name, count in report.failed_by_destination.items():
            self.failed.labels(destination=name).inc(count)
        if report.dropped:
            self.dropped.labels(reason="outbox_full").inc(report.dropped)
        if report.refused:
            self.dropped.labels(reason="refused").inc(report.refused)
        if report.muted:
            self.silenced.labels(reason="mute").inc(report.muted)
        if report.quieted:
            self.silenced.labels(reason="quiet_hours").inc(report.quieted)
        self.digested.inc(report.digested)
        self.outbox.set(report.outbox_size)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
