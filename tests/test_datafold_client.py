"""The Datafold adapter against real HTTP servers on 127.0.0.1, one small handler per behaviour."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDictProxy

from notifier import __version__
from notifier.domain.values import retry_after_seconds
from notifier.fetch.datafold import DatafoldClient
from notifier.fetch.source import (
    ApiKeyRefused,
    ApiUnavailable,
    DatafoldError,
    MalformedAnswer,
    NotFound,
    RequestRejected,
)

API_KEY = "dfk_live_s3cr3t_0123456789abcdef"
SINCE = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    """One request as the server received it."""

    path: str
    query: dict[str, str]
    headers: CIMultiDictProxy[str]
    at: float


@dataclass
class FakeDatafold:
    """A real aiohttp server answering every path with one handler; records what it receives."""

    handler: Handler
    requests: list[Seen] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    server: TestServer | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.server = TestServer(app, host="127.0.0.1", port=0)
        await self.server.start_server()
        return str(self.server.make_url("")).rstrip("/")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        loop_time = asyncio.get_running_loop().time()
        self.requests.append(Seen(request.path, dict(request.query), request.headers, loop_time))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self.handler(request)
        finally:
            self.in_flight -= 1

    def paths(self) -> list[str]:
        return [seen.path for seen in self.requests]


Serve = Callable[[Handler], Awaitable[tuple[FakeDatafold, str]]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    fakes: list[FakeDatafold] = []

    async def start(handler: Handler) -> tuple[FakeDatafold, str]:
        fake = FakeDatafold(handler)
        fakes.append(fake)
        return fake, await fake.start()

    yield start
    for fake in fakes:
        assert fake.server is not None
        await fake.server.close()


@pytest.fixture
def make_client(session: aiohttp.ClientSession) -> Callable[..., DatafoldClient]:
    def make(host: str, **options: Any) -> DatafoldClient:
        settings: dict[str, Any] = {
            "max_attempts": 3,
            "backoff_initial": 0.01,
            "backoff_max": 0.02,
            "request_timeout": 2.0,
        }
        settings.update(options)
        return DatafoldClient(session, host, API_KEY, **settings)

    return make


def run(run_id: int, monitor_id: int = 7, state: str | None = "ok", **extra: Any) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "monitor_id": monitor_id,
        "state": state,
        "started_at": "2024-05-01T12:30:00Z",
        "diff_id": 100 + run_id,
        **extra,
    }


def page(runs: list[dict[str, Any]], number: int, total_pages: int, count: int = 0) -> Any:
    return {
        "count": count or len(runs),
        "page": number,
        "page_size": max(len(runs), 1),
        "total_pages": total_pages,
        "runs": runs,
    }


def fixed_pages(pages: list[list[dict[str, Any]]], total_pages: int | None = None) -> Handler:
    """Serves page N of `pages` (empty past the end), claiming `total_pages` (default: honest)."""

    async def handler(request: web.Request) -> web.Response:
        number = int(request.query["page"])
        runs = pages[number - 1] if number <= len(pages) else []
        claimed = len(pages) if total_pages is None else total_pages
        return web.json_response(page(runs, number, claimed))

    return handler


def sliced(runs: list[dict[str, Any]]) -> Handler:
    """An honest paginator: slices `runs` by the page and page_size the client asked for."""

    async def handler(request: web.Request) -> web.Response:
        number, size = int(request.query["page"]), int(request.query["page_size"])
        chunk = runs[(number - 1) * size : number * size]
        total_pages = -(-len(runs) // size)
        body = page(chunk, number, total_pages, count=len(runs))
        return web.json_response(body)

    return handler


def status(code: int, body: Any = None, headers: dict[str, str] | None = None) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        if body is None:
            return web.Response(status=code, headers=headers)
        return web.json_response(body, status=code, headers=headers)

    return handler


def sequence(*handlers: Handler) -> Handler:
    """Answers the n-th request with the n-th handler, then repeats the last one."""
    calls = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        return await handlers[min(calls, len(handlers)) - 1](request)

    return handler


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize(
    ("since", "until", "start_time", "end_time"),
    [
        (SINCE, None, "2024-05-01T12:00:00Z", None),
        (
            datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))),
            datetime(2024, 5, 2, 0, 0, 0, 250000, tzinfo=UTC),
            "2024-05-01T12:00:00Z",
            "2024-05-02T00:00:00.250000Z",
        ),
        (datetime(2024, 5, 1, 12, 0), None, "2024-05-01T12:00:00Z", None),  # naive is UTC
    ],
)
async def test_request_carries_key_headers_and_window(
    serve: Serve,
    make_client: Callable[..., DatafoldClient],
    since: datetime,
    until: datetime | None,
    start_time: str,
    end_time: str | None,
) -> None:
    fake, url = await serve(fixed_pages([[run(1)]]))
    client = make_client(url + "/", page_size=25)

    runs = await client.list_runs(7, since, until)

    assert [r.run_id for r in runs] == [1]
    (seen,) = fake.requests
    assert seen.path == "/api/v1/monitors/7/runs"
    assert seen.headers["Authorization"] == f"Key {API_KEY}"
    assert seen.headers["Accept"] == "application/json"
    assert seen.headers["User-Agent"] == f"datafold-notifier/{__version__}"
    assert seen.query["start_time"] == start_time
    assert seen.query.get("end_time") == end_time
    assert (seen.query["page"], seen.query["page_size"]) == ("1", "25")
    assert client.requests_made == 1


async def test_follows_pages_to_the_end_in_any_order(
    serve: Serve, make_client: Callable[..., DatafoldClient]
) -> None:
    ids = [5, 2, 9, 1, 7, 3, 8]
    fake, url = await serve(sliced([run(i) for i in ids]))

    runs = await make_client(url, page_size=3).list_runs(7, SINCE)

    assert sorted(r.run_id for r in runs) == sorted(ids)
    assert [seen.query["page"] for seen in fake.requests] == ["1", "2", "3"]


async def test_stops_at_an_empty_page_even_if_more_are_claimed(
    serve: Serve, make_client: Callable[..., DatafoldClient]
) -> None:
    fake, url = await serve(fixed_pages([[run(1)], [run(2)]], total_pages=40))

    runs = await make_client(url).list_runs(7, SINCE)

    assert {r.run_id for r in runs} == {1, 2}
    assert len(fake.requests) == 3


async def test_duplicates_across_pages_keep_the_later_copy(
    serve: Serve, make_client: Callable[..., DatafoldClient]
) -> None:
    pages = [[run(1, state="checking"), run(2)], [run(3), run(1, state="alert")]]
    _, url = await serve(fixed_pages(pages))

    runs = await make_client(url).list_runs(7, SINCE)

    by_id = {r.run_id: r for r in runs}
    assert len(runs) == 3
    assert by_id[1].state == "alert"


async def test_runs_of_other_monitors_are_dropped_with_a_warning(
    serve: Serve, make_client: Callable[..., DatafoldClient]
) -> None:
    _, url = await serve(fixed_pages([[run(1), run(2, monitor_id=8), run(3)]]))

    with structlog.testing.capture_logs() as logs:
        runs = await make_client(url).list_runs(7, SINCE)

    assert [r.run_id for r in runs] == [1, 3]
    dropped = [e for e in logs if e["event"] == "datafold.foreign_run_dropped"]
    assert dropped == [
        {
            "event": "datafold.foreign_run_dropped",
            "log_level": "warning",
            "monitor_id": 7,
            "run_id": 2,
            "run_monitor_id": 8,
        }
    ]


async def test_parsing_tolerates_nulls_unknown_states_and_extra_fields(
    serve: Serve, make_client: Callable[..., DatafoldClient]
) -> None:
    runs: list[dict[str, Any]] = [
        {"run_id": 1, "monitor_id": 7, "state": None, "started_at": None, "diff_id": None},
        {"run_id": 2, "monitor_id": 7},
        run(3, state="queued", surprise={"nested": True}),
        run(4, state="exploded", started_at="not a date"),
    ]
    body = {**page(runs, 1, 1), "next_cursor": "abc", "extra": [1, 2]}
    _, url = await serve(status(200, body))

    parsed = {r.run_id: r for r in await make_client(url).list_runs(7, SINCE)}

    assert parsed[1].state is None and parsed[1].started_at is None and parsed[1].diff_id is None
    assert parsed[2].state is None
    assert parsed[3].state == "queued"
    assert parsed[3].started_at == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    assert parsed[4].state == "exploded" and parsed[4].started_at is None


LONG_MARKER = "BODY-MARKER-" * 50


async def test_a_run_that_cannot_be_read_costs_only_itself(
    serve: Serve, make_client: Callable[..., DatafoldClient]
) -> None:
    """Runs are read one by one: an alert beside malformed runs still comes through; a malformed
    run with a readable run_id is listed without a state (so it is tracked as unfinished and
    looked at again); one without is skipped; each is logged once, not every listing."""
    runs: list[Any] = [
        run(1, state="alert"),
        run(2) | {"run_id": "abc", "note": LONG_MARKER},
        run(3) | {"state": {"not": "a state"}},
        run(4) | {"diff_id": "x" * 10_000},
        run(5) | {"state": "s" * 1000},
        "not even an object",
        run(6) | {"monitor_id": 8, "state": ["x"]},
        run(7, state="error") | {"started_at": ["not", "a", "time"], "diff_id": 1.5},
        run(8) | {"run_id": "--5", "state": 1},
        run(9) | {"run_id": "²", "state": 1},
    ]
    _, url = await serve(status(200, page(runs, 1, 1)))
    client = make_client(url)

    with structlog.testing.capture_logs() as logs:
        first = {r.run_id: r for r in await client.list_runs(7, SINCE)}
        second = {r.run_id: r for r in await client.list_runs(7, SINCE)}

    assert first == second
    assert first[1].state == "alert"
    assert {run_id: r.state for run_id, r in first.items()} == {
        1: "alert",
        3: None,
        4: None,
        5: None,
        7: None,
    }
    unreadable = [e for e in logs if e["event"] == "datafold.run_unreadable"]
    assert len(unreadable) == 9  # once each, though listed twice
    assert {e["run_id"] for e in unreadable} == {None, 3, 4, 5, 6, 7}
    assert all(LONG_MARKER not in str(e) and "x" * 100 not in str(e) for e in unreadable)


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        ("text/html", f"<html>{LONG_MARKER}</html>", "monitor 7: answer is not JSON"),
        ("application/json", '{"count": 1, "runs": [', "monitor 7: answer is not JSON"),
        ("application/json", "", "monitor 7: answer is not JSON"),
        (
            "application/json",
            json.dumps({**page([run(1)], 1, 1), "runs": {"0": run(1)}}),
            "monitor 7: answer does not match the schema: runs: Input should be a valid list",
        ),
        (
            "application/json",
            json.dumps({"count": 1, "page": 1, "page_size": 1, "runs": []}),
            "monitor 7: answer does not match the schema: total_pages: Field required",
        ),
        (
            "application/json",
            json.dumps([run(1)]),
            "monitor 7: answer does not match the schema: "
            "Input should be a valid dictionary or instance of RunPage",
        ),
        (
            "application/json",
            json.dumps({"runs": [{"monitor_id": 7}]}),
            "monitor 7: answer does not match the schema: count: Field required (and 3 more)",
        ),
    ],
)
async def test_unusable_answers_are_malformed_one_line_and_not_retried(
    serve: Serve,
    make_client: Callable[..., DatafoldClient],
    content_type: str,
    body: str,
    message: str,
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=body, content_type=content_type)

    fake, url = await serve(handler)

    with pytest.raises(MalformedAnswer) as caught:
        await make_client(url).list_runs(7, SINCE)

    assert str(caught.value) == message
    assert caught.value.kind == "malformed"
    assert len(fake.requests) == 1


@pytest.mark.parametrize("total_pages", [10**9, 6])
async def test_pages_that_never_end_are_bounded_by_max_pages(
    serve: Serve, make_client: Callable[..., DatafoldClient], total_pages: int
) -> None:
    async def same_page_forever(request: web.Request) -> web.Response:
        return web.json_response(page([run(1), run(2)], 1, total_pages, count=10**12))

    fake, url = await serve(same_page_forever)

    with pytest.raises(MalformedAnswer, match=r"^monitor 7: more than 5 pages$"):
        await make_client(url, max_pages=5).list_runs(7, SINCE)
    assert len(fake.requests) == 5


@pytest.mark.parametrize("total_pages", [-1, -(10**9), 0])
async def test_nonsense_total_pages_ends_after_the_page(
    serve: Serve, make_client: Callable[..., DatafoldClient], total_pages: int
) -> None:
    fake, url = await serve(fixed_pages([[run(1)], [run(2)]], total_pages=total_pages))

    runs = await make_client(url).list_runs(7, SINCE)

    assert [r.run_id for r in runs] == [1]
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("retry_after", "max_retry_after", "low", "high"),
    [
        ("0.2", 30.0, 0.19, 0.6),
        ("0.2", 0.2, 0.19, 0.6),  # at the cap: still waited
    ],
)
async def test_429_waits_for_retry_after_then_succeeds(
    serve: Serve,
    make_client: Callable[..., DatafoldClient],
    retry_after: str,
    max_retry_after: float,
    low: float,
    high: float,
) -> None:
    handler = sequence(
        status(429, {"detail": "slow down"}, {"Retry-After": retry_after}),
        fixed_pages([[run(1)]]),
    )
    fake, url = await serve(handler)
    client = make_client(url, max_retry_after=max_retry_after)

    runs = await client.list_runs(7, SINCE)

    assert [r.run_id for r in runs] == [1]
    first, second = fake.requests
    assert low <= second.at - first.at < high
    assert client.requests_made == 2


@pytest.mark.parametrize("retry_after", ["3600", "Fri, 31 Dec 2100 23:59:59 GMT"])
async def test_a_wait_longer_than_the_cap_fails_the_request_at_once(
    serve: Serve, make_client: Callable[..., DatafoldClient], retry_after: str
) -> None:
    """Waiting out a Retry-After past NOTIFIER_MAX_RETRY_AFTER_SECONDS would hold up the
    cycle: the monitor fails now, in one line naming the limit, with no second request."""
    handler = status(429, {"detail": "slow down"}, {"Retry-After": retry_after})
    fake, url = await serve(handler)
    client = make_client(url, max_retry_after=5.0)
    started = time.monotonic()

    with pytest.raises(ApiUnavailable) as caught:
        await client.list_runs(7, SINCE)

    assert time.monotonic() - started < 2.0
    assert len(fake.requests) == 1
    message = str(caught.value)
    assert "\n" not in message
    assert "asked to wait" in message and "NOTIFIER_MAX_RETRY_AFTER_SECONDS" in message


@pytest.fixture
def debug_logging() -> Iterator[None]:
    """Per-request debug events are only built when the adapter's logger is at DEBUG."""
    logger = logging.getLogger("notifier.fetch.datafold")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    yield
    logger.setLevel(level)


