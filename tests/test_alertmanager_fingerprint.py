"""The Alertmanager payload's computed parts: the fingerprint against prometheus/common's own
vectors, Go's times and quoting, and the documented examples."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from notifier.deliver.render import alertmanager
from notifier.deliver.render.alertmanager import (
    alertmanager_body,
    alertmanager_payload,
    fingerprint,
)
from tests.fakes.samples import STARTED, notification
from tests.test_alertmanager import (
    DOC,
    EXTERNAL_URL,
    RECEIVER,
    doc_json_blocks,
    only_alert,
    recovery,
    render,
)

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
