"""The PagerDuty Events API v2 sink: a trigger per alert, error and reminder, a resolve per
recovery, all keyed by the incident's ID (`render.pagerduty`).

The routing key is the secret: it is in no name, log line, error or repr.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiohttp

from notifier import __version__
from notifier.deliver.render.pagerduty import REQUEST_MAX_BYTES, event_body, pagerduty_event
from notifier.deliver.sink import CheckResult, DeliveryError
from notifier.deliver.sinks.context import SinkContext
from notifier.domain.models import MessageRef, Notification, as_utc
from notifier.domain.text import without_secrets
from notifier.domain.values import retry_after_seconds
from notifier.route.destinations import PAGERDUTY_SEVERITY, PagerDutyDestination

USER_AGENT = f"datafold-notifier/{__version__}"
#: An Events API v2 integration key: 32 letters and digits.
ROUTING_KEY_SHAPE = re.compile(r"[A-Za-z0-9]{32}")
#: Only 400 refuses one event on its own merits (PagerDuty: "do not retry"); 429 (rate limit),
#: 5xx and everything else put the destination on hold.
_EVENT_REFUSED = frozenset({400})
_REASON_MAX = 200


def _utc_now() -> datetime:
    return datetime.now(UTC)


class PagerDutySink:
    """POSTs one event per notification to the enqueue URL; 202 is success.

    The `dedup_key` doubles as the idempotency key: a retried trigger updates the same alert.
    """

    def __init__(
        self,
        routing_key: str,
        *,
        session: aiohttp.ClientSession,
        name: str,
        url: str = "https://events.pagerduty.com/v2/enqueue",
        severities: Mapping[str, str] = PAGERDUTY_SEVERITY,
        timeout: float = 30,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.name = name
        self._routing_key = routing_key
        self._url = url
        self._severities = dict(severities)
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock or _utc_now

    @classmethod
    def from_destination(
        cls, name: str, destination: PagerDutyDestination, context: SinkContext
    ) -> PagerDutySink:
        """The sink for a `pagerduty` destination of the routes."""
        return cls(
            destination.routing_key.get_secret_value(),
            session=context.session,
            name=name,
            url=destination.endpoint,
            severities=destination.severities,
            timeout=context.timeout,
        )

    def __repr__(self) -> str:
        return f"PagerDutySink(name={self.name!r}, url={self._url!r})"

    def body(self, notification: Notification) -> bytes:
        """The event as sent; the same bytes on every retry."""
        event = pagerduty_event(
            notification, routing_key=self._routing_key, severities=self._severities
        )
        return event_body(event)

    async def send(self, notification: Notification, thread: MessageRef | None = None) -> None:
        """Enqueue the event; anything but 202 raises `DeliveryError` (400: this event, for good).

        PagerDuty keys the alert itself (`dedup_key`): `thread` is not needed and nothing is
        returned.
        """
        body = self.body(notification)
        if len(body) > REQUEST_MAX_BYTES:
            reason = f"event of {len(body)} bytes is over PagerDuty's {REQUEST_MAX_BYTES}"
            raise DeliveryError(self.name, reason, whole_destination=False, permanent=True)
        headers = {"content-type": "application/json", "user-agent": USER_AGENT}
        post = self._session.post(
            self._url, data=body, headers=headers, timeout=self._timeout, allow_redirects=False
        )
        try:
            async with post as response:
                # Only a 400's reason is worth reading (bounded): it says what PagerDuty refused.
                answer = await response.content.read(4096) if response.status == 400 else b""
                status, retry_after = response.status, response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as error:
            # aiohttp's messages carry the URL; the class is enough.
            raise DeliveryError(
                self.name, f"could not reach PagerDuty: {type(error).__name__}"
            ) from None
        if status == 202:
            return
        reason = f"HTTP {status}"
        if status in _EVENT_REFUSED:
            reason += f" (event refused: {_refusal(answer, self._routing_key)})"
        raise DeliveryError(
            self.name,
            reason,
            retry_after=retry_after_seconds(retry_after, as_utc(self._clock())),
            whole_destination=status not in _EVENT_REFUSED,
            permanent=status in _EVENT_REFUSED,  # PagerDuty: a 400 is not to be retried
        )

    async def check(self) -> list[CheckResult]:
        """PagerDuty has no dry run: check the key's shape and that the host answers a GET of
        its root, sending no event. The key itself is proven by the first event only."""
        if not ROUTING_KEY_SHAPE.fullmatch(self._routing_key):
            detail = "routing key is not shaped like an Events API v2 integration key (32 chars)"
            return [CheckResult(self.name, False, detail)]
        parts = urlsplit(self._url)
        root = f"{parts.scheme}://{parts.netloc}/"
        try:
            async with self._session.get(
                root, timeout=self._timeout, allow_redirects=False
            ) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            detail = f"PagerDuty unreachable: {type(error).__name__}"
            return [CheckResult(self.name, False, detail)]
        if status >= 500:
            return [CheckResult(self.name, False, f"PagerDuty answered GET / with HTTP {status}")]
        detail = (
            f"PagerDuty host {parts.netloc} reachable (GET /: HTTP {status}); routing key well "
            "formed, not verified (the Events API has no dry run; no event was sent)"
        )
        return [CheckResult(self.name, True, detail)]


def _refusal(answer: bytes, routing_key: str) -> str:
    """PagerDuty's reason for a 400, one line, bounded, without the routing key, nor the start
    of it where the part read ends in the middle of it."""
    text = without_secrets(answer.decode("utf-8", "replace"), [routing_key], mark="***")
    for length in range(min(len(routing_key), len(text)), 0, -1):
        if text.endswith(routing_key[:length]):
            text = text[:-length] + "***"
            break
    return " ".join(text.split())[:_REASON_MAX] or "no reason given"
