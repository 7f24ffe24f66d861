"""The PagerDuty event for each kind of notification (`render.pagerduty`), table-tested, and every
event checked against PagerDuty's own request schema and limits (the fake's validator)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jsonschema
import pytest
from pydantic import SecretStr, ValidationError

from notifier.deliver.render.pagerduty import (
    DEDUP_KEY_MAX,
    SUMMARY_MAX,
    dedup_key,
    event_body,
    pagerduty_event,
)
from notifier.domain.models import Incident, Links, MonitorInfo, Notification, RunEvent
from notifier.route.destinations import (
    PAGERDUTY_SEVERITY,
    FileContext,
    PagerDutyDestination,
)
from tests.fakes.pagerduty import enqueue_schema, event_problems

KEY = "Rk0123456789abcdef0123456789abcd"
OPENED = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
VALIDATOR = jsonschema.Draft202012Validator(enqueue_schema())
Kind = Literal["alert", "error", "recovered", "reminder", "lone"]


def note(kind: Kind, *, error: str | None = None, incident_id: str = "7-100-alert") -> Notification:
    """A notification of `kind`; "lone" is an alert carrying no incident (an old outbox entry)."""
    state = {"recovered": "ok", "error": "error"}.get(kind, "alert")
    first = RunEvent(monitor_id=7, run_id=100, state="error" if kind == "error" else "alert")
    event = RunEvent(
        monitor_id=7, run_id=105, state=state, started_at=OPENED + timedelta(minutes=5)
    )
    incident = Incident(
        id=incident_id,
        opened_at=OPENED,
        first=first,
        last=first,
        last_notified_at=OPENED,
        reminders=2 if kind == "reminder" else 0,
    )
    return Notification(
        id=f"7-105-{kind}",
        kind={"recovered": "recovered", "reminder": "reminder"}.get(kind, "run"),  # type: ignore[arg-type]
        event=event,
        monitor=MonitorInfo(
            id=7, name="orders", monitor_type="diff", tags=["prod", "finance"], owner="a@b.test"
        ),
        error_message=error,
        links=Links(monitor="https://app.datafold.test/monitors/7", diff="https://d.test/105"),
        detected_at=OPENED + timedelta(minutes=6),
        incident=None if kind == "lone" else incident,
    )


def render(n: Notification, severities: dict[str, str] | None = None) -> dict[str, Any]:
    event = pagerduty_event(n, routing_key=KEY, severities=severities or PAGERDUTY_SEVERITY)
    assert event_problems(VALIDATOR, event_body(event)) == []
    return event


@pytest.mark.parametrize(
    ("kind", "action", "key", "severity", "summary_start"),
    [
        ("alert", "trigger", "7-100-alert", "error", "ALERT: orders (monitor 7, run 105)"),
        ("error", "trigger", "7-100-alert", "critical", "ERROR: orders (monitor 7, run 105)"),
        ("reminder", "trigger", "7-100-alert", "error", "Still alert: orders"),
        ("recovered", "resolve", "7-100-alert", None, None),
        ("lone", "trigger", "7-105-lone", "error", "ALERT: orders"),
    ],
)
def test_each_kind_is_one_action_on_the_incidents_key(
    kind: Kind, action: str, key: str, severity: str | None, summary_start: str | None
) -> None:
    event = render(note(kind))
    assert (event["event_action"], event["dedup_key"], event["routing_key"]) == (action, key, KEY)
    if action == "resolve":
        assert set(event) == {"routing_key", "event_action", "dedup_key"}
        return
    payload = event["payload"]
    assert payload["severity"] == severity
    assert payload["summary"].startswith(summary_start)
    assert payload["source"] == "datafold" and payload["timestamp"] == "2026-11-29T08:06:00Z"
    assert (payload["component"], payload["group"]) == ("orders", "diff")
    details = payload["custom_details"]
    assert details["monitor"] == {
        "id": 7,
        "name": "orders",
        "type": "diff",
        "url": "https://app.datafold.test/monitors/7",
    }
    assert details["run"]["id"] == 105 and details["run"]["diff_url"] == "https://d.test/105"
    assert (details["tags"], details["owner"]) == (["prod", "finance"], "a@b.test")
    assert event["links"] == [
        {"href": "https://d.test/105", "text": "Diff in Datafold"},
        {"href": "https://app.datafold.test/monitors/7", "text": "Monitor"},
    ]
    assert event["client"] == "datafold-notifier"
    assert event["client_url"] == "https://app.datafold.test/monitors/7"


def test_every_alert_of_an_incident_retriggers_one_key() -> None:
    keys = {render(note(kind))["dedup_key"] for kind in ("alert", "reminder", "recovered")}
    assert keys == {"7-100-alert"}


def test_the_severity_mapping_is_configurable_per_destination() -> None:
    destination = PagerDutyDestination(
        routing_key=SecretStr(KEY), severity={"alert": "warning", "error": "error"}
    )
    assert render(note("alert"), destination.severities)["payload"]["severity"] == "warning"
    assert render(note("error"), destination.severities)["payload"]["severity"] == "error"
    other = note("alert").model_copy(
        update={"event": RunEvent(monitor_id=7, run_id=105, state="warned")}
    )
    assert render(other)["payload"]["severity"] == "warning"  # an unmapped state


def test_a_very_long_error_is_cut_to_pagerdutys_limits() -> None:
    event = render(note("error", error="boom\n" * 3000))
    summary = event["payload"]["summary"]
    assert len(summary) == SUMMARY_MAX and summary.endswith("…") and "\n" not in summary
    assert event["payload"]["custom_details"]["error"].startswith("boom\nboom")


def test_a_dedup_key_never_exceeds_255() -> None:
    assert len(dedup_key(note("alert", incident_id="x" * 400))) == DEDUP_KEY_MAX
    render(note("alert", incident_id="x" * 400))


def test_the_same_notification_gives_the_same_bytes() -> None:
    n = note("error", error="boom")
    assert event_body(render(n)) == event_body(render(n))


def test_the_destination_resolves_its_key_and_endpoint_from_the_routes_file() -> None:
    context = FileContext(environ={"PD_KEY": KEY}, allow_http=False)
    table = {"type": "pagerduty", "routing_key": "env:PD_KEY", "region": "eu"}
    destination = PagerDutyDestination.model_validate(table, context=context)
    assert destination.endpoint == "https://events.eu.pagerduty.com/v2/enqueue"
    assert KEY not in repr(destination) and KEY not in str(destination)
    assert PagerDutyDestination(routing_key=SecretStr(KEY)).endpoint == (
        "https://events.pagerduty.com/v2/enqueue"
    )
    with pytest.raises(ValidationError, match="env:NAME") as raised:
        PagerDutyDestination.model_validate({**table, "routing_key": KEY}, context=context)
    # The routes file reports errors without their input (routes_file._describe): check so.
    assert KEY not in str(raised.value.errors(include_url=False, include_input=False))
    remote = {**table, "url": "http://pd.example.test/v2/enqueue"}
    with pytest.raises(ValidationError, match="NOTIFIER_ALLOW_HTTP"):
        PagerDutyDestination.model_validate(remote, context=context)
    with pytest.raises(ValidationError, match="critical"):
        PagerDutyDestination.model_validate(
            {**table, "severity": {"alert": "high"}}, context=context
        )


def escalated_reminder() -> Notification:
    """A reminder of an incident that opened with an alert and whose latest run is an error."""
    n = note("reminder")
    assert n.incident is not None
    last = RunEvent(monitor_id=7, run_id=104, state="error")
    return n.model_copy(update={"incident": n.incident.model_copy(update={"last": last})})


@pytest.mark.parametrize(
    ("n", "expected_class"),
    [
        (note("alert"), "alert"),
        (note("error", error="boom"), "error"),
        (note("reminder"), "alert"),
        (escalated_reminder(), "error"),  # the incident's latest run, not the reminder's event
        (note("lone"), "alert"),
    ],
    ids=["alert", "error", "reminder", "reminder of an escalated incident", "lone"],
)
def test_the_class_is_the_failing_state(n: Notification, expected_class: str) -> None:
    assert render(n)["payload"]["class"] == expected_class


@pytest.mark.parametrize(
    ("monitor", "component", "group"),
    [
        ({"name": "orders", "monitor_type": "metric"}, "orders", "metric"),
        ({"name": None, "monitor_type": None}, "Monitor 7", "monitor"),
        ({"name": "o" * 300, "monitor_type": "t" * 300}, "o" * 254 + "…", "t" * 254 + "…"),
    ],
    ids=["named", "no name, no type", "cut to 255"],
)
def test_component_is_the_monitor_and_group_its_type(
    monitor: dict[str, Any], component: str, group: str
) -> None:
    n = note("alert")
    n = n.model_copy(update={"monitor": n.monitor.model_copy(update=monitor)})
    payload = render(n)["payload"]
    assert (payload["component"], payload["group"]) == (component, group)
