"""The webhook sink against a local recording receiver, verified as a receiver would."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from notifier import __version__
from notifier.deliver.render import webhook as webhook_payload
from notifier.deliver.render.alertmanager import notification_body
from notifier.deliver.sink import CheckResult, DeliveryError, Sink
from notifier.deliver.sinks.webhook import WebhookSink
from notifier.domain.models import Incident, Links, MessageRef, MonitorInfo, Notification, RunEvent
from tests.fakes.webhook import Reply, WebhookReceiver

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
NOTIFICATION = Notification(
    id="4521-98123-error",
    event=RunEvent(monitor_id=4521, run_id=98123, state="error"),
    monitor=MonitorInfo(id=4521, name="orders", monitor_type="diff", tags=["finance"]),
    error_message="relation <orders> does not exist",
    links=Links(monitor="https://app.datafold.com/monitors/4521"),
    detected_at=datetime(2025, 3, 14, 9, 41, tzinfo=UTC),
)


class Clock:
    """A settable clock for the attempt timestamp."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[WebhookReceiver, str]]:
    fake = WebhookReceiver()
    async with fake.serve() as url:
        yield fake, url


async def failure(sink: WebhookSink, url: str) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        await sink.send(NOTIFICATION)
    error = caught.value
    assert error.destination == sink.name
    for text in (str(error), repr(error)):
        assert url not in text and "s3cr3t-url-token" not in text and "127.0.0.1" not in text
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    return error


async def test_signed_delivery_verifies_at_the_receiver(
    receiver: tuple[WebhookReceiver, str], session: aiohttp.ClientSession
) -> None:
    fake, url = receiver
    await WebhookSink(url, secret=SECRET, session=session).send(NOTIFICATION)
    [delivery] = fake.deliveries
    assert Webhook(SECRET).verify(
        delivery.body, delivery.headers
    ) == webhook_payload.webhook_payload(NOTIFICATION)
    assert delivery.body == webhook_payload.webhook_body(NOTIFICATION).encode()
    assert delivery.path_qs == "/hooks/datafold?token=s3cr3t-url-token"
    assert delivery.headers["content-type"] == "application/json"
    assert delivery.headers["user-agent"] == f"datafold-notifier/{__version__}"
    assert delivery.headers["webhook-id"] == NOTIFICATION.id
    assert delivery.headers["webhook-signature"].startswith("v1,")
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(b"another secret").decode()).verify(
            delivery.body, delivery.headers
        )


async def test_a_retry_keeps_id_and_body_with_a_fresh_timestamp(
    receiver: tuple[WebhookReceiver, str], session: aiohttp.ClientSession
) -> None:
    fake, url = receiver
    clock = Clock(datetime(2025, 3, 14, 9, 41, 30, 900_000, tzinfo=UTC))
    sink = WebhookSink(url, secret=SECRET, session=session, clock=clock)
    fake.reply(503)
    with pytest.raises(DeliveryError):
        await sink.send(NOTIFICATION)
    clock.now += timedelta(minutes=2)
    await sink.send(NOTIFICATION)
    first, second = fake.deliveries
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == NOTIFICATION.id
    assert first.body == second.body
    assert (first.headers["webhook-timestamp"], second.headers["webhook-timestamp"]) == (
        "1741945290",
        "1741945410",
    )
    signer = Webhook(SECRET)
    for delivery in (first, second):
        timestamp = datetime.fromtimestamp(int(delivery.headers["webhook-timestamp"]), UTC)
        expected = signer.sign(NOTIFICATION.id, timestamp, delivery.body.decode())
        assert delivery.headers["webhook-signature"] == expected


async def test_unsigned_without_a_secret(
    receiver: tuple[WebhookReceiver, str], session: aiohttp.ClientSession
) -> None:
    fake, url = receiver
    await WebhookSink(url, secret=None, session=session).send(NOTIFICATION)
    [delivery] = fake.deliveries
    assert "webhook-signature" not in delivery.headers
    assert delivery.headers["webhook-id"] == NOTIFICATION.id
    assert json.loads(delivery.body) == webhook_payload.webhook_payload(NOTIFICATION)


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
async def test_any_2xx_is_delivered(
    receiver: tuple[WebhookReceiver, str], session: aiohttp.ClientSession, status: int
) -> None:
    fake, url = receiver
    fake.reply(status)
    await WebhookSink(url, secret=None, session=session).send(NOTIFICATION)


