"""The Alertmanager push destination against a real Alertmanager (tests/fakes/alertmanager.py):
an alert fires there and reaches the receiver it routes to, posting it again updates the same
alert, a silence made through its API silences it, and a recovery resolves it."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from notifier.deliver.render.alertmanager import fingerprint
from notifier.deliver.sink import DeliveryError
from notifier.deliver.sinks.alertmanager import BATCH_MAX, AlertmanagerSink, default_hold
from notifier.domain.models import Incident, Notification, RunEvent
from notifier.domain.report import CycleReport
from notifier.run.metrics import Metrics
from tests.fakes.alertmanager import CONFIG, Alertmanager, Receiver, running_alertmanager
from tests.fakes.samples import DIFF_URL, MONITOR_URL, notification

HOLD = timedelta(minutes=10)


def config_seconds(name: str) -> float:
    """A `<name>: <n>ms` timing of the fake's Alertmanager configuration, in seconds."""
    found = re.search(rf"\b{name}: (\d+)ms\b", CONFIG)
    assert found is not None, f"{name} in milliseconds not found in {CONFIG}"
    return int(found.group(1)) / 1000


GROUP_WAIT = config_seconds("group_wait")
GROUP_INTERVAL = config_seconds("group_interval")


def opening(n: Notification) -> Notification:
    """`n` as the notification that opens its incident."""
    incident = Incident(
        id=n.id,
        opened_at=n.detected_at,
        first=n.event,
        last=n.event,
        last_notified_at=n.detected_at,
    )
    return n.model_copy(update={"incident": incident})


def recovery(opened: Notification, at: datetime) -> Notification:
    ok = RunEvent(monitor_id=opened.event.monitor_id, run_id=opened.event.run_id + 1, state="ok")
    return opened.model_copy(
        update={"id": "recovered-" + opened.id, "kind": "recovered", "event": ok, "detected_at": at}
    )


def clock_at(offset: timedelta = timedelta()) -> Callable[[], datetime]:
    return lambda: datetime.now(UTC) + offset


@pytest.fixture
async def alertmanager() -> AsyncIterator[Alertmanager]:
    async with running_alertmanager() as am:
        yield am


def sink_for(am: Alertmanager, **options: Any) -> AlertmanagerSink:
    return AlertmanagerSink(
        am.url, session=am.session, name="am", hold=HOLD, labels={"team": "data"}, **options
    )


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_an_alert_fires_with_its_identity_and_reaches_the_receiver(
    alertmanager: Alertmanager,
) -> None:
    alert = opening(notification(detected_at=datetime.now(UTC)))
    before = datetime.now(UTC)
    await sink_for(alertmanager).send(alert)

    [fired] = await alertmanager.wait_alerts(lambda alerts: len(alerts) == 1)
    assert fired["labels"] == {
        "alertname": "DatafoldMonitorAlert",
        "monitor": "orders prod vs staging",
        "monitor_id": "4521",
        "monitor_type": "diff",
        "severity": "warning",
        "source": "datafold",
        "state": "alert",
        "tags": ",finance,tier-1,",
        "tag_finance": "true",
        "tag_tier_1": "true",
        "team": "data",
    }
    # The same identity the `format = "alertmanager"` webhook computes.
    assert fired["fingerprint"] == fingerprint(fired["labels"])
    annotations = fired["annotations"]
    assert annotations["summary"] == "Alert: orders prod vs staging"
    assert annotations["description"] == "Run 98123 of Datafold monitor 4521 (diff) reported alert."
    assert annotations["diff_url"] == DIFF_URL and annotations["monitor_url"] == MONITOR_URL
    assert "error" not in annotations
    assert fired["generatorURL"] == MONITOR_URL
    assert fired["startsAt"].startswith("2025-03-14T09:30:00")
    assert fired["status"]["state"] == "active"
    ends = when(fired["endsAt"])
    assert before + HOLD - timedelta(seconds=1) <= ends <= datetime.now(UTC) + HOLD

    message = await alertmanager.receiver.wait_for("firing")
    assert message["receiver"] == "datafold"
    assert [a["labels"]["monitor_id"] for a in message["alerts"]] == ["4521"]


async def test_posting_again_moves_the_end_of_the_same_alert(alertmanager: Alertmanager) -> None:
    alert = opening(notification(detected_at=datetime.now(UTC)))
    await sink_for(alertmanager).send(alert)
    [first] = await alertmanager.wait_alerts(lambda alerts: len(alerts) == 1)

    # A later cycle's keep-alive (the sink's clock two minutes on), then a retry of the alert.
    later = sink_for(alertmanager, clock=clock_at(timedelta(minutes=2)))
    await later.hold([alert])
    await later.send(alert)

    [again] = await alertmanager.wait_alerts(
        lambda alerts: len(alerts) == 1 and alerts[0]["endsAt"] != first["endsAt"]
    )
    assert again["fingerprint"] == first["fingerprint"]
    assert when(again["endsAt"]) - when(first["endsAt"]) >= timedelta(minutes=1, seconds=59)
    assert again["startsAt"] == first["startsAt"]


