"""HTTP answers read within limits: bodies capped after decompression.

Used by every adapter that reads from outside (Datafold, Slack, webhooks), so that no server can
make the process hold more than a known number of bytes per answer.
"""

from __future__ import annotations

from typing import ClassVar

import aiohttp

#: What a destination's answer (Slack's JSON, a webhook's reply) may weigh, decompressed.
DESTINATION_ANSWER_MAX_BYTES = 1024 * 1024
_CHUNK = 64 * 1024


class BodyTooLarge(aiohttp.ClientPayloadError):
    """An answer's body, decompressed, went past the limit; reading stopped there."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the answer is larger than {limit} bytes")
        self.limit = limit


async def read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, or `BodyTooLarge` as soon as more than `limit` bytes arrived (decompressed).

    A declared Content-Length over the limit fails before anything is read. Memory held never
    exceeds the limit plus one chunk, whatever the server sends or however it compresses it.
    """
    declared = response.content_length
    encoded = response.headers.get("Content-Encoding", "identity").strip().lower()
    if declared is not None and encoded in ("", "identity"):
        if declared > limit:
            raise BodyTooLarge(limit)
        # The common case: a declared length within the limit, read in one go (aiohttp stops
        # at that length whatever the server goes on sending).
        return await response.content.read()
    body = bytearray()
    while True:
        chunk = await response.content.read(_CHUNK)
        if not chunk:
            return bytes(body)
        if len(body) + len(chunk) > limit:
            raise BodyTooLarge(limit)
        body += chunk


class BoundedResponse(aiohttp.ClientResponse):
    """A response whose `read()` (and so `text()` and `json()`, as slack_sdk calls them) stops
    at `max_body` bytes. Give it to a `ClientSession(response_class=...)`."""

    max_body: ClassVar[int] = DESTINATION_ANSWER_MAX_BYTES

    async def read(self) -> bytes:
        if self._body is None:
            try:
                self._body = await read_capped(self, self.max_body)
            except BaseException:
                self.close()
                raise
        return await super().read()
