"""The standard webhook payload of each notification kind: schema, incident, stable bytes."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from notifier.deliver.render import webhook as webhook_payload
from notifier.domain.models import Incident, Links, MonitorInfo, Notification, RunEvent
from tests.fakes.samples import DETECTED, MONITOR_URL, STARTED, schema_validator

MONITOR = MonitorInfo(
    id=4521,
    name="orders prod vs staging",
    monitor_type="diff",
    tags=["finance", "tier-1"],
    owner="data-team@example.com",
)
DOC = Path(__file__).resolve().parents[1] / "docs" / "webhook-payload.md"

ALERT_RUN = RunEvent(
    monitor_id=4521, run_id=98123, state="alert", started_at=STARTED, diff_id=77001
)
ERROR_RUN = RunEvent(
    monitor_id=4521, run_id=98140, state="error", started_at=STARTED + timedelta(hours=1)
)
OK_RUN = RunEvent(
    monitor_id=4521,
    run_id=98150,
    state="ok",
    started_at=STARTED + timedelta(hours=2),
    diff_id=77020,
)
INCIDENT = Incident(
    id=ALERT_RUN.key, opened_at=DETECTED, first=ALERT_RUN, last=ALERT_RUN, last_notified_at=DETECTED
)


def links(event: RunEvent) -> Links:
    diff = f"https://app.datafold.com/datadiffs/{event.diff_id}/overview" if event.diff_id else None
    return Links(monitor=MONITOR_URL, diff=diff)


def alert(incident: Incident | None = INCIDENT) -> Notification:
    """The alert run that opened `INCIDENT`."""
    return Notification(
        id=ALERT_RUN.key,
        event=ALERT_RUN,
        monitor=MONITOR,
        links=links(ALERT_RUN),
        detected_at=DETECTED,
        incident=incident,
    )


def reminder(incident: Incident = INCIDENT, count: int = 1) -> Notification:
    """As the service builds it: the incident's latest run, the incident after this reminder."""
    at = DETECTED + timedelta(hours=4 * count)
    reminded = incident.model_copy(update={"reminders": count, "last_notified_at": at})
    return Notification(
        id=f"{incident.id}-reminder-{count}",
        kind="reminder",
        event=incident.last,
        monitor=MONITOR,
        links=links(incident.last),
        detected_at=at,
        incident=reminded,
    )


def recovered(incident: Incident | None = INCIDENT) -> Notification:
    """The `ok` run that closes `incident`."""
    return Notification(
        id=OK_RUN.key,
        kind="recovered",
        event=OK_RUN,
        monitor=MONITOR,
        links=links(OK_RUN),
        detected_at=DETECTED + timedelta(hours=2, minutes=11),
        incident=incident,
    )


ESCALATED = INCIDENT.model_copy(update={"last": ERROR_RUN})
NO_START = Incident(
    id="4521-1-error",
    opened_at=datetime(2025, 3, 14, 9, 41, 7, 250000),  # naive: read as UTC
    first=RunEvent(monitor_id=4521, run_id=1, state="error"),
    last=RunEvent(monitor_id=4521, run_id=1, state="error"),
    last_notified_at=DETECTED,
)

CASES: dict[str, Notification] = {
    "alert without incident": alert(incident=None),
    "alert": alert(),
    "escalated to error": Notification(
        id=ERROR_RUN.key,
        event=ERROR_RUN,
        monitor=MONITOR,
        error_message="relation <orders> does not exist",
        links=links(ERROR_RUN),
        detected_at=DETECTED + timedelta(hours=1),
        incident=ESCALATED,
    ),
    "reminder": reminder(),
    "third reminder of escalated": reminder(ESCALATED, count=3),
    "reminder without start times": reminder(NO_START),
    "recovered": recovered(),
    "recovered from escalated": recovered(ESCALATED),
    "recovered without start times": recovered(NO_START),
    "recovered, incident lost": recovered(incident=None),
}


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    return schema_validator("webhook-payload.v1.json")


@pytest.mark.parametrize("n", CASES.values(), ids=CASES.keys())
def test_every_kind_matches_the_schema(validator: Draft202012Validator, n: Notification) -> None:
    payload = webhook_payload.webhook_payload(n)
    validator.validate(payload)
    assert payload["version"] == webhook_payload.WEBHOOK_PAYLOAD_VERSION == 1
    expected_keys = {"notification_id", "monitor", "run"}
    if n.incident is not None or n.kind != "run":
        expected_keys.add("incident")
    assert set(payload["data"]) == expected_keys
    if payload["data"].get("incident") is not None:
        assert set(payload["data"]["incident"]) == {
            "id",
            "opened_at",
            "first_run",
            "last_run",
            "reminders",
        }


@pytest.mark.parametrize(
    ("n", "event_type"),
    [
        (alert(), "monitor.run.alert"),
        (CASES["escalated to error"], "monitor.run.error"),
        (reminder(), "monitor.reminder"),
        (recovered(), "monitor.recovered"),
    ],
)
def test_event_type_by_kind(n: Notification, event_type: str) -> None:
    assert webhook_payload.webhook_payload(n)["type"] == event_type
    assert webhook_payload.notification_event_type(n) == event_type


