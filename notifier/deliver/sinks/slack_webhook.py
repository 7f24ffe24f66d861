"""The Slack incoming-webhook sink: the same messages as the bot's, always at the top level (a
webhook can neither reply in a thread nor update). The URL is a secret, never logged or echoed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import ClassVar, Final

import aiohttp
from slack_sdk.webhook.async_client import AsyncWebhookClient

from notifier.deliver.plan import SlackCall, SlackOptions, plan_digest, plan_send
from notifier.deliver.render import blockkit
from notifier.deliver.sink import CheckResult, DeliveryError
from notifier.deliver.sinks.context import SinkContext
from notifier.deliver.sinks.slack_transport import (
    MESSAGE_ERRORS,
    TRANSPORT_ERRORS,
    ChannelPacer,
    body_code,
    post_digest,
    retry_after,
    retry_handlers,
    transport_failure,
)
from notifier.domain.models import MessageRef, Notification
from notifier.route.destinations import SlackWebhookDestination
from notifier.route.destinations.slack import digest_after

#: Incoming-webhook answers to an empty test message from a valid, live webhook.
_WEBHOOK_ALIVE_CODES: Final = frozenset({"no_text", "invalid_payload", "missing_text_or_fallback"})


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
        logger = logging.getLogger("notifier.deliver.sinks.slack.webhook_client")
        logger.setLevel(logging.INFO)
        self._client = AsyncWebhookClient(
            url,
            session=session,
            timeout=timeout,
            logger=logger,
            retry_handlers=retry_handlers(max_rate_limit_retries),
        )

    @classmethod
    def from_destination(
        cls, name: str, destination: SlackWebhookDestination, context: SinkContext
    ) -> SlackWebhookSink:
        """The sink for a `slack-webhook` destination of the routes."""
        return cls(
            destination.url.get_secret_value(),
            session=context.session,
            timeout=int(context.timeout),
            name=name,
            mentions=destination.mentions,
            digest_threshold=digest_after(destination.digest_threshold),
            pacer=context.slack_pacer,
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
        await post_digest(
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
