"""The Slack sinks' threads, updates, mentions, pacing and digests against a local FakeSlack."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from notifier.deliver.render import digest
from notifier.deliver.render import slack as render
from notifier.deliver.sink import DeliveryError, DigestSink
from notifier.deliver.sinks.slack import SlackBotSink
from notifier.deliver.sinks.slack_transport import ChannelPacer
from notifier.deliver.sinks.slack_webhook import SlackWebhookSink
from notifier.domain.models import MessageRef, Notification
from tests.fakes.slack import CHANNEL, OTHER, FakeSlack
from tests.test_slack_render import make

OWNER = "dana@example.com"


def bot(base_url: str, session: aiohttp.ClientSession, **kwargs: Any) -> SlackBotSink:
    kwargs.setdefault("pacer", ChannelPacer(100, 1))  # no pacing unless a test is about it
    kwargs.setdefault("channel", CHANNEL)
    channel = kwargs.pop("channel")
    return SlackBotSink(
        FakeSlack.token, channel, base_url=base_url + "/api", session=session, **kwargs
    )


def hook(base_url: str, session: aiohttp.ClientSession, **kwargs: Any) -> SlackWebhookSink:
    kwargs.setdefault("pacer", ChannelPacer(100, 1))
    return SlackWebhookSink(base_url + FakeSlack.WEBHOOK_PATH, session=session, **kwargs)


def opening(run_id: int = 98113) -> Notification:
    """An alert that opens its incident (its ID is the incident's)."""
    n = make(run_id=run_id + 10, kind="reminder")
    assert n.incident is not None
    event = n.incident.first
    return n.model_copy(
        update={"id": n.incident.id, "kind": "run", "event": event, "incident": n.incident}
    )


def follow_up() -> Notification:
    """A later alert of the same incident."""
    first = opening()
    event = first.event.model_copy(update={"run_id": 98120})
    return first.model_copy(update={"id": "4521-98120-alert", "event": event})


async def test_bot_returns_where_the_message_went(
    slack: tuple[FakeSlack, str], session: aiohttp.ClientSession
) -> None:
    fake, base_url = slack
    ref = await bot(base_url, session, channel="#data-alerts").send(opening())
    [posted] = fake.messages
    assert ref == MessageRef(channel=CHANNEL, ts=posted.ts)
    assert posted.thread_ts is None


@pytest.mark.parametrize("threading", [True, False])
async def test_later_alerts_reply_in_the_incident_thread(
    slack: tuple[FakeSlack, str], session: aiohttp.ClientSession, threading: bool
) -> None:
    fake, base_url = slack
    sink = bot(base_url, session, thread=threading)
    anchor = await sink.send(opening())
    assert anchor is not None
    again = await sink.send(opening(), thread=anchor)  # the opener itself is never a reply
    reply = await sink.send(follow_up(), thread=anchor)
    assert [m.thread_ts for m in fake.messages] == [None, None, anchor.ts if threading else None]
    assert again is not None and reply is not None and reply.ts == fake.messages[2].ts


@pytest.mark.parametrize(("threading", "thread_ts"), [(True, "anchor"), (False, None)])
async def test_reminders_reply_with_broadcast(
    slack: tuple[FakeSlack, str],
    session: aiohttp.ClientSession,
    threading: bool,
    thread_ts: str | None,
) -> None:
    fake, base_url = slack
    sink = bot(base_url, session, thread=threading)
    anchor = await sink.send(opening())
    assert anchor is not None
    await sink.send(make(kind="reminder", reminders=2), thread=anchor)
    reminder = fake.messages[1]
    assert reminder.thread_ts == (anchor.ts if thread_ts else None)
    assert reminder.reply_broadcast is threading
    assert "still failing since" in (reminder.text or "")
    assert reminder.blocks and reminder.blocks[0]["text"]["text"].startswith(":alarm_clock:")


async def test_a_reply_to_a_vanished_thread_goes_top_level(
    slack: tuple[FakeSlack, str], session: aiohttp.ClientSession
) -> None:
    fake, base_url = slack
    fake.api_error("thread_not_found")
    sink = bot(base_url, session, thread=True)
    ref = await sink.send(follow_up(), thread=MessageRef(channel=CHANNEL, ts="1.2"))
    [posted] = fake.messages
    assert posted.thread_ts is None and ref == MessageRef(channel=CHANNEL, ts=posted.ts)


async def test_recovery_updates_the_first_message_and_replies(
    slack: tuple[FakeSlack, str], session: aiohttp.ClientSession
) -> None:
    fake, base_url = slack
    sink = bot(base_url, session)  # updates need no `thread` option
    anchor = await sink.send(opening())
    assert anchor is not None
    recovered = make(run_id=98200, kind="recovered")
    ref = await sink.send(recovered, thread=anchor)
    [update] = fake.updates
    expected = render.slack_resolved_message(recovered)
    assert (update.channel, update.ts) == (anchor.channel, anchor.ts)
    assert (update.text, update.blocks) == (expected.text, expected.blocks)
    assert update.blocks and update.blocks[0]["text"]["text"].startswith(
        ":white_check_mark: Resolved: "
    )
    reply = fake.messages[-1]
    assert reply.thread_ts == anchor.ts and not reply.reply_broadcast
    assert reply.text == render.slack_recovery_reply(recovered).text
    assert ref == MessageRef(channel=CHANNEL, ts=reply.ts)


@pytest.mark.parametrize(
    "code", ["message_not_found", "cant_update_message", "edit_window_closed", None]
)
async def test_recovery_falls_back_to_a_new_message(
    slack: tuple[FakeSlack, str], session: aiohttp.ClientSession, code: str | None
) -> None:
    fake, base_url = slack
    sink = bot(base_url, session)
    recovered = make(run_id=98200, kind="recovered")
    if code is not None:
        fake.api_error(code)
    gone = MessageRef(channel=CHANNEL, ts="1600000000.000001")  # message_not_found regardless
    with capture_logs() as logs:
        ref = await sink.send(recovered, thread=gone)
    assert fake.updates == []
    [posted] = fake.messages
    assert posted.thread_ts is None and posted.text == render.slack_message(recovered).text
    assert ref == MessageRef(channel=CHANNEL, ts=posted.ts)
    assert [e["event"] for e in logs] == ["slack_update_failed"]


async def test_recovery_without_a_thread_is_a_top_level_message(
    slack: tuple[FakeSlack, str], session: aiohttp.ClientSession
) -> None:
    fake, base_url = slack
    await bot(base_url, session, mentions=["@here"]).send(make(kind="recovered"))
    assert fake.calls == ["chat.postMessage"]
    assert "Recovered" in (fake.messages[0].text or "") and "<!here>" not in str(fake.messages)


async def test_a_refused_update_for_another_reason_fails(
    slack: tuple[FakeSlack, str], session: aiohttp.ClientSession
) -> None:
    fake, base_url = slack
    fake.api_error("invalid_auth")
    with pytest.raises(DeliveryError) as caught:
        await bot(base_url, session).send(
            make(kind="recovered"), thread=MessageRef(channel=CHANNEL, ts="1.1")
        )
    assert (
        caught.value.reason == "Slack answered invalid_auth (the bot token is wrong)"
        and fake.messages == []
    )


async def test_mentions_and_the_owner(
    slack: tuple[FakeSlack, str], session: aiohttp.ClientSession
) -> None:
    fake, base_url = slack
    fake.users[OWNER] = "U0OWNER01"
    sink = bot(base_url, session, mentions=["S0614TZR7", "@here"], mention_owner=True)
    await sink.send(make(owner=OWNER))
    await sink.send(make(owner="Dana@Example.com ", kind="reminder"))
    await sink.send(make(owner="data team"))  # not an email: no lookup
    assert fake.lookups == [OWNER]  # cached
    texts = [m.text or "" for m in fake.messages]
    assert texts[0].startswith("<!subteam^S0614TZR7> <!here> <@U0OWNER01> :rotating_light:")
    assert texts[1].startswith("<!subteam^S0614TZR7> <!here> <@U0OWNER01> :alarm_clock:")
    assert texts[2].startswith("<!subteam^S0614TZR7> <!here> :rotating_light:")
    assert fake.messages[0].blocks and fake.messages[0].blocks[0]["text"]["text"] == (
        "<!subteam^S0614TZR7> <!here> <@U0OWNER01>"
    )


@pytest.mark.parametrize(
    ("scopes", "fault", "reason"),
    [
        (
            {"chat:write"},
            None,
            "Slack answered missing_scope (the app lacks a scope: chat:write, and "
            "users:read.email for mentions)",
        ),
        (None, None, "Slack answered users_not_found"),
        (None, "server", "Slack answered HTTP 500"),
    ],
)
async def test_owner_lookup_failures_cost_only_the_mention(
    session: aiohttp.ClientSession,
    scopes: set[str] | None,
    fault: str | None,
    reason: str,
) -> None:
    fake = FakeSlack() if scopes is None else FakeSlack(scopes=scopes)
    if fault == "server":
        fake.server_error(times=2)  # the lookup and its one retry
    now = [0.0]
    async with fake.serve() as base_url:
        sink = bot(
            base_url, session, mention_owner=True, mentions=["@channel"], clock=lambda: now[0]
        )
        with capture_logs() as logs:
            await sink.send(make(owner=OWNER))
            await sink.send(make(owner=OWNER))
            now[0] += 3601  # every failure is asked again within the hour
            await sink.send(make(owner=OWNER))
    assert [(m.text or "").split(" :")[0] for m in fake.messages] == ["<!channel>"] * 3
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [w["event"] for w in warnings] == ["slack_owner_lookup_failed"] * 2
    assert warnings[0]["reason"] == reason and warnings[0]["owner"] == OWNER
    assert fake.lookups == [OWNER, OWNER] or fault == "server"
    assert FakeSlack.token not in str(logs)


async def test_a_shared_pacer_spaces_messages_per_channel(
    slack: tuple[FakeSlack, str], session: aiohttp.ClientSession
) -> None:
    fake, base_url = slack
    pacer = ChannelPacer()
    first, second = bot(base_url, session, pacer=pacer), bot(base_url, session, pacer=pacer)
    elsewhere = bot(base_url, session, pacer=pacer, channel=OTHER)
    await asyncio.gather(
        first.send(make(run_id=1001)),
        second.send(make(run_id=1002)),
        first.send(make(run_id=1003)),
        elsewhere.send(make(run_id=1004)),
    )
    same = sorted(m.at for m in fake.messages if m.channel == CHANNEL)
    other = next(m.at for m in fake.messages if m.channel == OTHER)
    assert len(same) == 3 and same[-1] - same[0] >= 1.8
    assert other - same[0] < 0.8  # another channel does not wait for this one's queue


async def test_webhooks_are_paced_by_destination_name(
    slack: tuple[FakeSlack, str], session: aiohttp.ClientSession
) -> None:
    fake, base_url = slack
    pacer = ChannelPacer()
    a, b = (
        hook(base_url, session, pacer=pacer, name="a"),
        hook(base_url, session, pacer=pacer, name="b"),
    )
    await asyncio.gather(a.send(make(run_id=1)), a.send(make(run_id=2)), b.send(make(run_id=3)))
    times = sorted(m.at for m in fake.messages)
    assert times[-1] - times[0] >= 0.8 and times[1] - times[0] < 0.5


async def test_webhook_renders_kinds_ignores_threads_and_mentions(
    slack: tuple[FakeSlack, str], session: aiohttp.ClientSession
) -> None:
    fake, base_url = slack
    sink = hook(base_url, session, mentions=["U012AB3CD"])
    thread = MessageRef(channel=CHANNEL, ts="1.1")
    await sink.send(make(kind="reminder", reminders=1), thread=thread)  # returns None
    await sink.send(make(kind="recovered"), thread=thread)
    reminder, recovered = fake.messages
    assert (reminder.text or "").startswith("<@U012AB3CD> :alarm_clock: Reminder:")
    assert (recovered.text or "").startswith(":white_check_mark: Recovered:")


def test_sinks_are_digest_sinks_and_check_mentions() -> None:
    sink = SlackBotSink("xoxb-x", CHANNEL, digest_threshold=5)
    assert isinstance(sink, DigestSink) and sink.digest_threshold == 5
    assert isinstance(SlackWebhookSink("https://hooks.invalid/x"), DigestSink)
    with pytest.raises(ValueError, match="user ID"):
        SlackBotSink("xoxb-x", CHANNEL, mentions=["@everyone"])


@pytest.mark.parametrize("kind", ["bot", "webhook"])
async def test_digest_posts_top_level_with_mentions(
    slack: tuple[FakeSlack, str], session: aiohttp.ClientSession, kind: str
) -> None:
    fake, base_url = slack
    sink: SlackBotSink | SlackWebhookSink = (
        bot(base_url, session, mentions=["@here"], thread=True, mention_owner=True)
        if kind == "bot"
        else hook(base_url, session, mentions=["@here"])
    )
    batch = [make(m, 1000 * m + r, owner=OWNER) for m in range(1, 13) for r in range(3)]
    await sink.send_digest(batch)
    [posted] = fake.messages
    assert (posted.text or "").startswith("<!here> :rotating_light: 36 notifications from 12")
    assert posted.thread_ts is None and fake.lookups == []


@pytest.mark.parametrize("kind", ["bot", "webhook"])
async def test_a_digest_failing_part_way_names_what_went_out(
    slack: tuple[FakeSlack, str], session: aiohttp.ClientSession, kind: str
) -> None:
    fake, base_url = slack
    sink: SlackBotSink | SlackWebhookSink = (
        bot(base_url, session) if kind == "bot" else hook(base_url, session)
    )
    batch = [make(m, 1000 * m) for m in range(1, 201)]  # one section per monitor: 5 messages
    messages = digest.slack_digest(batch)
    assert len(messages) >= 3
    # The first message goes out; the second is refused for good.
    fake.slow(0)
    fake.api_error("invalid_blocks" if kind == "bot" else "invalid_payload")
    with pytest.raises(DeliveryError) as caught:
        await sink.send_digest(batch)
    assert len(fake.messages) == 1
    assert caught.value.delivered == messages[0].completes
    assert 0 < len(caught.value.delivered) < len(batch)
    assert caught.value.whole_destination is False


async def test_no_secret_in_logs_or_errors(
    slack: tuple[FakeSlack, str],
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    fake, base_url = slack
    webhook_url = base_url + FakeSlack.WEBHOOK_PATH
    errors = []
    with capture_logs() as logs:
        for sink in (bot(base_url, session, mention_owner=True), hook(base_url, session)):
            fake.server_error(times=2)  # the digest's request and its one retry
            try:
                await sink.send_digest([make(owner=OWNER)])
            except DeliveryError as error:
                errors.append(error)
            await sink.send(make(owner=OWNER))
            fake.api_error("users_not_found" if isinstance(sink, SlackBotSink) else "no_service")
            try:
                await sink.send(
                    make(kind="recovered"), thread=MessageRef(channel=CHANNEL, ts="1.1")
                )
            except DeliveryError as error:
                errors.append(error)
    assert len(errors) >= 2
    shown = " ".join([str(logs), caplog.text, *map(str, errors), *map(repr, errors)])
    for secret in (FakeSlack.token, webhook_url, FakeSlack.WEBHOOK_PATH):
        assert secret not in shown
