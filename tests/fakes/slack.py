"""A local stand-in for Slack's Web API and incoming webhooks, with programmable faults.

Behaves as Slack does: API errors are HTTP 200 with `{"ok": false, "error": ...}`, rate limits are
HTTP 429 with Retry-After, incoming webhooks answer plain-text codes (`ok`, `no_service`, ...).
It refuses what Slack refuses: Block Kit that slack_sdk's own models reject (`block_kit_problems`),
a reply to a thread or an update of a message it never posted, and, when asked (`enforce_rate`),
more messages per channel than Slack's pace allows.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block

FaultKind = Literal["ratelimited", "server_error", "garbage", "api_error", "slow"]

#: The HTTP status an incoming webhook answers with each error code.
WEBHOOK_ERROR_STATUS = {
    "invalid_payload": 400,
    "no_text": 400,
    "invalid_token": 403,
    "action_prohibited": 403,
    "no_service": 404,
    "channel_not_found": 404,
    "channel_is_archived": 410,
}


#: Slack's own caps that slack_sdk's models do not check: blocks in a message, text in a field.
MESSAGE_BLOCKS_MAX = 50
FIELD_TEXT_MAX = 2000
#: How early (in seconds) a message may arrive under `enforce_rate`: network jitter, not a burst.
RATE_JITTER = 0.05


def block_kit_problems(blocks: list[dict[str, Any]]) -> list[str]:
    """Why Slack would answer `invalid_blocks` to these blocks, worded as Slack does; [] if none.

    Each block must be one slack_sdk knows (`Block.parse`), within its limits (`validate_json`), and
    come back from `to_dict` unchanged (an unknown or misspelt key does not); a section field
    holds at most 2,000 characters, a text object at least one; a message has at most 50 blocks.
    """
    problems = []
    if len(blocks) > MESSAGE_BLOCKS_MAX:
        problems.append(f"no more than {MESSAGE_BLOCKS_MAX} items allowed [json-pointer:/blocks]")
    for index, block in enumerate(blocks):
        where = f"/blocks/{index}"
        try:
            parsed = Block.parse(block)
            if parsed is None:
                problems.append(f"unsupported type: {block.get('type')!r} [json-pointer:{where}]")
                continue
            parsed.validate_json()
            echoed = parsed.to_dict()
        except (SlackObjectFormationError, TypeError, ValueError, AttributeError) as error:
            problems.append(f"{error} [json-pointer:{where}]")
            continue
        empty = [pointer for pointer, text in _texts(block, where) if not text]
        if empty:  # `to_dict` drops an empty text: tell this apart from an unknown key
            problems += [f"must be more than 0 characters [json-pointer:{p}]" for p in empty]
            continue
        if echoed != block:
            problems.append(f"unknown or malformed keys [json-pointer:{where}]")
            continue
        for number, item in enumerate(block.get("fields") or []):
            if len(str(item.get("text", ""))) > FIELD_TEXT_MAX:
                limit = FIELD_TEXT_MAX + 1
                pointer = f"{where}/fields/{number}/text"
                problems.append(f"must be less than {limit} characters [json-pointer:{pointer}]")
    return problems


def _texts(value: object, pointer: str) -> list[tuple[str, str]]:
    """Every text object's text under `value` (plain_text and mrkdwn), with its JSON pointer."""
    found: list[tuple[str, str]] = []
    if isinstance(value, dict):
        if value.get("type") in ("plain_text", "mrkdwn") and isinstance(value.get("text"), str):
            found.append((f"{pointer}/text", value["text"]))
        for key, item in value.items():
            found += _texts(item, f"{pointer}/{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _texts(item, f"{pointer}/{index}")
    return found


def _blocks_argument(raw: object) -> tuple[list[dict[str, Any]] | None, str | None]:
    """The `blocks` argument decoded (form callers send a JSON string), or Slack's error code."""
    if raw is None:
        return None, None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None, "invalid_blocks_format"
    if not isinstance(raw, list) or not all(isinstance(block, dict) for block in raw):
        return None, "invalid_blocks_format"
    return raw, None


@dataclass(frozen=True)
class Refusal:
    """A request Slack refused because of what it asked (not a scripted fault): the API method or
    "webhook", Slack's error code and, for `invalid_blocks`, why."""

    call: str
    error: str
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Fault:
    """One programmed misbehaviour, used up by one request (API or webhook alike)."""

    kind: FaultKind
    retry_after: str = "1"
    error: str = "invalid_auth"
    status: int = 500
    delay: float = 0.0


@dataclass(frozen=True)
class PostedMessage:
    """A message Slack accepted, through `chat.postMessage` (with a channel) or a webhook.

    `at` is when it arrived (`time.monotonic()`); `ts` is what Slack answered (API only).
    """

    channel: str | None
    text: str | None
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None = None
    reply_broadcast: bool = False
    ts: str | None = None
    at: float = 0.0


@dataclass(frozen=True)
class UpdatedMessage:
    """A `chat.update` Slack accepted: the message at (channel ID, ts) now reads so."""

    channel: str
    ts: str
    text: str | None
    blocks: list[dict[str, Any]] | None
    at: float = 0.0


#: The channel the sinks under test post to, and a second one the bot is also in.
CHANNEL = "C0123ABCD"
OTHER = "C0999ZZZZ"


@dataclass
class FakeSlack:
    """The Slack endpoints the notifier uses. Serve it with `async with fake.serve() as base_url`.

    API base URL: `base_url + "/api/"`; incoming webhook: `base_url + FakeSlack.WEBHOOK_PATH`.
    With `enforce_rate`, a channel (or the webhook) takes that many messages per second after a
    burst of `enforce_burst`; one more gets HTTP 429 with Retry-After, as Slack's own limit does.
    """

    WEBHOOK_PATH = "/services/T000/B000/XXXX"

    token: str = "xoxb-fake-token-123"
    team: str = "Acme Data"
    bot: str = "datafold-notifier"
    #: Channel ID → name. `chat.postMessage` also takes `#name`; `conversations.info` only IDs.
    channels: dict[str, str] = field(default_factory=lambda: {"C0123ABCD": "data-alerts"})
    scopes: set[str] = field(
        default_factory=lambda: {"chat:write", "channels:read", "users:read", "users:read.email"}
    )
    is_member: bool = True
    messages: list[PostedMessage] = field(default_factory=list)
    updates: list[UpdatedMessage] = field(default_factory=list)
    #: Email → user ID for `users.lookupByEmail`; any other email is `users_not_found`.
    users: dict[str, str] = field(default_factory=dict)
    #: Every email `users.lookupByEmail` was asked about, in order.
    lookups: list[str] = field(default_factory=list)
    #: Messages per second per channel beyond which Slack answers 429 (None: no limit).
    enforce_rate: float | None = None
    enforce_burst: int = 1
    #: Requests refused for what they asked (invalid blocks, unknown thread, too fast, ...).
    refused: list[Refusal] = field(default_factory=list)
    _next_ts: int = 1
    #: Every request, in order: API method name or "webhook".
    calls: list[str] = field(default_factory=list)
    _faults: deque[Fault] = field(default_factory=deque)
    #: (channel ID, ts) of every message posted and not deleted: what threads and updates may name.
    _issued: set[tuple[str, str]] = field(default_factory=set)
    #: Per rate key, when the next message is due at the enforced pace (GCRA), monotonic seconds.
    _due: dict[str, float] = field(default_factory=dict)

    def fail_next(self, fault: Fault, times: int = 1) -> None:
        """The next `times` requests misbehave as `fault` says, then service resumes."""
        self._faults.extend([fault] * times)

    def clear_faults(self) -> None:
        """Forget faults not used up yet: service is normal from the next request."""
        self._faults.clear()

    def rate_limit(self, times: int = 1, retry_after: str = "1") -> None:
        """HTTP 429 with Retry-After, as `chat.postMessage` does at over ~1 message/s/channel."""
        self.fail_next(Fault("ratelimited", retry_after=retry_after), times)

    def server_error(self, times: int = 1, status: int = 500) -> None:
        """An HTML error page with a 5xx status, as a proxy in front of Slack would send."""
        self.fail_next(Fault("server_error", status=status), times)

    def garbage(self, times: int = 1) -> None:
        """HTTP 200 whose body is not the JSON it claims to be."""
        self.fail_next(Fault("garbage"), times)

    def api_error(self, error: str, times: int = 1) -> None:
        """`{"ok": false, "error": error}` (API) or the matching status and code (webhook)."""
        self.fail_next(Fault("api_error", error=error), times)

    def spoil_next(self, answer: str | None) -> None:
        """For parametrized failures: the next request gets "garbage" (see `garbage`), or the
        API error code `answer`; None leaves it alone."""
        if answer == "garbage":
            self.garbage()
        elif answer is not None:
            self.api_error(answer)

    def slow(self, delay: float, times: int = 1) -> None:
        """Answer normally, but only after `delay` seconds."""
        self.fail_next(Fault("slow", delay=delay), times)

    def delete_message(self, channel_id: str, ts: str) -> None:
        """As a user deleting it would: replies to it and updates of it are refused from now on."""
        self._issued.discard((channel_id, ts))

    def app(self) -> web.Application:
        """The aiohttp application: `/api/{method}` and the incoming-webhook path."""
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/services/{rest:.*}", self._webhook)
        return app

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        """Serve on 127.0.0.1 on a free port; yield the base URL (no trailing slash)."""
        async with serve_app(self.app()) as base_url:
            yield base_url

    async def _fault_response(self, webhook: bool) -> web.Response | None:
        if not self._faults:
            return None
        fault = self._faults.popleft()
        if fault.kind == "slow":
            await asyncio.sleep(fault.delay)
            return None
        if fault.kind == "ratelimited":
            headers = {"Retry-After": fault.retry_after}
            if webhook:
                return web.Response(status=429, text="rate_limited", headers=headers)
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429, headers=headers
            )
        if fault.kind == "server_error":
            return web.Response(
                status=fault.status, text="<html>Internal error</html>", content_type="text/html"
            )
        if fault.kind == "garbage":
            return web.Response(text="<html>not json", content_type="application/json")
        if webhook:
            return web.Response(status=WEBHOOK_ERROR_STATUS.get(fault.error, 400), text=fault.error)
        return _api_error(fault.error)

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        self.calls.append(method)
        faulty = await self._fault_response(webhook=False)
        if faulty is not None:
            return faulty
        args = await _api_arguments(request)
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else args.get("token")
        if not token:
            return _api_error("not_authed")
        if token != self.token:
            return _api_error("invalid_auth")
        if method == "auth.test":
            return web.json_response(
                {
                    "ok": True,
                    "url": "https://acme.slack.com/",
                    "team": self.team,
                    "user": self.bot,
                    "team_id": "T000",
                    "user_id": "U000",
                    "bot_id": "B000",
                }
            )
        if method == "chat.postMessage":
            return self._post_message(args)
        if method == "chat.update":
            return self._update_message(args)
        if method == "conversations.info":
            return self._conversation_info(args)
        if method == "users.lookupByEmail":
            return self._lookup_by_email(args)
        return _api_error("unknown_method")

    def _post_message(self, args: dict[str, Any]) -> web.Response:
        if "chat:write" not in self.scopes:
            return _api_error("missing_scope")
        channel = str(args.get("channel", ""))
        channel_id = self._channel_id(channel)
        if channel_id is None:
            return _api_error("channel_not_found")
        too_fast = self._pace(channel_id)
        if too_fast is not None:
            return self._refuse_api("chat.postMessage", "ratelimited", retry_after=too_fast)
        blocks, format_error = _blocks_argument(args.get("blocks"))
        if format_error is not None:
            return self._refuse_api("chat.postMessage", format_error)
        if not args.get("text") and not blocks:
            return _api_error("no_text")
        thread_ts = str(args["thread_ts"]) if args.get("thread_ts") else None
        if thread_ts is not None and (channel_id, thread_ts) not in self._issued:
            return self._refuse_api("chat.postMessage", "thread_not_found")
        problems = block_kit_problems(blocks or [])
        if problems:
            return self._refuse_api("chat.postMessage", "invalid_blocks", problems)
        ts = f"1700000000.{self._next_ts:06d}"
        self._next_ts += 1
        self._issued.add((channel_id, ts))
        self.messages.append(
            PostedMessage(
                channel=channel,
                text=args.get("text"),
                blocks=blocks,
                thread_ts=thread_ts,
                reply_broadcast=args.get("reply_broadcast") in (True, "true", "1", 1),
                ts=ts,
                at=time.monotonic(),
            )
        )
        return web.json_response({"ok": True, "channel": channel_id, "ts": ts})

    def _pace(self, key: str) -> str | None:
        """None if a message to `key` may go now under `enforce_rate`, else its Retry-After.

        GCRA: each message books 1/rate s; up to `enforce_burst` may be booked ahead of now.
        """
        if self.enforce_rate is None:
            return None
        now, interval = time.monotonic(), 1 / self.enforce_rate
        due = max(self._due.get(key, now), now)
        ahead = due - now
        if ahead > (self.enforce_burst - 1) * interval + RATE_JITTER:
            return str(max(1, math.ceil(ahead - (self.enforce_burst - 1) * interval)))
        self._due[key] = due + interval
        return None

    def _refuse_api(
        self,
        call: str,
        error: str,
        problems: list[str] | None = None,
        *,
        retry_after: str | None = None,
    ) -> web.Response:
        self.refused.append(Refusal(call, error, tuple(problems or ())))
        body: dict[str, Any] = {"ok": False, "error": error}
        if problems:
            body["response_metadata"] = {"messages": [f"[ERROR] {p}" for p in problems]}
        if retry_after is not None:
            return web.json_response(body, status=429, headers={"Retry-After": retry_after})
        return web.json_response(body)

    def ts_of(self, message: PostedMessage) -> tuple[str, str]:
        """Where a posted message is: (channel ID, ts), as `chat.update` takes them."""
        channel_id = self._channel_id(message.channel or "")
        assert channel_id is not None and message.ts is not None
        return channel_id, message.ts

    def _update_message(self, args: dict[str, Any]) -> web.Response:
        if "chat:write" not in self.scopes:
            return _api_error("missing_scope")
        channel, ts = str(args.get("channel", "")), str(args.get("ts", ""))
        if channel not in self.channels:
            return _api_error("channel_not_found")
        if (channel, ts) not in self._issued:
            return self._refuse_api("chat.update", "message_not_found")
        blocks, format_error = _blocks_argument(args.get("blocks"))
        if format_error is not None:
            return self._refuse_api("chat.update", format_error)
        if not args.get("text") and not blocks:
            return _api_error("no_text")
        problems = block_kit_problems(blocks or [])
        if problems:
            return self._refuse_api("chat.update", "invalid_blocks", problems)
        self.updates.append(UpdatedMessage(channel, ts, args.get("text"), blocks, time.monotonic()))
        return web.json_response({"ok": True, "channel": channel, "ts": ts})

    def _lookup_by_email(self, args: dict[str, Any]) -> web.Response:
        email = str(args.get("email", ""))
        self.lookups.append(email)
        if "users:read.email" not in self.scopes:
            return _api_error("missing_scope", needed="users:read.email")
        user_id = self.users.get(email)
        if user_id is None:
            return _api_error("users_not_found")
        return web.json_response({"ok": True, "user": {"id": user_id, "profile": {"email": email}}})

    def _conversation_info(self, args: dict[str, Any]) -> web.Response:
        if not self.scopes & {"channels:read", "groups:read"}:
            return _api_error(
                "missing_scope", needed="channels:read", provided=",".join(sorted(self.scopes))
            )
        channel = str(args.get("channel", ""))
        if channel not in self.channels:
            return _api_error("channel_not_found")
        return web.json_response(
            {
                "ok": True,
                "channel": {
                    "id": channel,
                    "name": self.channels[channel],
                    "is_channel": True,
                    "is_member": self.is_member,
                },
            }
        )

    def _channel_id(self, channel: str) -> str | None:
        if channel in self.channels:
            return channel
        name = channel.removeprefix("#")
        return next((cid for cid, known in self.channels.items() if known == name), None)

    async def _webhook(self, request: web.Request) -> web.Response:
        self.calls.append("webhook")
        faulty = await self._fault_response(webhook=True)
        if faulty is not None:
            return faulty
        if request.path != self.WEBHOOK_PATH:
            return web.Response(status=404, text="no_service")
        try:
            body = json.loads(await request.read())
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        if not isinstance(body, dict):
            return web.Response(status=400, text="invalid_payload")
        too_fast = self._pace("webhook")
        if too_fast is not None:
            self.refused.append(Refusal("webhook", "rate_limited"))
            return web.Response(status=429, text="rate_limited", headers={"Retry-After": too_fast})
        blocks, format_error = _blocks_argument(body.get("blocks"))
        if format_error is not None:
            self.refused.append(Refusal("webhook", "invalid_blocks"))
            return web.Response(status=400, text="invalid_blocks")
        if not body.get("text") and not blocks:
            return web.Response(status=400, text="no_text")
        problems = block_kit_problems(blocks or [])
        if problems:
            self.refused.append(Refusal("webhook", "invalid_blocks", tuple(problems)))
            return web.Response(status=400, text="invalid_blocks")
        self.messages.append(PostedMessage(None, body.get("text"), blocks, at=time.monotonic()))
        return web.Response(text="ok")


def _api_error(error: str, **extra: str) -> web.Response:
    return web.json_response({"ok": False, "error": error, **extra})


async def _api_arguments(request: web.Request) -> dict[str, Any]:
    """Slack takes arguments as a query string, a form, or a JSON body."""
    args: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        body = await request.json()
        if isinstance(body, dict):
            args.update(body)
    elif request.can_read_body:
        args.update(await request.post())
    return args


@asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[str]:
    """Run `app` on 127.0.0.1, port 0; yield `http://127.0.0.1:<port>`; stop without waiting."""
    runner = web.AppRunner(app, shutdown_timeout=0.1, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()
