"""The Microsoft Teams sink: Adaptive Cards posted to a Workflows webhook.

The URL carries the flow's signature (`sig=`), so it is a secret: it appears in no name, log line,
error or repr. A Workflows webhook answers 202 with an empty body and no message ID, so nothing
can be updated or threaded: `send` returns None and recoveries and reminders are cards of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import ClassVar, Final
from urllib.parse import urlsplit

import aiohttp

from notifier import __version__
from notifier.deliver.render import teams as render
from notifier.deliver.render.teams import TeamsMessage
from notifier.deliver.sink import CheckResult, DeliveryError, send_in_parts
from notifier.deliver.sinks.context import SinkContext
from notifier.domain.models import MessageRef, Notification
from notifier.domain.values import retry_after_seconds
from notifier.route.destinations import TeamsDestination

#: Statuses that refuse this one message (malformed, too large): the next ones are still tried.
#: 401/403/404/410 mean the flow is gone, off or its signature revoked: every later message would
#: fail alike, so they stop the destination (and the outbox keeps its notifications) like 429/5xx.
_MESSAGE_REFUSED: Final = frozenset({400, 413, 415, 422})
USER_AGENT: Final = f"datafold-notifier/{__version__}"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class TeamsSink:
    """Posts one Adaptive Card message per notification (or per digest card). Success is any
    2xx (Workflows answers 202); redirects are not followed."""

    message_bytes_max: ClassVar[int] = render.MESSAGE_BYTES_MAX

    def __init__(
        self,
        url: str,
        *,
        session: aiohttp.ClientSession,
        name: str = "teams",
        timeout: float = 30,
        digest_threshold: int | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.name = name
        self.digest_threshold = digest_threshold
        self._url = url
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock or _utc_now

    @classmethod
    def from_destination(
        cls, name: str, destination: TeamsDestination, context: SinkContext
    ) -> TeamsSink:
        """The sink for a `teams` destination of the routes."""
        return cls(
            destination.url.get_secret_value(),
            session=context.session,
            name=name,
            timeout=context.timeout,
            digest_threshold=destination.digest_threshold,
        )

    def __repr__(self) -> str:
        return f"TeamsSink(name={self.name!r}, url=<redacted>)"

    async def send(self, notification: Notification, thread: MessageRef | None = None) -> None:
        """Post the notification's card; `thread` is ignored (a webhook cannot thread)."""
        await self._post(render.teams_message(notification))

    async def send_digest(self, notifications: Sequence[Notification]) -> None:
        """Post the digest card(s); on failure `DeliveryError.delivered` names the
        notifications in the cards already posted."""
        await send_in_parts(render.teams_digest(notifications), self._post, lambda m: m.ids)

    async def _post(self, message: TeamsMessage) -> None:
        request = self._session.post(
            self._url,
            data=message.encoded(),
            headers={"content-type": "application/json", "user-agent": USER_AGENT},
            timeout=self._timeout,
            allow_redirects=False,
        )
        try:
            async with request as response:
                status, retry_after = response.status, response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as error:
            # aiohttp's messages carry the URL, and so the signature: name the class only.
            reason = f"could not reach the Teams webhook: {type(error).__name__}"
            raise DeliveryError(self.name, reason) from None
        if 200 <= status < 300:
            return
        raise DeliveryError(
            self.name,
            f"Teams webhook answered HTTP {status}",
            retry_after=retry_after_seconds(retry_after, self._clock()),
            whole_destination=status not in _MESSAGE_REFUSED,
        )

    async def check(self) -> list[CheckResult]:
        """Reachability only: a TLS connection to the webhook's host and a HEAD of its origin
        (`/`), which posts nothing. Whether the flow exists and its signature is valid cannot be
        known without posting a card, so `check` does not claim it."""
        parts = urlsplit(self._url)
        origin = f"{parts.scheme}://{parts.netloc}/"
        try:
            async with self._session.head(
                origin, timeout=self._timeout, allow_redirects=False
            ) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            return [
                CheckResult(
                    self.name, False, f"Teams webhook host unreachable: {type(error).__name__}"
                )
            ]
        if status >= 500:
            return [CheckResult(self.name, False, f"Teams webhook host answered HTTP {status}")]
        return [
            CheckResult(
                self.name,
                True,
                f"Teams webhook host reachable (HEAD /: HTTP {status}); the flow itself is "
                "not tested, which would post a card",
            )
        ]
