"""The fake Slack refuses what Slack refuses: Block Kit, threads, updates and pace.

Every test that posts through `FakeSlack` relies on these refusals, so they are pinned here: the
checks themselves (pure), Slack's exact answers over HTTP, and what the sinks make of them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from notifier.deliver.render import blockkit, digest
from notifier.deliver.render import slack as render
from notifier.deliver.sink import DeliveryError
from notifier.deliver.sinks.slack import SlackBotSink
from notifier.deliver.sinks.slack_transport import ChannelPacer
from notifier.domain.models import MessageRef, Notification
from tests.fakes.slack import CHANNEL, OTHER, FakeSlack, Refusal, block_kit_problems
from tests.test_slack_render import make, mention_lists, notifications


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": text, "emoji": True}}


def fields(*texts: str) -> dict[str, Any]:
    return {"type": "section", "fields": [{"type": "mrkdwn", "text": t} for t in texts]}


def context(count: int) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": "x"}] * count}


#: (blocks, the JSON pointer Slack would name), one refusal each.
REFUSED: list[tuple[list[dict[str, Any]], str]] = [
    ([{"type": "sektion", "text": {"type": "mrkdwn", "text": "hi"}}], "/blocks/0"),
    ([{"text": {"type": "mrkdwn", "text": "no type"}}], "/blocks/0"),
    ([header("h" * 151)], "/blocks/0"),
    ([section("s" * 3001)], "/blocks/0"),
    ([fields(*["f"] * 11)], "/blocks/0"),
    ([fields("ok", "f" * 2001)], "/blocks/0/fields/1/text"),
    ([context(11)], "/blocks/0"),
    ([{**section("hi"), "colour": "red"}], "/blocks/0"),  # unknown key: lost in the round trip
    ([{"type": "section", "text": {"type": "mrkdwn", "text": "hi", "bold": True}}], "/blocks/0"),
    ([{"type": "section", "text": "a bare string"}], "/blocks/0"),
    ([{"type": "header", "text": {"type": "plain_text", "text": ""}}], "/blocks/0/text/text"),
    ([section("ok"), section("")], "/blocks/1/text/text"),
    ([section("b")] * 51, "/blocks"),
]

ACCEPTED: list[list[dict[str, Any]]] = [
    [header("h" * 150), section("s" * 3000), fields(*["f" * 2000] * 10), context(10)],
    [section("b")] * 50,
    [{"type": "divider"}, section("after a divider")],
    [{"type": "section", "text": {"type": "mrkdwn", "text": "v", "verbatim": False}}],
]


@pytest.mark.parametrize(("blocks", "pointer"), REFUSED)
def test_block_kit_problems_name_what_slack_refuses(
    blocks: list[dict[str, Any]], pointer: str
) -> None:
    [problem] = block_kit_problems(blocks)
    assert problem.endswith(f"[json-pointer:{pointer}]")


@pytest.mark.parametrize("blocks", ACCEPTED)
def test_block_kit_within_every_limit_passes(blocks: list[dict[str, Any]]) -> None:
    assert block_kit_problems(blocks) == []


def all_rendered(n: Notification, mentions: list[str]) -> list[blockkit.SlackMessage]:
    messages = render.slack_messages(n, mentions=mentions)
    if n.kind == "recovered":
        messages += [render.slack_resolved_message(n), render.slack_recovery_reply(n)]
    return messages


@settings(max_examples=60, deadline=None)
@given(
    st.lists(notifications(), min_size=1, max_size=60),
    mention_lists(200),
)
def test_everything_rendered_passes_the_fakes_block_kit_check(
    batch: list[Notification], mentions: list[str]
) -> None:
    rendered = digest.slack_digest(batch, mentions=mentions)
    for n in batch[:5]:
        rendered += all_rendered(n, mentions)
    for message in rendered:
        assert block_kit_problems(message.blocks) == []


async def call(
    session: aiohttp.ClientSession, base_url: str, method: str, **args: Any
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """One Web API call as JSON: Slack's HTTP status, body and headers."""
    headers = {"Authorization": f"Bearer {FakeSlack.token}"}
    async with session.post(f"{base_url}/api/{method}", json=args, headers=headers) as resp:
        return resp.status, await resp.json(), dict(resp.headers)


async def test_invalid_blocks_get_slacks_answer_and_post_nothing(
    slack: tuple[FakeSlack, str], session: aiohttp.ClientSession
) -> None:
    fake, base_url = slack
    blocks = [header("ok"), section("s" * 3001)]
    status, body, _ = await call(
        session, base_url, "chat.postMessage", channel=CHANNEL, text="t", blocks=blocks
    )
    assert status == 200
    assert body["ok"] is False and body["error"] == "invalid_blocks"
    [message] = body["response_metadata"]["messages"]
    assert message.startswith("[ERROR] ") and message.endswith("[json-pointer:/blocks/1]")
    assert fake.messages == []
    assert fake.refused == [Refusal("chat.postMessage", "invalid_blocks", (message[8:],))]


