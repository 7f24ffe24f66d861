"""Baselining says what it did: runs kept as history, runs notified, and a catch-up after failed
first polls (every run since watching began is sent) is a warning with how many and from when."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from notifier.detect.runs import Baseline, DetectionPolicy, detect, new_monitor_state
from notifier.domain.models import MonitorRun
from tests.fakes.cli import World, cli

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
POLICY = DetectionPolicy(
    notify_states=frozenset({"alert", "error"}),
    retention=timedelta(hours=1),
    in_progress_limit=timedelta(hours=24),
)


def run(run_id: int, state: str, minutes: float) -> MonitorRun:
    started = T0 + timedelta(minutes=minutes)
    return MonitorRun(run_id=run_id, monitor_id=1, state=state, started_at=started)


def test_first_start_counts_history_apart_from_notified() -> None:
    listing = [run(1, "alert", -30), run(2, "error", -5), run(3, "ok", -3), run(4, "alert", 1)]
    baseline = detect(None, listing, T0, POLICY).baseline
    assert baseline == Baseline(listed=4, history=2, notified=1, catchup_since=None)
    assert baseline.log_fields() == {"runs_listed": 4, "history": 2, "notified": 1}


def test_first_start_lookback_moves_runs_from_history_to_notified() -> None:
    policy = DetectionPolicy(
        notify_states=POLICY.notify_states,
        retention=POLICY.retention,
        in_progress_limit=POLICY.in_progress_limit,
        first_start_lookback=timedelta(minutes=10),
    )
    listing = [run(1, "alert", -30), run(2, "error", -5), run(3, "ok", -3)]
    baseline = detect(None, listing, T0, policy).baseline
    assert baseline == Baseline(listed=3, history=1, notified=1, catchup_since=None)


def test_only_the_first_listing_reports_a_baseline() -> None:
    first = detect(None, [run(1, "alert", -30)], T0, POLICY)
    later = detect(first.state, [run(1, "alert", -30), run(2, "alert", 1)], T0, POLICY)
    assert later.baseline is None and len(later.events) == 1


def test_catchup_after_failed_first_polls_names_when_watching_began() -> None:
    pending = new_monitor_state(T0, POLICY)  # the first poll, at T0, failed
    listing = [run(1, "alert", -30), run(2, "alert", 20), run(3, "error", 40)]
    baseline = detect(pending, listing, T0 + timedelta(hours=1), POLICY).baseline
    assert baseline == Baseline(listed=3, history=1, notified=2, catchup_since=T0)


def test_no_catchup_warning_when_failed_polls_leave_nothing_to_send() -> None:
    pending = new_monitor_state(T0, POLICY)
    baseline = detect(pending, [run(1, "alert", -30)], T0 + timedelta(hours=1), POLICY).baseline
    assert baseline == Baseline(listed=1, history=1, notified=0, catchup_since=None)


def events_named(stderr: str, name: str) -> list[dict[str, object]]:
    lines = (json.loads(line) for line in stderr.splitlines() if line.strip())
    return [e for e in lines if e["event"] == name]


async def test_once_logs_history_and_notified_counts(world: World) -> None:
    world.sim.add_run(1, state="alert", started_at=world.now() - timedelta(minutes=30))
    world.sim.add_run(1, state="error", started_at=world.now() - timedelta(minutes=5))
    env = {**world.env, "NOTIFIER_MONITOR_IDS": "1", "NOTIFIER_FIRST_START_LOOKBACK_SECONDS": "600"}
    result = await cli("once", env=env)
    assert result.code == 0, result.stderr
    [baselined] = events_named(result.stderr, "monitor_baselined")
    assert (baselined["history"], baselined["notified"]) == (1, 1)
    assert events_named(result.stderr, "catchup_after_failed_polls") == []
    assert len(world.slack.messages) == 1


async def test_first_success_after_a_failed_poll_warns_of_the_catchup(world: World) -> None:
    world.sim.add_run(1, state="alert", started_at=world.now() - timedelta(minutes=15))
    env = {**world.env, "NOTIFIER_MONITOR_IDS": "1"}
    world.sim.inject_fault(monitor_id=1, endpoint="runs", status=400)
    failed = await cli("once", env=env)
    assert events_named(failed.stderr, "monitor_baselined") == [], failed.stderr

    world.sim.add_run(1, state="alert", started_at=world.now() + timedelta(seconds=1))
    world.sim.add_run(1, state="error", started_at=world.now() + timedelta(seconds=2))
    result = await cli("once", env=env)
    assert result.code == 0, result.stderr
    [baselined] = events_named(result.stderr, "monitor_baselined")
    assert (baselined["history"], baselined["notified"]) == (1, 2)
    [warning] = events_named(result.stderr, "catchup_after_failed_polls")
    assert warning["level"] == "warning" and warning["runs"] == 2 and warning["monitor_id"] == 1
    state = json.loads(world.state_file.read_text())
    assert (
        warning["since"]
        == datetime.fromisoformat(state["monitors"]["1"]["watch_since"]).isoformat()
    )
