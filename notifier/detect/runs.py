"""Detection: which runs are news. A pure function of the previous state, the runs and the time."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from notifier.domain.models import (
    Incident,
    MonitorRun,
    MonitorState,
    RunEvent,
    TrackedRun,
    is_in_progress,
)

#: The state of a run that closes an open incident (a monitor passing again).
RECOVERY_STATE = "ok"

#: How far Datafold's clock may lag ours when telling history from news after failed first polls.
CLOCK_SKEW_MARGIN = timedelta(minutes=5)


@dataclass(frozen=True)
class DetectionPolicy:
    """What counts as news and how long runs are remembered."""

    notify_states: frozenset[str]
    #: A finished run no longer listed is forgotten this long after it was last seen.
    retention: timedelta
    #: A run stuck in progress is given up on this long after it was first seen.
    in_progress_limit: timedelta
    #: On a monitor's first poll, runs that started this long before are notified too.
    first_start_lookback: timedelta = timedelta(0)
    #: "Last seen" and "last polled" stamps move only in steps this coarse, so a quiet cycle
    #: leaves the state unchanged and it is not rewritten.
    stamp_granularity: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class Notice:
    """One thing to tell: a run reaching a notify-state ("run"), a newer `ok` run closing the
    monitor's open incident ("recovered"), or an incident left open for the reminder interval
    ("reminder", `event` its latest failing run). `incident` is the incident as of this notice."""

    kind: Literal["run", "recovered", "reminder"]
    event: RunEvent
    incident: Incident


@dataclass(frozen=True)
class Baseline:
    """What a monitor's first successful listing did. `history`: runs in a notify-state recorded
    as already seen, without a notification, because they started before watching began;
    `notified`: runs it notifies. `catchup_since` is set when earlier polls failed and runs are
    notified: watching began then, so every run since is sent now (the "catch-up")."""

    listed: int
    history: int
    notified: int
    catchup_since: datetime | None = None

    def log_fields(self) -> dict[str, int]:
        return {"runs_listed": self.listed, "history": self.history, "notified": self.notified}


@dataclass(frozen=True)
class Detection:
    """The events to send and the monitor's next state, to be saved once they are queued."""

    events: list[RunEvent]
    state: MonitorState
    #: Runs forgotten while still in progress (stuck longer than the limit, or gone from the API).
    abandoned: list[int] = field(default_factory=list)
    #: `events` as notices, with the recoveries among them, in the order they happened.
    notices: list[Notice] = field(default_factory=list)
    #: Set on the monitor's first successful listing only.
    baseline: Baseline | None = None


def new_monitor_state(now: datetime, policy: DetectionPolicy) -> MonitorState:
    """The state of a monitor that is being watched but has not been polled successfully yet."""
    return MonitorState(watch_since=now - policy.first_start_lookback)


def detect(
    previous: MonitorState | None,
    runs: Iterable[MonitorRun],
    now: datetime,
    policy: DetectionPolicy,
    *,
    gone: Collection[int] = (),
    source_offset: timedelta = timedelta(0),
) -> Detection:
    """Compare a complete listing of a monitor's recent runs with what was seen before.

    A run in a notify-state is news once per state. On the monitor's first successful poll, runs
    that started before `watch_since` are recorded as history instead; `source_offset` is how
    far the clock that stamps the runs (Datafold's) is ahead of ours, so the cutoff is read on
    it. Runs in `gone` (the API no longer knows them) are dropped.
    """
    state = previous or new_monitor_state(now, policy)
    first_listing = not state.baselined
    cutoff = state.watch_since + source_offset
    if previous is not None and first_listing:
        # Earlier polls failed: a run stamped by a Datafold clock running behind ours may look
        # older than it is. Rather notify one such run too many than miss a real one.
        cutoff -= CLOCK_SKEW_MARGIN
    tracked = dict(state.runs)
    events: list[RunEvent] = []
    notices: list[Notice] = []
    incident = state.incident
    listed: set[int] = set()
    history = 0

    for run in sorted(runs, key=_event_order):
        listed.add(run.run_id)
        old = tracked.get(run.run_id)
        handled = list(old.handled) if old else []
        if run.state in policy.notify_states and run.state not in handled:
            handled.append(run.state)
            if first_listing and _is_history(run, cutoff):
                history += 1
            else:
                event = _event(run, run.state)
                events.append(event)
                incident = _escalate(incident, event, now)
                notices.append(Notice("run", event, incident))
        elif (
            run.state == RECOVERY_STATE
            and incident is not None
            and _event_order(run) > _event_order(incident.last)
        ):
            # A run newer than every failing one notified passed: the monitor recovered.
            notices.append(Notice("recovered", _event(run, run.state), incident))
            incident = None
        if handled or is_in_progress(run.state):
            last_seen = _stamp(old.last_seen if old else None, now, policy)
            if not _remembers(old, run.state, handled, last_seen):  # else kept as it is
                tracked[run.run_id] = TrackedRun(
                    state=run.state,
                    handled=handled,
                    first_seen=old.first_seen if old else now,
                    last_seen=last_seen,
                )
        else:
            tracked.pop(run.run_id, None)

    abandoned: list[int] = []
    for run_id, memory in list(tracked.items()):
        if run_id in listed:
            continue
        if is_in_progress(memory.state):
            if run_id in gone or now - memory.first_seen > policy.in_progress_limit:
                abandoned.append(run_id)
                del tracked[run_id]
        elif run_id in gone or now - memory.last_seen > policy.retention + policy.stamp_granularity:
            del tracked[run_id]

    last_polled_at = _stamp(state.last_polled_at, now, policy)
    if (
        previous is not None
        and not first_listing
        and (last_polled_at, incident, tracked)
        == (state.last_polled_at, state.incident, state.runs)
    ):
        # Nothing to remember differently (most monitors, most cycles): the state stays the
        # very object it was, which costs nothing to build and nothing more to keep.
        next_state = previous
    else:
        next_state = MonitorState(
            watch_since=state.watch_since,
            baselined=True,
            last_polled_at=last_polled_at,
            feed_key=state.feed_key,
            runs=tracked,
            incident=incident,
        )
    baseline = None
    if first_listing:
        # `previous` exists unbaselined only when earlier polls of this monitor failed.
        catchup = state.watch_since if previous is not None and events else None
        baseline = Baseline(len(listed), history, len(events), catchup)
    return Detection(
        events=events,
        state=next_state,
        abandoned=sorted(abandoned),
        notices=notices,
        baseline=baseline,
    )


