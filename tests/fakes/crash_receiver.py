"""A webhook receiver for crash tests: it tells accepted deliveries from refused ones.

`WebhookReceiver` records every request, refused or not; counting deliveries across kills needs
to know which ones the receiver accepted (planned a 2xx answer for), and which are still stuck in a
slow answer when the sender dies.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from tests.fakes.slack import serve_app
from tests.fakes.webhook import Reply


@dataclass
class CrashReceiver:
    """Answers 200 unless told otherwise; `accepted` lists the `webhook-id` of each 2xx request.

    A request counts as accepted when it arrives with a 2xx answer planned, even if the sender is
    killed before the (slow) answer reaches it: a real receiver would have acted on it.
    """

    PATH = "/hooks/crash?token=s3cr3t-url-token"

    accepted: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    #: Requests that arrived and have not been answered yet (stuck in a slow reply).
    in_flight: int = 0
    _replies: deque[Reply] = field(default_factory=deque)

    def reply(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order; then 200 at once again."""
        self._replies.extend(replies)

    def clear(self) -> None:
        """Forget planned replies not used up yet."""
        self._replies.clear()

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        """Serve on 127.0.0.1 on a free port; yield the full webhook URL."""
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        async with serve_app(app) as base_url:
            yield base_url + self.PATH

    async def _handle(self, request: web.Request) -> web.Response:
        await request.read()
        webhook_id = request.headers.get("webhook-id", "")
        reply = self._replies.popleft() if self._replies else Reply()
        (self.accepted if 200 <= reply.status < 300 else self.refused).append(webhook_id)
        self.in_flight += 1
        try:
            if reply.delay:
                await asyncio.sleep(reply.delay)
        finally:
            self.in_flight -= 1
        return web.Response(status=reply.status)
