"""What the status page and /api/status show, built from the state, the recent cycles and the
leadership, with the time passed in. Pure: no clock, no I/O; the page renders it as HTML.

Nothing secret goes in: destinations appear by name only, and the only free text from delivery
is an outbox entry's `last_error`, which the sinks write without URLs or tokens (cut here too).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from notifier.domain.models import (
    MonitorInfo,
    MonitorState,
    Mute,
    NotifierState,
    cut_text,
    is_in_progress,
)
from notifier.domain.report import CycleReport

#: How many cycle reports the daemon keeps for the page.
RECENT_CYCLES = 20
#: At most this many monitors are listed (the most worth seeing first); the rest are counted.
MONITORS_SHOWN = 1000
#: A delivery error is shown cut to this many characters.
ERROR_SHOWN = 300

#: "single": one notifier with a state file; "leader"/"standby": replicas sharing PostgreSQL.
Role = Literal["single", "leader", "standby"]


@dataclass(frozen=True)
class MonitorRow:
    """One watched monitor. `last_run_state` is "quiet" when no run of it is failing or running
    as far as the notifier knows (the latest passed, or was skipped or cancelled)."""

    id: int
    name: str | None
    last_polled_at: datetime | None
    last_run_id: int | None
    last_run_state: str | None
    #: The kind of error its poll failed with in the latest cycle.
    poll_error: str | None = None
    incident_state: str | None = None
    incident_since: datetime | None = None
    muted_until: datetime | None = None
    muted_by: str | None = None


@dataclass(frozen=True)
class IncidentRow:
    """An open incident: a monitor failing since `opened_at`, last notified at `notified_at`."""

    monitor_id: int
    name: str | None
    state: str
    opened_at: datetime
    notified_at: datetime
    first_run_id: int
    last_run_id: int
    reminders: int


@dataclass(frozen=True)
class MuteRow:
    """A mute still running."""

    id: str
    target: str
    until: datetime
    reason: str | None


@dataclass(frozen=True)
class DestinationRow:
    """The outbox as one destination sees it: how much waits for it, since when, and why."""

    name: str
    waiting: int
    oldest_since: datetime | None
    oldest_attempts: int
    last_error: str | None
    deferred_until: datetime | None = None
    deferred_reason: str | None = None


@dataclass(frozen=True)
class CycleRow:
    """One recent cycle, as its report tells it."""

    started_at: datetime | None
    seconds: float | None
    polled: int
    failed: int
    events: int
    delivered: int
    delivery_failures: int
    outbox: int
    standby: bool
    saved: bool


@dataclass(frozen=True)
class StatusView:
    """Everything the status page shows; `as_json` is the /api/status document."""

    generated_at: datetime
    role: Role
    health: str
    health_reason: str | None
    #: False when this process holds no state (a standby replica, or before the first load).
    state_loaded: bool
    monitors_total: int
    monitors_muted: int
    outbox_total: int
    monitors: tuple[MonitorRow, ...] = ()
    incidents: tuple[IncidentRow, ...] = ()
    mutes: tuple[MuteRow, ...] = ()
    destinations: tuple[DestinationRow, ...] = ()
    cycles: tuple[CycleRow, ...] = field(default_factory=tuple)

    def as_json(self) -> dict[str, Any]:
        """Plain JSON types; times as ISO 8601 in UTC with a Z."""
        result: dict[str, Any] = _plain(asdict(self))
        return result


def build_status(
    state: NotifierState | None,
    cycles: Sequence[CycleReport],
    *,
    now: datetime,
    leading: bool | None,
    health: str,
    health_reason: str | None = None,
    monitors_shown: int = MONITORS_SHOWN,
    details: Mapping[int, MonitorInfo] | None = None,
) -> StatusView:
    """The status at `now`. `leading` is None without high availability; `cycles` are oldest
    first (only the last `RECENT_CYCLES` are shown); `details` are the monitors' details last
    read from Datafold, which name them where the state does not."""
    latest = cycles[-1] if cycles else None
    recent = list(cycles)[-RECENT_CYCLES:]
    role = _role(leading, latest)
    cycle_rows = tuple(_cycle_row(report) for report in reversed(recent))
    if state is None:
        return StatusView(
            generated_at=now,
            role=role,
            health=health,
            health_reason=health_reason,
            state_loaded=False,
            monitors_total=0,
            monitors_muted=0,
            outbox_total=0,
            destinations=_destinations(None, recent, now),
            cycles=cycle_rows,
        )
    known = {**known_monitors(state), **(details or {})}
    mutes = [m for m in state.mutes if m.until > now]
    failed = latest.failed if latest is not None and not latest.standby else {}
    polled = last_polls(recent)
    rows = [
        _monitor_row(monitor_id, memory, known.get(monitor_id), mutes, failed, now)
        for monitor_id, memory in state.monitors.items()
    ]
    rows = [_polled(row, polled.get(row.id)) for row in rows]
    rows.sort(key=_interest)
    incidents = sorted(
        (
            _incident_row(monitor_id, memory, known.get(monitor_id))
            for monitor_id, memory in state.monitors.items()
            if memory.incident is not None
        ),
        key=lambda row: (row.opened_at, row.monitor_id),
    )
    return StatusView(
        generated_at=now,
        role=role,
        health=health,
        health_reason=health_reason,
        state_loaded=True,
        monitors_total=len(rows),
        monitors_muted=sum(1 for row in rows if row.muted_until is not None),
        outbox_total=sum(1 for entry in state.outbox if entry.pending),
        monitors=tuple(rows[: max(0, monitors_shown)]),
        incidents=tuple(incidents),
        mutes=tuple(
            MuteRow(id=m.id, target=m.target, until=m.until, reason=m.reason)
            for m in sorted(mutes, key=lambda m: (m.until, m.id))
        ),
        destinations=_destinations(state, recent, now),
        cycles=cycle_rows,
    )


def last_polls(cycles: Iterable[CycleReport]) -> dict[int, datetime]:
    """When each monitor was last polled in these cycles (oldest first): the state's own stamp
    is only moved every few minutes, to spare saves, so the status page reads the cycles."""
    polled: dict[int, datetime] = {}
    for report in cycles:
        if not report.standby and report.started_at is not None:
            polled.update(dict.fromkeys(report.polled, report.started_at))
    return polled


def _polled(row: MonitorRow, at: datetime | None) -> MonitorRow:
    """The row with the poll time of a recent cycle, when that is later than the state's."""
    if at is None or row.last_polled_at is None or at <= row.last_polled_at:
        return row
    return replace(row, last_polled_at=at)


