"""Slack sinks: a bot token (`chat.postMessage`) or an incoming webhook, both via slack_sdk.

A rate limit (HTTP 429 + Retry-After) of at most `RATE_LIMIT_INLINE_MAX` seconds is waited out
here; a longer one fails the send with `retry_after`, and the cycle leaves the destination alone
until then (nothing else waits). Errors name Slack's error code, never the token or the URL.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import aiohttp
import structlog
from aiolimiter import AsyncLimiter
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse
from slack_sdk.webhook.async_client import AsyncWebhookClient

from notifier.bounded_http import BodyTooLarge
from notifier.deliver.checks import CheckResult
from notifier.deliver.render import blockkit, digest
from notifier.deliver.render import slack as render
from notifier.deliver.sink import DeliveryError
from notifier.domain.models import MessageRef, Notification
from notifier.domain.text import one_line
from notifier.domain.values import retry_after_seconds

#: An error code as Slack writes them (`invalid_auth`, `no_service`); anything else is not echoed.
_CODE = re.compile(r"[a-z0-9_]{1,64}")
#: A conversation ID (C…, G…, D…). `conversations.info` takes only IDs, never `#name`.
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{6,}")
#: Incoming-webhook answers to an empty test message from a valid, live webhook.
_WEBHOOK_ALIVE_CODES = frozenset({"no_text", "invalid_payload", "missing_text_or_fallback"})
_DETAIL_MAX = 200
#: An owner worth looking up in Slack: something shaped like an email address.
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")
#: `chat.update` refusals meaning the incident's first message cannot be updated: post anew.
_UPDATE_GONE = frozenset(
    {"message_not_found", "cant_update_message", "edit_window_closed", "channel_not_found"}
)
#: Reply refusals meaning the thread is gone: post at the top level instead.
_THREAD_GONE = frozenset({"thread_not_found", "message_not_found", "channel_not_found"})
#: How long an owner lookup is trusted: Slack's answer (found or not), and a failure to get one.
OWNER_CACHE_SECONDS = 3600.0
OWNER_RETRY_SECONDS = 300.0

log = structlog.get_logger(__name__)


#: The longest rate-limit wait taken inside a send; a longer one defers the destination.
RATE_LIMIT_INLINE_MAX = 2.0


class _ShortRateLimitRetry(AsyncRetryHandler):
    """Retries an HTTP 429 only when its Retry-After is at most `max_wait` seconds.

    slack_sdk's own handler sleeps for whatever Slack asks, inside the send (and fails on a
    Retry-After that is not a whole number); a long wait must not hold up anything else.
    """

    def __init__(self, max_retry_count: int, max_wait: float = RATE_LIMIT_INLINE_MAX) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self._max_wait = max_wait

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        wait = _retry_after(response.headers)
        return wait is None or wait <= self._max_wait

    async def prepare_for_next_attempt_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        wait = _retry_after(response.headers) if response is not None else None
        state.next_attempt_requested = True
        await asyncio.sleep(
            min(self._max_wait, 1.0 if wait is None else wait) + random.random() / 10
        )
        state.increment_current_attempt()


def _retry_handlers(max_rate_limit_retries: int) -> list[AsyncRetryHandler]:
    return [
        _ShortRateLimitRetry(max_retry_count=max_rate_limit_retries),
        AsyncServerErrorRetryHandler(max_retry_count=1),
        AsyncConnectionErrorRetryHandler(max_retry_count=1),
    ]


def _unreachable(error: BaseException) -> str:
    if isinstance(error, BodyTooLarge):
        return f"Slack's answer was larger than {error.limit} bytes"
    # aiohttp's messages carry the URL (for a webhook, a secret): name the class only.
    return f"could not reach Slack: {type(error).__name__}"


def _retry_after(headers: Mapping[str, Any] | None) -> float | None:
    value = None
    for key, found in (headers or {}).items():
        if key.lower() == "retry-after":
            value = found
    if isinstance(value, list):
        value = value[0] if value else None
    return retry_after_seconds(value, datetime.now(UTC)) if isinstance(value, str) else None


#: Slack errors about one message (its content), not the token, channel or service: later
#: notifications are still tried.
_MESSAGE_ERRORS = frozenset(
    {
        "invalid_blocks",
        "invalid_blocks_format",
        "msg_blocks_too_long",
        "invalid_attachments",
        "invalid_payload",
        "msg_too_long",
        "no_text",
        "too_many_attachments",
        "too_many_blocks",
        "invalid_arguments",
        "invalid_form_data",
        "invalid_json",
        "json_not_object",
    }
)


def _one_line(text: str) -> str:
    return one_line(text, _DETAIL_MAX)


class ChannelPacer:
    """Slack takes about one message per second per channel: one `AsyncLimiter` per key
    (a channel ID, or a webhook destination's name). Share one instance among all sinks."""

    def __init__(self, max_rate: float = 1.0, time_period: float = 1.0) -> None:
        self._max_rate = max_rate
        self._time_period = time_period
        self._limiters: dict[str, AsyncLimiter] = {}

    async def wait(self, key: str) -> None:
        """Return once a message to `key` may go out."""
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = self._limiters[key] = AsyncLimiter(self._max_rate, self._time_period)
        await limiter.acquire()


class _Refused(Exception):
    """A Slack refusal the caller handles itself (see `tolerate`); carries only the code."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class _Lookup:
    user_id: str | None
    expires: float


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
        self._clock = clock
        self._owners: dict[str, _Lookup] = {}
        #: The channel's ID once Slack has named it, so pacing shares a key with thread replies.
        self._channel_id: str | None = None
        self._client = AsyncWebClient(
            token=token,
            base_url=base_url if base_url.endswith("/") else base_url + "/",
            session=session,
            timeout=timeout,
            retry_handlers=_retry_handlers(max_rate_limit_retries),
        )

    def __repr__(self) -> str:
        return f"SlackBotSink(channel={self.channel!r})"

    async def send(
        self, notification: Notification, thread: MessageRef | None = None
    ) -> MessageRef | None:
        """Post (or reply, or update: see the class docstring); return where the message went.

        Raises `DeliveryError` naming Slack's error code.
        """
        if notification.kind == "recovered":
            return await self._send_recovered(notification, thread)
        mentions = [*self.mentions, *await self._owner_mentions(notification)]
        messages = render.slack_messages(notification, mentions=mentions)
        reply_to, broadcast = None, False
        if self.thread and thread is not None:
            if notification.kind == "reminder":
                reply_to, broadcast = thread, True
            elif not notification.opens_incident:
                reply_to = thread
        return await self._post_messages(messages, reply_to, broadcast=broadcast)

    async def send_digest(self, notifications: Sequence[Notification]) -> None:
        """Post one digest at the top level (several messages only if Block Kit limits force it).

        On failure, `DeliveryError.delivered` names the notifications wholly in messages posted.
        """
        await _post_digest(lambda m: self._post(m, None), notifications, self.mentions)

    async def _send_recovered(
        self, notification: Notification, thread: MessageRef | None
    ) -> MessageRef | None:
        """Update the incident's first message to "Resolved" and reply in its thread; when it
        cannot be updated (gone, too old) or is unknown, post a recovery message instead."""
        if thread is not None:
            resolved = render.slack_resolved_message(notification)
            try:
                await self._request(
                    thread.channel,
                    self._client.chat_update,
                    tolerate=_UPDATE_GONE,
                    channel=thread.channel,
                    ts=thread.ts,
                    text=resolved.text,
                    blocks=resolved.blocks,
                )
            except _Refused as refused:
                log.info("slack_update_failed", destination=self.name, reason=refused.code)
            else:
                reply = render.slack_recovery_reply(notification)
                return await self._post_messages([reply], thread, broadcast=False)
        return await self._post_messages(render.slack_messages(notification), None)

    async def _post_messages(
        self,
        messages: Sequence[blockkit.SlackMessage],
        reply_to: MessageRef | None,
        *,
        broadcast: bool = False,
    ) -> MessageRef | None:
        """Post the parts of one notification in order, in one place; return the first's ref.

        A reply whose thread is gone goes to the top level instead.
        """
        if reply_to is not None:
            try:
                first = await self._post(messages[0], reply_to, broadcast, tolerate=_THREAD_GONE)
            except _Refused as refused:
                log.info("slack_thread_gone", destination=self.name, reason=refused.code)
                reply_to = None
        if reply_to is None:
            first = await self._post(messages[0], None)
        for message in messages[1:]:
            await self._post(message, reply_to)
        return first

    async def _post(
        self,
        message: blockkit.SlackMessage,
        reply_to: MessageRef | None,
        broadcast: bool = False,
        *,
        tolerate: frozenset[str] = frozenset(),
    ) -> MessageRef | None:
        extra: dict[str, Any] = {}
        if reply_to is not None:
            extra["thread_ts"] = reply_to.ts
            if broadcast:
                extra["reply_broadcast"] = True
        channel = reply_to.channel if reply_to is not None else self.channel
        key = reply_to.channel if reply_to is not None else self._channel_id or self.channel
        answer = await self._request(
            key,
            self._client.chat_postMessage,
            tolerate=tolerate,
            channel=channel,
            text=message.text,
            blocks=message.blocks,
            unfurl_links=False,
            **extra,
        )
        posted_in, ts = answer.get("channel"), answer.get("ts")
        if not isinstance(ts, str) or not ts:
            return None
        posted_in = posted_in if isinstance(posted_in, str) and posted_in else channel
        if reply_to is None and self._channel_id is None:
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
        refused: str | None = None
        try:
            return await call(**kwargs)
        except SlackApiError as error:
            code = _error_code(error)
            if code not in tolerate:
                reason, retry_after = self._api_failure(error)
                raise DeliveryError(
                    self.name,
                    reason,
                    retry_after=retry_after,
                    whole_destination=code not in _MESSAGE_ERRORS,
                ) from None
            refused = code
        except (aiohttp.ClientError, TimeoutError) as error:
            raise DeliveryError(self.name, _unreachable(error)) from None
        except (SlackClientError, ValueError) as error:
            raise DeliveryError(self.name, f"Slack client failed: {type(error).__name__}") from None
        raise _Refused(refused)

    async def _owner_mentions(self, notification: Notification) -> list[str]:
        """The monitor owner's Slack user ID, if asked for and found (cached per email).

        Any failure to look it up costs only the mention, with one warning per cache period.
        """
        owner = notification.monitor.owner
        if not self.mention_owner or owner is None or not _EMAIL.fullmatch(owner.strip()):
            return []
        email = owner.strip().lower()
        now = self._clock()
        cached = self._owners.get(email)
        if cached is not None and cached.expires > now:
            return [cached.user_id] if cached.user_id else []
        user_id, reason, trusted = None, None, True
        try:
            answer = await self._client.users_lookupByEmail(email=email)
            user = answer.get("user")
            found = user.get("id") if isinstance(user, dict) else None
            if isinstance(found, str) and re.fullmatch(r"[UW][A-Z0-9]{2,20}", found):
                user_id = found
            else:
                reason = "Slack gave no usable user ID"
        except SlackApiError as error:
            reason = self._api_failure(error)[0]
            trusted = _error_code(error) is not None and error.response.status_code == 200
        except (aiohttp.ClientError, TimeoutError) as error:
            reason, trusted = _unreachable(error), False
        except (SlackClientError, ValueError) as error:
            reason, trusted = f"Slack client failed: {type(error).__name__}", False
        ttl = OWNER_CACHE_SECONDS if trusted else OWNER_RETRY_SECONDS
        self._owners[email] = _Lookup(user_id, now + ttl)
        if reason is not None:
            log.warning(
                "slack_owner_lookup_failed",
                destination=self.name,
                owner=email,
                reason=reason,
                retry_in_seconds=ttl,
            )
        return [user_id] if user_id else []

    async def check(self) -> list[CheckResult]:
        """`auth.test` for the token, then `conversations.info` for the channel when it is an ID."""
        try:
            auth = await self._client.auth_test()
        except SlackApiError as error:
            return [CheckResult(self.name, False, self._api_failure(error)[0])]
        except (aiohttp.ClientError, TimeoutError) as error:
            return [CheckResult(self.name, False, _unreachable(error))]
        except (SlackClientError, ValueError) as error:
            return [CheckResult(self.name, False, f"Slack client failed: {type(error).__name__}")]
        team, bot = _one_line(str(auth.get("team", "?"))), _one_line(str(auth.get("user", "?")))
        results = [CheckResult(self.name, True, f"Slack token OK (team {team}, bot {bot})")]
        results.append(await self._check_channel())
        return results

    async def _check_channel(self) -> CheckResult:
        channel = _one_line(self.channel)
        if not _CHANNEL_ID.fullmatch(self.channel):
            return CheckResult(
                self.name,
                True,
                f"channel {channel} not verified: give its ID (C…) to have `check` look it up",
            )
        try:
            info = await self._client.conversations_info(channel=self.channel)
        except SlackApiError as error:
            code = _error_code(error)
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
            return CheckResult(self.name, False, self._api_failure(error)[0])
        except (aiohttp.ClientError, TimeoutError) as error:
            return CheckResult(self.name, False, _unreachable(error))
        except (SlackClientError, ValueError) as error:
            return CheckResult(self.name, False, f"Slack client failed: {type(error).__name__}")
        found = info.get("channel") or {}
        name = _one_line(str(found.get("name", channel)))
        detail = f"channel #{name} ({channel}) found"
        if found.get("is_member") is False:
            detail += "; the bot is not a member: invite it unless it has chat:write.public"
        return CheckResult(self.name, True, detail)

    @staticmethod
    def _api_failure(error: SlackApiError) -> tuple[str, float | None]:
        response = error.response
        status = getattr(response, "status_code", None) or getattr(response, "status", None)
        headers = getattr(response, "headers", None)
        retry_after = _retry_after(headers) if status == 429 else None
        code = _error_code(error)
        if code is None and status != 200:
            return f"Slack answered HTTP {status}", retry_after
        if code is None:
            return "Slack gave an unreadable answer (HTTP 200)", retry_after
        reason = f"Slack answered {code}"
        data = getattr(response, "data", None)
        messages = (
            data.get("response_metadata", {}).get("messages") if isinstance(data, dict) else None
        )
        if code in {"invalid_blocks", "invalid_arguments"} and messages:
            reason += f" ({_one_line(str(messages[0]))})"
        return reason, retry_after


def _with_delivered(error: DeliveryError, delivered: set[str]) -> DeliveryError:
    """The same failure, naming the digest's notifications that went out before it."""
    return DeliveryError(
        error.destination,
        error.reason,
        retry_after=error.retry_after,
        whole_destination=error.whole_destination,
        delivered=frozenset(delivered),
    )


def _error_code(error: SlackApiError) -> str | None:
    data = getattr(error.response, "data", None)
    code = data.get("error") if isinstance(data, dict) else None
    return code if isinstance(code, str) and _CODE.fullmatch(code) else None


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
            retry_handlers=_retry_handlers(max_rate_limit_retries),
        )

    def __repr__(self) -> str:
        return "SlackWebhookSink(url=<redacted>)"

    async def send(self, notification: Notification, thread: MessageRef | None = None) -> None:
        """Post the rendered message(s) at the top level; a webhook cannot thread or update, so
        `thread` is ignored. Success is exactly HTTP 200 with body `ok`."""
        mentions = () if notification.kind == "recovered" else self.mentions
        for message in render.slack_messages(notification, mentions=mentions):
            await self._post(message)

    async def send_digest(self, notifications: Sequence[Notification]) -> None:
        """Post one digest (several messages only if Block Kit limits force it).

        On failure, `DeliveryError.delivered` names the notifications wholly in messages posted.
        """
        await _post_digest(self._post, notifications, self.mentions)

    async def _post(self, message: blockkit.SlackMessage) -> None:
        await self._pacer.wait(self.name)
        try:
            response = await self._client.send(
                text=message.text, blocks=message.blocks, unfurl_links=False
            )
        except (aiohttp.ClientError, TimeoutError) as error:
            raise DeliveryError(self.name, _unreachable(error)) from None
        except (SlackClientError, ValueError) as error:
            raise DeliveryError(self.name, f"Slack client failed: {type(error).__name__}") from None
        if response.status_code == 200 and response.body == "ok":
            return
        retry_after = _retry_after(response.headers) if response.status_code == 429 else None
        code = _body_code(response.body)
        reason = f"HTTP {response.status_code} {code}"
        raise DeliveryError(
            self.name,
            reason,
            retry_after=retry_after,
            whole_destination=response.status_code != 400 or code not in _MESSAGE_ERRORS,
        )

    async def check(self) -> list[CheckResult]:
        """Post an empty message: a live webhook refuses it (400 `no_text`) and posts nothing."""
        try:
            # slack_sdk would send `{}` as `null`; an empty text is the closest to an empty object.
            response = await self._client.send_dict({"text": ""})
        except (aiohttp.ClientError, TimeoutError) as error:
            return [CheckResult(self.name, False, _unreachable(error))]
        except (SlackClientError, ValueError) as error:
            return [CheckResult(self.name, False, f"Slack client failed: {type(error).__name__}")]
        code = _body_code(response.body)
        answer = f"HTTP {response.status_code} {code}"
        alive = response.status_code == 400 and code in _WEBHOOK_ALIVE_CODES
        if alive or (response.status_code == 200 and code == "ok"):
            return [CheckResult(self.name, True, f"Slack webhook OK ({answer} to an empty test)")]
        return [CheckResult(self.name, False, f"Slack webhook refused: {answer}")]


def _body_code(body: str | None) -> str:
    code = (body or "").strip()
    return code if _CODE.fullmatch(code) else "(unexpected answer)"


async def _post_digest(
    post: Callable[[blockkit.SlackMessage], Awaitable[object]],
    notifications: Sequence[Notification],
    mentions: Sequence[str],
) -> None:
    """Post a digest's messages in order; a failure names what the earlier messages completed.
    Mentions go with it unless everything in it is a recovery."""
    if all(n.kind == "recovered" for n in notifications):
        mentions = ()
    delivered: set[str] = set()
    for message in digest.slack_digest(notifications, mentions=mentions):
        try:
            await post(message)
        except DeliveryError as error:
            raise _with_delivered(error, delivered) from None
        delivered |= message.completes
