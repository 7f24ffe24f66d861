"""What a destination would be sent, rendered as its sink renders it, for `once --dry-run --json`.

Each kind's own renderer (and, for Slack, its plan of calls) builds the payload, so the preview
is the request body a real cycle would send; secrets that travel in a body (PagerDuty's routing
key) are masked. Nothing here sends anything.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any, Final

from notifier.deliver.plan import SlackCall, SlackOptions, plan_digest, plan_send
from notifier.deliver.render import teams
from notifier.deliver.render.alertmanager import notification_payload
from notifier.deliver.render.alertmanager_push import held_alerts, push_alerts
from notifier.deliver.render.email import digest_mail, notification_mail
from notifier.deliver.render.markdown import markdown_message
from notifier.deliver.render.pagerduty import pagerduty_event
from notifier.deliver.render.webhook import webhook_payload
from notifier.deliver.sinks.alertmanager import default_hold
from notifier.deliver.sinks.email import THREAD_CHANNEL
from notifier.domain.models import Notification
from notifier.route.destinations import (
    AlertmanagerDestination,
    AnyDestination,
    AppriseDestination,
    EmailDestination,
    PagerDutyDestination,
    SlackDestination,
    SlackWebhookDestination,
    TeamsDestination,
    WebhookDestination,
)
from notifier.run.dry_run import Recorded

#: What a secret carried in a payload is shown as.
MASK: Final = "***"


def preview(
    destination: AnyDestination,
    name: str,
    recorded: Recorded,
    *,
    now: datetime,
    external_url: str,
    poll_interval: float,
) -> Any:
    """The payload(s) `destination` (named `name`) would be sent for `recorded`, as JSON values.

    `now` stands for the time of sending (Alertmanager's `endsAt`); `external_url` and
    `poll_interval` are the settings the real sinks get.
    """
    notifications = recorded.notifications
    if isinstance(destination, SlackDestination | SlackWebhookDestination):
        bot = isinstance(destination, SlackDestination)
        options = SlackOptions(
            channel=destination.channel if isinstance(destination, SlackDestination) else None,
            thread=destination.thread if isinstance(destination, SlackDestination) else False,
            mentions=tuple(destination.mentions),
        )
        if recorded.action == "digest":
            calls = plan_digest(notifications, options)
        else:
            calls = plan_send(notifications[0], recorded.thread, options)
        return [_slack_call(call, bot=bot) for call in calls]
    if isinstance(destination, AlertmanagerDestination):
        configured = destination.hold
        held = default_hold(poll_interval) if configured is None else timedelta(seconds=configured)
        if recorded.action == "hold":
            return held_alerts(notifications, now=now, hold=held, labels=destination.labels)
        return push_alerts(notifications[0], now=now, hold=held, labels=destination.labels)
    if isinstance(destination, EmailDestination):
        if recorded.action == "digest":
            mail = digest_mail(notifications, sender=destination.sender, to=destination.to)
        else:
            thread = recorded.thread
            thread_id = (
                thread.ts if thread is not None and thread.channel == THREAD_CHANNEL else None
            )
            mail = notification_mail(
                notifications[0], sender=destination.sender, to=destination.to, thread_id=thread_id
            )
        return _mail(mail)
    if isinstance(destination, TeamsDestination):
        if recorded.action == "digest":
            return [message.body for message in teams.teams_digest(notifications)]
        return teams.teams_message(notifications[0]).body
    return _single(destination, name, notifications, external_url=external_url)


def _single(
    destination: AnyDestination,
    name: str,
    notifications: Sequence[Notification],
    *,
    external_url: str,
) -> Any:
    """The kinds that get one payload per notification and no digest."""
    n = notifications[0]
    if isinstance(destination, PagerDutyDestination):
        return pagerduty_event(n, routing_key=MASK, severities=destination.severities)
    if isinstance(destination, WebhookDestination):
        if destination.format == "alertmanager":
            return notification_payload(n, receiver=name, external_url=external_url)
        return webhook_payload(n)
    if isinstance(destination, AppriseDestination):
        message = markdown_message(n)
        return {"title": message.title, "body": message.body, "type": message.notify_type}
    raise TypeError(f"no preview for destination type {destination.type!r}")


def _slack_call(call: SlackCall, *, bot: bool) -> dict[str, Any]:
    """One Slack call as the API (or, for a webhook, the POST body) would get it."""
    body: dict[str, Any] = {"text": call.message.text, "blocks": call.message.blocks}
    if not bot:
        return body
    where: dict[str, Any] = {"method": call.method, "channel": call.channel}
    if call.ts is not None:
        where["ts"] = call.ts
    if call.thread_ts is not None:
        where["thread_ts"] = call.thread_ts
    if call.reply_broadcast:
        where["reply_broadcast"] = True
    return {**where, **body}


def _mail(mail: EmailMessage) -> dict[str, Any]:
    """A mail's headers and its plain-text part (the HTML part says the same)."""
    plain = mail.get_body(("plain",))
    text = plain.get_content() if isinstance(plain, EmailMessage) else ""
    return {"headers": {key: str(value) for key, value in mail.items()}, "text": text}


def dumps(value: Any) -> str:
    """The preview as indented JSON text (non-ASCII kept readable)."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)
