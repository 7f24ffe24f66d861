"""Shared fixtures."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from notifier.store.file import StateFile
from tests.fakes.cli import World, make_world
from tests.fakes.cycle import Clock
from tests.fakes.postgres import (
    postgres_server_fixture,  # noqa: F401  # the session's PostgreSQL, registered by importing it
    postgres_url_fixture,  # noqa: F401
)
from tests.fakes.slack import CHANNEL, OTHER, FakeSlack
from tests.fakes.source import FakeSource
from tests.fakes.subprocess_daemon import reaper_fixture  # noqa: F401  # registered by importing
from tests.fakes.webhook import WebhookReceiver


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    """The simulator, a fake Slack and a webhook receiver, served, with the CLI's environment."""
    async with make_world(tmp_path) as built:
        yield built


@pytest.fixture
def clock() -> Clock:
    """The time cycles see; moved on by hand."""
    return Clock()


@pytest.fixture
def source() -> FakeSource:
    """An in-memory run source."""
    return FakeSource()


@pytest.fixture
def store(tmp_path: Path) -> StateFile:
    """A real state file in the test's directory."""
    return StateFile(tmp_path / "state.json")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client session for the sinks and clients under test, closed afterwards."""
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
async def slack() -> AsyncIterator[tuple[FakeSlack, str]]:
    """A served FakeSlack with channels CHANNEL and OTHER, and its base URL."""
    fake = FakeSlack(channels={CHANNEL: "data-alerts", OTHER: "other"})
    async with fake.serve() as base_url:
        yield fake, base_url


@pytest.fixture
async def closed_url() -> str:
    """A webhook URL on which nothing listens any more."""
    async with WebhookReceiver().serve() as url:
        pass
    return url


#: The prefixes of every variable the notifier reads.
SETTING_PREFIXES = (
    "DATAFOLD_",
    "NOTIFIER_",
    "SLACK_",
    "PAGERDUTY_",
    "TEAMS_",
    "ALERTMANAGER_",
    "APPRISE_",
)


@pytest.fixture
def bare_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No variable of the notifier's (DATAFOLD_, NOTIFIER_, and each destination kind's) set,
    and the test's directory as the working one (no stray .env): settings come only from what
    the test sets."""
    for name in list(os.environ):
        if name.startswith(SETTING_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Show under the results what a test recorded as `record_property("terminal_summary",
    line)`, passed or failed: where the browser test saved the status page's screenshot."""
    lines = [
        str(value)
        for reports in terminalreporter.stats.values()
        for report in reports
        for name, value in getattr(report, "user_properties", ())
        if name == "terminal_summary"
    ]
    for line in dict.fromkeys(lines):
        terminalreporter.write_line(line)