@pytest.mark.usefixtures("debug_logging")
async def test_500_is_retried_and_logged(
    serve: Serve, make_client: Callable[..., DatafoldClient]
) -> None:
    fake, url = await serve(sequence(status(500), fixed_pages([[run(1)]])))

    with structlog.testing.capture_logs() as logs:
        runs = await make_client(url).list_runs(7, SINCE)

    assert [r.run_id for r in runs] == [1]
    assert len(fake.requests) == 2
    requests = [e for e in logs if e["event"] == "datafold.request"]
    assert [(e["status"], e["attempt"], e["path"]) for e in requests] == [
        (500, 1, "/api/v1/monitors/7/runs"),
        (200, 2, "/api/v1/monitors/7/runs"),
    ]
    assert all(e["log_level"] == "debug" and e["monitor_id"] == 7 for e in requests)
    (retry,) = [e for e in logs if e["event"] == "datafold.retry"]
    assert retry["log_level"] == "warning"
    assert retry["reason"] == "HTTP 500"
    assert 0 <= retry["wait"] <= 0.02


@pytest.mark.parametrize(("code", "max_attempts"), [(503, 4), (503, 1), (429, 3), (502, 2)])
async def test_failing_forever_is_unavailable_after_exactly_max_attempts(
    serve: Serve, make_client: Callable[..., DatafoldClient], code: int, max_attempts: int
) -> None:
    fake, url = await serve(status(code))
    client = make_client(url, max_attempts=max_attempts)

    with pytest.raises(ApiUnavailable) as caught:
        await client.get_monitor(7)

    host = url.removeprefix("http://")
    assert str(caught.value) == (
        f"monitor 7: Datafold at {host} unavailable (GET /api/v1/monitors/7): "
        f"HTTP {code} after {max_attempts} attempts"
    )
    assert len(fake.requests) == max_attempts == client.requests_made


