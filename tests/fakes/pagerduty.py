"""A fake PagerDuty Events API v2 that refuses what the real one refuses.

Every `POST /v2/enqueue` body is validated against the request schema of the enqueue operation in
PagerDuty's own OpenAPI (tests/specs/pagerduty-events-v2-openapi.json, from PagerDuty/api-schema)
and against the limits PagerDuty documents but the schema does not carry: summary ≤ 1024
characters, dedup_key ≤ 255, a request ≤ 512 KB, a 32-character routing key, a payload on a
trigger, a dedup_key on acknowledge and resolve, an RFC 3339 timestamp. A valid event gets 202
`{"status": "success", "message": "Event processed", "dedup_key": ...}`, an invalid one 400 in
PagerDuty's error shape. It can be told to answer 429/5xx or to stall.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
from aiohttp import web

from tests.fakes.slack import serve_app

SPEC = Path(__file__).resolve().parent.parent / "specs" / "pagerduty-events-v2-openapi.json"
ENQUEUE_PATH = "/v2/enqueue"
SUMMARY_MAX = 1024
DEDUP_KEY_MAX = 255
REQUEST_MAX_BYTES = 512 * 1024
ROUTING_KEY_LENGTH = 32


def _json_schema(node: Any) -> Any:
    """An OpenAPI 3.0 schema as JSON Schema: `nullable: true` becomes a type that allows null;
    `format: url` (not a JSON Schema format) is left for the limits check."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {k: _json_schema(v) for k, v in node.items() if k not in ("nullable", "example")}
    if node.get("nullable") is True:
        kind = converted.get("type")
        if isinstance(kind, str):
            converted["type"] = [kind, "null"]
        elif "enum" in converted:
            converted["enum"] = [*converted["enum"], None]
    return converted


def enqueue_schema() -> dict[str, Any]:
    """The enqueue operation's request schema, with the spec's components so `$ref`s resolve."""
    spec = json.loads(SPEC.read_text())
    operation = spec["paths"]["/enqueue"]["post"]
    schema = dict(operation["requestBody"]["content"]["application/json"]["schema"])
    schema["components"] = spec["components"]
    return dict(_json_schema(schema))


def event_problems(validator: jsonschema.Draft202012Validator, body: bytes) -> list[str]:
    """Why PagerDuty would refuse this body, empty if it would take it."""
    if len(body) > REQUEST_MAX_BYTES:
        return [f"request is {len(body)} bytes, over {REQUEST_MAX_BYTES}"]
    try:
        event = json.loads(body)
    except ValueError:
        return ["JSON parse error"]
    problems = [
        f"{'/'.join(map(str, e.absolute_path)) or 'event'}: {e.message}"
        for e in validator.iter_errors(event)
    ]
    if problems or not isinstance(event, dict):
        return problems or ["event is not an object"]
    if len(event["routing_key"]) != ROUTING_KEY_LENGTH:
        problems.append("routing_key must be 32 characters")
    if len(event.get("dedup_key", "")) > DEDUP_KEY_MAX:
        problems.append(f"dedup_key is longer than {DEDUP_KEY_MAX}")
    action = event["event_action"]
    if action == "trigger" and "payload" not in event:
        problems.append("payload is required for trigger")
    if action != "trigger" and not event.get("dedup_key"):
        problems.append(f"dedup_key is required for {action}")
    payload = event.get("payload", {})
    if len(payload.get("summary", "")) > SUMMARY_MAX:
        problems.append(f"payload.summary is longer than {SUMMARY_MAX}")
    if "timestamp" in payload:
        try:
            datetime.fromisoformat(payload["timestamp"].replace("Z", "+00:00"))
        except ValueError:
            problems.append("payload.timestamp is not an ISO 8601 date-time")
    return problems


@dataclass(frozen=True)
class Reply:
    """An answer other than the spec's verdict: a status (429, 500...) with headers, or a stall."""

    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    #: The answer's body instead of the fake's error JSON (a 400 that echoes what it was sent).
    body: bytes | None = None


@dataclass
class FakePagerDuty:
    """Serve with `async with .serve() as base_url`; events go to `base_url + ENQUEUE_PATH`.

    `events` are the accepted events; `refused` the bodies answered 400 with their problems;
    `requests` every request as (method, path).
    """

    events: list[dict[str, Any]] = field(default_factory=list)
    refused: list[tuple[bytes, list[str]]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    _replies: deque[Reply] = field(default_factory=deque)
    _validator: jsonschema.Draft202012Validator = field(
        default_factory=lambda: jsonschema.Draft202012Validator(enqueue_schema())
    )

    def reply(self, *replies: Reply | int) -> None:
        """Answer the next POSTs with these instead of the verdict (a bare int is a status)."""
        self._replies.extend(Reply(r) if isinstance(r, int) else r for r in replies)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=4 * REQUEST_MAX_BYTES)
        app.router.add_post(ENQUEUE_PATH, self._enqueue)
        app.router.add_route("*", "/{tail:.*}", self._other)
        return app

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        async with serve_app(self.app()) as url:
            yield url

    async def _other(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path))
        return web.json_response({"status": "not found"}, status=404)

    async def _enqueue(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path))
        body = await request.read()
        if self._replies:
            reply = self._replies.popleft()
            await asyncio.sleep(reply.delay)
            if reply.body is not None:
                return web.Response(body=reply.body, status=reply.status, headers=reply.headers)
            error = {"status": "error", "message": f"fake answer {reply.status}"}
            return web.json_response(error, status=reply.status, headers=reply.headers)
        problems = event_problems(self._validator, body)
        if problems:
            self.refused.append((body, problems))
            error = {"status": "invalid event", "message": "Event object is invalid"}
            return web.json_response({**error, "errors": problems}, status=400)
        event = json.loads(body)
        self.events.append(event)
        key = event.get("dedup_key") or uuid.uuid4().hex
        answer = {"status": "success", "message": "Event processed", "dedup_key": key}
        return web.json_response(answer, status=202)
