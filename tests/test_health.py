"""Health verdicts (pure) and the metrics fed from cycle reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from notifier.domain.report import CycleReport
from notifier.run.health import ClusterView, HealthTracker
from notifier.run.metrics import Metrics
from tests.fakes.scrape import sample

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def ok(at: datetime) -> CycleReport:
    return CycleReport(polled=[1, 2], started_at=at, finished_at=at, outbox_size=1)


def failed(at: datetime, kind: str = "unavailable") -> CycleReport:
    return CycleReport(failed={1: kind, 2: kind}, started_at=at, finished_at=at)


def partial(at: datetime) -> CycleReport:
    return CycleReport(polled=[1], failed={2: "malformed"}, started_at=at, finished_at=at)


@pytest.mark.parametrize(
    ("cycles", "now", "healthy", "status", "reason"),
    [
        pytest.param([], T0 + MINUTE, True, "starting", None, id="starting"),
        pytest.param(
            [],
            T0 + 4 * MINUTE,
            False,
            "unhealthy",
            "first cycle has not finished",
            id="never-finished",
        ),
        pytest.param([ok], T0 + MINUTE, True, "running", None, id="ok"),
        pytest.param(
            [failed, failed], T0 + MINUTE, True, "running", None, id="two-failures-tolerated"
        ),
        pytest.param(
            [failed] * 3, T0 + MINUTE, False, "unhealthy", "every poll failed", id="three-failures"
        ),
        pytest.param(
            [failed, failed, partial], T0 + MINUTE, True, "running", None, id="partial-is-ok"
        ),
        pytest.param(
            [failed, failed, failed, ok], T0 + MINUTE, True, "running", None, id="recovered"
        ),
        pytest.param(
            [ok], T0 + 4 * MINUTE, False, "unhealthy", "no cycle has finished", id="stalled"
        ),
    ],
)
def test_verdict(
    cycles: list, now: datetime, healthy: bool, status: str, reason: str | None
) -> None:
    tracker = HealthTracker(started_at=T0, interval=MINUTE)
    for make in cycles:
        tracker.record(make(T0))
    verdict = tracker.verdict(now)
    assert verdict.healthy is healthy
    assert verdict.body["status"] == status
    if reason:
        assert reason in verdict.body["reason"]
    else:
        assert "reason" not in verdict.body


def test_verdict_body_reports_the_latest_cycle() -> None:
    tracker = HealthTracker(started_at=T0, interval=MINUTE)
    tracker.record(partial(T0))
    body = tracker.verdict(T0).body
    assert body["monitors_polled"] == 1 and body["monitors_failed"] == 1
    assert body["last_cycle_at"] == "2026-11-26T12:00:00Z"


def test_failure_reason_names_the_kinds() -> None:
    tracker = HealthTracker(started_at=T0, interval=MINUTE)
    for kind in ("refused", "refused", "unavailable"):
        tracker.record(failed(T0, kind))
    assert "refused, unavailable" in tracker.verdict(T0).body["reason"]


def test_metrics_follow_reports() -> None:
    metrics = Metrics()
    report = CycleReport(
        polled=[1],
        failed={2: "unavailable"},
        runs_seen=7,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=2),
        outbox_size=3,
        expired=1,
    )
    report.events_by_state.update(["alert", "alert", "error"])
    report.sent_by_destination.update({"slack": 2})
    report.failed_by_destination.update({"webhook-1": 1})
    metrics.record(report)
    metrics.record(CycleReport(started_at=T0, finished_at=T0))
    text = metrics.render().decode()
    expected = [
        "datafold_notifier_poll_cycles_total 2.0",
        'datafold_notifier_poll_errors_total{kind="unavailable"} 1.0',
        "datafold_notifier_runs_seen_total 7.0",
        'datafold_notifier_events_detected_total{state="alert"} 2.0',
        'datafold_notifier_notifications_sent_total{destination="slack"} 2.0',
        'datafold_notifier_notifications_failed_total{destination="webhook-1"} 1.0',
        "datafold_notifier_notifications_expired_total 1.0",
        "datafold_notifier_outbox_size 0.0",
        "datafold_notifier_cycle_duration_seconds_count 2.0",
    ]
    for line in expected:
        assert line in text, line
    last_poll = sample(text, "datafold_notifier_last_successful_poll_timestamp_seconds")
    assert last_poll == (T0 + timedelta(seconds=2)).timestamp()


def test_metrics_count_silenced_and_digested_and_show_leadership() -> None:
    metrics = Metrics()
    report = CycleReport(started_at=T0, finished_at=T0, muted=2, quieted=1, digested=5)
    metrics.record(report)
    text = metrics.render().decode()
    for line in (
        'datafold_notifier_notifications_silenced_total{reason="mute"} 2.0',
        'datafold_notifier_notifications_silenced_total{reason="quiet_hours"} 1.0',
        "datafold_notifier_notifications_digested_total 5.0",
        "datafold_notifier_leader 1.0",
    ):
        assert line in text, line
    metrics.record(CycleReport(started_at=T0, finished_at=T0, standby=True))
    text = metrics.render().decode()
    assert "datafold_notifier_leader 0.0" in text
    assert "datafold_notifier_poll_cycles_total 1.0" in text  # a standby's cycle is no poll


def test_a_standby_replica_is_healthy_and_says_so() -> None:
    tracker = HealthTracker(started_at=T0, interval=timedelta(seconds=60))
    for minute in range(5):
        tracker.record(
            CycleReport(standby=True, started_at=T0, finished_at=T0 + timedelta(minutes=minute))
        )
    verdict = tracker.verdict(T0 + timedelta(minutes=5))
    assert verdict.healthy and verdict.body["status"] == "standby"
    tracker.record(CycleReport(polled=[1], started_at=T0, finished_at=T0 + timedelta(minutes=6)))
    assert tracker.verdict(T0 + timedelta(minutes=6)).body["status"] == "running"


def standby(at: datetime) -> CycleReport:
    return CycleReport(standby=True, started_at=at, finished_at=at)


LEASE = timedelta(seconds=60)
PATIENCE = timedelta(seconds=10)


@pytest.mark.parametrize(
    ("answered", "polled", "now", "reason"),
    [
        pytest.param(T0 + 3 * MINUTE, T0 + 3 * MINUTE, T0 + 4 * MINUTE, None, id="all-well"),
        pytest.param(None, None, T0 + 2 * MINUTE, None, id="starting-within-the-limit"),
        pytest.param(
            T0 + MINUTE,
            T0 + MINUTE,
            T0 + MINUTE + 3 * LEASE + PATIENCE + timedelta(seconds=1),
            "the database has not answered for 191 s",
            id="database-gone",
        ),
        pytest.param(
            None, None, T0 + 4 * MINUTE, "the database has not answered for 240 s", id="never"
        ),
        pytest.param(
            T0 + 10 * MINUTE,
            T0 + MINUTE,
            T0 + 10 * MINUTE,
            "no replica has finished a poll cycle for 540 s",
            id="nobody-polls",
        ),
    ],
)
def test_every_replica_tells_the_truth_about_the_cluster(
    answered: datetime | None, polled: datetime | None, now: datetime, reason: str | None
) -> None:
    """A standby's own cycles are fine by definition; with PostgreSQL it also answers 503 when
    the database has not answered, or no replica has polled, for three leases (plus patience)."""
    tracker = HealthTracker(started_at=T0, interval=MINUTE)
    tracker.cluster = lambda: ClusterView(
        database_answered_at=answered,
        last_cycle_at=polled,
        last_cycle_by="replica-a" if polled else None,
        lease=LEASE,
        patience=PATIENCE,
    )
    at = T0
    while at + MINUTE <= now:
        at += MINUTE
        tracker.record(standby(at))
    verdict = tracker.verdict(now)
    assert verdict.healthy is (reason is None), verdict.body
    assert verdict.body.get("reason") == reason
    if polled is not None:
        assert verdict.body["last_cycle_by"] == "replica-a"


def test_name_clashes_and_clock_offsets_are_read_at_each_scrape() -> None:
    clashes, offset = [0], [None]
    metrics = Metrics()
    metrics.watch_name_clashes(lambda: clashes[0])
    metrics.watch_clock("database", lambda: offset[0])

    def value(name: str) -> float:
        return sample(metrics.render().decode(), name)

    assert value("datafold_notifier_replica_name_clashes") == 0
    assert value("datafold_notifier_clock_offset_seconds") == 0
    clashes[0], offset[0] = 2, -3600.5  # type: ignore[call-overload]
    assert value("datafold_notifier_replica_name_clashes") == 2
    assert value("datafold_notifier_clock_offset_seconds") == -3600.5