async def test_timeouts_are_retried_then_unavailable(
    serve: Serve, make_client: Callable[..., DatafoldClient]
) -> None:
    async def too_slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response(page([], 1, 1))

    fake, url = await serve(too_slow)

    with pytest.raises(ApiUnavailable, match=r"timed out after 0\.1s after 2 attempts$"):
        await make_client(url, request_timeout=0.1, max_attempts=2).list_runs(7, SINCE)
    assert len(fake.requests) == 2


async def test_connection_refused_is_unavailable(
    make_client: Callable[..., DatafoldClient],
) -> None:
    port = free_port()
    client = make_client(f"http://127.0.0.1:{port}")

    with pytest.raises(ApiUnavailable) as caught:
        await client.list_runs(7, SINCE)

    assert str(caught.value) == (
        f"monitor 7: Datafold at 127.0.0.1:{port} unavailable (GET /api/v1/monitors/7/runs): "
        "ClientConnectorError after 3 attempts"
    )
    assert client.requests_made == 3


@pytest.mark.parametrize("code", [401, 403])
async def test_refused_key_is_not_retried(
    serve: Serve, make_client: Callable[..., DatafoldClient], code: int
) -> None:
    fake, url = await serve(status(code, {"detail": "Invalid API key"}))

    with pytest.raises(ApiKeyRefused) as caught:
        await make_client(url).list_runs(7, SINCE)

    assert str(caught.value) == f"Datafold refused the API key (HTTP {code})"
    assert caught.value.kind == "refused"
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("call", "message", "run_id"),
    [
        (lambda c: c.list_runs(123, SINCE), "monitor 123 not found (HTTP 404)", None),
        (lambda c: c.get_monitor(123), "monitor 123 not found (HTTP 404)", None),
        (lambda c: c.get_run(123, 9), "run 9 of monitor 123 not found (HTTP 404)", 9),
    ],
)
async def test_404_names_what_was_not_found(
    serve: Serve,
    make_client: Callable[..., DatafoldClient],
    call: Callable[[DatafoldClient], Awaitable[object]],
    message: str,
    run_id: int | None,
) -> None:
    fake, url = await serve(status(404, {"detail": "Not Found"}))

    with pytest.raises(NotFound) as caught:
        await call(make_client(url))

    assert str(caught.value) == message
    assert (caught.value.monitor_id, caught.value.run_id) == (123, run_id)
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("code", "body", "message"),
    [
        (
            422,
            {
                "detail": [
                    {
                        "loc": ["query", "page_size"],
                        "msg": "Input should be less than or equal to 100",
                        "type": "less_than_equal",
                    }
                ]
            },
            "monitor 7: request rejected (HTTP 422): "
            "query.page_size: Input should be less than or equal to 100",
        ),
        (400, {"detail": "Bad\nrequest"}, "monitor 7: request rejected (HTTP 400): Bad request"),
        (
            422,
            {"detail": "x" * 500},
            "monitor 7: request rejected (HTTP 422): " + "x" * 199 + "…",
        ),
        (418, None, "monitor 7: request rejected (HTTP 418)"),
        (409, {"detail": {"odd": "shape"}}, "monitor 7: request rejected (HTTP 409)"),
    ],
)
async def test_other_4xx_are_rejected_with_the_detail(
    serve: Serve,
    make_client: Callable[..., DatafoldClient],
    code: int,
    body: Any,
    message: str,
) -> None:
    fake, url = await serve(status(code, body))

    with pytest.raises(RequestRejected) as caught:
        await make_client(url).list_runs(7, SINCE)

    assert str(caught.value) == message
    assert len(fake.requests) == 1