def due_reminder(
    state: MonitorState | None, now: datetime, interval: timedelta | None
) -> Incident | None:
    """The open incident as it stands after a reminder, if one is due: nothing about it was
    queued for `interval`. None when reminders are off, nothing is open, or it is not time yet."""
    if interval is None or interval <= timedelta(0) or state is None or state.incident is None:
        return None
    incident = state.incident
    if now - incident.last_notified_at < interval:
        return None
    return incident.model_copy(
        update={"last_notified_at": now, "reminders": incident.reminders + 1}
    )


def _remembers(
    old: TrackedRun | None, state: str | None, handled: list[str], last_seen: datetime
) -> bool:
    """Whether the memory of a run already says this (it is then kept, the same object)."""
    return old is not None and (old.state, old.handled, old.last_seen) == (
        state,
        handled,
        last_seen,
    )


def _event(run: MonitorRun, state: str) -> RunEvent:
    return RunEvent(
        monitor_id=run.monitor_id,
        run_id=run.run_id,
        state=state,
        started_at=run.started_at,
        diff_id=run.diff_id,
    )


def _escalate(incident: Incident | None, event: RunEvent, now: datetime) -> Incident:
    """A notified failing run opens an incident, or joins the open one (its latest run moves on
    only to a newer run: an older run finishing late does not make the incident older)."""
    if incident is None:
        return Incident(id=event.key, opened_at=now, first=event, last=event, last_notified_at=now)
    last = event if _event_order(event) > _event_order(incident.last) else incident.last
    update = {"last": last, "last_notified_at": now, "failures": incident.failures + 1}
    return incident.model_copy(update=update)


def stale_in_progress(state: MonitorState | None, listed: Collection[int]) -> list[int]:
    """Runs remembered as in progress that the recent-window listing no longer shows.

    They may have finished late, after leaving the window; the caller fetches them one by one,
    least recently seen first, so a capped number per cycle still reaches every one in turn.
    """
    if state is None:
        return []
    stale = [
        (run.last_seen, run_id)
        for run_id, run in state.runs.items()
        if run_id not in listed and is_in_progress(run.state)
    ]
    return [run_id for _, run_id in sorted(stale)]


@dataclass(frozen=True)
class ListingWindow:
    """Where a monitor's listing starts; `limited` when the catch-up limit cut it short."""

    since: datetime
    limited: bool = False


def listing_window(
    state: MonitorState | None,
    now: datetime,
    *,
    lookback: timedelta,
    catchup_limit: timedelta,
    first_start_lookback: timedelta = timedelta(0),
) -> ListingWindow:
    """The listing reaches `lookback` before the last successful poll (or, before the first,
    before watching began), so downtime or an API outage longer than the lookback loses no run.
    """
    if state is None:
        anchor = now - first_start_lookback
    else:
        anchor = min(now, state.last_polled_at or state.watch_since)
    since = anchor - lookback
    floor = now - max(catchup_limit, lookback + first_start_lookback)
    if since < floor:
        return ListingWindow(floor, limited=True)
    return ListingWindow(since)


def _stamp(old: datetime | None, now: datetime, policy: DetectionPolicy) -> datetime:
    """`now`, unless the old stamp is recent enough; stamps only ever lag by one step."""
    if old is not None and timedelta(0) <= now - old < policy.stamp_granularity:
        return old
    return now


def _is_history(run: MonitorRun, watch_since: datetime) -> bool:
    return run.started_at is None or run.started_at < watch_since


def _event_order(run: MonitorRun | RunEvent) -> tuple[float, int]:
    """Oldest first, runs without a start time last; the run ID breaks ties."""
    return (run.started_at.timestamp() if run.started_at else float("inf"), run.run_id)
