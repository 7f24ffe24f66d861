"""The simulator over HTTP: an aiohttp application that answers as Datafold's API does, with
FastAPI's ways of reading parameters and refusing them (422 bodies), and `serve` to run it.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from functools import partial
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler

from notifier.demo.records import (
    ENDPOINTS,
    SORT_ORDERS,
    SORTABLE_FIELDS,
    SimulatedMonitor,
    SimulatedRun,
    to_utc,
)

if TYPE_CHECKING:
    from notifier.demo.simulator import Fault, Simulator

#: Where `serve(..., inbox=...)` takes webhooks.
INBOX_PATH = "/-/webhook"
#: The spec sets no maximum page size; a larger request is answered with this many.
MAX_PAGE_SIZE = 1000
RUNS_PAGE_SIZE = 10
MONITORS_PAGE_SIZE = 20
_INTEGER = re.compile(r"[+-]?\d+")
_Errors = list[dict[str, Any]]
_Item = TypeVar("_Item")


def simulator_app(sim: Simulator) -> web.Application:
    """A fresh aiohttp application serving `sim`'s state (what `Simulator.app()` returns)."""

    @web.middleware
    async def front_door(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Faults come before authentication, as a failing gateway in front of the API would.
        authorized = sim.authorized(request.headers.get("Authorization"))
        endpoint = request.match_info.route.name
        sim.note_request(endpoint, request.method, request.path, request.query, authorized)
        if sim.latency:
            await asyncio.sleep(sim.latency)
        sim.advance()
        if endpoint is None:
            try:
                return await handler(request)
            except web.HTTPException as exc:
                return _detail(exc.status, exc.reason)
        raw_id = request.match_info.get("id")
        path_id = int(raw_id) if raw_id and _INTEGER.fullmatch(raw_id) else None
        fault = sim.take_fault(endpoint, path_id)
        if fault is not None:
            await asyncio.sleep(fault.delay)
            answer = _fault_response(fault)
            if answer is not None:
                return answer
        if not authorized:
            return _detail(HTTPStatus.UNAUTHORIZED, "Invalid API key")
        return await handler(request)

    app = web.Application(middlewares=[front_door])
    handlers = {
        "monitors": partial(_list_monitors, sim),
        "monitor": partial(_get_monitor, sim),
        "runs": partial(_list_runs, sim),
        "run": partial(_get_run, sim),
    }
    for name, path in ENDPOINTS.items():
        app.router.add_get(path, handlers[name], name=name, allow_head=False)
    return app


def _fault_response(fault: Fault) -> web.Response | None:
    """The answer a fault gives, or None when it only delays a normal answer."""
    if fault.status == HTTPStatus.OK and fault.body is None:
        return None
    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
    if fault.body is None:
        return web.json_response(
            {"detail": HTTPStatus(fault.status).phrase}, status=fault.status, headers=headers
        )
    return web.Response(
        status=fault.status, text=fault.body, content_type=fault.content_type, headers=headers
    )


async def _list_monitors(sim: Simulator, request: web.Request) -> web.Response:
    """Tags filter: a monitor is listed when it has every tag asked for. Order: `order_by` and
    `sort_order` (default "desc"), see `sorted_monitors`."""
    errors: _Errors = []
    query = request.query
    page = _int_param(errors, "query", "page", query.get("page"), 1)
    page_size = _int_param(errors, "query", "page_size", query.get("page_size"), MONITORS_PAGE_SIZE)
    order_by = _choice_param(errors, "order_by", query.get("order_by"), SORTABLE_FIELDS, enum=True)
    sort_order = _choice_param(
        errors, "sort_order", query.get("sort_order"), SORT_ORDERS, enum=False
    )
    if errors:
        return _validation_error(errors)
    page_size = min(page_size, MAX_PAGE_SIZE)
    wanted = {tag.strip() for tag in query.get("tags", "").split(",") if tag.strip()}
    monitors = sim.listed_monitors(wanted, order_by, sort_order or "desc")
    return _listing("monitors", monitors, page, page_size, SimulatedMonitor.summary)


async def _get_monitor(sim: Simulator, request: web.Request) -> web.Response:
    errors: _Errors = []
    monitor_id = _int_param(errors, "path", "id", request.match_info["id"], minimum=None)
    monitor = _monitor_or_refusal(sim, errors, monitor_id)
    if isinstance(monitor, web.Response):
        return monitor
    return web.json_response(monitor.full())


async def _list_runs(sim: Simulator, request: web.Request) -> web.Response:
    errors: _Errors = []
    query = request.query
    monitor_id = _int_param(errors, "path", "id", request.match_info["id"], minimum=None)
    page = _int_param(errors, "query", "page", query.get("page"), 1)
    page_size = _int_param(errors, "query", "page_size", query.get("page_size"), RUNS_PAGE_SIZE)
    start = _time_param(errors, "start_time", query.get("start_time"))
    end = _time_param(errors, "end_time", query.get("end_time"))
    monitor = _monitor_or_refusal(sim, errors, monitor_id)
    if isinstance(monitor, web.Response):
        return monitor
    page_size = min(page_size, MAX_PAGE_SIZE)
    runs = sim.listed_runs(monitor, start, end)
    return _listing("runs", runs, page, page_size, SimulatedRun.listed)


async def _get_run(sim: Simulator, request: web.Request) -> web.Response:
    errors: _Errors = []
    monitor_id = _int_param(errors, "path", "id", request.match_info["id"], minimum=None)
    run_id = _int_param(errors, "path", "run_id", request.match_info["run_id"], minimum=None)
    monitor = _monitor_or_refusal(sim, errors, monitor_id)
    if isinstance(monitor, web.Response):
        return monitor
    run = monitor.runs.get(run_id)
    if run is None:
        return _detail(HTTPStatus.NOT_FOUND, "Run not found")
    if run.state is None:
        # The spec's ApiPublicMonitorRunResultOut requires a state (the listing does not):
        # FastAPI fails such an answer against its response model, and Starlette sends this.
        return web.Response(status=HTTPStatus.INTERNAL_SERVER_ERROR, text="Internal Server Error")
    return web.json_response({**run.listed(), "error": run.error, "warnings": run.warnings})


def _monitor_or_refusal(
    sim: Simulator, errors: _Errors, monitor_id: int
) -> SimulatedMonitor | web.Response:
    """The monitor a request is about, or its refusal: 422 for parameters that did not read
    (checked first, as FastAPI does), else 404 for an unknown monitor."""
    if errors:
        return _validation_error(errors)
    monitor = sim.find_monitor(monitor_id)
    if monitor is None:
        return _detail(HTTPStatus.NOT_FOUND, "Monitor not found")
    return monitor


def _listing(
    key: str, items: Sequence[_Item], page: int, page_size: int, show: Callable[[_Item], Any]
) -> web.Response:
    """One page of a listing as the API answers it: the page's `items` shown under `key`, with
    the counts (`total_pages` 0 when there is nothing)."""
    chunk = items[(page - 1) * page_size : page * page_size]
    return web.json_response(
        {
            "count": len(items),
            "page": page,
            "page_size": page_size,
            "total_pages": math.ceil(len(items) / page_size),
            key: [show(item) for item in chunk],
        }
    )


def _detail(status: int, detail: str) -> web.Response:
    return web.json_response({"detail": detail}, status=status)


def _int_param(
    errors: _Errors,
    where: str,
    name: str,
    raw: str | None,
    default: int = 0,
    minimum: int | None = 1,
) -> int:
    """Parse an integer parameter as FastAPI would, noting a failure in `errors`."""
    if raw is None:
        return default
    loc = [where, name]
    if not _INTEGER.fullmatch(raw.strip()):
        msg = "Input should be a valid integer, unable to parse string as an integer"
        errors.append({"type": "int_parsing", "loc": loc, "msg": msg, "input": raw})
        return default
    value = int(raw)
    if minimum is not None and value < minimum:
        msg = f"Input should be greater than or equal to {minimum}"
        errors.append(
            {
                "type": "greater_than_equal",
                "loc": loc,
                "msg": msg,
                "input": raw,
                "ctx": {"ge": minimum},
            }
        )
    return value


def _choice_param(
    errors: _Errors, name: str, raw: str | None, choices: Sequence[str], *, enum: bool
) -> str | None:
    """A value from `choices`, as pydantic words a refusal: an Enum field's ("enum") or a
    Literal's ("literal_error")."""
    if raw is None or raw in choices:
        return raw
    quoted = [f"'{choice}'" for choice in choices]
    expected = f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    errors.append(
        {
            "type": "enum" if enum else "literal_error",
            "loc": ["query", name],
            "msg": f"Input should be {expected}",
            "input": raw,
            "ctx": {"expected": expected},
        }
    )
    return None


def _time_param(errors: _Errors, name: str, raw: str | None) -> datetime | None:
    """ISO 8601 with `Z` or an offset; a stamp without one is read as UTC."""
    if raw is None:
        return None
    try:
        return to_utc(datetime.fromisoformat(raw))
    except ValueError:
        msg = "Input should be a valid datetime"
        errors.append(
            {"type": "datetime_parsing", "loc": ["query", name], "msg": msg, "input": raw}
        )
        return None


def _validation_error(errors: _Errors) -> web.Response:
    return web.json_response({"detail": errors}, status=HTTPStatus.UNPROCESSABLE_ENTITY)


@asynccontextmanager
async def serve(
    sim: Simulator,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    inbox: Callable[[dict[str, Any]], None] | None = None,
) -> AsyncIterator[str]:
    """Serve `sim` until the block ends, yielding its base URL (port 0 picks a free port).

    With `inbox`, it also takes webhooks at `INBOX_PATH` (no API key needed), handing each JSON
    object to `inbox`, so a notifier pointed at the simulator has somewhere to send.
    """
    app = sim.app()
    if inbox is not None:
        app.router.add_post(INBOX_PATH, partial(_receive, inbox))
    # A client that gives up (a timeout test) cancels its handler, so shutdown does not wait on it.
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1]
        url_host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host  # noqa: S104
        url_host = f"[{url_host}]" if ":" in url_host else url_host
        yield f"http://{url_host}:{bound_port}"
    finally:
        await runner.cleanup()


async def _receive(inbox: Callable[[dict[str, Any]], None], request: web.Request) -> web.Response:
    """A webhook for the inbox: a JSON object, answered 204; anything else 400."""
    try:
        payload = await request.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        return _detail(HTTPStatus.BAD_REQUEST, "expected a JSON object")
    inbox(payload)
    return web.Response(status=HTTPStatus.NO_CONTENT)
