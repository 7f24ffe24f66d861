"""One builder turns every notice (alert, error, recovered, reminder) into its notification."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from notifier.detect.notices import (
    LinkTemplate,
    build_notification,
    due_reminders,
    notification_id,
    reminder_notice,
    told,
    wants_error_message,
)
from notifier.detect.runs import Notice
from notifier.domain.models import Incident, Links, MonitorInfo, MonitorState, RunEvent

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
LINKS = LinkTemplate(
    host="https://app.example/", monitor_url_template="{host}/monitors/{monitor_id}"
)
MONITOR = MonitorInfo(id=4521, name="orders")


def event(run_id: int, state: str, diff_id: int | None = None) -> RunEvent:
    return RunEvent(monitor_id=4521, run_id=run_id, state=state, started_at=T0, diff_id=diff_id)


ALERT = event(10, "alert", diff_id=77)
ERROR = event(11, "error")
OK = event(12, "ok")
INCIDENT = Incident(id=ALERT.key, opened_at=T0, first=ALERT, last=ERROR, last_notified_at=T0)
REMINDED = INCIDENT.model_copy(update={"reminders": 2, "last_notified_at": T0 + timedelta(hours=2)})


@pytest.mark.parametrize(
    ("notice", "kind", "event_kind", "expected_id", "wants_message"),
    [
        pytest.param(
            Notice("run", ALERT, INCIDENT), "run", "alert", "4521-10-alert", False, id="alert"
        ),
        pytest.param(
            Notice("run", ERROR, INCIDENT), "run", "error", "4521-11-error", True, id="error"
        ),
        pytest.param(
            Notice("recovered", OK, INCIDENT),
            "recovered",
            "recovered",
            "4521-12-ok",
            False,
            id="recovered",
        ),
        pytest.param(
            reminder_notice(REMINDED),
            "reminder",
            "reminder",
            "4521-10-alert-reminder-2",
            True,
            id="reminder-about-an-error",
        ),
        pytest.param(
            reminder_notice(REMINDED.model_copy(update={"last": ALERT})),
            "reminder",
            "reminder",
            "4521-10-alert-reminder-2",
            False,
            id="reminder-about-an-alert",
        ),
    ],
)
def test_each_notice_becomes_its_notification(
    notice: Notice, kind: str, event_kind: str, expected_id: str, wants_message: bool
) -> None:
    message = "relation does not exist" if wants_message else None
    n = build_notification(notice, monitor=MONITOR, error_message=message, now=T0, links=LINKS)
    assert (n.kind, n.event_kind, n.id) == (kind, event_kind, expected_id)
    assert notification_id(notice) == expected_id
    assert wants_error_message(notice) is wants_message
    assert n.event == notice.event
    assert n.incident == notice.incident
    assert n.monitor == MONITOR
    assert n.error_message == message
    assert n.detected_at == T0


def test_a_reminder_is_about_the_incidents_latest_run() -> None:
    notice = reminder_notice(REMINDED)
    assert notice.event == ERROR
    assert notice.incident == REMINDED


@pytest.mark.parametrize(
    ("run", "template", "expected"),
    [
        (
            ALERT,
            LINKS,
            Links(
                monitor="https://app.example/monitors/4521",
                diff="https://app.example/datadiffs/77/overview",
            ),
        ),
        (ERROR, LINKS, Links(monitor="https://app.example/monitors/4521", diff=None)),
        (
            ERROR,
            LinkTemplate(
                host="https://df.internal", monitor_url_template="{host}/m?id={monitor_id}"
            ),
            Links(monitor="https://df.internal/m?id=4521", diff=None),
        ),
    ],
)
def test_links(run: RunEvent, template: LinkTemplate, expected: Links) -> None:
    assert template.links(run) == expected
    notice = Notice("run", run, INCIDENT)
    built = build_notification(notice, monitor=MONITOR, error_message=None, now=T0, links=template)
    assert built.links == expected


def test_due_reminders_only_on_polled_monitors_with_an_incident_open_long_enough() -> None:
    stale = MonitorState(watch_since=T0, incident=INCIDENT)
    fresh = MonitorState(
        watch_since=T0,
        incident=INCIDENT.model_copy(update={"last_notified_at": T0 + timedelta(hours=2)}),
    )
    monitors = {1: stale, 2: fresh, 3: MonitorState(watch_since=T0), 4: stale}
    later = T0 + timedelta(hours=2, minutes=30)
    due = due_reminders(monitors, [1, 2, 3, 5], later, timedelta(hours=1))
    assert [(n.kind, n.incident.reminders, n.incident.last_notified_at) for n in due] == [
        ("reminder", 1, later)
    ]
    assert due_reminders(monitors, [1, 4], later, None) == []


@pytest.mark.parametrize(
    ("notice", "event", "fields"),
    [
        (
            Notice("run", ERROR, INCIDENT),
            "run_detected",
            {"monitor_id": 4521, "run_id": 11, "state": "error", "monitor": "orders"},
        ),
        (
            Notice("recovered", OK, INCIDENT),
            "monitor_recovered",
            {"monitor_id": 4521, "run_id": 12, "monitor": "orders", "incident": "4521-10-alert"},
        ),
        (
            reminder_notice(REMINDED),
            "reminder_due",
            {
                "monitor_id": 4521,
                "incident": "4521-10-alert",
                "open_since": T0.isoformat(),
                "reminder": 2,
            },
        ),
    ],
)
def test_told(notice: Notice, event: str, fields: dict[str, object]) -> None:
    assert told(notice, MONITOR) == (event, fields)