def known_monitors(state: NotifierState) -> dict[int, MonitorInfo]:
    """The monitors' details the state holds: those of the notifications waiting in the outbox
    and held for destinations that must be told again (the newest of each monitor wins)."""
    notifications = [entry.notification for entry in state.outbox]
    notifications += [n for by_destination in state.held.values() for n in by_destination.values()]
    known: dict[int, MonitorInfo] = {}
    for notification in sorted(notifications, key=lambda n: n.detected_at):
        known[notification.monitor.id] = notification.monitor
    return known


def _role(leading: bool | None, latest: CycleReport | None) -> Role:
    if leading is None:
        return "standby" if latest is not None and latest.standby else "single"
    return "leader" if leading else "standby"


def _monitor_row(
    monitor_id: int,
    memory: MonitorState,
    info: MonitorInfo | None,
    mutes: Iterable[Mute],
    failed: Mapping[int, str],
    now: datetime,
) -> MonitorRow:
    run_id, run_state = last_run(memory)
    about = info or MonitorInfo(id=monitor_id)
    muting = sorted((m for m in mutes if m.covers(about, now)), key=lambda m: m.until)
    mute = muting[-1] if muting else None
    incident = memory.incident
    return MonitorRow(
        id=monitor_id,
        name=about.name,
        last_polled_at=memory.last_polled_at,
        last_run_id=run_id,
        last_run_state=run_state,
        poll_error=failed.get(monitor_id),
        incident_state=incident.last.state if incident else None,
        incident_since=incident.opened_at if incident else None,
        muted_until=mute.until if mute else None,
        muted_by=mute.target if mute else None,
    )


