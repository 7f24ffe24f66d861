"""One poll cycle end to end over fakes of its seams and a real state file."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from notifier.deliver.sink import DeliveryError
from notifier.domain.models import MessageRef, MonitorInfo, MonitorRun, Notification
from notifier.fetch.source import ApiKeyRefused, MalformedAnswer
from notifier.route.rules import RouteDecision
from notifier.run.cycle import Notifier
from notifier.store.file import StateFile
from tests.fakes.cycle import T0, Clock, cycle_config
from tests.fakes.source import FakeSink, FakeSource

config = cycle_config


def make(
    source: FakeSource, store: StateFile, clock: Clock, *sinks: FakeSink, **kw: object
) -> Notifier:
    return Notifier(source, store, {s.name: s for s in sinks}, config(**kw), clock=clock)


async def test_first_cycle_is_silent_then_new_alerts_notified_once(
    source: FakeSource, store: StateFile, clock: Clock
) -> None:
    slack, hook = FakeSink("slack"), FakeSink("webhook-1")
    source.put(1, 10, "alert", T0 - timedelta(minutes=5))
    source.put(2, 20, "error", T0 - timedelta(minutes=4))
    notifier = make(source, store, clock, slack, hook)
    report = await notifier.run_cycle()
    assert report.polled == [1, 2] and report.events == 0 and slack.sent == []

    clock.tick()
    source.put(1, 11, "alert", clock.now - timedelta(seconds=20), diff_id=555)
    source.put(2, 21, "ok", clock.now - timedelta(seconds=20))
    report = await notifier.run_cycle()
    assert report.events == 1
    assert slack.sent_keys == hook.sent_keys == ["1-11-alert"]
    n = slack.sent[0]
    assert n.links.diff == "https://app.example/datadiffs/555/overview"
    assert n.links.monitor == "https://app.example/monitors/1"
    assert n.monitor.name == "m1"

    for _ in range(3):
        clock.tick()
        await notifier.run_cycle()
    assert slack.sent_keys == ["1-11-alert"]


async def test_run_first_seen_in_progress_is_notified_when_it_turns_alert(
    source: FakeSource, store: StateFile, clock: Clock
) -> None:
    sink = FakeSink("slack")
    source.put(1, 10, "checking", T0 - timedelta(minutes=1))
    notifier = make(source, store, clock, sink, monitor_ids=(1,))
    await notifier.run_cycle()
    clock.tick()
    source.put(1, 10, "error", T0 - timedelta(minutes=1), error="relation orders does not exist")
    await notifier.run_cycle()
    assert sink.sent_keys == ["1-10-error"]
    assert sink.sent[0].error_message == "relation orders does not exist"


async def test_in_progress_run_that_left_the_window_is_fetched_directly(
    source: FakeSource, store: StateFile, clock: Clock
) -> None:
    sink = FakeSink("slack")
    source.put(1, 10, "checking", T0 - timedelta(minutes=20))
    notifier = make(source, store, clock, sink, monitor_ids=(1,))
    await notifier.run_cycle()
    clock.tick(60)
    source.hidden.add(10)  # it left the listing window
    source.put(1, 10, "alert", T0 - timedelta(minutes=20))
    await notifier.run_cycle()
    assert ("get_run", 1) in source.calls
    assert sink.sent_keys == ["1-10-alert"]


async def test_state_survives_restart_without_renotifying(
    source: FakeSource, store: StateFile, clock: Clock, tmp_path: Path
) -> None:
    sink = FakeSink("slack")
    await make(source, store, clock, sink, monitor_ids=(1,)).run_cycle()
    clock.tick()
    source.put(1, 11, "alert", clock.now)
    await make(source, store, clock, sink, monitor_ids=(1,)).run_cycle()
    clock.tick()
    restarted = make(source, StateFile(tmp_path / "state.json"), clock, sink, monitor_ids=(1,))
    await restarted.run_cycle()
    assert sink.sent_keys == ["1-11-alert"]


async def test_destination_down_keeps_notification_until_it_is_back(
    source: FakeSource, store: StateFile, clock: Clock, tmp_path: Path
) -> None:
    slack, hook = FakeSink("slack", down=True), FakeSink("webhook-1")
    notifier = make(source, store, clock, slack, hook, monitor_ids=(1,))
    await notifier.run_cycle()
    clock.tick()
    source.put(1, 11, "alert", clock.now)
    source.put(1, 12, "error", clock.now)
    with capture_logs() as logs:
        report = await notifier.run_cycle()
    assert hook.sent_keys == ["1-11-alert", "1-12-error"]
    assert slack.sent == [] and slack.attempts == 1  # stops at its first failure
    assert report.outbox_size == 2 and report.delivery_failures == 1
    failed = [e for e in logs if e["event"] == "delivery_failed"]
    assert failed[0]["destination"] == "slack" and failed[0]["monitor_id"] == 1

    # a restart while Slack is still down: the outbox is in the state file
    clock.tick()
    restarted = make(
        source, StateFile(tmp_path / "state.json"), clock, slack, hook, monitor_ids=(1,)
    )
    await restarted.load()
    assert len(restarted.state.outbox) == 2
    slack.down = False
    report = await restarted.run_cycle()
    assert slack.sent_keys == ["1-11-alert", "1-12-error"]
    assert hook.sent_keys == ["1-11-alert", "1-12-error"]  # not repeated
    assert report.outbox_size == 0 and restarted.state.outbox == []


async def test_undelivered_notification_expires_with_an_error_log(
    source: FakeSource, store: StateFile, clock: Clock
) -> None:
    slack = FakeSink("slack", down=True)
    notifier = make(source, store, clock, slack, monitor_ids=(1,), outbox_expiry=timedelta(hours=2))
    await notifier.run_cycle()
    clock.tick()
    source.put(1, 11, "alert", clock.now)
    await notifier.run_cycle()
    clock.tick(60)
    await notifier.run_cycle()
    assert len(notifier.state.outbox) == 1
    clock.tick(61)
    with capture_logs() as logs:
        report = await notifier.run_cycle()
    assert report.expired == 1 and notifier.state.outbox == []
    [expired] = [e for e in logs if e["event"] == "notification_expired"]
    assert expired["log_level"] == "error" and expired["undelivered_to"] == ["slack"]
    assert expired["run_id"] == 11


async def test_one_failing_monitor_does_not_stop_the_others(
    source: FakeSource, store: StateFile, clock: Clock
) -> None:
    sink = FakeSink("slack")
    notifier = make(source, store, clock, sink)
    await notifier.run_cycle()
    clock.tick()
    source.failures[1] = MalformedAnswer("monitor 1: answer is not JSON")
    source.put(2, 21, "alert", clock.now)
    with capture_logs() as logs:
        report = await notifier.run_cycle()
    assert report.polled == [2] and report.failed == {1: "malformed"}
    assert not report.all_failed
    assert sink.sent_keys == ["2-21-alert"]
    [failed] = [e for e in logs if e["event"] == "poll_failed"]
    assert failed["monitor_id"] == 1 and "not JSON" in failed["error"]


async def test_refused_key_fails_every_monitor(
    source: FakeSource, store: StateFile, clock: Clock
) -> None:
    source.failures = {1: ApiKeyRefused(401), 2: ApiKeyRefused(401)}
    report = await make(source, store, clock, FakeSink("slack")).run_cycle()
    assert report.all_failed and report.key_refused


async def test_alert_during_failed_first_polls_is_not_lost(
    source: FakeSource, store: StateFile, clock: Clock
) -> None:
    sink = FakeSink("slack")
    source.failures[1] = MalformedAnswer("boom")
    notifier = make(source, store, clock, sink, monitor_ids=(1,))
    source.put(1, 9, "alert", T0 - timedelta(minutes=10))  # history before we started
    await notifier.run_cycle()
    clock.tick()
    source.put(1, 10, "alert", clock.now)  # news, while the API was failing for us
    del source.failures[1]
    clock.tick()
    await notifier.run_cycle()
    assert sink.sent_keys == ["1-10-alert"]


async def test_monitor_info_is_cached_and_failures_fall_back(
    source: FakeSource, store: StateFile, clock: Clock
) -> None:
    sink = FakeSink("slack")
    source.infos[1] = MonitorInfo(id=1, name="orders", monitor_type="diff")
    notifier = make(source, store, clock, sink, monitor_ids=(1,))
    await notifier.run_cycle()
    for run_id in (11, 12, 13):
        clock.tick()
        source.put(1, run_id, "alert", clock.now)
        await notifier.run_cycle()
    assert [n.monitor.title for n in sink.sent] == ["orders"] * 3
    assert source.calls.count(("get_monitor", 1)) == 1


async def test_unconfigured_monitor_and_destination_are_dropped(
    source: FakeSource, store: StateFile, clock: Clock, tmp_path: Path
) -> None:
    old = FakeSink("webhook-old", down=True)
    notifier = make(source, store, clock, old)
    await notifier.run_cycle()
    clock.tick()
    source.put(1, 11, "alert", clock.now)
    await notifier.run_cycle()
    assert len(notifier.state.outbox) == 1
    new = FakeSink("slack")
    restarted = make(source, StateFile(tmp_path / "state.json"), clock, new, monitor_ids=(1,))
    with capture_logs() as logs:
        await restarted.run_cycle()
    assert set(restarted.state.monitors) == {1}
    assert restarted.state.outbox == [] and new.sent == []
    [dropped] = [e for e in logs if e["event"] == "notification_dropped"]
    assert dropped["log_level"] == "error" and dropped["destination"] == "webhook-old"


async def test_cancelled_delivery_still_saves_decisions(
    source: FakeSource, store: StateFile, clock: Clock, tmp_path: Path
) -> None:
    class SlowSink(FakeSink):
        async def send(
            self, notification: Notification, thread: MessageRef | None = None
        ) -> MessageRef | None:
            await asyncio.sleep(30)

    notifier = make(source, store, clock, SlowSink("slack"), monitor_ids=(1,))
    await notifier.run_cycle()
    clock.tick()
    source.put(1, 11, "alert", clock.now)
    task = asyncio.create_task(notifier.run_cycle())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    saved = await StateFile(tmp_path / "state.json").load()
    assert [e.notification.id for e in saved.outbox] == ["1-11-alert"]
    assert saved.outbox[0].pending == ["slack"]


async def test_a_sink_bug_is_contained(source: FakeSource, store: StateFile, clock: Clock) -> None:
    class BrokenSink(FakeSink):
        async def send(
            self, notification: Notification, thread: MessageRef | None = None
        ) -> MessageRef | None:
            raise RuntimeError("bug")

    good = FakeSink("webhook-1")
    notifier = make(source, store, clock, BrokenSink("slack"), good, monitor_ids=(1,))
    await notifier.run_cycle()
    clock.tick()
    source.put(1, 11, "alert", clock.now)
    report = await notifier.run_cycle()
    assert good.sent_keys == ["1-11-alert"] and report.outbox_size == 1


async def test_delivery_error_message_is_kept_on_the_entry(
    source: FakeSource, store: StateFile, clock: Clock
) -> None:
    class Refusing(FakeSink):
        async def send(
            self, notification: Notification, thread: MessageRef | None = None
        ) -> MessageRef | None:
            raise DeliveryError(self.name, "Slack answered channel_not_found")

    notifier = make(source, store, clock, Refusing("slack"), monitor_ids=(1,))
    await notifier.run_cycle()
    clock.tick()
    source.put(1, 11, "alert", clock.now)
    await notifier.run_cycle()
    [entry] = notifier.state.outbox
    assert entry.attempts == 1 and entry.last_error == "slack: Slack answered channel_not_found"


async def test_state_is_saved_only_when_it_changed(
    source: FakeSource, store: StateFile, clock: Clock
) -> None:
    notifier = make(source, store, clock, FakeSink("slack"), monitor_ids=(1,))
    assert (await notifier.run_cycle()).state_saved
    clock.tick()
    assert not (await notifier.run_cycle()).state_saved


async def test_cancel_before_delivery_loses_nothing(
    source: FakeSource, store: StateFile, clock: Clock, tmp_path: Path
) -> None:
    """A stop while details are being fetched keeps the run undecided, so it is found again."""

    class SlowDetails(FakeSource):
        slow = False

        async def get_monitor(self, monitor_id: int) -> MonitorInfo:
            if self.slow:
                await asyncio.sleep(30)
            return await super().get_monitor(monitor_id)

    slow_source = SlowDetails()
    sink = FakeSink("slack")
    notifier = make(slow_source, store, clock, sink, monitor_ids=(1,))
    await notifier.run_cycle()
    clock.tick()
    slow_source.put(1, 11, "alert", clock.now)
    slow_source.slow = True
    task = asyncio.create_task(notifier.run_cycle())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    slow_source.slow = False
    clock.tick()
    restarted = make(slow_source, StateFile(tmp_path / "state.json"), clock, sink, monitor_ids=(1,))
    await restarted.run_cycle()
    assert sink.sent_keys == ["1-11-alert"]


async def test_downtime_longer_than_the_lookback_loses_nothing(
    source: FakeSource, store: StateFile, clock: Clock, tmp_path: Path
) -> None:
    sink = FakeSink("slack")
    await make(source, store, clock, sink, monitor_ids=(1,)).run_cycle()
    source.put(1, 11, "alert", clock.now + timedelta(minutes=5))  # while we are down
    clock.tick(45)  # longer than the 30-minute lookback
    restarted = make(source, StateFile(tmp_path / "state.json"), clock, sink, monitor_ids=(1,))
    await restarted.run_cycle()
    assert sink.sent_keys == ["1-11-alert"]
    clock.tick()
    await restarted.run_cycle()
    assert sink.sent_keys == ["1-11-alert"]


async def test_a_refused_notification_does_not_block_the_next(
    source: FakeSource, store: StateFile, clock: Clock
) -> None:
    class RefusesRun11(FakeSink):
        async def send(
            self, notification: Notification, thread: MessageRef | None = None
        ) -> MessageRef | None:
            if notification.event.run_id == 11:
                raise DeliveryError(self.name, "HTTP 422", whole_destination=False)
            await super().send(notification)

    sink = RefusesRun11("webhook-1")
    notifier = make(source, store, clock, sink, monitor_ids=(1,))
    await notifier.run_cycle()
    clock.tick()
    source.put(1, 11, "alert", clock.now)
    source.put(1, 12, "alert", clock.now + timedelta(seconds=1))
    await notifier.run_cycle()
    assert sink.sent_keys == ["1-12-alert"]
    assert [e.notification.id for e in notifier.state.outbox] == ["1-11-alert"]


async def test_a_notification_refused_for_good_is_dropped_there_and_not_retried(
    source: FakeSource, store: StateFile, clock: Clock
) -> None:
    """A destination that will refuse it again (PagerDuty's 400) drops it; others still get it."""

    class RefusesForGood(FakeSink):
        attempts = 0

        async def send(
            self, notification: Notification, thread: MessageRef | None = None
        ) -> MessageRef | None:
            self.attempts += 1
            raise DeliveryError(self.name, "HTTP 400", whole_destination=False, permanent=True)

    refusing, other = RefusesForGood("pagerduty"), FakeSink("slack")
    notifier = make(source, store, clock, refusing, other, monitor_ids=(1,))
    await notifier.run_cycle()
    clock.tick()
    source.put(1, 11, "alert", clock.now)
    with capture_logs() as logs:
        report = await notifier.run_cycle()
    assert other.sent_keys == ["1-11-alert"] and refusing.attempts == 1
    assert report.refused == 1 and report.delivery_failures == 1
    assert notifier.state.outbox == []  # waiting for nobody
    [dropped] = [e for e in logs if e["event"] == "notification_dropped"]
    assert dropped["reason"] == "refused" and dropped["destination"] == "pagerduty"
    clock.tick()
    report = await notifier.run_cycle()
    assert refusing.attempts == 1 and report.refused == 0  # not tried again


async def test_notifications_go_out_while_other_monitors_are_still_polled(
    store: StateFile, clock: Clock
) -> None:
    """Detection latency does not wait for the slowest monitor of the cycle."""

    class SlowMonitor2(FakeSource):
        slow = False
        released = asyncio.Event()

        async def list_runs(
            self, monitor_id: int, since: datetime, until: datetime | None = None
        ) -> list[MonitorRun]:
            if self.slow and monitor_id == 2:
                await self.released.wait()
            return await super().list_runs(monitor_id, since, until)

    class Recording(FakeSink):
        async def send(
            self, notification: Notification, thread: MessageRef | None = None
        ) -> MessageRef | None:
            await super().send(notification)
            SlowMonitor2.released.set()  # only now does monitor 2 answer

    source = SlowMonitor2()
    sink = Recording("slack")
    notifier = make(source, store, clock, sink)
    await notifier.run_cycle()
    clock.tick()
    source.put(1, 11, "alert", clock.now)
    source.put(2, 21, "alert", clock.now)
    source.slow = True
    report = await asyncio.wait_for(notifier.run_cycle(), timeout=5)
    assert sink.sent_keys == ["1-11-alert", "2-21-alert"]
    assert report.delivered == 2 and report.outbox_size == 0


async def test_routing_waits_for_monitor_details(store: StateFile, clock: Clock) -> None:
    """With routing rules, a notification is not routed on a guess when the monitor's details
    could not be fetched: its runs stay undecided until they can be."""

    class FlakyDetails(FakeSource):
        down = True

        async def get_monitor(self, monitor_id: int) -> MonitorInfo:
            if self.down:
                raise MalformedAnswer("monitor 1: answer is not JSON")
            return MonitorInfo(id=monitor_id, name="ledger", tags=["finance"])

    source = FlakyDetails()
    finance, other = FakeSink("finance"), FakeSink("other")

    def route(n: Notification, now: datetime) -> RouteDecision:
        return RouteDecision(to=["finance"] if "finance" in n.monitor.tags else ["other"], quiet=[])

    notifier = Notifier(
        source,
        store,
        {"finance": finance, "other": other},
        config(monitor_ids=(1,)),
        clock=clock,
        route=route,
        hold_without_details=True,
    )
    await notifier.run_cycle()
    clock.tick()
    source.put(1, 11, "alert", clock.now)
    with capture_logs() as logs:
        report = await notifier.run_cycle()
    assert report.failed == {1: "details_unavailable"} and other.sent == finance.sent == []
    assert any(e["event"] == "notifications_held" for e in logs)
    source.down = False
    clock.tick()
    await notifier.run_cycle()
    assert finance.sent_keys == ["1-11-alert"] and other.sent == []


async def test_a_bug_with_one_monitor_fails_only_that_monitor(
    store: StateFile, clock: Clock
) -> None:
    class BrokenForMonitor1(FakeSource):
        async def get_monitor(self, monitor_id: int) -> MonitorInfo:
            if monitor_id == 1:
                raise RuntimeError("a bug")
            return await super().get_monitor(monitor_id)

    source = BrokenForMonitor1()
    sink = FakeSink("slack")
    notifier = make(source, store, clock, sink)
    await notifier.run_cycle()
    clock.tick()
    source.put(1, 11, "alert", clock.now)
    source.put(2, 21, "alert", clock.now)
    with capture_logs() as logs:
        report = await notifier.run_cycle()
    assert report.failed == {1: "internal"} and report.polled == [2]
    assert sink.sent_keys == ["2-21-alert"]
    assert any(e["event"] == "poll_failed" and e["kind"] == "internal" for e in logs)
    # the run of monitor 1 stays undecided and is notified once the bug is gone
    source.__class__ = FakeSource
    clock.tick()
    await notifier.run_cycle()
    assert sink.sent_keys == ["2-21-alert", "1-11-alert"]
