"""The Alertmanager sink: Datafold incidents as alerts inside Prometheus Alertmanager, through
its push API (`POST /api/v2/alerts`, rendered by `render.alertmanager_push`).

Alertmanager keys an alert by its labels and forgets one whose `endsAt` has passed, so a firing
alert is posted with `endsAt` a hold ahead and posted again every cycle (`hold`) while its
incident is open; a recovery posts it with `endsAt` = now. Posting the same labels again is
harmless, which makes the label set this kind's idempotency key: a retry, or a restart that
re-sends, updates the one alert. The URL (and `token`, when set) are treated as secrets.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import aiohttp

from notifier import __version__
from notifier.bounded_http import read_capped
from notifier.deliver.render.alertmanager_push import alerts_body, held_alerts, push_alerts
from notifier.deliver.sink import CheckResult, DeliveryError
from notifier.deliver.sinks.context import SinkContext
from notifier.domain.models import MessageRef, Notification
from notifier.domain.text import one_line, without_secrets
from notifier.domain.values import retry_after_seconds
from notifier.route.destinations import AlertmanagerDestination

USER_AGENT: Final = f"datafold-notifier/{__version__}"
#: The shortest hold: Alertmanager's own default `resolve_timeout`.
HOLD_MIN: Final = timedelta(minutes=5)
#: As Prometheus does (four times its resend delay): a hold of four poll intervals outlasts a few
#: missed cycles before Alertmanager ends an alert on its own.
HOLD_INTERVALS: Final = 4
#: Alerts per request when many incidents are open: under a kilobyte each (under 400 KB a
#: request), up to about 5 KB more for one whose `error` annotation holds 4,000 characters.
BATCH_MAX: Final = 500
#: 400 (invalid alerts) refuses these alerts on their own merits; everything else is the
#: destination failing (down, auth, rate limit) and keeps them in the outbox.
_REFUSED: Final = frozenset({400, 422})
#: How much of an error answer the reason quotes (Alertmanager explains a 400 in its body).
_ANSWER_MAX: Final = 64 * 1024
_REASON_MAX: Final = 200


def _utc_now() -> datetime:
    return datetime.now(UTC)


def default_hold(poll_interval: float) -> timedelta:
    """How far ahead `endsAt` goes when the destination does not say: four poll intervals, at
    least five minutes."""
    return max(HOLD_MIN, timedelta(seconds=HOLD_INTERVALS * poll_interval))


class AlertmanagerSink:
    """Posts each notification's alerts; `hold` posts the open incidents' alerts again."""

    def __init__(
        self,
        url: str,
        *,
        session: aiohttp.ClientSession,
        name: str = "alertmanager",
        token: str | None = None,
        hold: timedelta = HOLD_MIN,
        labels: Mapping[str, str] | None = None,
        timeout: float = 30,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.name = name
        self._base = url.rstrip("/")
        self._token = token
        self._hold = hold
        self._labels = dict(labels or {})
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock or _utc_now

    @classmethod
    def from_destination(
        cls, name: str, destination: AlertmanagerDestination, context: SinkContext
    ) -> AlertmanagerSink:
        """The sink for an `alertmanager` destination of the routes."""
        hold = destination.hold
        return cls(
            destination.url.get_secret_value(),
            session=context.session,
            name=name,
            token=None if destination.token is None else destination.token.get_secret_value(),
            hold=default_hold(context.poll_interval) if hold is None else timedelta(seconds=hold),
            labels=destination.labels,
            timeout=context.timeout,
        )

    def __repr__(self) -> str:
        return f"AlertmanagerSink(name={self.name!r}, url=<redacted>)"

    async def send(self, notification: Notification, thread: MessageRef | None = None) -> None:
        """Post the notification's alerts (firing, or ended by a recovery); `thread` is ignored."""
        now = self._clock()
        await self._post(push_alerts(notification, now=now, hold=self._hold, labels=self._labels))

    async def hold(self, notifications: Sequence[Notification]) -> None:
        """Post the open incidents' alerts again, with `endsAt` moved a hold ahead."""
        now = self._clock()
        alerts = held_alerts(notifications, now=now, hold=self._hold, labels=self._labels)
        for start in range(0, len(alerts), BATCH_MAX):
            await self._post(alerts[start : start + BATCH_MAX])

    def _headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", "user-agent": USER_AGENT}
        if self._token is not None:
            headers["authorization"] = f"Bearer {self._token}"
        return headers

    async def _post(self, alerts: list[dict[str, Any]]) -> None:
        if not alerts:
            return
        request = self._session.post(
            f"{self._base}/api/v2/alerts",
            data=alerts_body(alerts),
            headers=self._headers(),
            timeout=self._timeout,
            allow_redirects=False,
        )
        try:
            async with request as response:
                status, retry_after = response.status, response.headers.get("Retry-After")
                answer = b"" if status < 300 else await read_capped(response, _ANSWER_MAX)
        except (aiohttp.ClientError, TimeoutError) as error:
            # aiohttp's messages carry the URL: name the class only.
            reason = f"could not reach Alertmanager: {type(error).__name__}"
            raise DeliveryError(self.name, reason) from None
        if 200 <= status < 300:
            return
        # A proxy in front may say back what it was sent: the reason is kept in the state and
        # shown on the status page, which no log redaction reaches.
        said = without_secrets(answer.decode("utf-8", "replace"), (self._token, self._base))
        said = one_line(said, _REASON_MAX)
        raise DeliveryError(
            self.name,
            f"Alertmanager answered HTTP {status}" + (f": {said}" if said else ""),
            retry_after=retry_after_seconds(retry_after, self._clock()),
            whole_destination=status not in _REFUSED,
            permanent=status in _REFUSED,
        )

    async def check(self) -> list[CheckResult]:
        """`GET /api/v2/status`: reachable, the token accepted, and Alertmanager's version and
        cluster status; posts nothing."""
        try:
            async with self._session.get(
                f"{self._base}/api/v2/status",
                headers=self._headers(),
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                status = response.status
                body = await read_capped(response, _ANSWER_MAX) if status == 200 else b""
        except (aiohttp.ClientError, TimeoutError) as error:
            detail = f"Alertmanager unreachable: {type(error).__name__}"
            return [CheckResult(self.name, False, detail)]
        if status != 200:
            return [CheckResult(self.name, False, f"Alertmanager answered HTTP {status}")]
        return [CheckResult(self.name, True, _status_line(body))]


def _status_line(body: bytes) -> str:
    """What `check` says of a 200 from `/api/v2/status`: the version and cluster status."""

    try:
        status = json.loads(body)
        version = status["versionInfo"]["version"]
        cluster = status["cluster"]["status"]
    except (ValueError, KeyError, TypeError):
        return "reachable, but /api/v2/status is not Alertmanager's answer"
    return one_line(f"Alertmanager {version} reachable (cluster: {cluster})", _REASON_MAX)
