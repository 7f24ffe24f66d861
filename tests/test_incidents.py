"""Incidents are pure too: which runs open one, which `ok` run closes it, when a reminder is due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from notifier.detect.runs import DetectionPolicy, detect, due_reminder
from notifier.domain.models import Incident, MonitorRun, MonitorState, RunEvent

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
POLICY = DetectionPolicy(
    notify_states=frozenset({"alert", "error"}),
    retention=timedelta(hours=1),
    in_progress_limit=timedelta(hours=24),
)


def run(run_id: int, state: str | None, minutes: float | None) -> MonitorRun:
    started = None if minutes is None else T0 + timedelta(minutes=minutes)
    return MonitorRun(run_id=run_id, monitor_id=1, state=state, started_at=started)


def watching() -> MonitorState:
    """A monitor baselined before T0 with nothing failing."""
    return detect(None, [], T0 - timedelta(hours=1), POLICY).state


def notices(detection_notices: list) -> list[tuple[str, int]]:
    return [(n.kind, n.event.run_id) for n in detection_notices]


@pytest.mark.parametrize(
    ("listing", "expected", "open_run"),
    [
        pytest.param([run(1, "alert", 1)], [("run", 1)], 1, id="alert-opens"),
        pytest.param(
            [run(1, "alert", 1), run(2, "ok", 2)],
            [("run", 1), ("recovered", 2)],
            None,
            id="newer-ok-closes",
        ),
        pytest.param(
            [run(2, "ok", 1), run(1, "alert", 2)], [("run", 1)], 1, id="older-ok-does-not-close"
        ),
        pytest.param([run(2, "ok", 1)], [], None, id="ok-without-incident-is-silent"),
        pytest.param(
            [run(1, "alert", 1), run(2, "skipped", 2), run(3, "cancelled", 3)],
            [("run", 1)],
            1,
            id="skipped-and-cancelled-do-not-close",
        ),
        pytest.param(
            [run(1, "alert", 1), run(2, "checking", 2)],
            [("run", 1)],
            1,
            id="in-progress-does-not-close",
        ),
        pytest.param(
            [run(1, "alert", 1), run(2, "ok", 2), run(3, "error", 3)],
            [("run", 1), ("recovered", 2), ("run", 3)],
            3,
            id="fail-pass-fail-is-two-incidents",
        ),
        pytest.param(
            [run(1, "alert", 1), run(2, "ok", 1)],
            [("run", 1), ("recovered", 2)],
            None,
            id="same-start-later-id-is-newer",
        ),
        pytest.param(
            [run(1, "alert", 1), run(2, "ok", None)],
            [("run", 1), ("recovered", 2)],
            None,
            id="ok-without-start-counts-as-newest",
        ),
    ],
)
def test_incident_lifecycle(
    listing: list[MonitorRun], expected: list[tuple[str, int]], open_run: int | None
) -> None:
    detection = detect(watching(), listing, T0 + timedelta(minutes=5), POLICY)
    assert notices(detection.notices) == expected
    incident = detection.state.incident
    assert (incident.last.run_id if incident else None) == open_run


def test_later_failures_join_the_incident_and_a_recovery_closes_it_once() -> None:
    first = detect(watching(), [run(1, "alert", 1)], T0 + timedelta(minutes=2), POLICY)
    incident = first.state.incident
    assert incident is not None and incident.id == "1-1-alert" and incident.first.run_id == 1

    second = detect(
        first.state, [run(1, "alert", 1), run(2, "error", 3)], T0 + timedelta(minutes=4), POLICY
    )
    joined = second.state.incident
    assert joined is not None and joined.id == "1-1-alert"
    assert (joined.first.run_id, joined.last.run_id, joined.last.state) == (1, 2, "error")
    assert joined.last_notified_at == T0 + timedelta(minutes=4)
    assert [n.incident.id for n in second.notices] == ["1-1-alert"]

    listing = [run(1, "alert", 1), run(2, "error", 3), run(3, "ok", 5)]
    third = detect(second.state, listing, T0 + timedelta(minutes=6), POLICY)
    [recovered] = third.notices
    assert recovered.kind == "recovered" and recovered.incident == joined
    assert third.state.incident is None
    assert detect(third.state, listing, T0 + timedelta(minutes=7), POLICY).notices == []


def test_an_older_run_failing_late_joins_without_moving_the_incident_back() -> None:
    first = detect(watching(), [run(2, "alert", 3), run(1, "checking", 1)], T0, POLICY)
    late = detect(
        first.state, [run(2, "alert", 3), run(1, "error", 1)], T0 + timedelta(minutes=1), POLICY
    )
    assert notices(late.notices) == [("run", 1)]
    incident = late.state.incident
    assert incident is not None and incident.last.run_id == 2


def test_history_opens_no_incident() -> None:
    detection = detect(None, [run(1, "alert", -5)], T0, POLICY)
    assert detection.notices == [] and detection.state.incident is None


def incident_at(last_notified: datetime, reminders: int = 0) -> MonitorState:
    event = RunEvent(monitor_id=1, run_id=1, state="alert", started_at=T0)
    return MonitorState(
        watch_since=T0,
        baselined=True,
        incident=Incident(
            id=event.key,
            opened_at=T0,
            first=event,
            last=event,
            last_notified_at=last_notified,
            reminders=reminders,
        ),
    )


@pytest.mark.parametrize(
    ("elapsed", "interval", "due"),
    [
        pytest.param(timedelta(minutes=59), timedelta(hours=1), False, id="not-yet"),
        pytest.param(timedelta(hours=1), timedelta(hours=1), True, id="exactly-due"),
        pytest.param(timedelta(hours=5), timedelta(hours=1), True, id="overdue-is-one-reminder"),
        pytest.param(timedelta(hours=5), None, False, id="off"),
        pytest.param(timedelta(hours=5), timedelta(0), False, id="zero-is-off"),
    ],
)
def test_due_reminder(elapsed: timedelta, interval: timedelta | None, due: bool) -> None:
    state = incident_at(T0, reminders=2)
    reminded = due_reminder(state, T0 + elapsed, interval)
    assert (reminded is not None) == due
    if reminded is not None:
        assert reminded.reminders == 3 and reminded.last_notified_at == T0 + elapsed
        assert reminded.id == state.incident.id  # type: ignore[union-attr]


def test_no_reminder_without_an_open_incident() -> None:
    assert due_reminder(watching(), T0 + timedelta(days=1), timedelta(hours=1)) is None
    assert due_reminder(None, T0, timedelta(hours=1)) is None
