"""A triggered partial cycle over the real `Notifier` and the in-memory fakes: it polls just the
monitors named (feed or not), delivers and saves as a cycle does, and leaves to the regular cycle
what assumes every monitor was seen (dropping unwatched monitors, reminders)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from notifier.deliver.sink import HoldingSink
from notifier.domain.models import Notification
from notifier.run.cycle import Notifier
from notifier.store.file import StateFile
from tests.fakes.cycle import Clock, cycle_config
from tests.fakes.source import FakeSink, FakeSource


def make(
    source: FakeSource, store: StateFile, clock: Clock, sink: FakeSink, **config: Any
) -> Notifier:
    return Notifier(source, store, {sink.name: sink}, cycle_config(**config), clock=clock)


async def test_a_partial_cycle_polls_only_the_named_monitors_and_delivers_and_saves(
    source: FakeSource, store: StateFile, clock: Clock
) -> None:
    slack = FakeSink("slack")
    notifier = make(source, store, clock, slack)
    await notifier.run_cycle()
    clock.tick()
    source.put(1, 11, "alert", clock.now)
    source.put(2, 21, "alert", clock.now)
    source.calls.clear()
    with capture_logs() as logs:
        report = await notifier.run_partial_cycle([1, 99])
    assert ("list_runs", 1) in source.calls
    assert not [c for c in source.calls if c[1] != 1]  # not 2, not the unwatched 99
    assert slack.sent_keys == ["1-11-alert"]
    assert report.polled == [1] and report.state_saved
    [finished] = [e for e in logs if e["event"] == "triggered_cycle_finished"]
    assert finished["monitors"] == [1] and finished["sent"] == {"slack": 1}
    assert not [e for e in logs if e["event"] == "cycle_finished"]
    assert 11 in (await StateFile(store.path).load()).monitors[1].runs  # saved
    await notifier.run_cycle()  # the regular cycle still finds monitor 2's alert
    assert slack.sent_keys == ["1-11-alert", "2-21-alert"]


async def test_in_feed_mode_a_partial_cycle_lists_runs_without_the_feed(
    source: FakeSource, store: StateFile, clock: Clock
) -> None:
    slack = FakeSink("slack")
    notifier = make(source, store, clock, slack, mode="feed")
    await notifier.run_partial_cycle([1])  # baselines monitor 1 only
    clock.tick()
    source.put(1, 11, "alert", clock.now)
    source.calls.clear()
    await notifier.run_partial_cycle([1])
    assert [c for c in source.calls if c[0] == "list_runs"] == [("list_runs", 1)]
    assert {c[0] for c in source.calls} <= {"list_runs", "get_run", "get_monitor"}
    assert slack.sent_keys == ["1-11-alert"]


async def test_a_partial_cycle_drops_no_unwatched_monitor_and_sends_no_reminder(
    source: FakeSource, store: StateFile, clock: Clock, tmp_path: Path
) -> None:
    slack = FakeSink("slack")
    first = make(source, store, clock, slack)
    await first.run_cycle()
    clock.tick()
    source.put(1, 11, "alert", clock.now)
    await first.run_cycle()
    assert slack.sent_keys == ["1-11-alert"]
    # Monitor 2 is no longer watched, and a reminder is due: both wait for a full cycle.
    state = StateFile(tmp_path / "state.json")
    later = make(
        source, state, clock, slack, monitor_ids=(1,), reminder_interval=timedelta(minutes=10)
    )
    clock.tick(30)
    with capture_logs() as logs:
        await later.run_partial_cycle([1])
    assert set(later.state.monitors) == {1, 2}
    assert slack.sent_keys == ["1-11-alert"]
    assert not [e for e in logs if e["event"] == "monitor_dropped"]
    await later.run_cycle()
    assert set(later.state.monitors) == {1}
    assert slack.sent_keys == ["1-11-alert", "1-11-alert-reminder-1"]


@dataclass
class FakeHoldingSink(FakeSink):
    """A FakeSink whose destination forgets firing alerts unless told again (as Alertmanager)."""

    holds: list[list[str]] = field(default_factory=list)

    async def hold(self, notifications: Sequence[Notification]) -> None:
        self.holds.append([n.id for n in notifications])


async def test_a_partial_cycle_leaves_keeping_alerts_firing_to_the_regular_cycle(
    source: FakeSource, store: StateFile, clock: Clock
) -> None:
    """Triggers may come every second: only the regular cycle posts still-firing alerts again."""
    alertmanager = FakeHoldingSink("am")
    assert isinstance(alertmanager, HoldingSink)
    notifier = make(source, store, clock, alertmanager)
    await notifier.run_cycle()
    clock.tick()
    source.put(1, 11, "alert", clock.now)
    await notifier.run_cycle()
    assert alertmanager.sent_keys == ["1-11-alert"]
    held = len(alertmanager.holds)
    assert held and alertmanager.holds[-1] == ["1-11-alert"]
    clock.tick()
    source.put(2, 21, "alert", clock.now)
    await notifier.run_partial_cycle([2])
    assert alertmanager.sent_keys == ["1-11-alert", "2-21-alert"]
    assert len(alertmanager.holds) == held  # the partial cycle posted nothing again
    await notifier.run_cycle()
    assert sorted(alertmanager.holds[-1]) == ["1-11-alert", "2-21-alert"]
