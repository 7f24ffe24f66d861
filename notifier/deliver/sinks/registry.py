"""The explicit registry of destination kinds: a routes file's `type` to the sink built for it.

A new kind adds one line here (and its sink module, renderer and destination model); nothing is
found by scanning or registered at import time. A sink's module (and its library: slack_sdk,
aiosmtplib, apprise, standardwebhooks) is loaded when the first destination of its kind is
built, so a process pays in memory and start-up only for the kinds its routes use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from notifier.deliver.sink import Sink
from notifier.deliver.sinks.context import SinkContext
from notifier.route.destinations import AnyDestination

#: Builds the sink for one destination model, named as the routes name it.
SinkFactory = Callable[[str, Any, SinkContext], Sink]


def _slack(name: str, destination: Any, context: SinkContext) -> Sink:
    from notifier.deliver.sinks.slack import SlackBotSink

    return SlackBotSink.from_destination(name, destination, context)


def _slack_webhook(name: str, destination: Any, context: SinkContext) -> Sink:
    from notifier.deliver.sinks.slack_webhook import SlackWebhookSink

    return SlackWebhookSink.from_destination(name, destination, context)


def _webhook(name: str, destination: Any, context: SinkContext) -> Sink:
    from notifier.deliver.sinks.webhook import WebhookSink

    return WebhookSink.from_destination(name, destination, context)


def _email(name: str, destination: Any, context: SinkContext) -> Sink:
    from notifier.deliver.sinks.email import EmailSink

    return EmailSink.from_destination(name, destination, context)


def _pagerduty(name: str, destination: Any, context: SinkContext) -> Sink:
    from notifier.deliver.sinks.pagerduty import PagerDutySink

    return PagerDutySink.from_destination(name, destination, context)


def _teams(name: str, destination: Any, context: SinkContext) -> Sink:
    from notifier.deliver.sinks.teams import TeamsSink

    return TeamsSink.from_destination(name, destination, context)


def _apprise(name: str, destination: Any, context: SinkContext) -> Sink:
    from notifier.deliver.sinks.apprise import AppriseSink

    return AppriseSink.from_destination(name, destination, context)


def _alertmanager(name: str, destination: Any, context: SinkContext) -> Sink:
    from notifier.deliver.sinks.alertmanager import AlertmanagerSink

    return AlertmanagerSink.from_destination(name, destination, context)


SINK_FACTORIES: dict[str, SinkFactory] = {
    "slack": _slack,
    "slack-webhook": _slack_webhook,
    "webhook": _webhook,
    "email": _email,
    "pagerduty": _pagerduty,
    "teams": _teams,
    "apprise": _apprise,
    "alertmanager": _alertmanager,
}


def build_sink(name: str, destination: AnyDestination, context: SinkContext) -> Sink:
    """The sink for `destination`, by its kind."""
    return SINK_FACTORIES[destination.type](name, destination, context)
