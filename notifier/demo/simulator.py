"""A local stand-in for the Datafold Monitors API, for `datafold-notifier demo` and the tests.

It speaks the published spec (auth, pagination, time filters, the monitors listing's order_by and
sort_order, FastAPI-style errors), lists runs in no particular time order, and can be told to
misbehave. It only says what the spec allows: run states and monitor types outside its enums are
refused when they are set. Runs follow a clock that tests may fake.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import math
import random
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

#: Endpoint names for `inject_fault`: the route each one matches.
ENDPOINTS: dict[str, str] = {
    "monitors": "/api/v1/monitors",
    "monitor": "/api/v1/monitors/{id}",
    "runs": "/api/v1/monitors/{id}/runs",
    "run": "/api/v1/monitors/{id}/runs/{run_id}",
}
#: The spec sets no maximum page size; a larger request is answered with this many.
MAX_PAGE_SIZE = 1000
RUNS_PAGE_SIZE = 10
MONITORS_PAGE_SIZE = 20
#: The spec's enums: `MonitorRunState`, a monitor's `monitor_type`, `SortableFields`, `sort_order`.
RUN_STATES: tuple[str, ...] = (
    "ok",
    "alert",
    "error",
    "learning",
    "checking",
    "created",
    "skipped",
    "cancelled",
    "queued",
)
MONITOR_TYPES: tuple[str, ...] = ("diff", "metric", "schema", "test")
SORTABLE_FIELDS: tuple[str, ...] = ("id", "name", "last_triggered", "last_run", "created_by")
SORT_ORDERS: tuple[str, ...] = ("asc", "desc")

#: Outcomes of a scheduled run when the monitor has no script: mostly quiet, sometimes not.
_DEFAULT_OUTCOMES: dict[str, float] = {"ok": 0.8, "alert": 0.12, "error": 0.08}
_ERROR_MESSAGES: tuple[str, ...] = (
    'Query failed: relation "analytics.orders_staging" does not exist',
    "Query failed: permission denied for schema finance",
    "Connection to the data source timed out after 300 seconds",
    'Query failed: column "updated_at" does not exist',
)
_INTEGER = re.compile(r"[+-]?\d+")

Clock = Callable[[], datetime]
_Errors = list[dict[str, Any]]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _to_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: datetime | None) -> str | None:
    """Datafold writes UTC stamps with a `Z`."""
    return None if value is None else _to_utc(value).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the simulator received it, so a test can assert what a client sent."""

    method: str
    path: str
    query: dict[str, str]
    authorized: bool


@dataclass(frozen=True)
class _Plan:
    """How a scheduled run goes on: created, checking from half its duration, then its outcome."""

    start: datetime
    duration: float
    outcome: str
    error: str | None


@dataclass
class _Run:
    run_id: int
    monitor_id: int
    state: str | None
    started_at: datetime | None
    created_at: datetime
    diff_id: int | None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    plan: _Plan | None = None

    @property
    def timestamp(self) -> datetime:
        """What start_time/end_time compare against: the start, else the creation."""
        return self.started_at or self.created_at

    def listed(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "monitor_id": self.monitor_id,
            "state": self.state,
            "started_at": _iso(self.started_at),
            "diff_id": self.diff_id,
        }

    def progress(self, now: datetime) -> bool:
        """Move a scheduled run along to `now`; True once it has finished."""
        if self.plan is None:
            return True
        elapsed = (now - self.plan.start).total_seconds()
        if elapsed >= self.plan.duration:
            self.state, self.error, self.plan = self.plan.outcome, self.plan.error, None
            return True
        self.state = "checking" if elapsed >= self.plan.duration / 2 else "created"
        return False


