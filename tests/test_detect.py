"""Detection is pure: table-driven cases over (previous state, runs, now)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from notifier.detect.runs import (
    DetectionPolicy,
    detect,
    listing_window,
    new_monitor_state,
    stale_in_progress,
)
from notifier.domain.models import MonitorRun, MonitorState, TrackedRun

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
POLICY = DetectionPolicy(
    notify_states=frozenset({"alert", "error"}),
    retention=timedelta(hours=1),
    in_progress_limit=timedelta(hours=24),
)


def run(
    run_id: int, state: str | None, minutes: float | None = 0, monitor_id: int = 1
) -> MonitorRun:
    started = None if minutes is None else T0 + timedelta(minutes=minutes)
    return MonitorRun(run_id=run_id, monitor_id=monitor_id, state=state, started_at=started)


def baselined(*runs: MonitorRun, now: datetime = T0) -> MonitorState:
    """The state after a first poll that listed `runs`."""
    return detect(None, runs, now, POLICY).state


def notified(detection_events: list) -> list[tuple[int, str]]:
    return [(e.run_id, e.state) for e in detection_events]


@pytest.mark.parametrize(
    ("listing", "expected"),
    [
        pytest.param(
            [run(1, "alert", -5), run(2, "error", -3), run(3, "ok", -1)], [], id="history-is-silent"
        ),
        pytest.param([run(1, "alert", None)], [], id="history-without-start-time-is-silent"),
        pytest.param([run(1, "alert", +1)], [(1, "alert")], id="started-after-watch-began-is-news"),
        pytest.param([], [], id="empty"),
    ],
)
def test_first_poll(listing: list[MonitorRun], expected: list[tuple[int, str]]) -> None:
    detection = detect(None, listing, T0, POLICY)
    assert notified(detection.events) == expected
    assert detection.state.baselined


def test_first_start_lookback_notifies_recent_history() -> None:
    policy = DetectionPolicy(
        notify_states=POLICY.notify_states,
        retention=POLICY.retention,
        in_progress_limit=POLICY.in_progress_limit,
        first_start_lookback=timedelta(minutes=10),
    )
    listing = [run(1, "alert", -30), run(2, "alert", -5), run(3, "error", -1)]
    assert notified(detect(None, listing, T0, policy).events) == [(2, "alert"), (3, "error")]


def test_failed_first_poll_keeps_watch_since() -> None:
    """A run that started after the first *attempt* is news even if that attempt failed.

    Datafold's clock may lag ours, so runs stamped up to the skew margin before are news too.
    """
    pending = new_monitor_state(T0, POLICY)
    later = T0 + timedelta(minutes=30)
    listing = [run(1, "alert", -10), run(2, "alert", -2), run(3, "alert", 2)]
    detection = detect(pending, listing, later, POLICY)
    assert notified(detection.events) == [(2, "alert"), (3, "alert")]


def test_successful_first_poll_has_no_skew_margin() -> None:
    assert detect(None, [run(1, "alert", -2)], T0, POLICY).events == []


@pytest.mark.parametrize(
    ("last_polled_minutes", "expected_since_minutes", "limited"),
    [
        pytest.param(None, -30, False, id="first-poll"),
        pytest.param(-1, -31, False, id="steady"),
        pytest.param(-45, -75, False, id="downtime-longer-than-lookback"),
        pytest.param(-60 * 30, -60 * 24, True, id="catch-up-limited"),
        pytest.param(+10, -30, False, id="clock-went-back"),
    ],
)
def test_listing_window(
    last_polled_minutes: int | None, expected_since_minutes: int, limited: bool
) -> None:
    state = None
    if last_polled_minutes is not None:
        state = baselined()
        state = state.model_copy(
            update={"last_polled_at": T0 + timedelta(minutes=last_polled_minutes)}
        )
    window = listing_window(
        state, T0, lookback=timedelta(minutes=30), catchup_limit=timedelta(hours=24)
    )
    assert window.since == T0 + timedelta(minutes=expected_since_minutes)
    assert window.limited is limited


def test_listing_window_of_a_monitor_that_never_polled_reaches_before_watching() -> None:
    pending = new_monitor_state(T0 - timedelta(hours=2), POLICY)
    window = listing_window(
        pending, T0, lookback=timedelta(minutes=30), catchup_limit=timedelta(hours=24)
    )
    assert window.since == T0 - timedelta(hours=2, minutes=30)


def test_first_start_lookback_widens_the_first_listing() -> None:
    window = listing_window(
        None,
        T0,
        lookback=timedelta(minutes=30),
        catchup_limit=timedelta(hours=1),
        first_start_lookback=timedelta(hours=3),
    )
    assert window.since == T0 - timedelta(hours=3, minutes=30) and not window.limited


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param([], [run(5, "alert", 1)], [(5, "alert")], id="new-alert"),
        pytest.param([], [run(5, "error", 1)], [(5, "error")], id="new-error"),
        pytest.param(
            [],
            [run(5, "ok", 1), run(6, "skipped", 1), run(7, "cancelled", 1)],
            [],
            id="quiet-states",
        ),
        pytest.param([], [run(5, "queued", 1), run(6, None, 1)], [], id="in-progress-and-null"),
        pytest.param([], [run(5, "brand-new-state", 1)], [], id="unknown-state"),
        pytest.param(
            [run(5, "checking", -1)],
            [run(5, "alert", -1)],
            [(5, "alert")],
            id="in-progress-turns-alert",
        ),
        pytest.param(
            [run(5, "queued", -1)], [run(5, "error", -1)], [(5, "error")], id="queued-turns-error"
        ),
        pytest.param(
            [run(5, "alert", -1)], [run(5, "alert", -1)], [], id="history-alert-stays-silent"
        ),
        pytest.param(
            [run(5, "alert", -1)], [run(5, "error", -1)], [(5, "error")], id="once-per-state"
        ),
        pytest.param([run(5, "learning", -1)], [run(5, "ok", -1)], [], id="in-progress-turns-ok"),
        pytest.param([], [run(3, "alert", -100)], [(3, "alert")], id="listed-late-old-start"),
        pytest.param(
            [], [run(3, "alert", None)], [(3, "alert")], id="no-start-time-after-baseline"
        ),
    ],
)
def test_after_baseline(
    before: list[MonitorRun], after: list[MonitorRun], expected: list[tuple[int, str]]
) -> None:
    state = baselined(*before)
    detection = detect(state, after, T0 + timedelta(minutes=1), POLICY)
    assert notified(detection.events) == expected


def test_each_run_state_notified_once_across_cycles() -> None:
    state = baselined()
    seen: list[tuple[int, str]] = []
    for minute in range(1, 6):
        detection = detect(state, [run(9, "alert", 1)], T0 + timedelta(minutes=minute), POLICY)
        seen += notified(detection.events)
        state = detection.state
    assert seen == [(9, "alert")]


def test_alert_ok_alert_is_not_renotified() -> None:
    state = baselined()
    events = []
    for state_name in ["alert", "ok", "alert"]:
        detection = detect(state, [run(9, state_name, 1)], T0 + timedelta(minutes=2), POLICY)
        events += notified(detection.events)
        state = detection.state
    assert events == [(9, "alert")]


def test_events_are_oldest_first() -> None:
    state = baselined()
    listing = [run(3, "alert", 5), run(1, "error", 2), run(2, "alert", None), run(4, "alert", 2)]
    events = detect(state, listing, T0 + timedelta(minutes=10), POLICY).events
    assert [e.run_id for e in events] == [1, 4, 3, 2]


def test_custom_notify_states() -> None:
    policy = DetectionPolicy(frozenset({"alert", "ok"}), POLICY.retention, POLICY.in_progress_limit)
    state = detect(None, [], T0, policy).state
    events = detect(
        state, [run(1, "ok", 1), run(2, "error", 1), run(3, "alert", 1)], T0, policy
    ).events
    assert notified(events) == [(1, "ok"), (3, "alert")]


def test_quiet_runs_are_not_remembered() -> None:
    state = baselined(
        run(1, "ok", -3), run(2, "alert", -2), run(3, "checking", -1), run(4, "skipped", -1)
    )
    assert set(state.runs) == {2, 3}


def test_state_stays_bounded_over_a_long_run() -> None:
    """A monitor alerting every minute for a day keeps only about the retention's worth of runs."""
    state = baselined()
    now = T0
    for minute in range(24 * 60):
        now = T0 + timedelta(minutes=minute)
        # the listing window is 30 minutes
        listing = [run(m, "alert", m) for m in range(max(0, minute - 30), minute + 1)]
        state = detect(state, listing, now, POLICY).state
    # the listing (31) plus what left it within retention (60) and two stamp steps (10)
    assert len(state.runs) <= 31 + 60 + 10