@pytest.mark.parametrize(
    ("reply", "reason", "retry_after"),
    [
        (Reply(500), "HTTP 500", None),
        (Reply(503, headers={"Retry-After": "120"}), "HTTP 503", 120.0),
        (Reply(429, headers={"Retry-After": "30"}), "HTTP 429", 30.0),
        (Reply(429, headers={"Retry-After": "Fri, 14 Mar 2025 09:42:00 GMT"}), "HTTP 429", 60.0),
        (Reply(429, headers={"Retry-After": "soon"}), "HTTP 429", None),
        (Reply(429), "HTTP 429", None),
        (Reply(404), "HTTP 404", None),
        (Reply(301, headers={"Location": "https://elsewhere.example/"}), "HTTP 301", None),
    ],
)
async def test_refusals(
    receiver: tuple[WebhookReceiver, str],
    session: aiohttp.ClientSession,
    reply: Reply,
    reason: str,
    retry_after: float | None,
) -> None:
    fake, url = receiver
    fake.reply(reply)
    clock = Clock(datetime(2025, 3, 14, 9, 41, tzinfo=UTC))
    error = await failure(WebhookSink(url, secret=SECRET, session=session, clock=clock), url)
    assert (error.reason, error.retry_after) == (reason, retry_after)
    assert len(fake.requests) == 1  # redirects are not followed


async def test_timeout(
    receiver: tuple[WebhookReceiver, str], session: aiohttp.ClientSession
) -> None:
    fake, url = receiver
    fake.reply(Reply(delay=5))
    error = await failure(WebhookSink(url, secret=None, session=session, timeout=0.3), url)
    assert error.reason == "could not reach the webhook: TimeoutError"


async def test_connection_refused(closed_url: str, session: aiohttp.ClientSession) -> None:
    error = await failure(WebhookSink(closed_url, secret=None, session=session), closed_url)
    assert error.reason == "could not reach the webhook: ClientConnectorError"


