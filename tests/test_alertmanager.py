"""The Alertmanager webhook payload: its documented shape, stable labels, fingerprint, the doc."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from notifier.deliver.render.alertmanager import (
    DESCRIPTION_ERROR_MAX,
    ERROR_ANNOTATION_MAX,
    alertmanager_body,
    alertmanager_payload,
    fingerprint,
    notification_payload,
)
from notifier.deliver.render.alertmanager_push import push_alerts
from notifier.domain.models import Links, Notification
from tests.fakes.samples import MONITOR_URL, STARTED, notification, schema_validator

RECOVERED = datetime(2025, 3, 14, 10, 30, tzinfo=UTC)
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
    return schema_validator("alertmanager-webhook.v4.json")


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
        ({"state": "error", "error": " \n "}, "\nDatafold gave no error message."),
        ({"state": "error", "error": "line one\r\n  line two\n"}, "\nError: line one line two"),
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


def doc_json_blocks() -> list[Any]:
    text = DOC.read_text(encoding="utf-8")
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", text, re.DOTALL)]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"state": "error", "error": "table not found"}, "table not found"),
        # Lines kept (CR LF as LF), each line's end and the whole trimmed, tabs kept.
        ({"state": "error", "error": "  a\r\n\tb  \r\nc\n\n"}, "a\n\tb\nc"),
        # Other control characters (a terminal escape, NUL) and lone surrogates as escapes.
        ({"state": "error", "error": "\x1b[31mred\x00\udc80"}, "\\x1b[31mred\\x00\\udc80"),
        # Whatever carries an error message: an alert run (send-test's note) too.
        ({"state": "alert", "error": "note"}, "note"),
        ({"state": "error"}, None),
        ({"state": "error", "error": ""}, None),
        ({"state": "error", "error": " \n\t "}, None),
        ({"state": "alert"}, None),
    ],
)
def test_the_error_annotation_is_the_error_message(
    kwargs: dict[str, Any], expected: str | None
) -> None:
    annotations = only_alert(render(notification(**kwargs)))["annotations"]
    assert annotations.get("error") == expected


def test_a_long_error_is_cut_in_its_annotation_and_one_line_in_the_description() -> None:
    error = "ERROR: relation does not exist\n" + "select * from t\n" * 1000  # 16,030 chars
    annotations = only_alert(render(notification(state="error", error=error)))["annotations"]
    assert len(annotations["error"]) == ERROR_ANNOTATION_MAX
    assert annotations["error"].startswith("ERROR: relation does not exist\nselect * from t\n")
    kept = annotations["error"].rsplit(" … [", 1)[0]  # the note counts what it left out
    assert error.strip().startswith(kept)
    assert annotations["error"].endswith(
        f" … [{len(error.strip()) - len(kept)} more characters cut]"
    )
    first, line = annotations["description"].split("\n")
    assert first == "Run 98123 of Datafold monitor 4521 (diff) reported error."
    assert line.startswith("Error: ERROR: relation does not exist select * from t select")
    assert len(line) == len("Error: ") + DESCRIPTION_ERROR_MAX and line.endswith("…")


def test_a_resolution_carries_no_error() -> None:
    ended = render(recovery(error="boom"), resolved=True, alert_state="error")
    assert "error" not in only_alert(ended)["annotations"]


def test_the_error_annotation_changes_no_label() -> None:
    bare = only_alert(render(notification(state="error")))
    told = only_alert(render(notification(state="error", error="boom\nat line 2")))
    assert told["annotations"]["error"] == "boom\nat line 2"
    assert "error" not in bare["annotations"]
    assert told["labels"] == bare["labels"] and told["fingerprint"] == bare["fingerprint"]


@pytest.mark.parametrize(
    "kwargs",
    [{"state": "error", "error": "boom\n\tat x"}, {"state": "error"}, {}],
    ids=["error with message", "error without", "alert"],
)
def test_the_push_api_and_the_webhook_format_carry_the_same_annotations(
    kwargs: dict[str, Any],
) -> None:
    n = notification(**kwargs)
    webhook = only_alert(notification_payload(n, receiver=RECEIVER, external_url=EXTERNAL_URL))
    [pushed] = push_alerts(n, now=RECOVERED, hold=timedelta(minutes=5))
    assert pushed["annotations"] == webhook["annotations"]
    assert pushed["labels"] == webhook["labels"]
