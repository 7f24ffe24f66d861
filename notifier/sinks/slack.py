"""Slack sinks: a bot token (`chat.postMessage`) or an incoming webhook, both via slack_sdk.

Rate limits (HTTP 429 + Retry-After) are waited out by slack_sdk's retry handlers. Errors name
Slack's error code and never the token or the webhook URL.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from notifier import render
from notifier.models import Notification
from notifier.sinks import DeliveryError
from notifier.sinks.checks import CheckResult

#: An error code as Slack writes them (`invalid_auth`, `no_service`); anything else is not echoed.
_CODE = re.compile(r"[a-z0-9_]{1,64}")
#: A conversation ID (C…, G…, D…). `conversations.info` takes only IDs, never `#name`.
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{6,}")
#: Incoming-webhook answers to an empty test message from a valid, live webhook.
_WEBHOOK_ALIVE_CODES = frozenset({"no_text", "invalid_payload", "missing_text_or_fallback"})
_DETAIL_MAX = 200


def _retry_handlers(max_rate_limit_retries: int) -> list[AsyncRetryHandler]:
    return [
        AsyncRateLimitErrorRetryHandler(max_retry_count=max_rate_limit_retries),
        AsyncServerErrorRetryHandler(max_retry_count=1),
        AsyncConnectionErrorRetryHandler(max_retry_count=1),
    ]


def _unreachable(error: BaseException) -> str:
    # aiohttp's messages carry the URL (for a webhook, a secret): name the class only.
    return f"could not reach Slack: {type(error).__name__}"


def _retry_after(headers: Mapping[str, Any] | None) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


#: Slack errors about one message (its content), not the token, channel or service: later
#: notifications are still tried.
_MESSAGE_ERRORS = frozenset(
    {
        "invalid_blocks",
        "invalid_blocks_format",
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


def _one_line(text: str, limit: int = _DETAIL_MAX) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class SlackBotSink:
    """Posts with a bot token (`chat.postMessage`); needs the `chat:write` scope.

    `timeout` applies when slack_sdk makes its own session; a given `session` brings its own.
    """

    name = "slack"
    header_text_max: ClassVar[int] = render.HEADER_TEXT_MAX
    section_text_max: ClassVar[int] = render.SECTION_TEXT_MAX
    blocks_max: ClassVar[int] = render.MESSAGE_BLOCKS_MAX

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
    ) -> None:
        self.name = name
        self.channel = channel
        self._client = AsyncWebClient(
            token=token,
            base_url=base_url if base_url.endswith("/") else base_url + "/",
            session=session,
            timeout=timeout,
            retry_handlers=_retry_handlers(max_rate_limit_retries),
        )

    def __repr__(self) -> str:
        return f"SlackBotSink(channel={self.channel!r})"

    async def send(self, notification: Notification) -> None:
        """Post the rendered message; raise `DeliveryError` naming Slack's error code."""
        message = render.slack_message(notification)
        try:
            await self._client.chat_postMessage(
                channel=self.channel, text=message.text, blocks=message.blocks, unfurl_links=False
            )
        except SlackApiError as error:
            reason, retry_after = self._api_failure(error)
            raise DeliveryError(
                self.name,
                reason,
                retry_after=retry_after,
                whole_destination=_error_code(error) not in _MESSAGE_ERRORS,
            ) from None
        except (aiohttp.ClientError, TimeoutError) as error:
            raise DeliveryError(self.name, _unreachable(error)) from None
        except (SlackClientError, ValueError) as error:
            raise DeliveryError(self.name, f"Slack client failed: {type(error).__name__}") from None

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


def _error_code(error: SlackApiError) -> str | None:
    data = getattr(error.response, "data", None)
    code = data.get("error") if isinstance(data, dict) else None
    return code if isinstance(code, str) and _CODE.fullmatch(code) else None


class SlackWebhookSink:
    """Posts to a Slack incoming webhook. The URL is a secret: it is never logged or echoed."""

    name = "slack-webhook"
    header_text_max: ClassVar[int] = render.HEADER_TEXT_MAX
    section_text_max: ClassVar[int] = render.SECTION_TEXT_MAX
    blocks_max: ClassVar[int] = render.MESSAGE_BLOCKS_MAX

    def __init__(
        self,
        url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        max_rate_limit_retries: int = 3,
        timeout: int = 30,
        name: str = "slack-webhook",
    ) -> None:
        self.name = name
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

    async def send(self, notification: Notification) -> None:
        """Post the rendered message; success is exactly HTTP 200 with body `ok`."""
        message = render.slack_message(notification)
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
