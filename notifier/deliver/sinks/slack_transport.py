"""Talking to Slack for both Slack sinks: pacing, short rate-limit waits, and reading refusals.

A rate limit (HTTP 429 + Retry-After) of at most `RATE_LIMIT_INLINE_MAX` seconds is waited out
here; a longer one fails the send with `retry_after`, and the cycle leaves the destination alone
until then (nothing else waits). Reasons name Slack's error code, never the token or the URL.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from notifier.bounded_http import BodyTooLarge
from notifier.deliver.plan import SlackCall
from notifier.deliver.sink import send_in_parts
from notifier.deliver.sinks.pacer import ChannelPacer as ChannelPacer  # its old home
from notifier.domain.text import one_line
from notifier.domain.values import retry_after_seconds

#: The longest rate-limit wait taken inside a send; a longer one defers the destination.
RATE_LIMIT_INLINE_MAX: Final = 2.0
#: What a failed call may raise besides `SlackApiError` (caught first: it is a client error too).
TRANSPORT_ERRORS: Final = (aiohttp.ClientError, TimeoutError, SlackClientError, ValueError)
#: An error code as Slack writes them (`invalid_auth`, `no_service`); anything else is not echoed.
_CODE: Final = re.compile(r"[a-z0-9_]{1,64}")
#: The most of any text from Slack a reason or check line repeats.
DETAIL_MAX: Final = 200

#: Slack errors about one message (its content), not the token, channel or service: later
#: notifications are still tried.
MESSAGE_ERRORS: Final = frozenset(
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
        wait = retry_after(response.headers)
        return wait is None or wait <= self._max_wait

    async def prepare_for_next_attempt_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        wait = retry_after(response.headers) if response is not None else None
        state.next_attempt_requested = True
        await asyncio.sleep(
            min(self._max_wait, 1.0 if wait is None else wait) + random.random() / 10
        )
        state.increment_current_attempt()


def retry_handlers(max_rate_limit_retries: int) -> list[AsyncRetryHandler]:
    """slack_sdk's retries for a sink: short rate limits, one server error, one lost connection."""
    return [
        _ShortRateLimitRetry(max_retry_count=max_rate_limit_retries),
        AsyncServerErrorRetryHandler(max_retry_count=1),
        AsyncConnectionErrorRetryHandler(max_retry_count=1),
    ]


def transport_failure(error: BaseException) -> str:
    """Why a call failed without an answer from Slack (one of `TRANSPORT_ERRORS`).

    aiohttp's messages carry the URL (for a webhook, a secret): only the class is named.
    """
    if isinstance(error, BodyTooLarge):
        return f"Slack's answer was larger than {error.limit} bytes"
    if isinstance(error, aiohttp.ClientError | TimeoutError):
        return f"could not reach Slack: {type(error).__name__}"
    return f"Slack client failed: {type(error).__name__}"


def retry_after(headers: Mapping[str, Any] | None) -> float | None:
    """The seconds a response's `Retry-After` header asks for, whatever its key's case."""
    value = None
    for key, found in (headers or {}).items():
        if key.lower() == "retry-after":
            value = found
    if isinstance(value, list):
        value = value[0] if value else None
    return retry_after_seconds(value, datetime.now(UTC)) if isinstance(value, str) else None


def error_code(error: SlackApiError) -> str | None:
    """Slack's `error` code in a refusal, if it is shaped like one."""
    data = getattr(error.response, "data", None)
    code = data.get("error") if isinstance(data, dict) else None
    return code if isinstance(code, str) and _CODE.fullmatch(code) else None


def body_code(body: str | None) -> str:
    """An incoming webhook's plain-text answer (`ok`, `no_text`), if shaped like a code."""
    code = (body or "").strip()
    return code if _CODE.fullmatch(code) else "(unexpected answer)"


#: What a Web API refusal usually means, for the one line that reports it.
_HINTS = {
    "invalid_auth": "the bot token is wrong",
    "not_authed": "no bot token was sent",
    "token_revoked": "the bot token was revoked",
    "account_inactive": "the bot token's app or user is deactivated",
    "channel_not_found": "a wrong channel ID, or a private channel the bot is not in",
    "not_in_channel": "invite the bot to the channel",
    "is_archived": "the channel is archived",
    "missing_scope": "the app lacks a scope: chat:write, and users:read.email for mentions",
}


def api_failure(error: SlackApiError) -> tuple[str, float | None]:
    """A Web API refusal as a reason (its code, and for bad blocks Slack's first message about
    them) and the Retry-After of a rate limit."""
    response = error.response
    status = getattr(response, "status_code", None) or getattr(response, "status", None)
    headers = getattr(response, "headers", None)
    wait = retry_after(headers) if status == 429 else None
    code = error_code(error)
    if code is None and status != 200:
        return f"Slack answered HTTP {status}", wait
    if code is None:
        return "Slack gave an unreadable answer (HTTP 200)", wait
    reason = f"Slack answered {code}"
    if code in _HINTS:
        reason += f" ({_HINTS[code]})"
    data = getattr(response, "data", None)
    messages = data.get("response_metadata", {}).get("messages") if isinstance(data, dict) else None
    if code in {"invalid_blocks", "invalid_arguments"} and messages:
        reason += f" ({one_line(str(messages[0]), DETAIL_MAX)})"
    return reason, wait


async def post_digest(
    post: Callable[[SlackCall], Awaitable[object]], calls: Sequence[SlackCall]
) -> None:
    """Post a digest's messages in order; a failure names what the earlier messages completed."""
    await send_in_parts(calls, post, lambda call: call.message.completes)
