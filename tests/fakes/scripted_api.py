"""A Datafold API that answers from a script, for property tests that generate the answers.

One real aiohttp server on 127.0.0.1 lives in a background thread's event loop for a whole test
function; each generated example sets a new script, and the n-th request gets the n-th answer
(the last one repeats once the script runs out, like a server stuck on one page).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from aiohttp import web
from aiohttp.test_utils import TestServer

_T = TypeVar("_T")


@dataclass(frozen=True)
class Json:
    """A JSON body; `page_valid` says the generator built it to the published page schema."""

    body: Any
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    page_valid: bool = False


@dataclass(frozen=True)
class Sliced:
    """An honest-looking paginator over `runs`: slices by the `page` and `page_size` asked for.

    Successive `Sliced` answers over different `runs` are a listing that grows, shrinks or
    reorders between requests. `total_pages` None means the true number of pages.
    """

    runs: tuple[Mapping[str, Any], ...]
    count: int
    total_pages: int | None = None


@dataclass(frozen=True)
class Bulk:
    """A huge page, built when served: `size` runs with IDs `first_id + i % distinct`."""

    size: int
    first_id: int
    distinct: int
    monitor_id: int
    foreign_every: int = 0
    total_pages: int = 1


@dataclass(frozen=True)
class Raw:
    """Bytes as they are: not JSON, truncated JSON, nesting deep enough to exhaust a parser."""

    body: bytes
    status: int = 200
    content_type: str = "application/json"


@dataclass(frozen=True)
class Truncated:
    """Headers promise more body than is sent before the connection closes."""


@dataclass(frozen=True)
class Slow:
    """Answers `then`, but only after `delay` seconds (longer than the client's timeout)."""

    delay: float
    then: Json


Answer = Json | Sliced | Bulk | Raw | Truncated | Slow
FOREIGN_MONITOR_ID = -1


@dataclass(frozen=True)
class Received:
    """One request as the server saw it."""

    path: str
    query: Mapping[str, str]
    authorization: str | None


@dataclass(frozen=True)
class Reply:
    """What the server sent for one request: `kind` is "late" when it came after the client's
    timeout (`Slow`), "cut" when the connection closed mid-body (`Truncated`)."""

    status: int
    body: bytes
    kind: Literal["whole", "late", "cut"] = "whole"
    retry_after: str | None = None


@dataclass
class ScriptedApi:
    """Serves `script` in request order and records each request and each reply.

    `served_runs` holds every run object of every 2xx JSON body, as sent, so a test can check
    that the client returns nothing it was not given.
    """

    script: list[Answer] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    served_runs: list[Any] = field(default_factory=list)
    slow_served: int = 0

    def play(self, answers: Sequence[Answer]) -> None:
        """Start a new example: answer with `answers`, forget earlier requests."""
        if not answers:
            raise ValueError("a script needs at least one answer")
        self.script = list(answers)
        self.received = []
        self.replies = []
        self.served_runs = []
        self.slow_served = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        index = len(self.received)
        self.received.append(
            Received(request.path, dict(request.query), request.headers.get("Authorization"))
        )
        answer = self.script[min(index, len(self.script) - 1)]
        # Each reply is recorded before any await, so `replies` lines up with `received`.
        if isinstance(answer, Slow):
            self.slow_served += 1
            response = self._json(answer.then, kind="late")
            await asyncio.sleep(answer.delay)
            return response
        if isinstance(answer, Json):
            return self._json(answer)
        if isinstance(answer, Sliced):
            return self._json(Json(self._slice(answer, request)))
        if isinstance(answer, Bulk):
            return self._json(Json(_bulk_page(answer)))
        if isinstance(answer, Raw):
            self.replies.append(Reply(answer.status, answer.body))
            return web.Response(
                body=answer.body, status=answer.status, content_type=answer.content_type
            )
        self.replies.append(Reply(200, _TRUNCATED_BODY, kind="cut"))
        return await _truncated(request)

    def _json(self, answer: Json, kind: Literal["whole", "late"] = "whole") -> web.Response:
        if 200 <= answer.status < 300 and isinstance(answer.body, dict):
            runs = answer.body.get("runs")
            if isinstance(runs, list):
                self.served_runs.extend(runs)
        text = json.dumps(answer.body)
        retry_after = next(
            (value for key, value in answer.headers.items() if key.lower() == "retry-after"), None
        )
        self.replies.append(Reply(answer.status, text.encode(), kind=kind, retry_after=retry_after))
        return web.Response(
            text=text,
            status=answer.status,
            headers=dict(answer.headers),
            content_type="application/json",
        )

    @staticmethod
    def _slice(answer: Sliced, request: web.Request) -> dict[str, Any]:
        number = int(request.query.get("page", "1"))
        size = int(request.query.get("page_size", "10"))
        start = max(number - 1, 0) * size
        chunk = [dict(run) for run in answer.runs[start : start + size]]
        honest = -(-len(answer.runs) // size)
        total = honest if answer.total_pages is None else answer.total_pages
        return {
            "count": answer.count,
            "page": number,
            "page_size": size,
            "total_pages": total,
            "runs": chunk,
        }


def _bulk_page(answer: Bulk) -> dict[str, Any]:
    runs = []
    for i in range(answer.size):
        foreign = answer.foreign_every > 0 and i % answer.foreign_every == 0
        runs.append(
            {
                "run_id": answer.first_id + i % answer.distinct,
                "monitor_id": FOREIGN_MONITOR_ID if foreign else answer.monitor_id,
                "state": ("ok", "alert", "error", "checking", None)[i % 5],
                "started_at": f"2024-05-01T12:{i % 60:02d}:00Z",
                "diff_id": i,
            }
        )
    return {
        "count": answer.size,
        "page": 1,
        "page_size": answer.size,
        "total_pages": answer.total_pages,
        "runs": runs,
    }


_TRUNCATED_BODY = b'{"count": 1, "runs": ['


async def _truncated(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = 1000
    await response.prepare(request)
    await response.write(_TRUNCATED_BODY)
    if request.transport is not None:
        request.transport.close()
    return response


class BackgroundLoop:
    """An event loop in a daemon thread, so sync hypothesis tests can drive async code.

    Servers and sessions started here outlive single examples; `close` shuts the loop down.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, _T], timeout: float) -> _T:
        """Run `coroutine` on the loop; cancel it and raise TimeoutError after `timeout` s."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def close(self) -> None:
        self.run(self.loop.shutdown_asyncgens(), timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()


async def start_server(api: ScriptedApi) -> tuple[TestServer, str]:
    """Serve `api` on 127.0.0.1, port 0; returns the server (to close) and its base URL."""
    server = TestServer(api.app(), host="127.0.0.1", port=0)
    await server.start_server()
    return server, str(server.make_url("")).rstrip("/")