async def test_redirects_are_not_followed(
    serve: Serve, make_client: Callable[..., DatafoldClient]
) -> None:
    fake, url = await serve(status(301, headers={"Location": "http://127.0.0.1:9/elsewhere"}))

    with pytest.raises(RequestRejected, match=r"redirected \(HTTP 301\)"):
        await make_client(url).get_monitor(7)
    assert len(fake.requests) == 1


async def test_get_monitor_and_get_run_parse(
    serve: Serve, make_client: Callable[..., DatafoldClient]
) -> None:
    monitor = {
        "id": 7,
        "name": "orders diff",
        "monitor_type": "diff",
        "tags": None,
        "owner": "ana@example.com",
        "enabled": True,
        "created_at": "2024-01-01T00:00:00Z",
        "modified_at": "2024-01-01T00:00:00Z",
        "last_alert": None,
        "schedule": {"interval": {"every": "hour"}},
    }
    detail = run(9, state="error") | {"error": "warehouse timed out", "warnings": None}

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(detail if request.path.endswith("/runs/9") else monitor)

    fake, url = await serve(handler)
    client = make_client(url)

    info = await client.get_monitor(7)
    one = await client.get_run(7, 9)

    assert (info.id, info.title, info.monitor_type, info.tags) == (7, "orders diff", "diff", [])
    assert (one.run_id, one.state, one.error, one.warnings) == (
        9,
        "error",
        "warehouse timed out",
        [],
    )
    assert fake.paths() == ["/api/v1/monitors/7", "/api/v1/monitors/7/runs/9"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.get_monitor(8), "monitor 8: answer describes monitor 7"),
        (lambda c: c.get_run(7, 10), "run 10 of monitor 7: answer describes run 9 of monitor 7"),
    ],
)
async def test_answers_about_something_else_are_malformed(
    serve: Serve,
    make_client: Callable[..., DatafoldClient],
    call: Callable[[DatafoldClient], Awaitable[object]],
    message: str,
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(run(9) if "/runs/" in request.path else {"id": 7})

    _, url = await serve(handler)

    with pytest.raises(MalformedAnswer, match=f"^{message}$"):
        await call(make_client(url))


@pytest.mark.parametrize(("tags", "sent"), [(("prod", "finance"), "prod,finance"), ((), None)])
async def test_list_monitors_follows_pages_and_passes_tags(
    serve: Serve,
    make_client: Callable[..., DatafoldClient],
    tags: tuple[str, ...],
    sent: str | None,
) -> None:
    pages = [[{"id": 3, "name": "c"}, {"id": 1}], [{"id": 2, "tags": ["prod"]}, {"id": 3}]]

    async def handler(request: web.Request) -> web.Response:
        number = int(request.query["page"])
        monitors = pages[number - 1] if number <= len(pages) else []
        body = {"count": 3, "page": number, "page_size": 2, "total_pages": 2, "monitors": monitors}
        return web.json_response(body)

    fake, url = await serve(handler)

    monitors = await make_client(url, page_size=2).list_monitors(tags)

    assert sorted(m.id for m in monitors) == [1, 2, 3]
    assert {m.id: m.name for m in monitors}[3] is None  # the later copy wins
    assert [seen.query["page"] for seen in fake.requests] == ["1", "2"]
    assert {seen.path for seen in fake.requests} == {"/api/v1/monitors"}
    assert {seen.query.get("tags") for seen in fake.requests} == {sent}


async def test_concurrent_requests_never_exceed_max_concurrency(
    serve: Serve, make_client: Callable[..., DatafoldClient]
) -> None:
    async def slow_page(request: web.Request) -> web.Response:
        await asyncio.sleep(0.03)
        monitor_id = int(request.path.split("/")[4])
        number = int(request.query["page"])
        return web.json_response(page([run(number, monitor_id)], number, 2))

    fake, url = await serve(slow_page)
    client = make_client(url, max_concurrency=4)

    results = await asyncio.gather(*(client.list_runs(m, SINCE) for m in range(1, 31)))

    assert all(len(runs) == 2 for runs in results)
    assert len(fake.requests) == 60
    assert fake.max_in_flight == 4


async def test_request_rate_cap_spreads_requests(
    serve: Serve, make_client: Callable[..., DatafoldClient]
) -> None:
    async def one_page(request: web.Request) -> web.Response:
        monitor_id = int(request.path.split("/")[4])
        return web.json_response(page([run(1, monitor_id)], 1, 1))

    fake, url = await serve(one_page)
    client = make_client(url, max_concurrency=16, max_requests_per_second=20)
    started = time.monotonic()
    await asyncio.gather(*(client.list_runs(m, SINCE) for m in range(1, 31)))
    # a burst of 20, then 10 more at 20 per second: at least half a second
    assert time.monotonic() - started >= 0.45
    assert len(fake.requests) == 30


async def test_retry_waits_do_not_hold_a_concurrency_slot(
    serve: Serve, make_client: Callable[..., DatafoldClient]
) -> None:
    throttled = sequence(status(429, headers={"Retry-After": "0.3"}), fixed_pages([[run(1)]]))

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/api/v1/monitors/7/"):
            return await throttled(request)
        return web.json_response(page([run(1, monitor_id=8)], 1, 1))

    fake, url = await serve(handler)
    client = make_client(url, max_concurrency=1)

    first = asyncio.create_task(client.list_runs(7, SINCE))
    await asyncio.sleep(0.05)
    await client.list_runs(8, SINCE)
    await first

    assert fake.paths() == [
        "/api/v1/monitors/7/runs",
        "/api/v1/monitors/8/runs",
        "/api/v1/monitors/7/runs",
    ]


SECRET_SCENARIOS: list[tuple[str, Handler]] = [
    ("refused", status(401, {"detail": f"bad key {API_KEY}"})),
    ("not_found", status(404, {"detail": f"no monitor for {API_KEY}"})),
    ("rejected", status(422, {"detail": [{"loc": ["header"], "msg": f"key {API_KEY}"}]})),
    ("rejected", status(400, {"detail": f"Authorization: Key {API_KEY}"})),
    ("unavailable", status(503, {"detail": API_KEY})),
    ("malformed", status(200, {"runs": API_KEY})),
]


@pytest.mark.parametrize(("kind", "handler"), SECRET_SCENARIOS)
async def test_the_api_key_never_shows_in_errors_logs_or_repr(
    serve: Serve, make_client: Callable[..., DatafoldClient], kind: str, handler: Handler
) -> None:
    _, url = await serve(handler)
    client = make_client(url)

    with structlog.testing.capture_logs() as logs, pytest.raises(DatafoldError) as caught:
        await client.list_runs(7, SINCE)

    assert caught.value.kind == kind
    for text in (str(caught.value), repr(caught.value), repr(client), repr(logs)):
        assert API_KEY not in text
        assert "s3cr3t" not in text
    assert "\n" not in str(caught.value)


async def test_the_api_key_never_shows_when_the_host_is_unreachable(
    make_client: Callable[..., DatafoldClient],
) -> None:
    client = make_client(f"http://127.0.0.1:{free_port()}", max_attempts=2)

    with structlog.testing.capture_logs() as logs, pytest.raises(ApiUnavailable) as caught:
        await client.get_run(7, 9)

    for text in (str(caught.value), repr(caught.value), repr(caught.value.__cause__), repr(logs)):
        assert API_KEY not in text


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("0.2", 0.2),
        (" 120 ", 120.0),
        ("-5", 0.0),
        ("nan", None),
        ("soon", None),
        ("Wed, 01 May 2024 12:00:30 GMT", 30.0),
        ("Wed, 01 May 2024 11:59:00 GMT", 0.0),  # in the past: go now
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(
    value: str | None, seconds: float | None
) -> None:
    assert retry_after_seconds(value, now=SINCE) == seconds


@pytest.mark.parametrize(
    "host", ["app.datafold.com", "ftp://app.datafold.com", "https://user:pw@app.datafold.com"]
)
async def test_unusable_hosts_are_refused_up_front(
    session: aiohttp.ClientSession, host: str
) -> None:
    with pytest.raises(ValueError, match="Datafold host") as caught:
        DatafoldClient(session, host, API_KEY)
    assert "pw" not in str(caught.value)
