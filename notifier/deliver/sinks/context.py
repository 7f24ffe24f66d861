"""What every sink built from a destination model shares, so the wiring's registry stays a dict
of one `from_destination` per destination kind."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import aiohttp

from notifier.deliver.sinks.pacer import ChannelPacer


@dataclass(frozen=True)
class SinkContext:
    """The process's HTTP session and request timeout, the pacer every Slack sink shares (one
    channel, one rate), Slack's API URL, the Datafold URL receivers link back to, and the TLS
    context, and the poll interval."""

    session: aiohttp.ClientSession
    timeout: float
    slack_pacer: ChannelPacer
    slack_api_url: str = "https://slack.com/api/"
    external_url: str = ""
    #: The process's TLS settings (its CA bundle) for sinks that open their own connections
    #: (SMTP); None: the system's default verification.
    tls: ssl.SSLContext | None = None
    #: Seconds between poll cycles, for sinks that must re-send what still holds (Alertmanager).
    poll_interval: float = 60.0
