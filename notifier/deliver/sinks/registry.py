"""The explicit registry of destination kinds: a routes file's `type` to the sink built for it.

A new kind adds one line here (and its sink module, renderer and destination model); nothing is
found by scanning or registered at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from notifier.deliver.sink import Sink
from notifier.deliver.sinks.alertmanager import AlertmanagerSink
from notifier.deliver.sinks.apprise import AppriseSink
from notifier.deliver.sinks.context import SinkContext
from notifier.deliver.sinks.email import EmailSink
from notifier.deliver.sinks.pagerduty import PagerDutySink
from notifier.deliver.sinks.slack import SlackBotSink
from notifier.deliver.sinks.slack_webhook import SlackWebhookSink
from notifier.deliver.sinks.teams import TeamsSink
from notifier.deliver.sinks.webhook import WebhookSink
from notifier.route.destinations import AnyDestination

#: Builds the sink for one destination model, named as the routes name it.
SinkFactory = Callable[[str, Any, SinkContext], Sink]

SINK_FACTORIES: dict[str, SinkFactory] = {
    "slack": SlackBotSink.from_destination,
    "slack-webhook": SlackWebhookSink.from_destination,
    "webhook": WebhookSink.from_destination,
    "email": EmailSink.from_destination,
    "pagerduty": PagerDutySink.from_destination,
    "teams": TeamsSink.from_destination,
    "apprise": AppriseSink.from_destination,
    "alertmanager": AlertmanagerSink.from_destination,
}


def build_sink(name: str, destination: AnyDestination, context: SinkContext) -> Sink:
    """The sink for `destination`, by its kind."""
    return SINK_FACTORIES[destination.type](name, destination, context)