async def test_form_encoded_blocks_are_checked_too(
    slack: tuple[FakeSlack, str], session: aiohttp.ClientSession
) -> None:
    fake, base_url = slack
    client = AsyncWebClient(FakeSlack.token, base_url=base_url + "/api/", session=session)
    with pytest.raises(SlackApiError) as refused:
        await client.api_call(
            "chat.postMessage",
            data={"channel": CHANNEL, "text": "t", "blocks": '[{"type": "nope"}]'},
        )
    assert refused.value.response["error"] == "invalid_blocks"
    with pytest.raises(SlackApiError) as refused:
        await client.api_call(
            "chat.postMessage", data={"channel": CHANNEL, "text": "t", "blocks": "[not json"}
        )
    assert refused.value.response["error"] == "invalid_blocks_format"
    assert fake.messages == []


async def test_an_update_is_checked_like_a_post(
    slack: tuple[FakeSlack, str], session: aiohttp.ClientSession
) -> None:
    fake, base_url = slack
    _, posted, _ = await call(
        session, base_url, "chat.postMessage", channel=CHANNEL, blocks=[section("first")]
    )
    _, body, _ = await call(
        session, base_url, "chat.update", channel=CHANNEL, ts=posted["ts"], blocks=[header("")]
    )
    assert (body["ok"], body["error"]) == (False, "invalid_blocks")
    _, body, _ = await call(
        session, base_url, "chat.update", channel=CHANNEL, ts=posted["ts"], blocks=[section("2")]
    )
    assert body["ok"] is True and [u.blocks for u in fake.updates] == [[section("2")]]


async def test_webhook_refuses_invalid_blocks_with_400(
    slack: tuple[FakeSlack, str], session: aiohttp.ClientSession
) -> None:
    fake, base_url = slack
    client = AsyncWebhookClient(base_url + FakeSlack.WEBHOOK_PATH, session=session)
    response = await client.send(text="t", blocks=[fields(*["f"] * 11)])
    assert (response.status_code, response.body) == (400, "invalid_blocks")
    response = await client.send(text="t", blocks=[section("fine")])
    assert (response.status_code, response.body) == (200, "ok")
    assert [m.blocks for m in fake.messages] == [[section("fine")]]
    assert [r.error for r in fake.refused] == ["invalid_blocks"]


async def test_replies_only_to_threads_it_posted_in_that_channel(
    slack: tuple[FakeSlack, str], session: aiohttp.ClientSession
) -> None:
    fake, base_url = slack
    _, parent, _ = await call(session, base_url, "chat.postMessage", channel=CHANNEL, text="p")
    for channel, thread_ts in [(CHANNEL, "1700000000.999999"), (OTHER, parent["ts"])]:
        _, body, _ = await call(
            session, base_url, "chat.postMessage", channel=channel, text="r", thread_ts=thread_ts
        )
        assert body == {"ok": False, "error": "thread_not_found"}
    _, body, _ = await call(
        session,
        base_url,
        "chat.postMessage",
        channel="#data-alerts",
        text="r",
        thread_ts=parent["ts"],
    )
    assert body["ok"] is True
    assert [m.thread_ts for m in fake.messages] == [None, parent["ts"]]


async def test_a_deleted_message_takes_no_replies_and_no_updates(
    slack: tuple[FakeSlack, str], session: aiohttp.ClientSession
) -> None:
    fake, base_url = slack
    _, parent, _ = await call(session, base_url, "chat.postMessage", channel=CHANNEL, text="p")
    fake.delete_message(CHANNEL, parent["ts"])
    _, body, _ = await call(
        session, base_url, "chat.postMessage", channel=CHANNEL, text="r", thread_ts=parent["ts"]
    )
    assert body == {"ok": False, "error": "thread_not_found"}
    _, body, _ = await call(
        session, base_url, "chat.update", channel=CHANNEL, ts=parent["ts"], text="u"
    )
    assert body == {"ok": False, "error": "message_not_found"}
    _, body, _ = await call(session, base_url, "chat.update", channel=CHANNEL, ts="1.1", text="u")
    assert body == {"ok": False, "error": "message_not_found"}
    assert fake.updates == [] and len(fake.messages) == 1


