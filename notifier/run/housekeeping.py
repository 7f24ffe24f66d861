"""What a regular cycle tidies before it polls: monitors no longer watched, notifications
expired or past the outbox's size, destinations removed; and the log lines of what it gave up."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

import structlog

from notifier.domain.models import NotifierState
from notifier.domain.report import CycleReport
from notifier.route import outbox
from notifier.run.service_config import ServiceConfig

log = structlog.get_logger(__name__)


def housekeeping(
    state: NotifierState,
    now: datetime,
    report: CycleReport,
    monitor_ids: list[int],
    config: ServiceConfig,
    destinations: Mapping[str, object],
    discovered: bool,
) -> None:
    """Drop monitors no longer watched, expired notifications, removed destinations.

    `discovered`: the watched set is complete (no tags, or a discovery has succeeded), so an API
    outage at start-up does not make the notifier forget (and later re-baseline) the monitors
    found by tag.
    """
    watched = set(monitor_ids)
    if discovered:
        for monitor_id in [m for m in state.monitors if m not in watched]:
            log.info("monitor_dropped", monitor_id=monitor_id, reason="no longer watched")
            del state.monitors[monitor_id]
    kept, removals = outbox.expire(
        state.outbox, now, expiry=config.outbox_expiry, destinations=destinations
    )
    state.outbox = kept
    give_up(removals, report)
    give_up(outbox.trim(state.outbox, config.outbox_max), report)


def give_up(removals: Iterable[outbox.Removal], report: CycleReport) -> None:
    """Log and count the notifications the outbox gave up on (or on one destination of)."""
    for removal in removals:
        log.error(removal.event, **removal.fields())
        if removal.reason == "expired":
            report.expired += 1
        elif removal.reason == "outbox_full":
            report.dropped += 1
