"""A strict Teams Workflows webhook ("Post to a channel when a webhook request is received").

It takes only the message envelope with one Adaptive Card that validates against the vendored 1.4
schema (tests/specs, draft-06), whose `version` is at most 1.4 and whose element and action types
are all known to 1.4 (the schema has known gaps, so these are checked by hand too). Accepted: 202
with an empty body, as Workflows answers. A body of 28 KB or more: 413, as Teams refuses an
oversized message. Anything else malformed: 400. (The real flow answers 202 to a card it cannot
post and fails in the run history instead; the fake refuses, so a bad card fails a test.)
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from aiohttp import web
from jsonschema import Draft6Validator

from tests.fakes.slack import serve_app

SCHEMA_FILE: Final = Path(__file__).resolve().parent.parent / "specs/adaptive-card-1.4.schema.json"
#: Teams' message limit.
SIZE_LIMIT: Final = 28 * 1024
CARD_VERSIONS: Final = frozenset({"1.0", "1.1", "1.2", "1.3", "1.4"})
#: Every element, inline and action type Adaptive Cards 1.4 defines.
ELEMENT_TYPES: Final = frozenset(
    {
        "ActionSet", "ColumnSet", "Column", "Container", "FactSet", "Image", "ImageSet",
        "Input.ChoiceSet", "Input.Date", "Input.Number", "Input.Text", "Input.Time",
        "Input.Toggle", "Media", "RichTextBlock", "Table", "TextBlock", "TextRun",
    }
)  # fmt: skip
ACTION_TYPES: Final = frozenset(
    {"Action.OpenUrl", "Action.Submit", "Action.ShowCard", "Action.ToggleVisibility",
     "Action.Execute"}
)  # fmt: skip
SIGNATURE: Final = "sig-s3cr3t-teams-signature"
#: A Workflows trigger URL's shape; the `sig` query parameter is the secret.
PATH: Final = (
    "/workflows/0f1e2d3c/triggers/manual/paths/invoke"
    f"?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={SIGNATURE}"
)


def card_validator() -> Draft6Validator:
    """The vendored Adaptive Card 1.4 schema, itself checked as draft-06."""
    schema = json.loads(SCHEMA_FILE.read_text())
    Draft6Validator.check_schema(schema)
    return Draft6Validator(schema)


def card_problem(message: Any, validator: Draft6Validator | None = None) -> str | None:
    """Why Teams would not post this message body, or None."""
    if not isinstance(message, dict) or set(message) != {"type", "attachments"}:
        return "not a message envelope"
    attachments = message["attachments"]
    if message["type"] != "message" or not isinstance(attachments, list) or len(attachments) != 1:
        return "envelope: type must be message with one attachment"
    attachment = attachments[0]
    if not isinstance(attachment, dict) or attachment.get("contentType") != (
        "application/vnd.microsoft.card.adaptive"
    ):
        return "attachment is not an Adaptive Card"
    if "contentUrl" in attachment and attachment["contentUrl"] is not None:
        return "contentUrl must be null"
    card = attachment.get("content")
    errors = list((validator or card_validator()).iter_errors(card))
    if errors:
        return f"schema: {errors[0].message[:200]}"
    if card.get("version") not in CARD_VERSIONS:
        return f"card version {card.get('version')!r} is above 1.4"
    for kind in _types(card.get("body", [])):
        if kind not in ELEMENT_TYPES | ACTION_TYPES:
            return f"unknown type {kind!r}"
    for kind in _types(card.get("actions", [])):
        if kind not in ACTION_TYPES:
            return f"unknown action {kind!r}"
    return None


def _types(node: Any) -> Iterator[str]:
    """Every `type` below `node` (element, inline, action)."""
    if isinstance(node, dict):
        if isinstance(node.get("type"), str):
            yield node["type"]
        for value in node.values():
            yield from _types(value)
    elif isinstance(node, list):
        for item in node:
            yield from _types(item)


@dataclass(frozen=True)
class Reply:
    """How the fake answers one valid post (202 when none is queued); a 2xx keeps the card."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class FakeTeams:
    """Serve with `async with .serve()`; `cards` holds each accepted card, `refused` each
    refusal's reason; `reply(...)` makes the next valid posts answer otherwise."""

    cards: list[dict[str, Any]] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    #: The status of every valid post, in order.
    answered: list[int] = field(default_factory=list)
    heads: int = 0
    #: What a HEAD (`check`'s probe) is answered.
    head_status: int = 404
    _replies: deque[Reply] = field(default_factory=deque)
    _validator: Draft6Validator = field(default_factory=card_validator)

    def reply(self, *replies: Reply | int) -> None:
        self._replies.extend(Reply(r) if isinstance(r, int) else r for r in replies)

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        """Yield the full webhook URL (with its signature) on 127.0.0.1, a free port."""
        app = web.Application(client_max_size=1024**2)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        async with serve_app(app) as base_url:
            yield base_url + PATH

    async def _handle(self, request: web.Request) -> web.Response:
        if request.method == "HEAD":
            self.heads += 1
            return web.Response(status=self.head_status)
        if request.method != "POST" or request.query.get("sig") != SIGNATURE:
            return web.Response(status=401 if request.method == "POST" else 405)
        body = await request.read()
        if len(body) >= SIZE_LIMIT:
            return self._refuse(413, f"{len(body)} bytes")
        try:
            message = json.loads(body)
        except ValueError:
            return self._refuse(400, "not JSON")
        problem = card_problem(message, self._validator)
        if problem is not None:
            return self._refuse(400, problem)
        reply = self._replies.popleft() if self._replies else Reply(202)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        self.answered.append(reply.status)
        if 200 <= reply.status < 300:
            self.cards.append(message["attachments"][0]["content"])
        return web.Response(status=reply.status, headers=reply.headers)

    def _refuse(self, status: int, reason: str) -> web.Response:
        self.refused.append((status, reason))
        return web.Response(status=status, text=json.dumps({"error": {"message": reason}}))
