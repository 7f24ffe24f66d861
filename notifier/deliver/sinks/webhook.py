"""The generic webhook sink: the versioned JSON payload, signed per Standard Webhooks.

The URL may carry a token, so it appears in no name, log line or error; `name` is a hash of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Literal

import aiohttp
from standardwebhooks import Webhook

from notifier import __version__
from notifier.deliver.render import webhook as webhook_payload
from notifier.deliver.render.alertmanager import notification_body
from notifier.deliver.sink import CheckResult, DeliveryError
from notifier.deliver.sinks.context import SinkContext
from notifier.domain.models import MessageRef, Notification, as_utc
from notifier.domain.values import retry_after_seconds, whsec_key
from notifier.route.destinations import WebhookDestination, webhook_destination_name

#: Statuses that refuse one payload rather than every request (bad request, too large, ...):
#: later notifications are still tried. 401/403/404/410, 408, 429 and 5xx stop the destination.
_MESSAGE_REFUSED = frozenset({400, 409, 413, 415, 422})
USER_AGENT = f"datafold-notifier/{__version__}"


def _signer(secret: str) -> Webhook:
    """A `whsec_`-prefixed base64 secret as Standard Webhooks defines it, or ValueError."""
    try:
        return Webhook(whsec_key(secret))
    except ValueError:
        raise ValueError("NOTIFIER_WEBHOOK_SECRET is not a valid whsec_ secret") from None


def _utc_now() -> datetime:
    return datetime.now(UTC)


class WebhookSink:
    """POSTs `webhook_body`; `webhook-id` is the notification ID, stable across retries.

    Success is any 2xx. Redirects are not followed: a moved endpoint is reported, not guessed at.
    """

    def __init__(
        self,
        url: str,
        *,
        secret: str | Sequence[str] | None,
        session: aiohttp.ClientSession,
        timeout: float = 30,
        clock: Callable[[], datetime] | None = None,
        name: str | None = None,
        payload_format: Literal["standard", "alertmanager"] = "standard",
        external_url: str = "",
    ) -> None:
        self.name = name or webhook_destination_name(url)
        self._url = url
        self._format = payload_format
        self._external_url = external_url
        secrets = [secret] if isinstance(secret, str) else list(secret or [])
        # Several secrets during a rotation: one signature each, space-separated.
        self._signers = [_signer(s) for s in secrets]
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock or _utc_now

    @classmethod
    def from_destination(
        cls, name: str, destination: WebhookDestination, context: SinkContext
    ) -> WebhookSink:
        """The sink for a `webhook` destination of the routes (either payload format)."""
        return cls(
            destination.url.get_secret_value(),
            secret=[secret.get_secret_value() for secret in destination.secrets],
            session=context.session,
            timeout=context.timeout,
            name=name,
            payload_format=destination.format,
            external_url=context.external_url,
        )

    def __repr__(self) -> str:
        return f"WebhookSink(name={self.name!r}, signatures={len(self._signers)})"

    def body(self, notification: Notification) -> str:
        """The payload in this destination's format; the same bytes on every retry."""
        if self._format == "alertmanager":
            return notification_body(
                notification, receiver=self.name, external_url=self._external_url
            )
        return webhook_payload.webhook_body(notification)

    @property
    def signed(self) -> bool:
        """Whether requests carry a `webhook-signature`."""
        return bool(self._signers)

    def request_headers(self, notification: Notification, body: str) -> dict[str, str]:
        """Headers for one attempt: the timestamp (and so the signature) is the attempt's own."""
        sent_at = int(as_utc(self._clock()).timestamp())
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": notification.id,
            "webhook-timestamp": str(sent_at),
        }
        if self._signers:
            when = datetime.fromtimestamp(sent_at, UTC)
            headers["webhook-signature"] = " ".join(
                signer.sign(notification.id, when, body) for signer in self._signers
            )
        return headers

    async def send(self, notification: Notification, thread: MessageRef | None = None) -> None:
        """Deliver once; any non-2xx answer or transport failure raises `DeliveryError`.

        A webhook has no threads or updates: `thread` is ignored and nothing is returned.
        """
        body = self.body(notification)
        headers = self.request_headers(notification, body)
        try:
            async with self._session.post(
                self._url,
                data=body.encode(),
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as error:
            # aiohttp's messages carry the URL: name the class only.
            reason = f"could not reach the webhook: {type(error).__name__}"
            raise DeliveryError(self.name, reason) from None
        if 200 <= status < 300:
            return
        raise DeliveryError(
            self.name,
            f"HTTP {status}",
            retry_after=retry_after_seconds(retry_after, as_utc(self._clock())),
            whole_destination=status not in _MESSAGE_REFUSED,
        )

    async def check(self) -> list[CheckResult]:
        """HEAD the URL: any answer below 500 shows the endpoint is there."""
        try:
            async with self._session.head(
                self._url, timeout=self._timeout, allow_redirects=False
            ) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            return [CheckResult(self.name, False, f"webhook unreachable: {type(error).__name__}")]
        if status >= 500:
            return [CheckResult(self.name, False, f"webhook answered HEAD with HTTP {status}")]
        signing = "signed" if self.signed else "unsigned: no signing secret is set"
        return [CheckResult(self.name, True, f"webhook reachable (HEAD: HTTP {status}; {signing})")]
