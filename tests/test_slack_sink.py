"""The Slack sinks: the real slack_sdk clients against a local FakeSlack."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from notifier.deliver.render import slack as render
from notifier.deliver.sink import CheckResult, DeliveryError
from notifier.deliver.sinks.slack import SlackBotSink
from notifier.deliver.sinks.slack_webhook import SlackWebhookSink
from notifier.domain.models import Links, MonitorInfo, Notification, RunEvent
from tests.fakes.slack import CHANNEL, FakeSlack, Fault

NOTIFICATION = Notification(
    id="4521-98123-alert",
    event=RunEvent(monitor_id=4521, run_id=98123, state="alert", diff_id=77001),
    monitor=MonitorInfo(id=4521, name="orders <prod> & staging", monitor_type="diff"),
    links=Links(monitor="https://app.datafold.com/monitors/4521"),
    detected_at=datetime(2025, 3, 14, 9, 41, tzinfo=UTC),
)


def bot(
    base_url: str,
    session: aiohttp.ClientSession | None,
    *,
    token: str = FakeSlack.token,
    channel: str = CHANNEL,
    **kwargs: Any,
) -> SlackBotSink:
    return SlackBotSink(token, channel, base_url=base_url + "/api", session=session, **kwargs)


def hook(base_url: str, session: aiohttp.ClientSession | None, **kwargs: Any) -> SlackWebhookSink:
    return SlackWebhookSink(base_url + FakeSlack.WEBHOOK_PATH, session=session, **kwargs)


async def failure(sink: SlackBotSink | SlackWebhookSink) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        await sink.send(NOTIFICATION)
    assert caught.value.destination == sink.name
    assert "\n" not in str(caught.value)
    # No chained aiohttp or slack_sdk exception that could print a URL or token in a traceback.
    error = caught.value
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    return caught.value


async def test_bot_posts_text_and_blocks(
    slack: tuple[FakeSlack, str], session: aiohttp.ClientSession
) -> None:
    fake, base_url = slack
    await bot(base_url, session).send(NOTIFICATION)
    expected = render.slack_message(NOTIFICATION)
    [posted] = fake.messages
    assert (posted.channel, posted.text, posted.blocks) == (CHANNEL, expected.text, expected.blocks)
    assert fake.calls == ["chat.postMessage"]


async def test_bot_posts_to_a_channel_name(
    slack: tuple[FakeSlack, str], session: aiohttp.ClientSession
) -> None:
    fake, base_url = slack
    await bot(base_url, session, channel="#data-alerts").send(NOTIFICATION)
    assert [m.channel for m in fake.messages] == ["#data-alerts"]


@pytest.mark.parametrize(
    ("token", "channel", "fault", "reason"),
    [
        ("xoxb-wrong-token", CHANNEL, None, "Slack answered invalid_auth (the bot token is wrong)"),
        (
            FakeSlack.token,
            "#nowhere",
            None,
            "Slack answered channel_not_found "
            "(a wrong channel ID, or a private channel the bot is not in)",
        ),
        (
            FakeSlack.token,
            CHANNEL,
            "not_in_channel",
            "Slack answered not_in_channel (invite the bot to the channel)",
        ),
        (FakeSlack.token, CHANNEL, "garbage", "Slack gave an unreadable answer (HTTP 200)"),
    ],
)
async def test_bot_failures_name_slacks_error_code(
    slack: tuple[FakeSlack, str],
    session: aiohttp.ClientSession,
    token: str,
    channel: str,
    fault: str | None,
    reason: str,
) -> None:
    fake, base_url = slack
    fake.spoil_next(fault)
    error = await failure(bot(base_url, session, token=token, channel=channel))
    assert (error.reason, error.retry_after) == (reason, None)
    assert fake.messages == []


async def test_rate_limits_are_waited_out_per_retry_after(
    session: aiohttp.ClientSession,
) -> None:
    async def deliver(make_sink: type[SlackBotSink] | type[SlackWebhookSink]) -> None:
        fake = FakeSlack()
        fake.rate_limit(times=1, retry_after="1")
        async with fake.serve() as base_url:
            sink = bot(base_url, session) if make_sink is SlackBotSink else hook(base_url, session)
            started = time.monotonic()
            await sink.send(NOTIFICATION)
            assert time.monotonic() - started >= 0.95
        assert len(fake.messages) == 1 and len(fake.calls) == 2

    # Both clients at once, to keep the test file fast.
    await asyncio.gather(deliver(SlackBotSink), deliver(SlackWebhookSink))


async def test_bot_rate_limit_beyond_retries_gives_retry_after(
    slack: tuple[FakeSlack, str], session: aiohttp.ClientSession
) -> None:
    fake, base_url = slack
    fake.rate_limit(times=5, retry_after="7")
    error = await failure(bot(base_url, session, max_rate_limit_retries=0))
    assert (error.reason, error.retry_after) == ("Slack answered ratelimited", 7.0)
    assert fake.messages == []


async def test_bot_retries_a_server_error_once(
    slack: tuple[FakeSlack, str], session: aiohttp.ClientSession
) -> None:
    fake, base_url = slack
    fake.server_error(times=1)
    await bot(base_url, session).send(NOTIFICATION)
    assert len(fake.messages) == 1
    assert fake.calls == ["chat.postMessage", "chat.postMessage"]


async def test_bot_server_error_that_persists(
    slack: tuple[FakeSlack, str], session: aiohttp.ClientSession
) -> None:
    fake, base_url = slack
    fake.server_error(times=5, status=503)
    error = await failure(bot(base_url, session))
    assert error.reason == "Slack answered HTTP 503"
    assert len(fake.calls) == 2


async def test_bot_timeout(slack: tuple[FakeSlack, str]) -> None:
    fake, base_url = slack
    fake.slow(5, times=3)
    started = time.monotonic()
    error = await failure(bot(base_url, None, timeout=1))  # slack_sdk's own session, 1 s
    assert error.reason == "could not reach Slack: TimeoutError"
    assert time.monotonic() - started < 4


async def test_webhook_posts_text_and_blocks(
    slack: tuple[FakeSlack, str], session: aiohttp.ClientSession
) -> None:
    fake, base_url = slack
    await hook(base_url, session).send(NOTIFICATION)
    expected = render.slack_message(NOTIFICATION)
    [posted] = fake.messages
    assert (posted.channel, posted.text, posted.blocks) == (None, expected.text, expected.blocks)


@pytest.mark.parametrize(
    ("path", "fault", "reason"),
    [
        ("/services/T000/B000/WRONG", None, "HTTP 404 no_service"),
        (FakeSlack.WEBHOOK_PATH, "invalid_token", "HTTP 403 invalid_token"),
        (FakeSlack.WEBHOOK_PATH, "channel_is_archived", "HTTP 410 channel_is_archived"),
        (FakeSlack.WEBHOOK_PATH, "garbage", "HTTP 200 (unexpected answer)"),
    ],
)
async def test_webhook_failures(
    slack: tuple[FakeSlack, str],
    session: aiohttp.ClientSession,
    path: str,
    fault: str | None,
    reason: str,
) -> None:
    fake, base_url = slack
    fake.spoil_next(fault)
    error = await failure(SlackWebhookSink(base_url + path, session=session))
    assert (error.reason, error.retry_after) == (reason, None)


async def test_webhook_rate_limit_beyond_retries(
    slack: tuple[FakeSlack, str], session: aiohttp.ClientSession
) -> None:
    fake, base_url = slack
    fake.rate_limit(times=5, retry_after="30")
    error = await failure(hook(base_url, session, max_rate_limit_retries=0))
    assert (error.reason, error.retry_after) == ("HTTP 429 rate_limited", 30.0)


async def test_a_given_sessions_timeout_applies(slack: tuple[FakeSlack, str]) -> None:
    fake, base_url = slack
    fake.slow(5, times=3)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.3)) as session:
        error = await failure(hook(base_url, session))
    assert error.reason == "could not reach Slack: TimeoutError"


async def test_unreachable_slack_is_reported_by_exception_class(
    closed_url: str, session: aiohttp.ClientSession
) -> None:
    base_url = closed_url.split("/hooks", 1)[0]
    bot_sink, hook_sink = bot(base_url, session), SlackWebhookSink(closed_url, session=session)
    bot_error, hook_error, bot_checked, hook_checked = await asyncio.gather(
        failure(bot_sink), failure(hook_sink), bot_sink.check(), hook_sink.check()
    )
    unreachable = "could not reach Slack: ClientConnectorError"
    assert bot_error.reason == hook_error.reason == unreachable
    assert bot_checked == [CheckResult("slack", False, unreachable)]
    assert hook_checked == [CheckResult("slack-webhook", False, unreachable)]


@pytest.mark.parametrize(
    ("token", "fake_kwargs", "channel", "expected"),
    [
        (
            FakeSlack.token,
            {},
            CHANNEL,
            [
                (True, "Slack token OK (team Acme Data, bot datafold-notifier)"),
                (True, "channel #data-alerts (C0123ABCD) found"),
            ],
        ),
        (
            "xoxb-wrong-token",
            {},
            CHANNEL,
            [(False, "Slack answered invalid_auth (the bot token is wrong)")],
        ),
        (
            FakeSlack.token,
            {},
            "C9999999",
            [
                (True, "Slack token OK (team Acme Data, bot datafold-notifier)"),
                (False, "channel C9999999 not found (or not visible to the bot)"),
            ],
        ),
        (
            FakeSlack.token,
            {"scopes": {"chat:write"}},
            CHANNEL,
            [
                (True, "Slack token OK (team Acme Data, bot datafold-notifier)"),
                (True, "channel C0123ABCD not verified: the token lacks channels:read/groups:read"),
            ],
        ),
        (
            FakeSlack.token,
            {},
            "#data-alerts",
            [
                (True, "Slack token OK (team Acme Data, bot datafold-notifier)"),
                (
                    True,
                    "channel #data-alerts not verified: "
                    "give its ID (C…) to have `check` look it up",
                ),
            ],
        ),
        (
            FakeSlack.token,
            {"is_member": False},
            CHANNEL,
            [
                (True, "Slack token OK (team Acme Data, bot datafold-notifier)"),
                (
                    True,
                    "channel #data-alerts (C0123ABCD) found; the bot is not a member: "
                    "invite it unless it has chat:write.public",
                ),
            ],
        ),
    ],
)
async def test_bot_check(
    session: aiohttp.ClientSession,
    token: str,
    fake_kwargs: dict[str, object],
    channel: str,
    expected: list[tuple[bool, str]],
) -> None:
    fake = FakeSlack(**fake_kwargs)  # type: ignore[arg-type]
    async with fake.serve() as base_url:
        results = await bot(base_url, session, token=token, channel=channel).check()
    assert all(isinstance(r, CheckResult) and r.name == "slack" for r in results)
    assert [(r.ok, r.detail) for r in results] == expected
    assert fake.messages == []


@pytest.mark.parametrize(
    ("path", "fault", "ok", "detail"),
    [
        (
            FakeSlack.WEBHOOK_PATH,
            None,
            True,
            "Slack webhook OK (HTTP 400 no_text to an empty test)",
        ),
        ("/services/T000/B000/WRONG", None, False, "Slack webhook refused: HTTP 404 no_service"),
        (
            FakeSlack.WEBHOOK_PATH,
            "invalid_token",
            False,
            "Slack webhook refused: HTTP 403 invalid_token",
        ),
        (
            FakeSlack.WEBHOOK_PATH,
            "channel_not_found",
            False,
            "Slack webhook refused: HTTP 404 channel_not_found",
        ),
    ],
)
async def test_webhook_check(
    slack: tuple[FakeSlack, str],
    session: aiohttp.ClientSession,
    path: str,
    fault: str | None,
    ok: bool,
    detail: str,
) -> None:
    fake, base_url = slack
    if fault is not None:
        fake.api_error(fault)
    results = await SlackWebhookSink(base_url + path, session=session).check()
    assert results == [CheckResult("slack-webhook", ok, detail)]
    assert fake.messages == []


async def test_no_secret_in_errors_reprs_or_debug_logs(
    slack: tuple[FakeSlack, str],
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    fake, base_url = slack
    token, webhook_url = "xoxb-wrong-token", base_url + FakeSlack.WEBHOOK_PATH
    bot_sink = bot(base_url, session, token=token, max_rate_limit_retries=0)
    hook_sink = SlackWebhookSink(webhook_url, session=session, max_rate_limit_retries=0)
    errors = [await failure(bot_sink)]  # invalid_auth
    for fault in (
        Fault("ratelimited"),
        Fault("garbage"),
        Fault("api_error", error="invalid_token"),
    ):
        fake.fail_next(fault)
        errors.append(await failure(hook_sink))
    fake.garbage()
    errors.append(await failure(bot(base_url, session, token=token)))
    secrets = (token, webhook_url, FakeSlack.WEBHOOK_PATH)
    shown = [str(e) for e in errors] + [repr(e) for e in errors] + [repr(bot_sink), repr(hook_sink)]
    shown += [r.detail for r in await hook_sink.check() + await bot_sink.check()]
    for text in shown:
        assert not any(secret in text for secret in secrets), text
    assert webhook_url not in caplog.text


@pytest.mark.parametrize(
    ("code", "whole_destination"),
    [
        ("invalid_blocks", False),  # this message's content: the next ones are still tried
        ("msg_too_long", False),
        ("invalid_auth", True),  # the token, channel or service: stop for this cycle
        ("channel_not_found", True),
        ("an_error_nobody_documented", True),
    ],
)
async def test_bot_refusals_say_whether_the_destination_is_blocked(
    slack: tuple[FakeSlack, str], session: aiohttp.ClientSession, code: str, whole_destination: bool
) -> None:
    fake, base_url = slack
    fake.api_error(code)
    error = await failure(bot(base_url, session))
    assert error.whole_destination is whole_destination


@pytest.mark.parametrize(
    ("code", "whole_destination"),
    [("no_text", False), ("invalid_payload", False), ("invalid_token", True), ("no_service", True)],
)
async def test_webhook_refusals_say_whether_the_destination_is_blocked(
    slack: tuple[FakeSlack, str], session: aiohttp.ClientSession, code: str, whole_destination: bool
) -> None:
    fake, base_url = slack
    fake.api_error(code)
    error = await failure(SlackWebhookSink(base_url + FakeSlack.WEBHOOK_PATH, session=session))
    assert error.whole_destination is whole_destination