@dataclass
class _Monitor:
    id: int
    name: str | None
    monitor_type: str
    tags: tuple[str, ...]
    owner: str | None
    created_at: datetime
    every: float | None
    duration: float
    outcomes: tuple[str, ...] | None
    scheduled: int = 0
    runs: dict[int, _Run] = field(default_factory=dict)
    #: Run n of the schedule starts at origin + n * every.
    origin: datetime | None = None

    def latest_run(self) -> _Run | None:
        return max(self.runs.values(), key=lambda r: (r.timestamp, r.run_id), default=None)

    def last_alert(self) -> datetime | None:
        return max((r.timestamp for r in self.runs.values() if r.state == "alert"), default=None)

    def sort_value(self, order_by: str) -> str | int | datetime | None:
        """What `order_by` orders by. The spec names the fields only: "last_triggered" is taken
        as the last alert and "created_by" as the owner, the simulator's only author."""
        if order_by == "name":
            return self.name
        if order_by == "last_triggered":
            return self.last_alert()
        if order_by == "last_run":
            latest = self.latest_run()
            return latest.timestamp if latest else None
        if order_by == "created_by":
            return self.owner
        return self.id

    def summary(self) -> dict[str, Any]:
        """ApiPublicGetMonitorOut, as `GET /api/v1/monitors` lists it."""
        latest = self.latest_run()
        return {
            "id": self.id,
            "name": self.name,
            "monitor_type": self.monitor_type,
            "tags": list(self.tags),
            "owner": self.owner,
            "enabled": True,
            "created_at": _iso(self.created_at),
            "modified_at": _iso(self.created_at),
            "last_run": _iso(latest.timestamp) if latest else None,
            "last_alert": _iso(self.last_alert()),
            "state": latest.state if latest else None,
        }

    def full(self) -> dict[str, Any]:
        """ApiPublicGetMonitorOutFull. The spec's schedules cannot say "every N seconds"."""
        schedule = (
            {"type": "none"} if self.every is None else {"type": "crontab", "cron": "* * * * *"}
        )
        return {
            **self.summary(),
            "description": f"Simulated {self.monitor_type} monitor",
            "schedule": schedule,
            "notifications": [],
        }


