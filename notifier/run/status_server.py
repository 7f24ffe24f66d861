"""The optional HTTP listener (NOTIFIER_HEALTH_PORT): GET /healthz, GET /metrics, and the
status page, GET / (HTML) with the same data at GET /api/status (JSON); POST /-/reload reloads the
configuration (as SIGHUP does); with NOTIFIER_TRIGGER_TOKEN, the push trigger's POST /trigger
routes (`run.trigger_http`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from notifier.domain.models import MonitorInfo, NotifierState
from notifier.domain.report import CycleReport
from notifier.run.health import HealthTracker
from notifier.run.logs import REDACTOR
from notifier.run.metrics import Metrics
from notifier.run.status_page import render_status_page
from notifier.run.status_view import StatusView, build_status, scrubbed
from notifier.run.trigger_http import TriggerEndpoint, add_trigger_routes

#: The page reloads itself every poll interval, within these bounds (seconds).
REFRESH_MIN, REFRESH_MAX = 5, 60

#: The page runs no script and loads nothing: should anything from outside slip through
#: unescaped, the browser still runs none of it.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@runtime_checkable
class HoldsState(Protocol):
    """A cycle runner whose state the page may read (`Notifier`)."""

    @property
    def state(self) -> NotifierState | None: ...


@runtime_checkable
class KnowsMonitors(Protocol):
    """A cycle runner that remembers the monitors' details it read from Datafold."""

    def monitor_details(self) -> Mapping[int, MonitorInfo]: ...


@runtime_checkable
class HoldsLease(Protocol):
    """A cycle runner that leads or stands by (`LeasedNotifier`)."""

    @property
    def leading(self) -> bool: ...


@dataclass(frozen=True)
class StatusSources:
    """What the status page reads besides health: the state, the leadership and the recent
    cycle reports (oldest first). `of(runner, cycles)` finds the first two on a cycle runner."""

    state: Callable[[], NotifierState | None]
    leading: Callable[[], bool | None]
    cycles: Sequence[CycleReport]
    details: Callable[[], Mapping[int, MonitorInfo]] = dict

    @classmethod
    def of(cls, runner: object, cycles: Sequence[CycleReport]) -> StatusSources:
        """A runner without a readable state shows none; one without a lease is "single"."""
        state = (lambda: runner.state) if isinstance(runner, HoldsState) else (lambda: None)
        leading = (lambda: runner.leading) if isinstance(runner, HoldsLease) else (lambda: None)
        details = runner.monitor_details if isinstance(runner, KnowsMonitors) else dict
        return cls(state=state, leading=leading, cycles=cycles, details=details)


def status_app(
    health: HealthTracker,
    metrics: Metrics,
    clock: Callable[[], datetime],
    sources: StatusSources | None = None,
    reload: Callable[[], Awaitable[str | None]] | None = None,
    trigger: TriggerEndpoint | None = None,
) -> web.Application:
    """/healthz answers 200 or 503 with a small JSON body; /metrics the Prometheus text; / the
    status page and /api/status its data (empty of state without `sources`). With `reload` (the
    reason a reload was refused, or None), POST /-/reload answers 200, or 500 with the reason,
    once the new configuration is adopted or refused; other methods get 405. With `trigger`,
    the push trigger's routes; without, its paths are 404 as any unknown path."""
    sources = sources or StatusSources(lambda: None, lambda: None, ())
    refresh = int(min(max(health.interval.total_seconds(), REFRESH_MIN), REFRESH_MAX))

    async def healthz(request: web.Request) -> web.Response:
        verdict = health.verdict(clock())
        return web.json_response(verdict.body, status=200 if verdict.healthy else 503)

    async def metrics_text(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    def view() -> StatusView:
        now = clock()
        verdict = health.verdict(now)
        reason = verdict.body.get("reason")
        built = build_status(
            sources.state(),
            sources.cycles,
            now=now,
            leading=sources.leading(),
            health=str(verdict.body.get("status", "unknown")),
            health_reason=str(reason) if reason else None,
            details=sources.details(),
        )
        return scrubbed(built, REDACTOR.redact)

    async def page(request: web.Request) -> web.Response:
        text = render_status_page(view(), refresh_seconds=refresh)
        return web.Response(text=text, content_type="text/html", headers=_PAGE_HEADERS)

    async def api_status(request: web.Request) -> web.Response:
        return web.json_response(view().as_json(), headers={"Cache-Control": "no-store"})

    async def reload_config(request: web.Request) -> web.Response:
        assert reload is not None
        refused = await reload()
        if refused is None:
            return web.json_response({"status": "success"}, headers={"Cache-Control": "no-store"})
        body = {"status": "error", "error": refused}
        return web.json_response(body, status=500, headers={"Cache-Control": "no-store"})

    app = web.Application()
    if reload is not None:
        app.router.add_post("/-/reload", reload_config)
    app.router.add_get("/", page)
    app.router.add_get("/api/status", api_status)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_text)
    if trigger is not None:
        add_trigger_routes(app, trigger)
    return app


@contextlib.asynccontextmanager
async def serve_status(app: web.Application, host: str, port: int) -> AsyncIterator[int]:
    """Serve until the block ends; yields the bound port (port 0 picks a free one)."""
    # No access log: a trigger's path holds its token.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        address = runner.addresses[0] if runner.addresses else (host, port)
        yield int(address[1])
    finally:
        await runner.cleanup()