async def test_an_error_after_an_alert_keeps_both_firing_until_the_recovery(
    alertmanager: Alertmanager,
) -> None:
    alert = opening(notification(detected_at=datetime.now(UTC)))
    assert alert.incident is not None
    error_run = RunEvent(monitor_id=4521, run_id=98124, state="error")
    incident = alert.incident.model_copy(update={"last": error_run})
    error = notification(state="error", run_id=98124, error="boom").model_copy(
        update={"incident": incident}
    )
    sink = sink_for(alertmanager)
    await sink.send(alert)
    await sink.send(error)
    await sink.hold([error])
    fired = await alertmanager.wait_alerts(lambda alerts: len(alerts) == 2)
    assert sorted(a["labels"]["alertname"] for a in fired) == [
        "DatafoldMonitorAlert",
        "DatafoldMonitorError",
    ]

    await sink.send(recovery(error, datetime.now(UTC)))
    assert await alertmanager.wait_alerts(lambda alerts: alerts == []) == []


async def test_an_error_message_is_its_own_annotation_in_alertmanager_and_at_the_receiver(
    alertmanager: Alertmanager,
) -> None:
    message = 'ERROR: relation "orders" does not exist\r\n  LINE 1: select * from orders\n'
    error = opening(notification(state="error", error=message, detected_at=datetime.now(UTC)))
    await sink_for(alertmanager).send(error)

    [fired] = await alertmanager.wait_alerts(lambda alerts: len(alerts) == 1)
    annotations = fired["annotations"]
    assert annotations["error"] == (
        'ERROR: relation "orders" does not exist\n  LINE 1: select * from orders'
    )
    assert annotations["description"] == (
        "Run 98123 of Datafold monitor 4521 (diff) reported error.\n"
        'Error: ERROR: relation "orders" does not exist LINE 1: select * from orders'
    )
    assert fired["labels"]["alertname"] == "DatafoldMonitorError"
    assert fired["fingerprint"] == fingerprint(fired["labels"])
    routed = await alertmanager.receiver.wait_for("firing")
    assert [a["annotations"]["error"] for a in routed["alerts"]] == [annotations["error"]]


async def test_a_silence_made_through_its_api_silences_the_alert(
    alertmanager: Alertmanager,
) -> None:
    await sink_for(alertmanager).send(opening(notification(detected_at=datetime.now(UTC))))
    await alertmanager.wait_alerts(lambda alerts: len(alerts) == 1)
    silence = await alertmanager.silence("monitor_id", "4521")

    [silenced] = await alertmanager.wait_alerts(
        lambda alerts: alerts[0]["status"]["state"] == "suppressed"
    )
    assert silenced["status"]["silencedBy"] == [silence]
    assert await alertmanager.alerts(silenced="false") == []


def of_monitor(n: Notification, monitor_id: int) -> Notification:
    """`n` about another monitor: another label set, another aggregation group."""
    event = n.event.model_copy(update={"monitor_id": monitor_id})
    monitor = n.monitor.model_copy(update={"id": monitor_id})
    return opening(n.model_copy(update={"id": event.key, "event": event, "monitor": monitor}))


def heard_of(receiver: Receiver, monitor_id: str) -> list[dict[str, Any]]:
    """The messages the receiver got with an alert of this monitor."""
    return [
        message
        for message in receiver.messages
        if any(alert["labels"]["monitor_id"] == monitor_id for alert in message["alerts"])
    ]


