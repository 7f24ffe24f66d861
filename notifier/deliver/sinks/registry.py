"""The explicit registry of destination kinds: a routes file's `type` to the sink built for it.

A new kind adds one line here (and its sink module, renderer and destination model); nothing is
found by scanning or registered at import time. A sink's module (and its library: slack_sdk,
aiosmtplib, apprise, standardwebhooks) is loaded when the first destination of its kind is
built, so a process pays in memory and start-up only for the kinds its routes use.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any

from notifier.deliver.sink import Sink
from notifier.deliver.sinks.context import SinkContext
from notifier.route.destinations import AnyDestination

#: Builds the sink for one destination model, named as the routes name it.
SinkFactory = Callable[[str, Any, SinkContext], Sink]


def _lazy(module: str, sink_class: str) -> SinkFactory:
    """A factory that imports `notifier.deliver.sinks.<module>` on its first use."""

    def build(name: str, destination: Any, context: SinkContext) -> Sink:
        found = getattr(import_module(f"notifier.deliver.sinks.{module}"), sink_class)
        sink: Sink = found.from_destination(name, destination, context)
        return sink

    return build


SINK_FACTORIES: dict[str, SinkFactory] = {
    "slack": _lazy("slack", "SlackBotSink"),
    "slack-webhook": _lazy("slack_webhook", "SlackWebhookSink"),
    "webhook": _lazy("webhook", "WebhookSink"),
    "email": _lazy("email", "EmailSink"),
    "pagerduty": _lazy("pagerduty", "PagerDutySink"),
    "teams": _lazy("teams", "TeamsSink"),
    "apprise": _lazy("apprise", "AppriseSink"),
    "alertmanager": _lazy("alertmanager", "AlertmanagerSink"),
}


def build_sink(name: str, destination: AnyDestination, context: SinkContext) -> Sink:
    """The sink for `destination`, by its kind."""
    return SINK_FACTORIES[destination.type](name, destination, context)