def test_forgotten_run_is_pruned_only_after_retention() -> None:
    state = baselined()
    state = detect(state, [run(1, "alert", 1)], T0 + timedelta(minutes=1), POLICY).state
    state = detect(state, [], T0 + timedelta(minutes=50), POLICY).state
    assert 1 in state.runs
    state = detect(state, [], T0 + timedelta(minutes=67), POLICY).state
    assert 1 not in state.runs


def test_stuck_in_progress_run_is_abandoned_after_limit() -> None:
    state = baselined(run(1, "checking", -1))
    detection = detect(state, [], T0 + timedelta(hours=23), POLICY)
    assert detection.abandoned == [] and 1 in detection.state.runs
    detection = detect(detection.state, [], T0 + timedelta(hours=25), POLICY)
    assert detection.abandoned == [1] and 1 not in detection.state.runs


def test_gone_runs_are_dropped() -> None:
    state = baselined(run(1, "checking", -1), run(2, "alert", -1))
    detection = detect(state, [], T0 + timedelta(minutes=1), POLICY, gone=[1, 2])
    assert detection.state.runs == {}
    assert detection.abandoned == [1]


def test_stale_in_progress_lists_only_unlisted_in_progress_runs() -> None:
    state = MonitorState(
        watch_since=T0,
        baselined=True,
        runs={
            1: TrackedRun(state="checking", first_seen=T0, last_seen=T0),
            2: TrackedRun(state=None, first_seen=T0, last_seen=T0),
            3: TrackedRun(state="alert", handled=["alert"], first_seen=T0, last_seen=T0),
            4: TrackedRun(state="queued", first_seen=T0, last_seen=T0),
        },
    )
    assert stale_in_progress(state, listed={4}) == [1, 2]
    assert stale_in_progress(None, listed=set()) == []


def test_stale_runs_are_fetched_least_recently_seen_first() -> None:
    later = T0 + timedelta(minutes=5)
    state = MonitorState(
        watch_since=T0,
        baselined=True,
        runs={
            1: TrackedRun(state="checking", first_seen=T0, last_seen=later),
            2: TrackedRun(state="checking", first_seen=T0, last_seen=T0),
            3: TrackedRun(state="queued", first_seen=T0, last_seen=T0 + timedelta(minutes=1)),
        },
    )
    assert stale_in_progress(state, listed=set()) == [2, 3, 1]


def test_detect_records_the_poll_time() -> None:
    assert detect(None, [], T0, POLICY).state.last_polled_at == T0


def test_detect_does_not_mutate_previous_state() -> None:
    state = baselined(run(1, "checking", -1))
    snapshot = state.model_dump()
    detect(state, [run(1, "alert", -1), run(2, "alert", 1)], T0 + timedelta(minutes=1), POLICY)
    assert state.model_dump() == snapshot
