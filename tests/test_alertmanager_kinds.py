"""The Alertmanager payload of each notification kind: recoveries resolve what fired, reminders
fire it again (`notification_payload`)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from notifier.deliver.render import alertmanager
from notifier.deliver.render.alertmanager import fingerprint
from notifier.domain.models import Incident, Links, Notification, RunEvent
from tests.fakes.samples import DETECTED, MONITOR_URL, STARTED, notification
from tests.test_alertmanager import (
    ALERT_KEYS,
    CLASSIC_LABEL_NAME,
    EXTERNAL_URL,
    RECEIVER,
    TOP_LEVEL_KEYS,
    doc_json_blocks,
    only_alert,
    recovery,
    render,
    validator,
)

__all__ = ["validator"]  # the schema fixture, shared with test_alertmanager


ALERT_RUN = RunEvent(
    monitor_id=4521, run_id=98123, state="alert", started_at=STARTED, diff_id=77001
)
ERROR_RUN = RunEvent(
    monitor_id=4521, run_id=98140, state="error", started_at=STARTED + timedelta(minutes=30)
)
INCIDENT = Incident(
    id=ALERT_RUN.key, opened_at=DETECTED, first=ALERT_RUN, last=ALERT_RUN, last_notified_at=DETECTED
)
ESCALATED = INCIDENT.model_copy(update={"last": ERROR_RUN})
NO_START = Incident(
    id="4521-1-alert",
    opened_at=DETECTED,
    first=RunEvent(monitor_id=4521, run_id=1, state="alert"),
    last=RunEvent(monitor_id=4521, run_id=1, state="alert"),
    last_notified_at=DETECTED,
)


def in_incident(n: Notification, incident: Incident | None, **update: Any) -> Notification:
    return n.model_copy(update={"incident": incident, **update})


def run_of(event: RunEvent, incident: Incident) -> Notification:
    """The alert/error notification of `event`, as detection builds it: the incident as of it."""
    n = notification(state=event.state, run_id=event.run_id, started_at=event.started_at)
    return in_incident(
        n, incident, detected_at=DETECTED + (event.run_id - 98123) * timedelta(minutes=1)
    )


def reminded(incident: Incident, count: int = 1) -> Notification:
    at = DETECTED + timedelta(hours=4 * count)
    after = incident.model_copy(update={"reminders": count, "last_notified_at": at})
    last = incident.last
    n = notification(
        state=last.state,
        run_id=last.run_id,
        started_at=last.started_at,
        diff_id=last.diff_id,
        links=None if last.diff_id else Links(monitor=MONITOR_URL),
    )
    return in_incident(
        n, after, id=f"{incident.id}-reminder-{count}", kind="reminder", detected_at=at
    )


def recovered_from(incident: Incident | None) -> Notification:
    return in_incident(recovery(), incident, kind="recovered")


def message(n: Notification) -> dict[str, Any]:
    return alertmanager.notification_payload(n, receiver=RECEIVER, external_url=EXTERNAL_URL)


def by_state(payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {alert["labels"]["state"]: alert for alert in payload["alerts"]}


INCIDENT_CASES: dict[str, Notification] = {
    "opening alert": run_of(ALERT_RUN, INCIDENT),
    "escalating error": run_of(ERROR_RUN, ESCALATED),
    "reminder": reminded(INCIDENT),
    "reminder of escalated": reminded(ESCALATED, 3),
    "reminder, no start times": reminded(NO_START),
    "reminder, incident lost": in_incident(notification(), None, kind="reminder"),
    "recovered": recovered_from(INCIDENT),
    "recovered from escalated": recovered_from(ESCALATED),
    "recovered, no start times": recovered_from(NO_START),
    "recovered, incident lost": recovered_from(None),
}


@pytest.mark.parametrize("n", INCIDENT_CASES.values(), ids=INCIDENT_CASES.keys())
def test_every_kind_matches_the_schema(validator: Draft202012Validator, n: Notification) -> None:
    payload = message(n)
    validator.validate(payload)
    assert set(payload) == TOP_LEVEL_KEYS
    status = "resolved" if n.kind == "recovered" else "firing"
    assert payload["status"] == status
    for alert in payload["alerts"]:
        assert set(alert) == ALERT_KEYS
        assert alert["status"] == status
        assert alert["fingerprint"] == fingerprint(alert["labels"])
        assert all(CLASSIC_LABEL_NAME.match(name) for name in alert["annotations"])
        assert (alert["endsAt"] == "0001-01-01T00:00:00Z") is (status == "firing")
    assert payload["groupKey"] == '{}:{monitor_id="4521"}'
    assert len(payload["alerts"]) == (
        2
        if n
        in (INCIDENT_CASES["recovered from escalated"], INCIDENT_CASES["recovered, incident lost"])
        else 1
    )


@pytest.mark.parametrize("n", INCIDENT_CASES.values(), ids=INCIDENT_CASES.keys())
def test_bytes_survive_the_outbox(n: Notification) -> None:
    restored = Notification.model_validate_json(n.model_dump_json())
    body = alertmanager.notification_body(n, receiver=RECEIVER, external_url=EXTERNAL_URL)
    again = alertmanager.notification_body(restored, receiver=RECEIVER, external_url=EXTERNAL_URL)
    assert again == body
    assert body.isascii() and json.loads(body) == message(n)


def test_a_run_renders_as_before() -> None:
    """Kind "run" through `notification_payload` is `alertmanager_payload`, plus incident_id."""
    for n in (notification(), notification(state="error", error="boom")):
        assert message(n) == render(n)
    opened = message(run_of(ALERT_RUN, INCIDENT))
    plain = render(notification())
    assert only_alert(opened)["annotations"].pop("incident_id") == "4521-98123-alert"
    del opened["commonAnnotations"]["incident_id"]
    assert opened == plain


def test_recovery_resolves_the_alert_that_fired() -> None:
    fired = only_alert(message(run_of(ALERT_RUN, INCIDENT)))
    resolved = message(recovered_from(INCIDENT))
    ended = only_alert(resolved)
    assert ended["labels"] == fired["labels"]
    assert ended["fingerprint"] == fired["fingerprint"]
    assert ended["startsAt"] == fired["startsAt"] == "2025-03-14T09:30:00Z"
    assert ended["endsAt"] == "2025-03-14T10:30:00Z"  # the ok run's start
    assert ended["annotations"]["incident_id"] == fired["annotations"]["incident_id"]
    assert ended["annotations"]["summary"] == "Resolved: orders prod vs staging"
    assert resolved["commonLabels"] == ended["labels"]


def test_recovery_from_alert_then_error_resolves_both() -> None:
    fired = {
        event.state: only_alert(message(run_of(event, incident)))
        for event, incident in ((ALERT_RUN, INCIDENT), (ERROR_RUN, ESCALATED))
    }
    resolved = message(recovered_from(ESCALATED))
    assert [a["labels"]["state"] for a in resolved["alerts"]] == ["alert", "error"]
    ended = by_state(resolved)
    for state in ("alert", "error"):
        assert ended[state]["fingerprint"] == fired[state]["fingerprint"]
        assert ended[state]["labels"] == fired[state]["labels"]
        assert ended[state]["startsAt"] == fired[state]["startsAt"]
        assert ended[state]["endsAt"] == "2025-03-14T10:30:00Z"
    assert ended["error"]["startsAt"] == "2025-03-14T10:00:00Z"  # the error run's start
    assert ended["error"]["annotations"]["description"].endswith("the error is resolved.")
    # Alertmanager's common labels of the group: what both alerts share.
    assert set(resolved["commonLabels"]) == set(fired["alert"]["labels"]) - {
        "alertname",
        "severity",
        "state",
    }
    assert "description" not in resolved["commonAnnotations"]
    assert resolved["commonAnnotations"]["summary"] == "Resolved: orders prod vs staging"


def test_later_runs_of_the_first_state_keep_the_incidents_start() -> None:
    """Like Alertmanager, an alert that keeps firing keeps its startsAt."""
    again = RunEvent(
        monitor_id=4521, run_id=98130, state="alert", started_at=STARTED + timedelta(minutes=30)
    )
    later = message(run_of(again, INCIDENT.model_copy(update={"last": again})))
    first = message(run_of(ALERT_RUN, INCIDENT))
    assert only_alert(later)["startsAt"] == only_alert(first)["startsAt"] == "2025-03-14T09:30:00Z"
    assert only_alert(later)["fingerprint"] == only_alert(first)["fingerprint"]


@pytest.mark.parametrize("incident", [INCIDENT, ESCALATED], ids=["alert", "escalated"])
def test_reminder_refires_the_latest_alert(incident: Incident) -> None:
    fired = only_alert(message(run_of(incident.last, incident)))
    payload = message(reminded(incident, 2))
    again = only_alert(payload)
    assert payload["status"] == again["status"] == "firing"
    assert again["labels"] == fired["labels"]
    assert again["fingerprint"] == fired["fingerprint"]
    assert again["startsAt"] == fired["startsAt"]
    assert again["endsAt"] == "0001-01-01T00:00:00Z"
    assert again["annotations"]["reminder"] == "2"
    assert again["annotations"]["incident_id"] == "4521-98123-alert"
    assert again["annotations"]["notification_id"] == "4521-98123-alert-reminder-2"
    assert again["annotations"]["description"].endswith(
        "\nStill failing since 2025-03-14T09:41:07Z: reminder 2."
    )


def test_unknown_start_times_fall_back_to_when_the_incident_opened() -> None:
    fired = only_alert(message(reminded(NO_START)))
    ended = only_alert(message(recovered_from(NO_START)))
    assert fired["startsAt"] == ended["startsAt"] == "2025-03-14T09:41:07Z"
    assert fired["fingerprint"] == ended["fingerprint"]


def test_a_recovery_that_lost_its_incident_resolves_alert_and_error() -> None:
    resolved = message(recovered_from(None))
    assert {a["fingerprint"] for a in resolved["alerts"]} == {
        only_alert(render(notification()))["fingerprint"],
        only_alert(render(notification(state="error")))["fingerprint"],
    }
    assert "incident_id" not in resolved["commonAnnotations"]


def test_documented_incident_examples_are_what_is_rendered() -> None:
    firing, resolved_alert, escalated, reminder = doc_json_blocks()
    assert message(run_of(ALERT_RUN, INCIDENT)) == firing
    assert only_alert(message(recovered_from(INCIDENT))) == resolved_alert
    assert message(recovered_from(ESCALATED)) == escalated
    assert only_alert(message(reminded(ESCALATED, 2))) == reminder


def test_a_reminder_of_an_error_carries_its_error_and_the_recovery_none() -> None:
    reminder = reminded(ESCALATED, 2).model_copy(update={"error_message": "boom\nat line 2"})
    [again] = message(reminder)["alerts"]
    assert again["annotations"]["error"] == "boom\nat line 2"
    assert again["annotations"]["description"] == (
        "Run 98140 of Datafold monitor 4521 (diff) reported error.\nError: boom at line 2"
        "\nStill failing since 2025-03-14T09:41:07Z: reminder 2."
    )
    ended = message(recovered_from(ESCALATED).model_copy(update={"error_message": "boom"}))
    assert all("error" not in alert["annotations"] for alert in ended["alerts"])
