"""No remote makes the cycle wait, and nothing kept grows without bound (issue 11, points 1, 5).

Slack is the fake Slack server with the real `SlackBotSink`; Datafold is the in-memory source.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from structlog.testing import capture_logs

from notifier.deliver.render.alertmanager import notification_body
from notifier.deliver.render.webhook import webhook_body
from notifier.deliver.sink import DeliveryError, Sink
from notifier.deliver.sinks.slack import SlackBotSink
from notifier.domain.models import (
    ERROR_MAX,
    NAME_MAX,
    TAGS_MAX,
    MessageRef,
    MonitorInfo,
    Notification,
    RunDetail,
    cut_text,
)
from notifier.run.cycle import Notifier
from notifier.run.health import HealthTracker
from notifier.run.metrics import Metrics
from notifier.store.file import StateFile
from tests.fakes.cycle import T0, Clock, cycle_config
from tests.fakes.slack import FakeSlack
from tests.fakes.source import FakeSink, FakeSource


@pytest.fixture
async def slack() -> AsyncIterator[tuple[FakeSlack, SlackBotSink]]:
    fake = FakeSlack()
    async with aiohttp.ClientSession() as session, fake.serve() as base_url:
        yield (
            fake,
            SlackBotSink(FakeSlack.token, "C0123ABCD", base_url=base_url + "/api", session=session),
        )


def notifier(
    source: FakeSource, store: StateFile, clock: Clock, *sinks: Sink, **config: object
) -> Notifier:
    return Notifier(
        source, store, {s.name: s for s in sinks}, cycle_config((1,), **config), clock=clock
    )


async def baseline_then_alert(source: FakeSource, clock: Clock, n: Notifier, run_id: int) -> None:
    await n.run_cycle()
    clock.tick()
    source.put(1, run_id, "alert", clock.now - timedelta(seconds=10))


def gauge(metrics: Metrics, destination: str) -> float:
    name = "datafold_notifier_destination_deferred_until_timestamp_seconds"
    for line in metrics.render().decode().splitlines():
        if line.startswith(f'{name}{{destination="{destination}"}} '):
            return float(line.split()[-1])
    raise AssertionError(f"no {name} for {destination}")


def posted(fake: FakeSlack) -> int:
    return sum(1 for call in fake.calls if call == "chat.postMessage")


@pytest.mark.parametrize("retry_after", ["3600", "Fri, 31 Dec 2100 23:59:59 GMT"])
async def test_a_long_slack_rate_limit_defers_slack_alone(
    slack: tuple[FakeSlack, SlackBotSink],
    source: FakeSource,
    store: StateFile,
    clock: Clock,
    retry_after: str,
) -> None:
    """Slack asks for an hour: the cycle does not wait, the webhook hears at once, Slack is left
    alone (no request) until the capped wait is over, then gets the alert from the outbox."""
    fake, sink = slack
    hook = FakeSink("webhook")
    n = notifier(source, store, clock, sink, hook, retry_after_cap=timedelta(minutes=5))
    await baseline_then_alert(source, clock, n, 10)
    fake.rate_limit(times=1, retry_after=retry_after)

    started = time.monotonic()
    with capture_logs() as logs:
        report = await n.run_cycle()

    assert time.monotonic() - started < 3.0
    assert hook.sent_keys == ["1-10-alert"]
    assert report.sent_by_destination == {"webhook": 1}
    assert list(report.deferred) == ["slack"]
    assert report.deferred["slack"].until == clock.now + timedelta(minutes=5)  # capped
    deferred = [e for e in logs if e["event"] == "destination_deferred"]
    assert deferred and deferred[0]["destination"] == "slack" and deferred[0]["capped"] is True
    assert [e.pending for e in n.state.outbox] == [["slack"]]

    health = HealthTracker(started_at=T0, interval=timedelta(minutes=1))
    health.record(report)
    body = health.verdict(clock.now).body
    assert body["destinations_deferred"]["slack"]["reason"] == "Slack answered ratelimited"
    metrics = Metrics()
    metrics.record(report)
    assert gauge(metrics, "slack") == report.deferred["slack"].until.timestamp()

    calls_before = posted(fake)
    clock.tick(2)
    await n.run_cycle()
    assert posted(fake) == calls_before  # still deferred: not even asked
    assert [e.pending for e in n.state.outbox] == [["slack"]]

    clock.tick(4)
    report = await n.run_cycle()
    assert report.sent_by_destination == {"slack": 1}
    assert report.deferred == {}
    assert n.state.outbox == []
    metrics.record(report)
    assert gauge(metrics, "slack") == 0.0


@pytest.mark.parametrize("retry_after", ["1.5", "0"])
async def test_a_short_rate_limit_is_waited_out_within_the_cycle(
    slack: tuple[FakeSlack, SlackBotSink],
    source: FakeSource,
    store: StateFile,
    clock: Clock,
    retry_after: str,
) -> None:
    """Retry-After of a second or two (not a whole number: slack_sdk's own handler fails on it)
    is waited out and the message goes out in the same cycle."""
    fake, sink = slack
    n = notifier(source, store, clock, sink)
    await baseline_then_alert(source, clock, n, 10)
    fake.rate_limit(times=1, retry_after=retry_after)

    started = time.monotonic()
    report = await n.run_cycle()

    assert report.sent_by_destination == {"slack": 1}
    assert time.monotonic() - started >= float(retry_after) * 0.9
    assert report.deferred == {}


class AbsurdWait(FakeSink):
    """A destination answering 503 with `Retry-After: 1e20`, or a 422 with an hour's wait."""

    whole: bool = True

    async def send(self, notification: Notification, thread: MessageRef | None = None) -> None:
        self.attempts += 1
        raise DeliveryError(self.name, "HTTP 503", retry_after=1e20, whole_destination=self.whole)


async def test_an_absurd_retry_after_costs_only_its_destination(
    source: FakeSource, store: StateFile, clock: Clock
) -> None:
    absurd, hook = AbsurdWait("absurd"), FakeSink("webhook")
    n = notifier(source, store, clock, absurd, hook, retry_after_cap=timedelta(minutes=5))
    await baseline_then_alert(source, clock, n, 10)
    report = await n.run_cycle()
    assert hook.sent_keys == ["1-10-alert"]
    assert report.deferred["absurd"].until == clock.now + timedelta(minutes=5)


async def test_a_refusal_of_one_message_does_not_put_the_destination_on_hold(
    source: FakeSource, store: StateFile, clock: Clock
) -> None:
    refusing = AbsurdWait("refusing")
    refusing.whole = False
    n = notifier(source, store, clock, refusing)
    await baseline_then_alert(source, clock, n, 10)
    source.put(1, 11, "alert", clock.now - timedelta(seconds=5))
    report = await n.run_cycle()
    assert refusing.attempts == 2  # the second notification was still tried
    assert report.deferred == {}


async def test_the_outbox_keeps_the_newest_when_full(
    source: FakeSource, store: StateFile, clock: Clock
) -> None:
    """A destination down through a storm: at most `outbox_max` wait; the oldest are dropped
    first, each logged and counted."""
    down = FakeSink("webhook", down=True)
    n = notifier(source, store, clock, down, outbox_max=10)
    await n.run_cycle()
    for cycle in range(3):
        clock.tick()
        for i in range(6):
            source.put(1, 100 * cycle + i, "alert", clock.now - timedelta(seconds=30 - i))
        with capture_logs() as logs:
            report = await n.run_cycle()
    assert report.outbox_size == 10
    kept = sorted(e.notification.event.run_id for e in n.state.outbox)
    assert kept == [102, 103, 104, 105, 200, 201, 202, 203, 204, 205]
    dropped = [e for e in logs if e["event"] == "notification_dropped"]
    assert [e["run_id"] for e in dropped] == [2, 3, 4, 5, 100, 101]
    assert all(e["reason"] == "outbox_full" and e["limit"] == 10 for e in dropped)
    assert report.dropped == 6
    metrics = Metrics()
    metrics.record(report)
    assert (
        'datafold_notifier_notifications_dropped_total{reason="outbox_full"} 6.0'
        in metrics.render().decode()
    )


async def test_huge_texts_from_datafold_are_cut_before_they_are_kept(
    source: FakeSource, store: StateFile, clock: Clock, tmp_path: Path
) -> None:
    """A 20 MB error message, a 1 MB name and 10,000 tags: the state file stays small while the
    destination is down, and what is sent is bounded too."""
    down = FakeSink("webhook", down=True)
    source.infos[1] = MonitorInfo.model_validate(
        {"id": 1, "name": "n" * 1_000_000, "tags": [f"t{i}" * 50 for i in range(10_000)]}
    )
    n = notifier(source, store, clock, down)
    await n.run_cycle()
    clock.tick()
    source.runs.setdefault(1, {})[7] = RunDetail.model_validate(
        {
            "run_id": 7,
            "monitor_id": 1,
            "state": "error",
            "started_at": clock.now.isoformat(),
            "error": "E" * 20_000_000,
        }
    )
    for _ in range(3):
        await n.run_cycle()
        clock.tick()

    notification = n.state.outbox[0].notification
    assert notification.error_message is not None
    assert len(notification.error_message) == ERROR_MAX
    assert "more characters cut" in notification.error_message
    assert len(notification.monitor.title) == NAME_MAX
    assert len(notification.monitor.tags) == TAGS_MAX
    assert store.path.stat().st_size < 100_000
    assert len(webhook_body(notification)) < 100_000
    assert len(notification_body(notification, receiver="am", external_url="https://x")) < 100_000


@pytest.mark.parametrize("length", [101, 150, 1_000, 99_999, 100_000, 123_456])
def test_a_cut_text_is_the_limit_long_and_counts_what_it_left_out(length: int) -> None:
    value = "x" * length
    cut = cut_text(value, 100)
    kept, note = cut.split(" … [")
    assert len(cut) == 100 and value.startswith(kept)
    assert note == f"{length - len(kept)} more characters cut]"