@dataclass
class _Fault:
    endpoint: str
    monitor_id: int | None
    status: int
    times: int
    retry_after: str | None
    body: str | None
    content_type: str
    delay: float

    def matches(self, endpoint: str, monitor_id: int | None) -> bool:
        return (
            self.times > 0
            and self.endpoint == endpoint
            and (self.monitor_id is None or self.monitor_id == monitor_id)
        )

    def response(self) -> web.Response | None:
        """The answer to give, or None when the fault only delays a normal answer."""
        if self.status == HTTPStatus.OK and self.body is None:
            return None
        headers = {"Retry-After": self.retry_after} if self.retry_after is not None else None
        if self.body is None:
            return web.json_response(
                {"detail": HTTPStatus(self.status).phrase}, status=self.status, headers=headers
            )
        return web.Response(
            status=self.status, text=self.body, content_type=self.content_type, headers=headers
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


def _sorted_monitors(
    monitors: Sequence[_Monitor], order_by: str | None, sort_order: str
) -> list[_Monitor]:
    """As SQL would order them: nulls after every value going up and before them going down,
    ties by ID in the same direction. Without `order_by`, by ID going up whatever `sort_order`
    says (the spec leaves that order open; this one is stable for paging)."""
    if order_by is None:
        return sorted(monitors, key=lambda m: m.id)

    def key(monitor: _Monitor) -> tuple[bool, Any, int]:
        value = monitor.sort_value(order_by)
        return (value is None, value if value is not None else 0, monitor.id)

    return sorted(monitors, key=key, reverse=sort_order == "desc")


def _time_param(errors: _Errors, name: str, raw: str | None) -> datetime | None:
    """ISO 8601 with `Z` or an offset; a stamp without one is read as UTC."""
    if raw is None:
        return None
    try:
        return _to_utc(datetime.fromisoformat(raw))
    except ValueError:
        msg = "Input should be a valid datetime"
        errors.append(
            {"type": "datetime_parsing", "loc": ["query", name], "msg": msg, "input": raw}
        )
        return None


def _validation_error(errors: _Errors) -> web.Response:
    return web.json_response({"detail": errors}, status=HTTPStatus.UNPROCESSABLE_ENTITY)


def _check_state(state: str) -> None:
    if state not in RUN_STATES:
        raise ValueError(f"a run state is one of {RUN_STATES} (the spec's MonitorRunState)")


def _page(items: Sequence[Any], page: int, page_size: int) -> tuple[list[Any], int]:
    """One page of `items` and the number of pages (0 when there is nothing)."""
    return list(items[(page - 1) * page_size : page * page_size]), math.ceil(len(items) / page_size)


class Simulator:
    """An in-memory Datafold account served over HTTP by `app()` or `serve()`.

    Everything that changes with time is derived from `clock`, so a fake clock decides it fully.
    """

    def __init__(
        self,
        api_key: str = "demo-key",
        *,
        clock: Clock | None = None,
        seed: int = 0,
        latency: float = 0.0,
        record_requests: bool = True,
    ) -> None:
        self._authorization = f"Key {api_key}"
        self._clock: Clock = clock or _utc_now
        self._seed = seed
        self._monitors: dict[int, _Monitor] = {}
        # Heaps of what happens next, so a request costs O(log n) however many monitors there are.
        self._due: list[tuple[datetime, int]] = []
        self._transitions: list[tuple[datetime, int, _Run]] = []
        self._faults: list[_Fault] = []
        self._next_run_id = 1
        #: Seconds every answer waits, like a real API's latency (benchmarks).
        self.latency = latency
        self._record = record_requests
        self.requests: list[RecordedRequest] = []
        #: Requests per endpoint name (also when `record_requests` is off).
        self.request_counts: Counter[str] = Counter()

    @property
    def monitor_ids(self) -> list[int]:
        return list(self._monitors)

    def _now(self) -> datetime:
        return _to_utc(self._clock())

    def _random(self, *key: object) -> random.Random:
        """A generator fixed by the seed and `key`, so outcomes do not depend on request timing."""
        return random.Random(":".join(map(str, (self._seed, *key))))

    def add_monitor(
        self,
        monitor_id: int,
        *,
        name: str | None = None,
        monitor_type: str = "diff",
        tags: Sequence[str] = (),
        owner: str | None = None,
        every: float | None = None,
        duration: float = 2.0,
        outcomes: Sequence[str] | None = None,
        first_after: float | None = None,
    ) -> None:
        """Add a monitor; with `every`, it starts a run each `every` seconds of clock time.

        The first run starts `first_after` seconds after the monitor is added (default: `every`).

        Each run is created, checking after `duration / 2` and finished after `duration` with the
        next of `outcomes` (cycled), or a seeded random outcome, mostly "ok", when none are given.
        """
        if monitor_id in self._monitors:
            raise ValueError(f"monitor {monitor_id} already exists")
        if monitor_type not in MONITOR_TYPES:
            raise ValueError(f"monitor_type must be one of {MONITOR_TYPES} (the spec's)")
        for outcome in outcomes or ():
            _check_state(outcome)
        if every is not None and every <= 0:
            raise ValueError("every must be positive")
        if duration < 0:
            raise ValueError("duration must not be negative")
        if outcomes is not None and not outcomes:
            raise ValueError("outcomes must not be empty")
        self._monitors[monitor_id] = _Monitor(
            id=monitor_id,
            name=name,
            monitor_type=monitor_type,
            tags=tuple(tags),
            owner=owner,
            created_at=self._now(),
            every=every,
            duration=duration,
            outcomes=tuple(outcomes) if outcomes is not None else None,
        )
        if every is not None:
            first = every if first_after is None else first_after
            monitor = self._monitors[monitor_id]
            monitor.origin = self._now() + timedelta(seconds=first - every)
            heapq.heappush(self._due, (self._now() + timedelta(seconds=first), monitor_id))

    def set_tags(self, monitor_id: int, tags: Sequence[str]) -> None:
        """Retag a monitor (as a user editing it in Datafold would)."""
        self._monitor(monitor_id).tags = tuple(tags)

    def _monitor(self, monitor_id: int) -> _Monitor:
        try:
            return self._monitors[monitor_id]
        except KeyError:
            raise KeyError(f"no monitor {monitor_id}") from None

    def add_run(
        self,
        monitor_id: int,
        *,
        state: str | None = "created",
        started_at: datetime | None = None,
        diff_id: int | None = None,
        error: str | None = None,
        run_id: int | None = None,
    ) -> int:
        """Add a run exactly as given and return its ID (the next global one unless given).

        A run without `started_at` is filtered by its creation time, which is the clock's now.
        """
        monitor = self._monitor(monitor_id)
        if state is not None:
            _check_state(state)
        self.advance()
        if run_id is None:
            run_id = self._next_run_id
        elif any(run_id in m.runs for m in self._monitors.values()):
            raise ValueError(f"run {run_id} already exists")
        self._next_run_id = max(self._next_run_id, run_id + 1)
        monitor.runs[run_id] = _Run(
            run_id=run_id,
            monitor_id=monitor_id,
            state=state,
            started_at=_to_utc(started_at) if started_at else None,
            created_at=self._now(),
            diff_id=diff_id,
            error=error,
        )
        return run_id

    def set_run_state(
        self, monitor_id: int, run_id: int, state: str | None, *, error: str | None = None
    ) -> None:
        """Set a run's state and error message; a scheduled run stops following its plan."""
        if state is not None:
            _check_state(state)
        try:
            run = self._monitor(monitor_id).runs[run_id]
        except KeyError:
            raise KeyError(f"no run {run_id} of monitor {monitor_id}") from None
        run.state, run.error, run.plan = state, error, None

    def advance(self) -> None:
        """Start the scheduled runs due by now and move unfinished ones along."""
        now = self._now()
        while self._due and self._due[0][0] <= now:
            due, monitor_id = heapq.heappop(self._due)
            monitor = self._monitors[monitor_id]
            assert monitor.every is not None
            monitor.scheduled += 1
            self._start_scheduled_run(monitor, monitor.scheduled, due)
            assert monitor.origin is not None
            following = monitor.origin + timedelta(seconds=monitor.every * (monitor.scheduled + 1))
            heapq.heappush(self._due, (following, monitor_id))
        while self._transitions and self._transitions[0][0] <= now:
            _, _, run = heapq.heappop(self._transitions)
            run.progress(now)

    def _start_scheduled_run(self, monitor: _Monitor, number: int, start: datetime) -> None:
        rng = self._random(monitor.id, number)
        if monitor.outcomes is not None:
            outcome = monitor.outcomes[(number - 1) % len(monitor.outcomes)]
        else:
            outcome = rng.choices(
                list(_DEFAULT_OUTCOMES), weights=list(_DEFAULT_OUTCOMES.values())
            )[0]
        run_id = self._next_run_id
        self._next_run_id += 1
        run = _Run(
            run_id=run_id,
            monitor_id=monitor.id,
            state="created",
            started_at=start,
            created_at=start,
            diff_id=50_000 + run_id if monitor.monitor_type == "diff" else None,
            plan=_Plan(
                start=start,
                duration=monitor.duration,
                outcome=outcome,
                error=rng.choice(_ERROR_MESSAGES) if outcome == "error" else None,
            ),
        )
        monitor.runs[run_id] = run
        half = timedelta(seconds=monitor.duration / 2)
        for when in (start, start + half, start + 2 * half):
            heapq.heappush(self._transitions, (when, run_id, run))

    def inject_fault(
        self,
        *,
        monitor_id: int | None = None,
        endpoint: str = "runs",
        status: int = 500,
        times: int = 1,
        retry_after: str | None = None,
        body: str | None = None,
        delay: float = 0.0,
        content_type: str = "application/json",
    ) -> None:
        """Make the next `times` requests to `endpoint` (of `monitor_id`, or any) misbehave.

        They wait `delay` seconds, then answer `status` with `body` (default FastAPI's
        `{"detail": ...}`). Status 200 without a body only delays the normal answer.
        """
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {sorted(ENDPOINTS)}")
        if endpoint == "monitors" and monitor_id is not None:
            raise ValueError("the monitors listing belongs to no monitor")
        if times < 1 or delay < 0:
            raise ValueError("times must be positive and delay not negative")
        self._faults.append(
            _Fault(endpoint, monitor_id, status, times, retry_after, body, content_type, delay)
        )

    def _take_fault(self, endpoint: str, monitor_id: int | None) -> _Fault | None:
        for fault in self._faults:
            if fault.matches(endpoint, monitor_id):
                fault.times -= 1
                if fault.times == 0:
                    self._faults.remove(fault)
                return fault
        return None

    def app(self) -> web.Application:
        """A fresh aiohttp application serving this simulator's state."""

        @web.middleware
        async def front_door(request: web.Request, handler: Handler) -> web.StreamResponse:
            # Faults come before authentication, as a failing gateway in front of the API would.
            authorized = request.headers.get("Authorization") == self._authorization
            endpoint = request.match_info.route.name
            self.request_counts[endpoint or "other"] += 1
            if self._record:
                query = {key: request.query[key] for key in request.query}
                self.requests.append(
                    RecordedRequest(request.method, request.path, query, authorized)
                )
            if self.latency:
                await asyncio.sleep(self.latency)
            self.advance()
            if endpoint is None:
                try:
                    return await handler(request)
                except web.HTTPException as exc:
                    return _detail(exc.status, exc.reason)
            raw_id = request.match_info.get("id")
            path_id = int(raw_id) if raw_id and _INTEGER.fullmatch(raw_id) else None
            fault = self._take_fault(endpoint, path_id)
            if fault is not None:
                await asyncio.sleep(fault.delay)
                answer = fault.response()
                if answer is not None:
                    return answer
            if not authorized:
                return _detail(HTTPStatus.UNAUTHORIZED, "Invalid API key")
            return await handler(request)

        app = web.Application(middlewares=[front_door])
        handlers = {
            "monitors": self._list_monitors,
            "monitor": self._get_monitor,
            "runs": self._list_runs,
            "run": self._get_run,
        }
        for name, path in ENDPOINTS.items():
            app.router.add_get(path, handlers[name], name=name, allow_head=False)
        return app

    async def _list_monitors(self, request: web.Request) -> web.Response:
        """Tags filter: a monitor is listed when it has every tag asked for. Order: `order_by` and
        `sort_order` (default "desc"), see `_sorted_monitors`."""
        errors: _Errors = []
        query = request.query
        page = _int_param(errors, "query", "page", query.get("page"), 1)
        page_size = _int_param(
            errors, "query", "page_size", query.get("page_size"), MONITORS_PAGE_SIZE
        )
        order_by = _choice_param(
            errors, "order_by", query.get("order_by"), SORTABLE_FIELDS, enum=True
        )
        sort_order = _choice_param(
            errors, "sort_order", query.get("sort_order"), SORT_ORDERS, enum=False
        )
        if errors:
            return _validation_error(errors)
        page_size = min(page_size, MAX_PAGE_SIZE)
        wanted = {tag.strip() for tag in query.get("tags", "").split(",") if tag.strip()}
        listed = [m for m in self._monitors.values() if wanted <= set(m.tags)]
        monitors = _sorted_monitors(listed, order_by, sort_order or "desc")
        chunk, total_pages = _page(monitors, page, page_size)
        return web.json_response(
            {
                "count": len(monitors),
                "page": page,
                "page_size": page_size,
                "total_pages": total_pages,
                "monitors": [m.summary() for m in chunk],
            }
        )

    async def _get_monitor(self, request: web.Request) -> web.Response:
        errors: _Errors = []
        monitor_id = _int_param(errors, "path", "id", request.match_info["id"], minimum=None)
        if errors:
            return _validation_error(errors)
        monitor = self._monitors.get(monitor_id)
        if monitor is None:
            return _detail(HTTPStatus.NOT_FOUND, "Monitor not found")
        return web.json_response(monitor.full())

    def _listing_key(self, run: _Run) -> bytes:
        """A seeded shuffle that stays put between the pages of one listing."""
        return hashlib.blake2b(f"{self._seed}:{run.run_id}".encode(), digest_size=8).digest()

    async def _list_runs(self, request: web.Request) -> web.Response:
        errors: _Errors = []
        query = request.query
        monitor_id = _int_param(errors, "path", "id", request.match_info["id"], minimum=None)
        page = _int_param(errors, "query", "page", query.get("page"), 1)
        page_size = _int_param(errors, "query", "page_size", query.get("page_size"), RUNS_PAGE_SIZE)
        start = _time_param(errors, "start_time", query.get("start_time"))
        end = _time_param(errors, "end_time", query.get("end_time"))
        if errors:
            return _validation_error(errors)
        monitor = self._monitors.get(monitor_id)
        if monitor is None:
            return _detail(HTTPStatus.NOT_FOUND, "Monitor not found")
        page_size = min(page_size, MAX_PAGE_SIZE)
        runs = sorted(
            (
                run
                for run in monitor.runs.values()
                if (start is None or run.timestamp >= start)
                and (end is None or run.timestamp <= end)
            ),
            key=self._listing_key,
        )
        chunk, total_pages = _page(runs, page, page_size)
        return web.json_response(
            {
                "count": len(runs),
                "page": page,
                "page_size": page_size,
                "total_pages": total_pages,
                "runs": [run.listed() for run in chunk],
            }
        )

    async def _get_run(self, request: web.Request) -> web.Response:
        errors: _Errors = []
        monitor_id = _int_param(errors, "path", "id", request.match_info["id"], minimum=None)
        run_id = _int_param(errors, "path", "run_id", request.match_info["run_id"], minimum=None)
        if errors:
            return _validation_error(errors)
        monitor = self._monitors.get(monitor_id)
        if monitor is None:
            return _detail(HTTPStatus.NOT_FOUND, "Monitor not found")
        run = monitor.runs.get(run_id)
        if run is None:
            return _detail(HTTPStatus.NOT_FOUND, "Run not found")
        if run.state is None:
            # The spec's ApiPublicMonitorRunResultOut requires a state (the listing does not):
            # FastAPI fails such an answer against its response model, and Starlette sends this.
            return web.Response(
                status=HTTPStatus.INTERNAL_SERVER_ERROR, text="Internal Server Error"
            )
        return web.json_response({**run.listed(), "error": run.error, "warnings": run.warnings})


@asynccontextmanager
async def serve(sim: Simulator, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve `sim` until the block ends, yielding its base URL (port 0 picks a free port)."""
    # A client that gives up (a timeout test) cancels its handler, so shutdown does not wait on it.
    runner = web.AppRunner(
        sim.app(), access_log=None, handler_cancellation=True, shutdown_timeout=1.0
    )
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


def demo_simulator(api_key: str = "demo-key", *, clock: Clock | None = None) -> Simulator:
    """Three monitors running every 10-12 s, scripted so that the first alert finishes 25 s
    after the start and the first error 45 s after it; a mix of outcomes follows."""
    sim = Simulator(api_key, clock=clock)
    sim.add_monitor(
        101,
        name="orders: prod vs staging",
        monitor_type="diff",
        tags=("prod", "orders"),
        owner="data-eng@example.com",
        every=10,
        duration=5,
        outcomes=("ok", "alert", "ok", "ok", "ok", "alert", "ok", "ok", "ok"),
    )
    sim.add_monitor(
        102,
        name="revenue daily metric",
        monitor_type="metric",
        tags=("prod", "finance"),
        owner="analytics@example.com",
        every=10,
        duration=5,
        outcomes=("ok", "ok", "ok", "error", "ok", "ok", "ok", "alert", "ok", "ok"),
    )
    sim.add_monitor(
        103,
        name="users schema",
        monitor_type="schema",
        tags=("prod", "users"),
        owner="platform@example.com",
        every=12,
        duration=3,
        outcomes=("ok", "ok", "ok", "ok", "ok", "alert", "ok", "ok", "error", "ok"),
    )
    return sim
