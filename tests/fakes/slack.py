"""A local stand-in for Slack's Web API and incoming webhooks, with programmable faults.

Behaves as Slack does: API errors are HTTP 200 with `{"ok": false, "error": ...}`, rate limits are
HTTP 429 with Retry-After, incoming webhooks answer plain-text codes (`ok`, `no_service`, ...).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

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


@dataclass
class FakeSlack:
    """The Slack endpoints the notifier uses. Serve it with `async with fake.serve() as base_url`.

    API base URL: `base_url + "/api/"`; incoming webhook: `base_url + FakeSlack.WEBHOOK_PATH`.
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
    _next_ts: int = 1
    #: Every request, in order: API method name or "webhook".
    calls: list[str] = field(default_factory=list)
    _faults: deque[Fault] = field(default_factory=deque)

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

    def slow(self, delay: float, times: int = 1) -> None:
        """Answer normally, but only after `delay` seconds."""
        self.fail_next(Fault("slow", delay=delay), times)

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
        blocks = args.get("blocks")
        if isinstance(blocks, str):  # form-encoded callers send blocks as a JSON string
            blocks = json.loads(blocks)
        if not args.get("text") and not blocks:
            return _api_error("no_text")
        thread_ts = args.get("thread_ts")
        ts = f"1700000000.{self._next_ts:06d}"
        self._next_ts += 1
        self.messages.append(
            PostedMessage(
                channel=channel,
                text=args.get("text"),
                blocks=blocks,
                thread_ts=str(thread_ts) if thread_ts else None,
                reply_broadcast=args.get("reply_broadcast") in (True, "true", "1", 1),
                ts=ts,
                at=time.monotonic(),
            )
        )
        return web.json_response({"ok": True, "channel": channel_id, "ts": ts})

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
        posted = {self.ts_of(m) for m in self.messages if m.ts is not None}
        if (channel, ts) not in posted:
            return _api_error("message_not_found")
        blocks = args.get("blocks")
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        if not args.get("text") and not blocks:
            return _api_error("no_text")
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
        if not body.get("text") and not body.get("blocks"):
            return web.Response(status=400, text="no_text")
        self.messages.append(
            PostedMessage(None, body.get("text"), body.get("blocks"), at=time.monotonic())
        )
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
