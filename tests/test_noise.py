"""Keeping the noise down, one cycle at a time: recoveries, thread anchors, reminders, mutes,
quiet routes and digests, over the in-memory fakes and a real state file."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from notifier.domain.models import MessageRef, MonitorInfo, Mute, Notification
from notifier.route.rules import RouteDecision
from notifier.run.cycle import Notifier
from notifier.store.file import StateFile
from tests.fakes.cycle import T0, Clock, cycle_config
from tests.fakes.source import FakeDigestSink, FakeSink, FakeSource


def notifier(
    source: FakeSource,
    store: StateFile,
    clock: Clock,
    *sinks: FakeSink,
    route: Callable[[Notification, datetime], RouteDecision] | None = None,
    **config: Any,
) -> Notifier:
    config.setdefault("monitor_ids", (1,))
    return Notifier(
        source, store, {s.name: s for s in sinks}, cycle_config(**config), clock=clock, route=route
    )


async def baselined(
    source: FakeSource, store: StateFile, clock: Clock, *sinks: FakeSink, **options: Any
) -> Notifier:
    """A `notifier(...)` past its first cycle (its monitors baselined), the clock a minute on."""
    n = notifier(source, store, clock, *sinks, **options)
    await n.run_cycle()
    clock.tick()
    return n


async def test_an_ok_run_after_an_alert_is_a_recovery_sent_once(
    source: FakeSource, store: StateFile, clock: Clock
) -> None:
    slack = FakeSink("slack", anchors=True)
    n = await baselined(source, store, clock, slack)
    source.put(1, 11, "alert", clock.now)
    await n.run_cycle()
    clock.tick()
    source.put(1, 12, "ok", clock.now)
    report = await n.run_cycle()
    assert slack.sent_keys == ["1-11-alert", "1-12-ok"]
    recovered = slack.sent[1]
    assert recovered.kind == "recovered" and recovered.event_kind == "recovered"
    assert recovered.incident is not None and recovered.incident.id == "1-11-alert"
    # the recovery is handed the first alert's message, to update it and reply in its thread
    assert slack.threads == [None, MessageRef(channel="C1", ts="1.000")]
    assert report.events_by_state == {"recovered": 1}
    assert n.state.monitors[1].incident is None

    clock.tick()
    await n.run_cycle()
    assert slack.sent_keys == ["1-11-alert", "1-12-ok"]  # no repeat
    assert n.state.messages == {}  # the anchor went with the closed incident


async def test_an_ok_run_older_than_the_alert_is_no_recovery(
    source: FakeSource, store: StateFile, clock: Clock
) -> None:
    slack = FakeSink("slack")
    n = await baselined(source, store, clock, slack)
    source.put(1, 12, "ok", clock.now - timedelta(seconds=30))  # finished after, started before
    source.put(1, 11, "alert", clock.now)
    await n.run_cycle()
    assert slack.sent_keys == ["1-11-alert"]
    assert n.state.monitors[1].incident is not None


async def test_further_alerts_get_the_first_alerts_anchor_and_a_new_incident_a_new_one(
    source: FakeSource, store: StateFile, clock: Clock
) -> None:
    slack = FakeSink("slack", anchors=True)
    n = await baselined(source, store, clock, slack)
    source.put(1, 11, "alert", clock.now)
    await n.run_cycle()
    clock.tick()
    source.put(1, 12, "error", clock.now)
    await n.run_cycle()
    first_anchor = MessageRef(channel="C1", ts="1.000")
    assert slack.threads == [None, first_anchor]
    assert slack.sent[1].incident is not None and slack.sent[1].incident.id == "1-11-alert"
    assert not slack.sent[1].opens_incident

    clock.tick()
    source.put(1, 13, "ok", clock.now)
    clock.tick()
    source.put(1, 14, "alert", clock.now)
    await n.run_cycle()
    # recovery (anchored on the old incident), then a new incident opens afresh
    assert slack.sent_keys[2:] == ["1-13-ok", "1-14-alert"]
    assert slack.threads[2:] == [first_anchor, None]
    assert slack.sent[3].opens_incident
    assert set(n.state.messages) == {"1-14-alert"}


async def test_anchors_survive_a_restart(source: FakeSource, tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "state.json"
    slack = FakeSink("slack", anchors=True)
    first = await baselined(source, StateFile(path), clock, slack)
    source.put(1, 11, "alert", clock.now)
    await first.run_cycle()

    clock.tick()
    source.put(1, 12, "ok", clock.now)
    again = notifier(source, StateFile(path), clock, slack)
    await again.run_cycle()
    assert slack.threads[-1] == MessageRef(channel="C1", ts="1.000")


@pytest.mark.parametrize(
    ("minutes_open", "reminders"),
    [(5, 0), (10, 1), (25, 2)],
)
async def test_reminders_for_an_alert_left_open(
    source: FakeSource, store: StateFile, clock: Clock, minutes_open: int, reminders: int
) -> None:
    slack = FakeSink("slack")
    n = await baselined(source, store, clock, slack, reminder_interval=timedelta(minutes=10))
    source.put(1, 11, "alert", clock.now)
    await n.run_cycle()
    for _ in range(minutes_open):
        clock.tick()
        await n.run_cycle()
    sent = [x for x in slack.sent if x.kind == "reminder"]
    assert [x.id for x in sent] == [f"1-11-alert-reminder-{i}" for i in range(1, reminders + 1)]
    assert all(x.event.run_id == 11 and x.incident is not None for x in sent)


async def test_no_reminder_when_off_or_when_the_monitor_could_not_be_polled(
    source: FakeSource, store: StateFile, clock: Clock
) -> None:
    slack = FakeSink("slack")
    off = await baselined(source, store, clock, slack)
    source.put(1, 11, "alert", clock.now)
    await off.run_cycle()
    clock.tick(60)
    await off.run_cycle()
    assert slack.sent_keys == ["1-11-alert"]

    on = notifier(source, store, clock, slack, reminder_interval=timedelta(minutes=10))
    from notifier.fetch.source import DatafoldError

    source.failures[1] = DatafoldError("HTTP 503")
    await on.run_cycle()
    assert slack.sent_keys == ["1-11-alert"]  # not known to be still open: no reminder
    del source.failures[1]
    await on.run_cycle()
    assert slack.sent_keys[-1] == "1-11-alert-reminder-1"


async def test_a_newer_alert_postpones_the_reminder(
    source: FakeSource, store: StateFile, clock: Clock
) -> None:
    slack = FakeSink("slack")
    n = await baselined(source, store, clock, slack, reminder_interval=timedelta(minutes=10))
    source.put(1, 11, "alert", clock.now)
    await n.run_cycle()
    clock.tick(8)
    source.put(1, 12, "alert", clock.now)
    await n.run_cycle()
    clock.tick(8)
    await n.run_cycle()
    assert slack.sent_keys == ["1-11-alert", "1-12-alert"]
    clock.tick(3)
    await n.run_cycle()
    assert slack.sent_keys[-1] == "1-11-alert-reminder-1"
    assert slack.sent[-1].event.run_id == 12  # about the latest failing run


def mute(until: datetime, *, monitor_id: int | None = None, tag: str | None = None) -> Mute:
    return Mute(
        id="m1", monitor_id=monitor_id, tag=tag, until=until, reason="deploy", created_at=T0
    )


async def test_a_muted_alert_is_logged_and_counted_not_sent_and_expiry_lets_the_next_through(
    source: FakeSource, store: StateFile, clock: Clock
) -> None:
    slack = FakeSink("slack")
    n = await baselined(source, store, clock, slack)
    n.state.mutes = [mute(clock.now + timedelta(minutes=30), monitor_id=1)]
    source.put(1, 11, "alert", clock.now)
    with capture_logs() as logs:
        report = await n.run_cycle()
    assert slack.sent == [] and report.muted == 1
    [muted] = [e for e in logs if e["event"] == "notification_muted"]
    assert (
        muted["monitor_id"] == 1 and muted["muted"] == "monitor 1" and muted["reason"] == "deploy"
    )
    assert n.state.monitors[1].incident is not None  # the monitor is failing all the same

    clock.tick(31)  # the mute expired with the alert still open
    source.put(1, 12, "ok", clock.now)
    await n.run_cycle()
    assert slack.sent_keys == ["1-12-ok"]


async def test_a_tag_mute_covers_monitors_with_that_tag_only(
    source: FakeSource, store: StateFile, clock: Clock
) -> None:
    source.infos[1] = MonitorInfo(id=1, name="a", tags=["Finance"])
    source.infos[2] = MonitorInfo(id=2, name="b", tags=["ops"])
    slack = FakeSink("slack")
    n = await baselined(source, store, clock, slack, monitor_ids=(1, 2))
    n.state.mutes = [mute(clock.now + timedelta(hours=1), tag="finance")]
    source.put(1, 11, "alert", clock.now)
    source.put(2, 21, "alert", clock.now)
    report = await n.run_cycle()
    assert slack.sent_keys == ["2-21-alert"] and report.muted == 1


async def test_mutes_written_beside_a_running_notifier_are_adopted_and_kept(
    source: FakeSource, tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "state.json"
    slack = FakeSink("slack")
    n = await baselined(source, StateFile(path), clock, slack)
    # `mute` in another process: its own StateFile, only the short write lock
    StateFile(path).update_mutes(
        lambda mutes: [*mutes, mute(clock.now + timedelta(hours=1), monitor_id=1)]
    )
    source.put(1, 11, "alert", clock.now)
    report = await n.run_cycle()
    assert report.muted == 1 and slack.sent == []
    saved = await StateFile(path).load()
    assert [m.id for m in saved.mutes] == ["m1"]  # the daemon's save kept the mute

    StateFile(path).update_mutes(lambda mutes: [])  # `unmute`
    clock.tick()
    source.put(1, 12, "alert", clock.now)
    await n.run_cycle()
    assert slack.sent_keys == ["1-12-alert"]
    assert (await StateFile(path).load()).mutes == []


async def test_quiet_routes_hold_an_event_back_and_count_it(
    source: FakeSource, store: StateFile, clock: Clock
) -> None:
    slack = FakeSink("slack")

    def quiet(n: Notification, now: datetime) -> RouteDecision:
        return RouteDecision(to=[], quiet=["night"])

    n = await baselined(source, store, clock, slack, route=quiet)
    source.put(1, 11, "alert", clock.now)
    with capture_logs() as logs:
        report = await n.run_cycle()
    assert slack.sent == [] and report.quieted == 1 and n.state.outbox == []
    assert any(e["event"] == "notification_quiet" and e["routes"] == ["night"] for e in logs)


async def test_more_events_than_the_threshold_go_as_one_digest(
    source: FakeSource, store: StateFile, clock: Clock
) -> None:
    digest = FakeDigestSink("slack", digest_threshold=3)
    plain = FakeSink("webhook-1")
    ids = tuple(range(1, 6))
    n = await baselined(source, store, clock, digest, plain, monitor_ids=ids)
    for m in ids:
        source.put(m, m * 10, "alert", clock.now)
    report = await n.run_cycle()
    assert digest.sent == [] and len(digest.digests) == 1
    assert sorted(x.id for x in digest.digests[0]) == sorted(f"{m}-{m * 10}-alert" for m in ids)
    assert len(plain.sent) == 5  # the other destination has no threshold
    assert report.digested == 5 and report.sent_by_destination["slack"] == 5
    assert n.state.outbox == []

    clock.tick()
    for m in (1, 2):
        source.put(m, m * 10 + 1, "error", clock.now)
    await n.run_cycle()
    assert len(digest.digests) == 1 and len(digest.sent) == 2  # at or below: one each


async def test_a_digest_failing_part_way_keeps_only_what_did_not_go_out(
    source: FakeSource, store: StateFile, clock: Clock
) -> None:
    digest = FakeDigestSink("slack", digest_threshold=2, digest_fails_after=2)
    ids = (1, 2, 3, 4)
    n = await baselined(source, store, clock, digest, monitor_ids=ids)
    for m in ids:
        source.put(m, m * 10, "alert", clock.now)
    report = await n.run_cycle()
    sent = {x.id for x in digest.digests[0]}
    waiting = {e.notification.id for e in n.state.outbox}
    assert len(sent) == 2 and len(waiting) == 2 and not sent & waiting
    assert report.delivery_failures == 1 and report.delivered == 2
    assert all(e.attempts == 1 for e in n.state.outbox)

    digest.digest_fails_after = None
    clock.tick()
    await n.run_cycle()
    assert n.state.outbox == []
    # 2 left is not more than the threshold: sent one by one
    assert {x.id for x in digest.sent} == waiting


async def test_a_reminder_about_an_error_carries_its_message(
    source: FakeSource, store: StateFile, clock: Clock
) -> None:
    slack = FakeSink("slack")
    n = await baselined(source, store, clock, slack, reminder_interval=timedelta(minutes=10))
    source.put(1, 11, "error", clock.now, error="relation orders does not exist")
    await n.run_cycle()
    clock.tick(10)
    await n.run_cycle()
    first, reminder = slack.sent
    assert reminder.kind == "reminder"
    assert first.error_message == reminder.error_message == "relation orders does not exist"
