"""CycleReport's bookkeeping: a monitor failed after all, and the cycle_finished figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from notifier.domain.report import CycleReport

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("polled", "monitor_id", "reason", "left"),
    [
        ([1, 2, 3], 2, "internal", [1, 3]),
        ([1, 3], 2, "details_unavailable", [1, 3]),
        ([], 7, "internal", []),
    ],
)
def test_fail_counts_a_monitor_as_failed_not_polled(
    polled: list[int], monitor_id: int, reason: str, left: list[int]
) -> None:
    report = CycleReport(polled=list(polled))
    report.fail(monitor_id, reason)
    assert report.polled == left
    assert report.failed == {monitor_id: reason}


def test_summary() -> None:
    report = CycleReport(
        polled=[1, 2],
        failed={3: "unavailable"},
        events=5,
        muted=1,
        quieted=2,
        delivered=4,
        delivery_failures=1,
        outbox_size=6,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=1.23456),
    )
    assert report.summary() == {
        "monitors_polled": 2,
        "monitors_failed": 1,
        "events": 5,
        "muted": 3,
        "delivered": 4,
        "delivery_failures": 1,
        "outbox": 6,
        "duration_seconds": 1.235,
    }
    assert CycleReport().summary()["duration_seconds"] == 0.0
