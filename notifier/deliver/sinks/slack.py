"""Slack sinks: a bot token (`chat.postMessage`, `chat.update`) or an incoming webhook, both via
slack_sdk. Each builds its plan (`deliver.plan`) before any I/O, makes the plan's calls in order
and reports what happened; pacing, rate limits and refusals are read in `slack_transport`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, Final

import aiohttp
import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse
from slack_sdk.webhook.async_client import AsyncWebhookClient

from notifier.deliver.checks import CheckResult
from notifier.deliver.plan import SlackCall, SlackOptions, owner_to_look_up, plan_digest, plan_send
from notifier.deliver.render import blockkit
from notifier.deliver.sink import DeliveryError
from notifier.deliver.sinks.slack_owners import OwnerDirectory
from notifier.deliver.sinks.slack_transport import (
    DETAIL_MAX,
    MESSAGE_ERRORS,
    TRANSPORT_ERRORS,
    ChannelPacer,
    api_failure,
    body_code,
    error_code,
    retry_after,
    retry_handlers,
    transport_failure,
)
from notifier.domain.models import MessageRef, Notification
from notifier.domain.text import one_line

__all__ = ["ChannelPacer", "SlackBotSink", "SlackWebhookSink"]

#: A conversation ID (C…, G…, D…). `conversations.info` takes only IDs, never `#name`.
_CHANNEL_ID: Final = re.compile(r"[CGD][A-Z0-9]{6,}")
#: Incoming-webhook answers to an empty test message from a valid, live webhook.
_WEBHOOK_ALIVE_CODES: Final = frozenset({"no_text", "invalid_payload", "missing_text_or_fallback"})

log = structlog.get_logger(__name__)


class _Refused(Exception):
    """A Slack refusal the plan has a fallback for; carries only the code."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class SlackBotSink:
    """Posts with a bot token (`chat.postMessage`); needs the `chat:write` scope.

    With `thread`, later alerts of an incident reply in its first message's thread and reminders
    reply there with `reply_broadcast`. A recovery updates the first message to "Resolved" and
    replies in its thread (with or without `thread`). `mentions` (and, with `mention_owner`, the
    monitor owner found by `users.lookupByEmail`, scope `users:read.email`) start alerts, errors
    and reminders. Every call waits on `pacer`. `timeout` applies when slack_sdk makes its own
    session; a given `session` brings its own.
    """

    name = "slack"
    header_text_max: ClassVar[int] = blockkit.HEADER_TEXT_MAX
    section_text_max: ClassVar[int] = blockkit.SECTION_TEXT_MAX
    blocks_max: ClassVar[int] = blockkit.MESSAGE_BLOCKS_MAX

    def __init__(
        self,
        token: str,
        channel: str,
        *,
        base_url: str = "https://slack.com/api/",
        session: aiohttp.ClientSession | None = None,
        max_rate_limit_retries: int = 3,
        timeout: int = 30,
        name: str = "slack",
        thread: bool = False,
        mentions: Sequence[str] = (),
        mention_owner: bool = False,
        digest_threshold: int | None = None,
        pacer: ChannelPacer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.channel = channel
        self.thread = thread
        for mention in mentions:
            blockkit.mention_markup(mention)  # a ValueError now rather than at the first alert
        self.mentions = tuple(mentions)
        self.mention_owner = mention_owner
        self.digest_threshold = digest_threshold
        self._pacer = pacer or ChannelPacer()
        #: The channel's ID once Slack has named it, so pacing shares a key with thread replies.
        self._channel_id: str | None = None
        self._client = AsyncWebClient(
            token=token,
            base_url=base_url if base_url.endswith("/") else base_url + "/",
            session=session,
            timeout=timeout,
            retry_handlers=retry_handlers(max_rate_limit_retries),
        )
        self._owners = OwnerDirectory(self._client, name, clock)

    def __repr__(self) -> str:
        return f"SlackBotSink(channel={self.channel!r})"

    async def send(
        self, notification: Notification, thread: MessageRef | None = None
    ) -> MessageRef | None:
        """Post (or reply, or update: see the class docstring); return where the message went.

        Raises `DeliveryError` naming Slack's error code.
        """
        owner = owner_to_look_up(notification, self.mention_owner)
        found = await self._owners.user_id(owner) if owner else None
        options = SlackOptions(
            channel=self.channel,
            thread=self.thread,
            mentions=(*self.mentions, *([found] if found else [])),
        )
        return await self._make(plan_send(notification, thread, options))

    async def send_digest(self, notifications: Sequence[Notification]) -> None:
        """Post one digest at the top level (several messages only if Block Kit limits force it).

        On failure, `DeliveryError.delivered` names the notifications wholly in messages posted.
        """
        options = SlackOptions(channel=self.channel, mentions=self.mentions)
        await _post_digest(self._call, plan_digest(notifications, options))

    async def _make(self, calls: Sequence[SlackCall]) -> MessageRef | None:
        """Make the calls in order; return where the first posted message went. A refusal the
        call has a fallback for is logged, and the fallback's calls replace the rest."""
        first: MessageRef | None = None
        posted = False
        for call in calls:
            try:
                ref = await self._call(call)
            except _Refused as refused:
                fallback = call.if_refused
                assert fallback is not None  # only a call with a fallback tolerates a refusal
                log.info(fallback.event, destination=self.name, reason=refused.code)
                instead = await self._make(fallback.calls)
                return first if posted else instead
            if call.method == "chat.postMessage" and not posted:
                first, posted = ref, True
        return first

    async def _call(self, call: SlackCall) -> MessageRef | None:
        """One call of a plan; a post returns where its message went."""
        channel = call.channel or self.channel
        tolerate = call.if_refused.codes if call.if_refused else frozenset()
        if call.method == "chat.update":
            await self._request(
                channel,
                self._client.chat_update,
                tolerate=tolerate,
                channel=channel,
                ts=call.ts,
                text=call.message.text,
                blocks=call.message.blocks,
            )
            return None
        extra: dict[str, Any] = {}
        if call.thread_ts is not None:
            extra["thread_ts"] = call.thread_ts
            if call.reply_broadcast:
                extra["reply_broadcast"] = True
        key = self._channel_id or channel if call.top_level else channel
        answer = await self._request(
            key,
            self._client.chat_postMessage,
            tolerate=tolerate,
            channel=channel,
            text=call.message.text,
            blocks=call.message.blocks,
            unfurl_links=False,
            **extra,
        )
        posted_in, ts = answer.get("channel"), answer.get("ts")
        if not isinstance(ts, str) or not ts:
            return None
        posted_in = posted_in if isinstance(posted_in, str) and posted_in else channel
        if call.top_level and self._channel_id is None:
            self._channel_id = posted_in
        return MessageRef(channel=posted_in, ts=ts)

    async def _request(
        self,
        pace_key: str,
        call: Callable[..., Awaitable[AsyncSlackResponse]],
        *,
        tolerate: frozenset[str] = frozenset(),
        **kwargs: Any,
    ) -> AsyncSlackResponse:
        """One paced Web API call; failures become `DeliveryError`, or `_Refused` if tolerated."""
        await self._pacer.wait(pace_key)
        try:
            return await call(**kwargs)
        except SlackApiError as error:
            code = error_code(error)
            if code is None or code not in tolerate:
                reason, wait = api_failure(error)
                raise DeliveryError(
                    self.name,
                    reason,
                    retry_after=wait,
                    whole_destination=code not in MESSAGE_ERRORS,
                ) from None
            refused = code
        except TRANSPORT_ERRORS as error:
            raise DeliveryError(self.name, transport_failure(error)) from None
        raise _Refused(refused)

    async def check(self) -> list[CheckResult]:
        """`auth.test` for the token, then `conversations.info` for the channel when it is an ID."""
        try:
            auth = await self._client.auth_test()
        except SlackApiError as error:
            return [CheckResult(self.name, False, api_failure(error)[0])]
        except TRANSPORT_ERRORS as error:
            return [CheckResult(self.name, False, transport_failure(error))]
        team, bot = _detail(auth.get("team", "?")), _detail(auth.get("user", "?"))
        results = [CheckResult(self.name, True, f"Slack token OK (team {team}, bot {bot})")]
        results.append(await self._check_channel())
        return results

    async def _check_channel(self) -> CheckResult:
        channel = _detail(self.channel)
        if not _CHANNEL_ID.fullmatch(self.channel):
            return CheckResult(
                self.name,
                True,
                f"channel {channel} not verified: give its ID (C…) to have `check` look it up",
            )
        try:
            info = await self._client.conversations_info(channel=self.channel)
        except SlackApiError as error:
            code = error_code(error)
            if code == "missing_scope":
                return CheckResult(
                    self.name,
                    True,
                    f"channel {channel} not verified: the token lacks channels:read/groups:read",
                )
            if code == "channel_not_found":
                return CheckResult(
                    self.name, False, f"channel {channel} not found (or not visible to the bot)"
                )
            return CheckResult(self.name, False, api_failure(error)[0])
        except TRANSPORT_ERRORS as error:
            return CheckResult(self.name, False, transport_failure(error))
        found = info.get("channel") or {}
        name = _detail(found.get("name", channel))
        detail = f"channel #{name} ({channel}) found"
        if found.get("is_member") is False:
            detail += "; the bot is not a member: invite it unless it has chat:write.public"
        return CheckResult(self.name, True, detail)


class SlackWebhookSink:
    """Posts to a Slack incoming webhook. The URL is a secret: it is never logged or echoed."""

    name = "slack-webhook"
    header_text_max: ClassVar[int] = blockkit.HEADER_TEXT_MAX
    section_text_max: ClassVar[int] = blockkit.SECTION_TEXT_MAX
    blocks_max: ClassVar[int] = blockkit.MESSAGE_BLOCKS_MAX

    def __init__(
        self,
        url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        max_rate_limit_retries: int = 3,
        timeout: int = 30,
        name: str = "slack-webhook",
        mentions: Sequence[str] = (),
        digest_threshold: int | None = None,
        pacer: ChannelPacer | None = None,
    ) -> None:
        self.name = name
        for mention in mentions:
            blockkit.mention_markup(mention)  # a ValueError now rather than at the first alert
        self.mentions = tuple(mentions)
        self.digest_threshold = digest_threshold
        self._pacer = pacer or ChannelPacer()
        # slack_sdk logs the URL at DEBUG if its logger's own level allows: give it one that won't.
        logger = logging.getLogger(f"{__name__}.webhook_client")
        logger.setLevel(logging.INFO)
        self._client = AsyncWebhookClient(
            url,
            session=session,
            timeout=timeout,
            logger=logger,
            retry_handlers=retry_handlers(max_rate_limit_retries),
        )

    def __repr__(self) -> str:
        return "SlackWebhookSink(url=<redacted>)"

    async def send(self, notification: Notification, thread: MessageRef | None = None) -> None:
        """Post the rendered message(s) at the top level; a webhook cannot thread or update, so
        `thread` is ignored. Success is exactly HTTP 200 with body `ok`."""
        for call in plan_send(notification, thread, SlackOptions(mentions=self.mentions)):
            await self._post(call)

    async def send_digest(self, notifications: Sequence[Notification]) -> None:
        """Post one digest (several messages only if Block Kit limits force it).

        On failure, `DeliveryError.delivered` names the notifications wholly in messages posted.
        """
        await _post_digest(
            self._post, plan_digest(notifications, SlackOptions(mentions=self.mentions))
        )

    async def _post(self, call: SlackCall) -> None:
        """One top-level post (the only call a webhook plan holds)."""
        await self._pacer.wait(self.name)
        try:
            response = await self._client.send(
                text=call.message.text, blocks=call.message.blocks, unfurl_links=False
            )
        except TRANSPORT_ERRORS as error:
            raise DeliveryError(self.name, transport_failure(error)) from None
        if response.status_code == 200 and response.body == "ok":
            return
        wait = retry_after(response.headers) if response.status_code == 429 else None
        code = body_code(response.body)
        raise DeliveryError(
            self.name,
            f"HTTP {response.status_code} {code}",
            retry_after=wait,
            whole_destination=response.status_code != 400 or code not in MESSAGE_ERRORS,
        )

    async def check(self) -> list[CheckResult]:
        """Post an empty message: a live webhook refuses it (400 `no_text`) and posts nothing."""
        try:
            # slack_sdk would send `{}` as `null`; an empty text is the closest to an empty object.
            response = await self._client.send_dict({"text": ""})
        except TRANSPORT_ERRORS as error:
            return [CheckResult(self.name, False, transport_failure(error))]
        code = body_code(response.body)
        answer = f"HTTP {response.status_code} {code}"
        alive = response.status_code == 400 and code in _WEBHOOK_ALIVE_CODES
        if alive or (response.status_code == 200 and code == "ok"):
            return [CheckResult(self.name, True, f"Slack webhook OK ({answer} to an empty test)")]
        return [CheckResult(self.name, False, f"Slack webhook refused: {answer}")]


def _detail(value: object) -> str:
    """Text from Slack or the settings, on one line and short, for a check line."""
    return one_line(str(value), DETAIL_MAX)


async def _post_digest(
    post: Callable[[SlackCall], Awaitable[object]], calls: Sequence[SlackCall]
) -> None:
    """Post a digest's messages in order; a failure names what the earlier messages completed."""
    delivered: set[str] = set()
    for call in calls:
        try:
            await post(call)
        except DeliveryError as error:
            raise DeliveryError(
                error.destination,
                error.reason,
                retry_after=error.retry_after,
                whole_destination=error.whole_destination,
                delivered=frozenset(delivered),
            ) from None
        delivered |= call.message.completes