async def test_bot_sink_answers_a_vanished_thread_and_message_unscripted(
    slack: tuple[FakeSlack, str], session: aiohttp.ClientSession
) -> None:
    """No scripted error: the fake's own `thread_not_found` and `message_not_found` are what the
    sink tolerates, so a deleted incident message leads to top-level posts."""
    fake, base_url = slack
    sink = SlackBotSink(
        FakeSlack.token,
        CHANNEL,
        base_url=base_url + "/api",
        session=session,
        thread=True,
        pacer=ChannelPacer(100, 1),
    )
    anchor = await sink.send(make(run_id=98113))
    assert anchor is not None
    fake.delete_message(anchor.channel, anchor.ts)
    reply = await sink.send(make(run_id=98120, kind="reminder", reminders=1), thread=anchor)
    recovered = await sink.send(make(run_id=98130, kind="recovered"), thread=anchor)
    assert [m.thread_ts for m in fake.messages] == [None, None, None]
    assert reply == MessageRef(channel=CHANNEL, ts=fake.messages[1].ts or "")
    assert recovered == MessageRef(channel=CHANNEL, ts=fake.messages[2].ts or "")
    assert [(r.call, r.error) for r in fake.refused] == [
        ("chat.postMessage", "thread_not_found"),
        ("chat.update", "message_not_found"),
    ]


async def test_enforced_rate_answers_429_per_channel(session: aiohttp.ClientSession) -> None:
    fake = FakeSlack(channels={CHANNEL: "data-alerts", OTHER: "other"}, enforce_rate=1.0)
    async with fake.serve() as base_url:
        answers = [
            await call(session, base_url, "chat.postMessage", channel=channel, text="m")
            for channel in (CHANNEL, "#data-alerts", CHANNEL, OTHER)
        ]
        assert [status for status, _, _ in answers] == [200, 429, 429, 200]
        for _, body, headers in answers[1:3]:
            assert body == {"ok": False, "error": "ratelimited"}
            assert headers["Retry-After"] == "1"
        await asyncio.sleep(1.0)
        status, body, _ = await call(
            session, base_url, "chat.postMessage", channel=CHANNEL, text="m"
        )
        assert (status, body["ok"]) == (200, True)
    assert len(fake.messages) == 3
    assert [r.error for r in fake.refused] == ["ratelimited", "ratelimited"]


@pytest.mark.parametrize(("rate", "burst", "accepted"), [(1.0, 3, 3), (5.0, 1, 1), (0.5, 2, 2)])
async def test_enforced_rate_allows_its_burst_then_refuses(
    session: aiohttp.ClientSession, rate: float, burst: int, accepted: int
) -> None:
    fake = FakeSlack(enforce_rate=rate, enforce_burst=burst)
    async with fake.serve() as base_url:
        statuses = [
            (await call(session, base_url, "chat.postMessage", channel=CHANNEL, text="m"))[0]
            for _ in range(accepted + 2)
        ]
    assert statuses == [200] * accepted + [429, 429]


async def test_enforced_rate_applies_to_the_webhook(session: aiohttp.ClientSession) -> None:
    fake = FakeSlack(enforce_rate=1.0)
    async with fake.serve() as base_url:
        client = AsyncWebhookClient(base_url + FakeSlack.WEBHOOK_PATH, session=session)
        first, second = await client.send(text="a"), await client.send(text="b")
    assert (first.status_code, first.body) == (200, "ok")
    assert (second.status_code, second.body) == (429, "rate_limited")
    assert second.headers["Retry-After"] == "1"


async def test_paced_sinks_never_meet_the_enforced_rate(session: aiohttp.ClientSession) -> None:
    """Slack's pace (one message per second per channel) and the sinks' pacer agree: a shared
    `ChannelPacer` keeps every channel under it, whoever sends."""
    fake = FakeSlack(channels={CHANNEL: "data-alerts", OTHER: "other"}, enforce_rate=1.0)
    pacer = ChannelPacer()
    async with fake.serve() as base_url:

        def bot(channel: str) -> SlackBotSink:
            return SlackBotSink(
                FakeSlack.token,
                channel,
                base_url=base_url + "/api",
                session=session,
                pacer=pacer,
                max_rate_limit_retries=0,
            )

        first, second, elsewhere = bot(CHANNEL), bot(CHANNEL), bot(OTHER)
        await asyncio.gather(
            first.send(make(run_id=1001)),
            second.send(make(run_id=1002)),
            first.send(make(run_id=1003)),
            elsewhere.send(make(run_id=1004)),
        )
    assert len(fake.messages) == 4 and fake.refused == []


async def test_unpaced_sink_meets_the_enforced_rate(session: aiohttp.ClientSession) -> None:
    fake = FakeSlack(enforce_rate=1.0)
    async with fake.serve() as base_url:
        sink = SlackBotSink(
            FakeSlack.token,
            CHANNEL,
            base_url=base_url + "/api",
            session=session,
            pacer=ChannelPacer(100, 1),
            max_rate_limit_retries=0,
        )
        await sink.send(make(run_id=1001))
        started = time.monotonic()
        with pytest.raises(DeliveryError) as failed:
            await sink.send(make(run_id=1002))
        assert time.monotonic() - started < 0.5
    assert (failed.value.reason, failed.value.retry_after) == ("Slack answered ratelimited", 1.0)
