"""A small notifier state for the store tests: one baselined monitor, one run, one waiting
notification, and the mutes asked for; and the mute builder of the mute and store tests."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from notifier.domain.models import (
    MonitorInfo,
    MonitorState,
    Mute,
    Notification,
    NotifierState,
    OutboxEntry,
    RunEvent,
    TrackedRun,
)

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def sample_state(run_id: int = 70, *, mutes: Iterable[Mute] = ()) -> NotifierState:
    """Monitor 7 baselined at T0, its run `run_id` notified as an alert still waiting for Slack."""
    event = RunEvent(monitor_id=7, run_id=run_id, state="alert", started_at=T0)
    notification = Notification(
        id=event.key, event=event, monitor=MonitorInfo(id=7, name="orders"), detected_at=T0
    )
    tracked = TrackedRun(state="alert", handled=["alert"], first_seen=T0, last_seen=T0)
    return NotifierState(
        monitors={7: MonitorState(watch_since=T0, baselined=True, runs={run_id: tracked})},
        outbox=[OutboxEntry(notification=notification, pending=["slack"], attempts=2)],
        mutes=list(mutes),
    )


def mute(
    mute_id: str,
    *,
    monitor_id: int | None = None,
    tag: str | None = None,
    minutes: int = 60,
    created: int = 0,
) -> Mute:
    """A mute (reason "deploy") set `created` minutes after T0, running `minutes` from T0."""
    return Mute(
        id=mute_id,
        monitor_id=monitor_id,
        tag=tag,
        until=T0 + timedelta(minutes=minutes),
        reason="deploy",
        created_at=T0 + timedelta(minutes=created),
    )
