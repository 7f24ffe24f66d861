"""Each sink is built from its destination model by `from_destination`, so the wiring's registry
is one entry per destination kind."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Literal

import aiohttp
import pytest
from pydantic import SecretStr

from notifier.deliver.render.alertmanager import notification_body
from notifier.deliver.sink import DigestSink
from notifier.deliver.sinks.context import SinkContext
from notifier.deliver.sinks.email import EmailSink
from notifier.deliver.sinks.pagerduty import PagerDutySink
from notifier.deliver.sinks.registry import SINK_FACTORIES
from notifier.deliver.sinks.slack import SlackBotSink
from notifier.deliver.sinks.slack_transport import ChannelPacer
from notifier.deliver.sinks.slack_webhook import SlackWebhookSink
from notifier.deliver.sinks.teams import TeamsSink
from notifier.deliver.sinks.webhook import WebhookSink
from notifier.route.destinations import (
    DESTINATION_TYPES,
    EmailDestination,
    PagerDutyDestination,
    SlackDestination,
    SlackWebhookDestination,
    TeamsDestination,
    WebhookDestination,
)
from tests.test_slack_render import make

TOKEN = "xoxb-1234-factory-secret"
HOOK_URL = "https://hooks.slack.com/services/T0/B0/factory-secret"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
async def context() -> AsyncIterator[SinkContext]:
    async with aiohttp.ClientSession() as session:
        yield SinkContext(
            session=session,
            timeout=7.5,
            slack_pacer=ChannelPacer(),
            slack_api_url="http://127.0.0.1:1/api/",
            external_url="https://app.datafold.com",
        )


def test_every_destination_kind_has_a_factory() -> None:
    assert set(SINK_FACTORIES) == set(DESTINATION_TYPES)


async def test_a_slack_destination_makes_a_bot_sink(context: SinkContext) -> None:
    destination = SlackDestination(
        channel="C0123ABCD",
        token=SecretStr(TOKEN),
        thread=True,
        mentions=["@here"],
        mention_owner=True,
        digest_threshold=5,
    )
    sink = SINK_FACTORIES["slack"]("ops", destination, context)
    assert isinstance(sink, SlackBotSink)
    assert (sink.name, sink.channel, sink.thread) == ("ops", "C0123ABCD", True)
    assert (sink.mentions, sink.mention_owner, sink.digest_threshold) == (("@here",), True, 5)
    assert sink._pacer is context.slack_pacer
    assert TOKEN not in repr(sink)


async def test_a_slack_webhook_destination_makes_a_webhook_sink(context: SinkContext) -> None:
    destination = SlackWebhookDestination(
        url=SecretStr(HOOK_URL), mentions=["@channel"], digest_threshold=3
    )
    sink = SINK_FACTORIES["slack-webhook"]("hook", destination, context)
    assert isinstance(sink, SlackWebhookSink)
    assert (sink.name, sink.mentions, sink.digest_threshold) == ("hook", ("@channel",), 3)
    assert sink._pacer is context.slack_pacer
    assert "factory-secret" not in repr(sink)


@pytest.mark.parametrize("payload_format", ["standard", "alertmanager"])
async def test_a_webhook_destination_makes_a_signed_webhook_sink(
    context: SinkContext, payload_format: Literal["standard", "alertmanager"]
) -> None:
    destination = WebhookDestination(
        url=SecretStr("https://receiver.example/hook"),
        secrets=[SecretStr(WHSEC)],
        format=payload_format,
    )
    sink = SINK_FACTORIES["webhook"]("receiver", destination, context)
    assert isinstance(sink, WebhookSink)
    assert sink.name == "receiver" and sink.signed
    n = make()
    if payload_format == "alertmanager":
        expected = notification_body(n, receiver="receiver", external_url=context.external_url)
        assert sink.body(n) == expected
    assert WHSEC not in repr(sink)


async def test_a_pagerduty_destination_makes_a_pagerduty_sink(context: SinkContext) -> None:
    key = "Pd0123456789abcdef0123456789fact"
    destination = PagerDutyDestination(
        routing_key=SecretStr(key), region="eu", severity={"alert": "warning"}
    )
    sink = SINK_FACTORIES["pagerduty"]("pd", destination, context)
    assert isinstance(sink, PagerDutySink)
    assert sink.name == "pd"
    assert sink._url == "https://events.eu.pagerduty.com/v2/enqueue"
    assert sink._severities == {"alert": "warning", "error": "critical"}
    assert sink._timeout.total == 7.5
    assert key not in repr(sink)


async def test_an_email_destination_makes_an_email_sink(context: SinkContext) -> None:
    destination = EmailDestination(
        host="smtp.example.test",
        username=SecretStr("mailer"),
        password=SecretStr("factory-secret-smtp"),
        sender="notifier@example.test",
        to=["oncall@example.test"],
        digest_threshold=5,
    )
    sink = SINK_FACTORIES["email"]("mail", destination, context)
    assert isinstance(sink, EmailSink)
    assert sink.name == "mail" and sink.digest_threshold == 5
    assert isinstance(sink, DigestSink)
    assert "factory-secret" not in repr(sink)


async def test_a_teams_destination_makes_a_teams_sink(context: SinkContext) -> None:
    url = "https://prod-00.westus.logic.azure.test/workflows/1/triggers?sig=teams-factory-sig"
    destination = TeamsDestination(url=SecretStr(url), digest_threshold=4)
    sink = SINK_FACTORIES["teams"]("chat", destination, context)
    assert isinstance(sink, TeamsSink)
    assert (sink.name, sink.digest_threshold) == ("chat", 4)
    assert sink._session is context.session and sink._timeout.total == 7.5
    assert "teams-factory-sig" not in repr(sink)


def test_a_sink_library_loads_only_with_a_destination_of_its_kind() -> None:
    """The daemon's wiring and the registry import no sink library: each loads with its kind."""
    code = (
        "import sys, notifier.run.wiring, notifier.deliver.sinks.registry\n"
        "libraries = ('slack_sdk', 'aiosmtplib', 'apprise', 'standardwebhooks')\n"
        "print(sorted(m for m in libraries if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
