"""The push trigger's routes on the health listener: POST /trigger/{token},
POST /trigger/{token}/{monitor_id}, and POST /trigger with `Authorization: Bearer {token}`.

Each answers at once, before any polling: 401 for a wrong or missing token (one body either
way), 503 on a standby replica (nothing forwarded: the caller retries, perhaps reaching the
leader), 413 for a body over `MAX_BODY_BYTES` (not read further), else 202 with the monitor
named, or null for every watched monitor. The token is in the path: nothing here logs a path,
and the listener keeps no access log (`serve_status`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from notifier.run.trigger import (
    MAX_BODY_BYTES,
    Outcome,
    TriggerConfig,
    bearer_token,
    monitor_in_body,
    token_matches,
)

#: How long a caller may take to send its (small) body.
BODY_TIMEOUT_SECONDS = 5.0
_NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True)
class TriggerEndpoint:
    """What the routes need: the settings, where a trigger goes (`offer`), whether this replica
    leads (None: no high availability), and the `outcome` counter of each answer."""

    config: TriggerConfig
    offer: Callable[[int | None], Outcome]
    leading: Callable[[], bool | None]
    count: Callable[[str], None]


def add_trigger_routes(app: web.Application, endpoint: TriggerEndpoint) -> list[str]:
    """Add the trigger's routes to `app`; the paths to log (without the token)."""

    async def by_path(request: web.Request) -> web.Response:
        path_id = request.match_info.get("monitor_id")
        return await answer(request, request.match_info["token"], path_id)

    async def by_header(request: web.Request) -> web.Response:
        return await answer(request, bearer_token(request.headers.get("Authorization")), None)

    async def answer(request: web.Request, token: str | None, path_id: str | None) -> web.Response:
        if not token_matches(token, endpoint.config.token):
            endpoint.count("unauthorized")
            return _json({"status": "unauthorized"}, 401, {"WWW-Authenticate": "Bearer"})
        if endpoint.leading() is False:
            endpoint.count("standby")
            return _json({"status": "standby"}, 503, {"Retry-After": "1"})
        try:
            body = await read_at_most(request, MAX_BODY_BYTES)
        except TimeoutError:
            return _json({"status": "error", "error": "the body took too long"}, 408)
        if body is None:
            endpoint.count("too_large")
            response = _json({"status": "error", "error": f"body over {MAX_BODY_BYTES} bytes"}, 413)
            response.force_close()
            return response
        if path_id is not None:
            monitor_id: int | None = int(path_id)
        else:
            monitor_id = monitor_in_body(body, endpoint.config.monitor_field)
        outcome = endpoint.offer(monitor_id)
        endpoint.count(outcome)
        accepted: dict[str, object] = {"status": "accepted", "monitor_id": monitor_id}
        if outcome == "ignored":
            accepted["ignored"] = "not watched"
        return _json(accepted, 202)

    app.router.add_post("/trigger", by_header)
    app.router.add_post("/trigger/{token}", by_path)
    app.router.add_post("/trigger/{token}/{monitor_id:[0-9]{1,18}}", by_path)
    return ["/trigger"]


async def read_at_most(request: web.Request, limit: int) -> bytes | None:
    """The request's body, or None when it is longer than `limit` bytes (read no further);
    TimeoutError when it takes over `BODY_TIMEOUT_SECONDS`."""
    if request.content_length is not None and request.content_length > limit:
        return None
    data = bytearray()
    async with asyncio.timeout(BODY_TIMEOUT_SECONDS):
        while len(data) <= limit:
            chunk = await request.content.read(limit + 1 - len(data))
            if not chunk:
                return bytes(data)
            data += chunk
    return None


def _json(
    body: dict[str, object], status: int, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(body, status=status, headers={**_NO_STORE, **(headers or {})})