async def hears_nothing_of(receiver: Receiver, monitor_id: str, *, within: float) -> None:
    """Fails as soon as a message about `monitor_id` reaches the receiver within `within` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not heard_of(receiver, monitor_id):
        left = deadline - loop.time()
        if left <= 0:
            return
        receiver.arrived.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(receiver.arrived.wait(), left)
    raise AssertionError(f"the receiver heard of monitor {monitor_id}: {receiver.messages}")


async def test_a_silenced_alert_never_reaches_the_receiver_a_control_alert_does(
    alertmanager: Alertmanager,
) -> None:
    silence = await alertmanager.silence("monitor_id", "4521")
    sink = sink_for(alertmanager)
    silenced = opening(notification(detected_at=datetime.now(UTC)))
    await sink.send(silenced)
    # Posted after the silenced alert: its aggregation group (group_by monitor_id) is created
    # later, so its first flush, group_wait after that, comes after the silenced group's.
    await sink.send(of_monitor(silenced, 4522))

    alerts = await alertmanager.wait_alerts(lambda alerts: len(alerts) == 2)
    state = {a["labels"]["monitor_id"]: a["status"] for a in alerts}
    assert state["4521"]["state"] == "suppressed" and state["4521"]["silencedBy"] == [silence]
    assert state["4522"]["state"] == "active"

    routed = await alertmanager.receiver.wait_for("firing")
    assert [a["labels"]["monitor_id"] for a in routed["alerts"]] == ["4522"]
    # The control alert arriving proves the pipeline ran past the silenced group's first flush.
    # Alertmanager would flush that group again after group_interval (the silence muting it
    # every time), and a second time after another: watch the receiver that long again, plus
    # group_wait, for any message about the silenced monitor (2 x 300 ms + 100 ms + margin).
    await hears_nothing_of(
        alertmanager.receiver, "4521", within=GROUP_WAIT + 2 * GROUP_INTERVAL + 0.5
    )
    assert [m["status"] for m in alertmanager.receiver.messages] == ["firing"]


async def test_a_recovery_resolves_the_alert_and_the_receiver_hears_of_it(
    alertmanager: Alertmanager,
) -> None:
    alert = opening(notification(detected_at=datetime.now(UTC)))
    sink = sink_for(alertmanager)
    await sink.send(alert)
    await alertmanager.receiver.wait_for("firing")

    await sink.send(recovery(alert, datetime.now(UTC)))

    assert await alertmanager.wait_alerts(lambda alerts: alerts == []) == []
    resolved = await alertmanager.receiver.wait_for("resolved")
    [ended] = resolved["alerts"]
    assert ended["labels"]["alertname"] == "DatafoldMonitorAlert"
    assert ended["annotations"]["summary"] == "Resolved: orders prod vs staging"


async def test_check_reports_the_version_and_posts_nothing(alertmanager: Alertmanager) -> None:
    [result] = await sink_for(alertmanager).check()
    assert result.ok and result.detail.startswith("Alertmanager 0.")
    assert "cluster: disabled" in result.detail
    assert await alertmanager.alerts() == []


async def test_check_reports_an_unreachable_alertmanager() -> None:
    async with aiohttp.ClientSession() as session:
        sink = AlertmanagerSink("http://127.0.0.1:1", session=session, name="am", timeout=2)
        [result] = await sink.check()
    assert not result.ok and result.detail == "Alertmanager unreachable: ClientConnectorError"


@contextlib.asynccontextmanager
async def answering(status: int, body: str) -> AsyncIterator[str]:
    """A server on 127.0.0.1 answering every alerts post with `status` (Retry-After: 7); its URL."""

    async def handle(request: web.Request) -> web.Response:
        return web.Response(status=status, text=body, headers={"Retry-After": "7"})

    app = web.Application()
    app.router.add_post("/api/v2/alerts", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("status", "body", "permanent"),
    [
        (400, '"start time must be before end time"', True),
        (503, "overloaded", False),
        (401, "no", False),
    ],
)
async def test_a_refusal_on_the_alerts_merits_is_permanent_anything_else_waits(
    status: int, body: str, permanent: bool
) -> None:
    async with answering(status, body) as url, aiohttp.ClientSession() as session:
        sink = AlertmanagerSink(url, session=session, name="am", token="t0k3n")
        with pytest.raises(DeliveryError) as raised:
            await sink.send(opening(notification(detected_at=datetime.now(UTC))))
    error = raised.value
    assert error.permanent is permanent and error.whole_destination is not permanent
    assert error.reason == f"Alertmanager answered HTTP {status}: {body}"
    assert error.retry_after == 7
    assert "t0k3n" not in str(error) and "t0k3n" not in repr(sink)


def test_the_default_hold_is_four_intervals_and_at_least_five_minutes() -> None:
    assert default_hold(30) == timedelta(minutes=5)
    assert default_hold(600) == timedelta(minutes=40)


def test_metrics_show_how_many_incidents_each_destination_keeps_firing() -> None:
    metrics = Metrics()
    metrics.record(CycleReport(kept_firing=Counter({"am": 2})))
    assert 'datafold_notifier_alerts_kept_firing{destination="am"} 2.0' in scrape(metrics)
    metrics.record(CycleReport())
    assert 'datafold_notifier_alerts_kept_firing{destination="am"} 0.0' in scrape(metrics)


def scrape(metrics: Metrics) -> str:
    return metrics.render().decode()


async def test_many_open_incidents_are_kept_firing_in_batches(alertmanager: Alertmanager) -> None:
    now = datetime.now(UTC)
    held = [
        opening(notification(detected_at=now).model_copy(update={"id": f"n{i}"})).model_copy(
            update={"monitor": notification().monitor.model_copy(update={"id": i})}
        )
        for i in range(1, BATCH_MAX + 3)
    ]
    await sink_for(alertmanager).hold(held)
    alerts = await alertmanager.wait_alerts(lambda alerts: len(alerts) == BATCH_MAX + 2)
    assert len({a["labels"]["monitor_id"] for a in alerts}) == BATCH_MAX + 2
