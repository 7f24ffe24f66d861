"""A recording webhook receiver: keeps each request's exact body bytes and headers."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from tests.fakes.slack import serve_app


@dataclass(frozen=True)
class Reply:
    """How the receiver answers one request."""

    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as it arrived; header names lower-cased."""

    method: str
    path_qs: str
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    """Answers 200 unless told otherwise with `reply(...)`; serve it with `async with .serve()`.

    The served URL carries a token in its query, as real webhook URLs often do.
    """

    PATH = "/hooks/datafold?token=s3cr3t-url-token"

    requests: list[ReceivedRequest] = field(default_factory=list)
    _replies: deque[Reply] = field(default_factory=deque)

    def reply(self, *replies: Reply | int) -> None:
        """Answer the next requests with these replies (a bare int is a status), in order."""
        self._replies.extend(Reply(r) if isinstance(r, int) else r for r in replies)

    @property
    def deliveries(self) -> list[ReceivedRequest]:
        """The POSTs, without `check`'s HEAD requests."""
        return [r for r in self.requests if r.method == "POST"]

    def app(self) -> web.Application:
        """Any method on any path is recorded and answered."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        """Serve on 127.0.0.1 on a free port; yield the full webhook URL."""
        async with serve_app(self.app()) as base_url:
            yield base_url + self.PATH

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(
            ReceivedRequest(
                method=request.method,
                path_qs=request.path_qs,
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
            )
        )
        reply = self._replies.popleft() if self._replies else Reply()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return web.Response(status=reply.status, headers=reply.headers)
