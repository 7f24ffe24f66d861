"""The Alertmanager webhook payload: its documented shape, stable labels, fingerprint, the doc."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from notifier.deliver.render import alertmanager
from notifier.deliver.render.alertmanager import (
    alertmanager_body,
    alertmanager_payload,
    fingerprint,
)
from notifier.domain.models import Incident, Links, MonitorInfo, Notification, RunEvent

STARTED = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
DETECTED = datetime(2025, 3, 14, 9, 41, 7, tzinfo=UTC)
RECOVERED = datetime(2025, 3, 14, 10, 30, tzinfo=UTC)
DIFF_URL = "https://app.datafold.com/datadiffs/77001/overview"
MONITOR_URL = "https://app.datafold.com/monitors/4521"
RECEIVER = "datafold-alerts"
EXTERNAL_URL = "https://app.datafold.com"
DOC = Path(__file__).resolve().parents[1] / "docs" / "alertmanager-payload.md"
CLASSIC_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

TOP_LEVEL_KEYS = {
    "version",
    "groupKey",
    "truncatedAlerts",
    "status",
    "receiver",
    "groupLabels",
    "commonLabels",
    "commonAnnotations",
    "externalURL",
    "alerts",
}
ALERT_KEYS = {
    "status",
    "labels",
    "annotations",
    "startsAt",
    "endsAt",
    "generatorURL",
    "fingerprint",
}


def notification(
    *,
    state: str = "alert",
    run_id: int = 98123,
    name: str | None = "orders prod vs staging",
    monitor_type: str | None = "diff",
    tags: list[str] | None = None,
    owner: str | None = "data-team@example.com",
    started_at: datetime | None = STARTED,
    diff_id: int | None = 77001,
    error: str | None = None,
    links: Links | None = None,
    detected_at: datetime = DETECTED,
) -> Notification:
    event = RunEvent(
        monitor_id=4521, run_id=run_id, state=state, started_at=started_at, diff_id=diff_id
    )
    return Notification(
        id=event.key,
        event=event,
        monitor=MonitorInfo(
            id=4521,
            name=name,
            monitor_type=monitor_type,
            tags=["finance", "tier-1"] if tags is None else tags,
            owner=owner,
        ),
        error_message=error,
        links=Links(monitor=MONITOR_URL, diff=DIFF_URL) if links is None else links,
        detected_at=detected_at,
    )


def recovery(**kwargs: Any) -> Notification:
    """The `ok` run that ends the alert of `notification()`."""
    defaults: dict[str, Any] = {
        "state": "ok",
        "run_id": 98150,
        "started_at": RECOVERED,
        "diff_id": 77020,
        "links": Links(
            monitor=MONITOR_URL, diff="https://app.datafold.com/datadiffs/77020/overview"
        ),
        "detected_at": RECOVERED + timedelta(minutes=11, seconds=7),
    }
    return notification(**{**defaults, **kwargs})


def render(n: Notification, **kwargs: Any) -> dict[str, Any]:
    return alertmanager_payload(n, receiver=RECEIVER, external_url=EXTERNAL_URL, **kwargs)


def only_alert(payload: dict[str, Any]) -> dict[str, Any]:
    assert len(payload["alerts"]) == 1
    alert: dict[str, Any] = payload["alerts"][0]
    return alert


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    text = resources.files("notifier").joinpath("schemas/alertmanager-webhook.v4.json").read_text()
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


NOTIFICATION_VARIANTS: list[dict[str, Any]] = [
    {},
    {"state": "error", "error": "boom", "diff_id": None, "links": Links(monitor=MONITOR_URL)},
    {"state": "error"},
    {"state": "queued"},
    {"state": "Weird State!"},
    {"state": ""},
    {"name": None, "monitor_type": None, "owner": None, "tags": []},
    {"name": "", "monitor_type": ""},
    {"started_at": None, "links": Links()},
    {"started_at": datetime(2025, 3, 14, 9, 30, 0, 123456)},  # naive: read as UTC
    {"detected_at": datetime(2025, 3, 14, 11, 41, 7, 5, tzinfo=timezone(timedelta(hours=2)))},
    {"state": "error", "error": '<>&"\n😀' * 100},
    {"name": "😀 ünïcödé\nline two", "tags": ["ä", "", "a b", "1st", "x-y.z", "tier-1", "tier_1"]},
    {"owner": "", "links": Links(monitor="", diff="")},
]
RENDER_OPTIONS: list[dict[str, Any]] = [
    {},
    {"resolved": True},
    {"resolved": True, "alert_state": "error", "starts_at": STARTED, "ends_at": RECOVERED},
    {"alert_state": "alert", "starts_at": datetime(2025, 1, 1, 0, 0, 0, 1)},
]


@pytest.mark.parametrize("options", RENDER_OPTIONS)
@pytest.mark.parametrize("kwargs", NOTIFICATION_VARIANTS)
def test_payload_matches_the_schema(
    validator: Draft202012Validator, kwargs: dict[str, Any], options: dict[str, Any]
) -> None:
    payload = render(notification(**kwargs), **options)
    validator.validate(payload)
    assert set(payload) == TOP_LEVEL_KEYS
    alert = only_alert(payload)
    assert set(alert) == ALERT_KEYS
    assert all(CLASSIC_LABEL_NAME.match(name) for name in alert["labels"])
    assert all(CLASSIC_LABEL_NAME.match(name) for name in alert["annotations"])
    assert all(value for value in alert["labels"].values())  # empty means absent: left out
    assert payload["status"] == alert["status"]
    assert payload["commonLabels"] == alert["labels"]
    assert payload["commonAnnotations"] == alert["annotations"]
    assert payload["truncatedAlerts"] == 0
    assert payload["version"] == "4"
    assert alert["fingerprint"] == fingerprint(alert["labels"])
    body = alertmanager_body(
        notification(**kwargs), receiver=RECEIVER, external_url=EXTERNAL_URL, **options
    )
    assert body.isascii() and json.loads(body) == payload


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"version": 4},
        {"status": "pending"},
        {"truncatedAlerts": -1},
        {"commonLabels": {"monitor_id": 4521}},
        {"alerts": [{"fingerprint": "45C517678F229054"}]},
        {"alerts": [{"endsAt": "2025-03-14 09:30:00"}]},
        {"alerts": [{"labels": {"": "x"}}]},
    ],
    ids=lambda change: json.dumps(change)[:40],
)
def test_the_schema_refuses_what_alertmanager_never_sends(
    validator: Draft202012Validator, payload: dict[str, Any]
) -> None:
    valid = render(notification())
    broken = {**valid, **payload}
    if "alerts" in payload:
        broken["alerts"] = [{**valid["alerts"][0], **payload["alerts"][0]}]
    if not payload:
        broken = {key: value for key, value in valid.items() if key != "groupKey"}
    assert validator.is_valid(valid)
    assert not validator.is_valid(broken)


@pytest.mark.parametrize(
    ("kwargs", "options", "status", "alertname", "severity", "state", "summary"),
    [
        ({}, {}, "firing", "DatafoldMonitorAlert", "warning", "alert", "Alert: "),
        ({"state": "error"}, {}, "firing", "DatafoldMonitorError", "critical", "error", "Error: "),
        ({"state": "queued"}, {}, "firing", "DatafoldMonitorRun", "info", "queued", "Queued: "),
        (
            {"state": "ok"},
            {"resolved": True, "alert_state": "alert"},
            "resolved",
            "DatafoldMonitorAlert",
            "warning",
            "alert",
            "Resolved: ",
        ),
        (
            {"state": "ok"},
            {"resolved": True, "alert_state": "error"},
            "resolved",
            "DatafoldMonitorError",
            "critical",
            "error",
            "Resolved: ",
        ),
    ],
)
def test_status_and_alert_kind(
    kwargs: dict[str, Any],
    options: dict[str, Any],
    status: str,
    alertname: str,
    severity: str,
    state: str,
    summary: str,
) -> None:
    payload = render(notification(**kwargs), **options)
    alert = only_alert(payload)
    assert payload["status"] == alert["status"] == status
    assert alert["labels"]["alertname"] == alertname
    assert alert["labels"]["severity"] == severity
    assert alert["labels"]["state"] == state
    assert alert["annotations"]["summary"] == summary + "orders prod vs staging"
    assert alert["annotations"]["run_state"] == kwargs.get("state", "alert")
    if status == "firing":
        assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    else:
        assert alert["endsAt"] == "2025-03-14T09:30:00Z"  # the recovering run's start


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"state": "error", "error": "table not found"}, "\nError: table not found"),
        ({"state": "error"}, "\nDatafold gave no error message."),
        ({"state": "alert"}, "Run 98123 of Datafold monitor 4521 (diff) reported alert."),
        ({"monitor_type": None}, "Run 98123 of Datafold monitor 4521 reported alert."),
    ],
)
def test_description(kwargs: dict[str, Any], expected: str) -> None:
    assert only_alert(render(notification(**kwargs)))["annotations"]["description"].endswith(
        expected
    )


def test_missing_values_are_left_out_or_fall_back() -> None:
    n = notification(
        name=None, monitor_type=None, owner=None, tags=[], started_at=None, links=Links()
    )
    alert = only_alert(render(n))
    assert alert["labels"] == {
        "alertname": "DatafoldMonitorAlert",
        "monitor": "Monitor 4521",
        "monitor_id": "4521",
        "severity": "warning",
        "source": "datafold",
        "state": "alert",
    }
    assert set(alert["annotations"]) == {
        "summary",
        "description",
        "notification_id",
        "run_id",
        "run_state",
    }
    assert alert["annotations"]["summary"] == "Alert: Monitor 4521"
    assert alert["startsAt"] == "2025-03-14T09:41:07Z"  # no start time: when it was detected
    assert alert["generatorURL"] == ""


def test_no_diff_means_no_diff_url() -> None:
    n = notification(diff_id=None, links=Links(monitor=MONITOR_URL))
    annotations = only_alert(render(n))["annotations"]
    assert "diff_url" not in annotations
    assert annotations["monitor_url"] == MONITOR_URL


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["finance", "tier-1"], {"tag_finance", "tag_tier_1"}),
        (["x-y.z", "a b", "1st"], {"tag_x_y_z", "tag_a_b", "tag_1st"}),
        (["ä", "😀"], {"tag__"}),
        (["tier-1", "tier_1"], {"tag_tier_1"}),
        (["", "ok"], {"tag_ok"}),
        (["Team=Data", "$x", "a:b"], {"tag_Team_Data", "tag__x", "tag_a_b"}),
    ],
)
def test_tags_become_label_safe_names(tags: list[str], expected: set[str]) -> None:
    labels = only_alert(render(notification(tags=tags)))["labels"]
    assert {name for name in labels if name.startswith("tag_")} == expected
    assert all(labels[name] == "true" for name in expected)
    assert all(CLASSIC_LABEL_NAME.match(name) for name in labels)
    assert labels["tags"] == "," + ",".join(sorted({t for t in tags if t})) + ","


def test_tag_order_and_duplicates_do_not_change_the_labels() -> None:
    one = only_alert(render(notification(tags=["b", "a", "b"])))
    other = only_alert(render(notification(tags=["a", "b"])))
    assert one["labels"] == other["labels"]
    assert one["labels"]["tags"] == ",a,b,"
    assert one["fingerprint"] == other["fingerprint"]


def test_no_tags_no_tag_labels() -> None:
    labels = only_alert(render(notification(tags=[])))["labels"]
    assert "tags" not in labels
    assert not any(name.startswith("tag_") for name in labels)


@pytest.mark.parametrize("state", ["alert", "error"])
def test_resolved_alert_has_the_firing_alerts_identity(state: str) -> None:
    firing = render(notification(state=state, error="boom" if state == "error" else None))
    resolved = render(recovery(), resolved=True, alert_state=state, starts_at=STARTED)
    fired, ended = only_alert(firing), only_alert(resolved)
    assert ended["labels"] == fired["labels"]
    assert ended["fingerprint"] == fired["fingerprint"]
    assert resolved["groupKey"] == firing["groupKey"]
    assert resolved["groupLabels"] == firing["groupLabels"]
    assert ended["startsAt"] == fired["startsAt"] == "2025-03-14T09:30:00Z"
    assert ended["endsAt"] == "2025-03-14T10:30:00Z"
    assert (fired["status"], ended["status"]) == ("firing", "resolved")
    assert ended["annotations"]["run_id"] == "98150"
    assert ended["annotations"]["run_state"] == "ok"


def test_alert_and_error_of_one_monitor_are_two_alerts_in_one_group() -> None:
    alert, error = render(notification()), render(notification(state="error"))
    assert only_alert(alert)["fingerprint"] != only_alert(error)["fingerprint"]
    assert alert["groupKey"] == error["groupKey"] == '{}:{monitor_id="4521"}'


@pytest.mark.parametrize(
    "change",
    [
        {"run_id": 1},
        {"started_at": None},
        {"started_at": datetime(2024, 1, 1, tzinfo=UTC)},
        {"detected_at": datetime(2026, 1, 1, tzinfo=UTC)},
        {"diff_id": None, "links": Links(monitor=MONITOR_URL)},
        {"error": "a different message"},
        {"owner": "someone-else@example.com"},
    ],
)
def test_labels_do_not_depend_on_the_run(change: dict[str, Any]) -> None:
    base = only_alert(render(notification()))
    other = only_alert(render(notification(**change)))
    assert other["labels"] == base["labels"]
    assert other["fingerprint"] == base["fingerprint"]


def test_resolved_times_default_and_override() -> None:
    assert only_alert(render(recovery(), resolved=True))["endsAt"] == "2025-03-14T10:30:00Z"
    no_start = only_alert(render(recovery(started_at=None), resolved=True))
    assert no_start["endsAt"] == "2025-03-14T10:41:07Z"  # detected
    given = only_alert(
        render(
            recovery(),
            resolved=True,
            starts_at=datetime(2025, 3, 14, 11, 0, tzinfo=timezone(timedelta(hours=2))),
            ends_at=datetime(2025, 3, 14, 10, 45, 0, 500000),
        )
    )
    assert (given["startsAt"], given["endsAt"]) == (
        "2025-03-14T09:00:00Z",
        "2025-03-14T10:45:00.5Z",
    )


def test_ends_at_while_firing_is_refused() -> None:
    with pytest.raises(ValueError, match="resolved"):
        render(notification(), ends_at=RECOVERED)


# prometheus/common model/signature_test.go (TestMetricToFingerprint and the fingerprint
# benchmarks) pins these labelSetToFingerprint values; LabelSet.Fingerprint is that function.
UPSTREAM_VECTORS = [
    ({}, 14695981039346656037),
    ({"name": "garland, briggs", "fear": "love is not enough"}, 5799056148416392346),
    ({"first-label": "first-label-value"}, 5146282821936882169),
    (
        {"first-label": "first-label-value", "second-label": "second-label-value"},
        3195800080984914717,
    ),
    (
        {
            "first-label": "first-label-value",
            "second-label": "second-label-value",
            "third-label": "third-label-value",
        },
        13843036195897128121,
    ),
]


@pytest.mark.parametrize(("labels", "expected"), UPSTREAM_VECTORS)
def test_fingerprint_matches_prometheus_common(labels: dict[str, str], expected: int) -> None:
    assert fingerprint(labels) == f"{expected:016x}"
    assert fingerprint(dict(reversed(labels.items()))) == f"{expected:016x}"  # order-free


def test_fingerprint_by_hand() -> None:
    """{a="b"}: FNV-1a 64 over the bytes 61 ff 62 ff (name, separator, value, separator).

    Each step is h = (h XOR byte) * 0x100000001b3 mod 2**64, from the offset basis.
    """
    steps = [0xCBF29CE484222325]
    for byte in (0x61, 0xFF, 0x62, 0xFF):
        steps.append(((steps[-1] ^ byte) * 0x100000001B3) % 2**64)
    assert steps[1] == 0xAF63DC4C8601EC8C  # FNV-1a 64 of "a", the well-known value
    assert fingerprint({"a": "b"}) == f"{steps[-1]:016x}" == "d2b371819297f98a"
    assert fingerprint({}) == "cbf29ce484222325"


def test_fingerprint_separates_name_and_value() -> None:
    assert fingerprint({"ab": "c"}) != fingerprint({"a": "bc"})
    assert fingerprint({"a": "b", "c": "d"}) != fingerprint({"a": "bcd"})


def test_deterministic() -> None:
    one = render(notification(tags=["b", "a"]), resolved=True, alert_state="error")
    two = render(notification(tags=["b", "a"]), resolved=True, alert_state="error")
    assert one == two
    assert json.dumps(one) == json.dumps(two)  # same key order too
    bodies = {
        alertmanager_body(notification(), receiver=RECEIVER, external_url=EXTERNAL_URL)
        for _ in range(3)
    }
    assert len(bodies) == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2025, 3, 14, 9, 30, tzinfo=UTC), "2025-03-14T09:30:00Z"),
        (datetime(2025, 3, 14, 9, 30, 0, 120000, tzinfo=UTC), "2025-03-14T09:30:00.12Z"),
        (datetime(2025, 3, 14, 9, 30, 0, 1, tzinfo=UTC), "2025-03-14T09:30:00.000001Z"),
        (
            datetime(2025, 3, 14, 11, 30, tzinfo=timezone(timedelta(hours=2))),
            "2025-03-14T09:30:00Z",
        ),
        (datetime(2025, 3, 14, 9, 30), "2025-03-14T09:30:00Z"),  # naive: UTC
    ],
)
def test_times_as_go_marshals_them(value: datetime, expected: str) -> None:
    assert alertmanager.go_time(value) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("datafold-alerts", "datafold-alerts"),
        ("team.data", r"team\.data"),
        ("a+b*c?(d)|[e]{f}^$\\", r"a\+b\*c\?\(d\)\|\[e\]\{f\}\^\$\\"),
        ("ünï code & more", "ünï code & more"),
    ],
)
def test_receiver_is_quoted_as_alertmanager_does(name: str, expected: str) -> None:
    payload = alertmanager_payload(notification(), receiver=name, external_url=EXTERNAL_URL)
    assert payload["receiver"] == expected


def test_passes_receiver_settings_through() -> None:
    payload = alertmanager_payload(
        notification(), receiver="r", external_url="https://notifier.example.com/"
    )
    assert payload["externalURL"] == "https://notifier.example.com/"
    assert payload["groupLabels"] == {"monitor_id": "4521"}


def doc_json_blocks() -> list[Any]:
    text = DOC.read_text(encoding="utf-8")
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", text, re.DOTALL)]


def test_documented_examples_are_what_is_rendered() -> None:
    """The first two examples are the low-level renderer's output plus the incident's ID."""
    firing, resolved_alert, *_ = doc_json_blocks()
    opened = render(notification())
    opened["alerts"][0]["annotations"]["incident_id"] = "4521-98123-alert"
    opened["commonAnnotations"]["incident_id"] = "4521-98123-alert"
    assert opened == firing
    resolved = render(recovery(), resolved=True, alert_state="alert", starts_at=STARTED)
    resolved["alerts"][0]["annotations"]["incident_id"] = "4521-98123-alert"
    assert only_alert(resolved) == resolved_alert


def test_documented_fingerprints() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert "`cbf29ce484222325`" in text and fingerprint({}) == "cbf29ce484222325"
    assert "`d2b371819297f98a`" in text and fingerprint({"a": "b"}) == "d2b371819297f98a"


# Incidents: recoveries resolve what fired, reminders fire it again (notification_payload).

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
