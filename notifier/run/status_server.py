"""The optional HTTP listener: GET /healthz and GET /metrics (NOTIFIER_HEALTH_PORT)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from notifier.run.health import HealthTracker
from notifier.run.metrics import Metrics


def status_app(
    health: HealthTracker, metrics: Metrics, clock: Callable[[], datetime]
) -> web.Application:
    """/healthz answers 200 or 503 with a small JSON body; /metrics the Prometheus text."""

    async def healthz(request: web.Request) -> web.Response:
        verdict = health.verdict(clock())
        return web.json_response(verdict.body, status=200 if verdict.healthy else 503)

    async def metrics_text(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_text)
    return app


@contextlib.asynccontextmanager
async def serve_status(app: web.Application, host: str, port: int) -> AsyncIterator[int]:
    """Serve until the block ends; yields the bound port (port 0 picks a free one)."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        address = runner.addresses[0] if runner.addresses else (host, port)
        yield int(address[1])
    finally:
        await runner.cleanup()