def test_a_run_without_incident_is_unchanged() -> None:
    """Outbox entries from before incidents: the payload and bytes of earlier releases."""
    payload = webhook_payload.webhook_payload(alert(incident=None))
    assert "incident" not in payload["data"]
    with_incident = webhook_payload.webhook_payload(alert())
    del with_incident["data"]["incident"]
    assert with_incident == payload


def test_recovery_and_reminder_carry_the_alerts_incident_id() -> None:
    """A receiver ties a recovery to its alert by `data.incident.id` == the alert's ID."""
    fired = webhook_payload.webhook_payload(alert())
    for later in (reminder(), recovered(), reminder(ESCALATED, 2), recovered(ESCALATED)):
        payload = webhook_payload.webhook_payload(later)
        assert payload["data"]["incident"]["id"] == fired["data"]["notification_id"]
        assert payload["data"]["incident"]["id"] == fired["data"]["incident"]["id"]
        assert payload["data"]["notification_id"] != fired["data"]["notification_id"]


def test_recovered_payload() -> None:
    data = webhook_payload.webhook_payload(recovered(ESCALATED))["data"]
    assert data["run"] == {
        "id": 98150,
        "state": "ok",
        "started_at": "2025-03-14T11:30:00Z",
        "diff_id": 77020,
        "diff_url": "https://app.datafold.com/datadiffs/77020/overview",
        "error": None,
    }
    assert data["incident"] == {
        "id": "4521-98123-alert",
        "opened_at": "2025-03-14T09:41:07Z",
        "first_run": {"id": 98123, "state": "alert", "started_at": "2025-03-14T09:30:00Z"},
        "last_run": {"id": 98140, "state": "error", "started_at": "2025-03-14T10:30:00Z"},
        "reminders": 0,
    }


def test_reminder_payload() -> None:
    payload = webhook_payload.webhook_payload(reminder(ESCALATED, count=3))
    assert payload["timestamp"] == "2025-03-14T21:41:07Z"
    assert payload["data"]["notification_id"] == "4521-98123-alert-reminder-3"
    assert payload["data"]["run"]["id"] == 98140  # the latest failing run
    assert payload["data"]["incident"]["reminders"] == 3


def test_unknown_times_are_null_and_naive_times_utc() -> None:
    incident = webhook_payload.webhook_payload(recovered(NO_START))["data"]["incident"]
    assert incident["opened_at"] == "2025-03-14T09:41:07.250000Z"
    assert incident["first_run"]["started_at"] is None
    assert incident["last_run"]["started_at"] is None


def test_lost_incident_is_null_not_absent() -> None:
    assert webhook_payload.webhook_payload(recovered(incident=None))["data"]["incident"] is None


@pytest.mark.parametrize("n", CASES.values(), ids=CASES.keys())
def test_bytes_survive_the_outbox(n: Notification) -> None:
    """A notification restored from the outbox renders, and so signs, the same bytes."""
    restored = Notification.model_validate_json(n.model_dump_json())
    body = webhook_payload.webhook_body(n)
    assert webhook_payload.webhook_body(restored) == body
    assert body.isascii() and json.loads(body) == webhook_payload.webhook_payload(n)


@pytest.mark.parametrize(
    "change",
    [
        {"type": "monitor.resolved"},
        {"type": "monitor.recovered.extra"},
        {"data": {"incident": {"id": ""}}},
        {"data": {"incident": {"reminders": -1}}},
        {"data": {"incident": {"opened_at": "2025-03-14T09:41:07+00:00"}}},
        {"data": {"incident": {"last_run": {"id": "98123"}}}},
        {"data": {"incident": "drop"}},
    ],
    ids=lambda change: json.dumps(change)[:50],
)
def test_the_schema_refuses_what_the_notifier_never_sends(
    validator: Draft202012Validator, change: dict[str, Any]
) -> None:
    valid = webhook_payload.webhook_payload(recovered())
    assert validator.is_valid(valid)
    broken = json.loads(json.dumps(valid))
    if "type" in change:
        broken["type"] = change["type"]
    else:
        incident_change = change["data"]["incident"]
        if incident_change == "drop":
            del broken["data"]["incident"]
        else:
            for key, value in incident_change.items():
                if isinstance(value, dict):
                    broken["data"]["incident"][key].update(value)
                else:
                    broken["data"]["incident"][key] = value
    assert not validator.is_valid(broken)


def test_a_run_may_leave_the_incident_out_but_not_a_reminder(
    validator: Draft202012Validator,
) -> None:
    run = webhook_payload.webhook_payload(alert(incident=None))
    assert validator.is_valid(run)
    late = webhook_payload.webhook_payload(reminder())
    del late["data"]["incident"]
    assert not validator.is_valid(late)


def doc_json_blocks() -> list[Any]:
    text = DOC.read_text(encoding="utf-8")
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", text, re.DOTALL)]


def test_documented_examples_are_what_is_rendered() -> None:
    run, recovery, reminded = doc_json_blocks()
    assert run == webhook_payload.webhook_payload(alert())
    assert recovery == webhook_payload.webhook_payload(recovered(ESCALATED))
    assert reminded == webhook_payload.webhook_payload(reminder(ESCALATED, count=2))