def last_run(memory: MonitorState) -> tuple[int | None, str | None]:
    """(run ID, state) of the monitor's latest run as far as the notifier knows: a run still in
    progress, else the open incident's latest failing run, else "quiet" (runs that pass are not
    remembered); in feed mode, the state Datafold's listing last showed. (None, None) before its
    first successful poll."""
    if memory.last_polled_at is None and not memory.baselined:
        return None, None
    running = [run_id for run_id, run in memory.runs.items() if is_in_progress(run.state)]
    incident = memory.incident
    derived: tuple[int | None, str | None] = (None, "quiet")
    if running:
        derived = max(running), memory.runs[max(running)].state or "created"
    elif incident is not None:
        derived = incident.last.run_id, incident.last.state
    feed_state = memory.feed_key.rpartition("|")[2] if memory.feed_key else "-"
    if feed_state != "-":
        return (derived[0] if derived[1] == feed_state else None), feed_state
    return derived


def _interest(row: MonitorRow) -> tuple[int, float, int]:
    """Failing first (longest first), then failed polls, then muted, then by ID."""
    if row.incident_since is not None:
        return 0, row.incident_since.timestamp(), row.id
    if row.poll_error is not None:
        return 1, 0.0, row.id
    if row.muted_until is not None:
        return 2, 0.0, row.id
    return 3, 0.0, row.id


def _incident_row(monitor_id: int, memory: MonitorState, info: MonitorInfo | None) -> IncidentRow:
    incident = memory.incident
    assert incident is not None
    return IncidentRow(
        monitor_id=monitor_id,
        name=info.name if info else None,
        state=incident.last.state,
        opened_at=incident.opened_at,
        notified_at=incident.last_notified_at,
        first_run_id=incident.first.run_id,
        last_run_id=incident.last.run_id,
        reminders=incident.reminders,
    )


def scrubbed(view: StatusView, scrub: Callable[[str], str]) -> StatusView:
    """`view` with `scrub` applied to the text that came from elsewhere (what destinations
    answered, why a deferral or the health verdict): the daemon passes its log redactor, so a
    secret a server echoed back shows on no page."""

    def clean(text: str | None) -> str | None:
        return None if text is None else scrub(text)

    rows = tuple(
        replace(row, last_error=clean(row.last_error), deferred_reason=clean(row.deferred_reason))
        for row in view.destinations
    )
    return replace(view, destinations=rows, health_reason=clean(view.health_reason))


def _destinations(
    state: NotifierState | None, recent: Sequence[CycleReport], now: datetime
) -> tuple[DestinationRow, ...]:
    """Every destination the outbox or the recent cycles name, with what waits for it."""
    names: set[str] = set()
    for report in recent:
        names |= set(report.sent_by_destination) | set(report.failed_by_destination)
        names |= set(report.deferred) | set(report.kept_firing)
    entries = [entry for entry in (state.outbox if state else []) if entry.pending]
    for entry in entries:
        names |= set(entry.pending)
    deferred = recent[-1].deferred if recent else {}
    rows = []
    for name in sorted(names):
        waiting = [entry for entry in entries if name in entry.pending]
        oldest = min(waiting, key=lambda e: e.notification.detected_at) if waiting else None
        prefix = f"{name}: "
        errors = [e.last_error for e in waiting if e.last_error and e.last_error.startswith(prefix)]
        error = errors[-1][len(prefix) :] if errors else None
        deferral = deferred.get(name)
        held = deferral is not None and deferral.holds(now)
        rows.append(
            DestinationRow(
                name=name,
                waiting=len(waiting),
                oldest_since=oldest.notification.detected_at if oldest else None,
                oldest_attempts=oldest.attempts if oldest else 0,
                last_error=cut_text(error, ERROR_SHOWN) if error else None,
                deferred_until=deferral.until if deferral and held else None,
                deferred_reason=deferral.reason if deferral and held else None,
            )
        )
    return tuple(rows)


def _cycle_row(report: CycleReport) -> CycleRow:
    took = (
        (report.finished_at - report.started_at).total_seconds()
        if report.finished_at and report.started_at
        else None
    )
    return CycleRow(
        started_at=report.started_at,
        seconds=round(took, 3) if took is not None else None,
        polled=len(report.polled),
        failed=len(report.failed),
        events=report.events,
        delivered=report.delivered,
        delivery_failures=report.delivery_failures,
        outbox=report.outbox_size,
        standby=report.standby,
        saved=report.state_saved,
    )


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value