@pytest.mark.parametrize(
    "secret",
    ["", "whsec_", "0123456789abcdef", "whsec_not base64!", "whsec_@@@@", "whsec_YWJj=x"],
)
def test_invalid_secrets_are_rejected_without_echo(secret: str) -> None:
    with pytest.raises(ValueError, match=r"^NOTIFIER_WEBHOOK_SECRET is not a valid whsec_ secret$"):
        WebhookSink("https://example.com/hook", secret=secret, session=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "secret", [SECRET, SECRET.rstrip("="), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
)
def test_valid_secrets_are_accepted(secret: str) -> None:
    sink = WebhookSink("https://example.com/hook", secret=secret, session=None)  # type: ignore[arg-type]
    assert sink.signed
    assert secret not in repr(sink)


def test_name_is_stable_and_free_of_the_url() -> None:
    url = "https://hooks.example.com/in?token=s3cr3t-url-token"
    first = WebhookSink(url, secret=None, session=None)  # type: ignore[arg-type]
    again = WebhookSink(url, secret=SECRET, session=None)  # type: ignore[arg-type]
    other = WebhookSink(url + "x", secret=None, session=None)  # type: ignore[arg-type]
    assert first.name == again.name != other.name
    assert first.name.startswith("webhook-") and len(first.name) == len("webhook-") + 8
    assert "s3cr3t" not in first.name and "s3cr3t" not in repr(first)


@pytest.mark.parametrize(
    ("secret", "status", "expected"),
    [
        (SECRET, 200, CheckResult("", True, "webhook reachable (HEAD: HTTP 200; signed)")),
        (
            None,
            405,
            CheckResult(
                "",
                True,
                "webhook reachable (HEAD: HTTP 405; unsigned: no signing secret is set)",
            ),
        ),
        (SECRET, 404, CheckResult("", True, "webhook reachable (HEAD: HTTP 404; signed)")),
        (SECRET, 502, CheckResult("", False, "webhook answered HEAD with HTTP 502")),
    ],
)
async def test_check(
    receiver: tuple[WebhookReceiver, str],
    session: aiohttp.ClientSession,
    secret: str | None,
    status: int,
    expected: CheckResult,
) -> None:
    fake, url = receiver
    fake.reply(status)
    sink = WebhookSink(url, secret=secret, session=session)
    assert await sink.check() == [CheckResult(sink.name, expected.ok, expected.detail)]
    assert [r.method for r in fake.requests] == ["HEAD"]


async def test_check_unreachable(closed_url: str, session: aiohttp.ClientSession) -> None:
    sink = WebhookSink(closed_url, secret=None, session=session)
    assert await sink.check() == [
        CheckResult(sink.name, False, "webhook unreachable: ClientConnectorError")
    ]


async def test_check_timeout(
    receiver: tuple[WebhookReceiver, str], session: aiohttp.ClientSession
) -> None:
    fake, url = receiver
    fake.reply(Reply(delay=5))
    sink = WebhookSink(url, secret=None, session=session, timeout=0.3)
    assert await sink.check() == [
        CheckResult(sink.name, False, "webhook unreachable: TimeoutError")
    ]


@pytest.mark.parametrize(
    ("status", "whole_destination"),
    [(400, False), (413, False), (422, False), (401, True), (404, True), (429, True), (503, True)],
)
async def test_refusals_say_whether_the_destination_is_blocked(
    receiver: tuple[WebhookReceiver, str],
    session: aiohttp.ClientSession,
    status: int,
    whole_destination: bool,
) -> None:
    fake, url = receiver
    fake.reply(status)
    error = await failure(WebhookSink(url, secret=SECRET, session=session), url)
    assert error.whole_destination is whole_destination


async def test_rotation_signs_with_every_active_secret(
    receiver: tuple[WebhookReceiver, str], session: aiohttp.ClientSession
) -> None:
    """During a rotation each receiver, holding the old or the new secret, can verify."""
    fake, url = receiver
    new = "whsec_" + base64.b64encode(b"a-brand-new-secret-of-32-bytes!!").decode()
    await WebhookSink(url, secret=[SECRET, new], session=session).send(NOTIFICATION)
    [request] = fake.deliveries
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for secret in (SECRET, new):
        Webhook(secret).verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        other = "whsec_" + base64.b64encode(b"some-other-secret-nobody-has-123").decode()
        Webhook(other).verify(request.body, request.headers)


OPENED = datetime(2025, 3, 14, 9, 41, tzinfo=UTC)
ALERT_RUN = RunEvent(
    monitor_id=4521,
    run_id=98123,
    state="alert",
    started_at=datetime(2025, 3, 14, 9, 30, tzinfo=UTC),
)
INCIDENT = Incident(
    id=ALERT_RUN.key, opened_at=OPENED, first=ALERT_RUN, last=ALERT_RUN, last_notified_at=OPENED
)
OK_RUN = RunEvent(
    monitor_id=4521, run_id=98150, state="ok", started_at=datetime(2025, 3, 14, 10, 30, tzinfo=UTC)
)
FIRED = NOTIFICATION.model_copy(
    update={"id": ALERT_RUN.key, "event": ALERT_RUN, "error_message": None, "incident": INCIDENT}
)
RECOVERED = Notification(
    id=OK_RUN.key,
    kind="recovered",
    event=OK_RUN,
    monitor=NOTIFICATION.monitor,
    links=NOTIFICATION.links,
    detected_at=datetime(2025, 3, 14, 10, 41, tzinfo=UTC),
    incident=INCIDENT,
)


async def test_signed_recovery_reaches_the_receiver_tied_to_its_alert(
    receiver: tuple[WebhookReceiver, str], session: aiohttp.ClientSession
) -> None:
    fake, url = receiver
    sink: Sink = WebhookSink(url, secret=SECRET, session=session)  # fits the protocol
    thread = MessageRef(channel="C123", ts="1741945260.000100")
    assert await sink.send(FIRED) is None
    assert await sink.send(RECOVERED, thread) is None  # a webhook has no threads: ignored
    alert, recovery = fake.deliveries
    verifier = Webhook(SECRET)
    fired, ended = (verifier.verify(d.body, d.headers) for d in (alert, recovery))
    assert recovery.headers["webhook-id"] == RECOVERED.id
    assert recovery.body == webhook_payload.webhook_body(RECOVERED).encode()
    assert ended["type"] == "monitor.recovered"
    assert ended["data"]["run"]["state"] == "ok"
    assert ended["data"]["incident"]["id"] == fired["data"]["notification_id"]
    assert ended["data"]["incident"]["id"] == alert.headers["webhook-id"]


async def test_a_recovery_restored_from_the_outbox_is_re_sent_with_the_same_body(
    receiver: tuple[WebhookReceiver, str], session: aiohttp.ClientSession
) -> None:
    fake, url = receiver
    sink = WebhookSink(url, secret=SECRET, session=session)
    fake.reply(503)
    with pytest.raises(DeliveryError):
        await sink.send(RECOVERED)
    await sink.send(Notification.model_validate_json(RECOVERED.model_dump_json()))
    first, second = fake.deliveries
    assert first.body == second.body
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == RECOVERED.id
    Webhook(SECRET).verify(second.body, second.headers)


async def test_alertmanager_format_resolves_the_alert_that_fired(
    receiver: tuple[WebhookReceiver, str], session: aiohttp.ClientSession
) -> None:
    fake, url = receiver
    sink = WebhookSink(
        url,
        secret=SECRET,
        session=session,
        payload_format="alertmanager",
        external_url="https://app.datafold.com",
    )
    reminder = FIRED.model_copy(
        update={
            "id": f"{INCIDENT.id}-reminder-1",
            "kind": "reminder",
            "incident": INCIDENT.model_copy(update={"reminders": 1}),
        }
    )
    for n in (FIRED, reminder, RECOVERED):
        await sink.send(n)
    verifier = Webhook(SECRET)
    fired, again, ended = (verifier.verify(d.body, d.headers) for d in fake.deliveries)
    assert [m["status"] for m in (fired, again, ended)] == ["firing", "firing", "resolved"]
    assert fake.deliveries[2].body == sink.body(RECOVERED).encode()
    assert (
        fake.deliveries[2].body
        == (
            notification_body(
                RECOVERED, receiver=sink.name, external_url="https://app.datafold.com"
            )
        ).encode()
    )
    [alert], [repeat], [resolved] = (m["alerts"] for m in (fired, again, ended))
    assert alert["fingerprint"] == repeat["fingerprint"] == resolved["fingerprint"]
    assert alert["startsAt"] == repeat["startsAt"] == resolved["startsAt"]
    assert resolved["endsAt"] == "2025-03-14T10:30:00Z"
