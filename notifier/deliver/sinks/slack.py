"""The Slack bot sink (`chat.postMessage`, `chat.update` via slack_sdk). It builds its plan
(`deliver.plan`) before any I/O, makes the plan's calls in order and reports what happened;
pacing, rate limits and refusals are read in `slack_transport`. The incoming-webhook sink is in
`slack_webhook`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, Final

import aiohttp
import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from notifier.deliver.plan import SlackCall, SlackOptions, owner_to_look_up, plan_digest, plan_send
from notifier.deliver.render import blockkit
from notifier.deliver.sink import CheckResult, DeliveryError
from notifier.deliver.sinks.context import SinkContext
from notifier.deliver.sinks.slack_owners import OwnerDirectory
from notifier.deliver.sinks.slack_transport import (
    DETAIL_MAX,
    MESSAGE_ERRORS,
    TRANSPORT_ERRORS,
    ChannelPacer,
    api_failure,
    error_code,
    post_digest,
    retry_handlers,
    transport_failure,
)
from notifier.domain.models import MessageRef, Notification
from notifier.domain.text import one_line
from notifier.route.destinations import SlackDestination
from notifier.route.destinations.slack import digest_after

#: A conversation ID (C…, G…, D…). `conversations.info` takes only IDs, never `#name`.
_CHANNEL_ID: Final = re.compile(r"[CGD][A-Z0-9]{6,}")

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

    @classmethod
    def from_destination(
        cls, name: str, destination: SlackDestination, context: SinkContext
    ) -> SlackBotSink:
        """The sink for a `slack` destination of the routes."""
        return cls(
            destination.token.get_secret_value(),
            destination.channel,
            base_url=context.slack_api_url,
            session=context.session,
            timeout=int(context.timeout),
            name=name,
            thread=destination.thread,
            mentions=destination.mentions,
            mention_owner=destination.mention_owner,
            digest_threshold=digest_after(destination.digest_threshold),
            pacer=context.slack_pacer,
        )

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
        await post_digest(self._call, plan_digest(notifications, options))

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


def _detail(value: object) -> str:
    """Text from Slack or the settings, on one line and short, for a check line."""
    return one_line(str(value), DETAIL_MAX)
