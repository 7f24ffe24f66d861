"""Shared fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from notifier.store.file import StateFile
from tests.fakes.cli import World, make_world
from tests.fakes.cycle import Clock
from tests.fakes.postgres import (
    postgres_server_fixture,  # noqa: F401  # the session's PostgreSQL, registered by importing it
    postgres_url_fixture,  # noqa: F401
)
from tests.fakes.source import FakeSource
from tests.fakes.subprocess_daemon import reaper_fixture  # noqa: F401  # registered by importing


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
