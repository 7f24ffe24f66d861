"""Shared fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.cli import World, make_world


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    """The simulator, a fake Slack and a webhook receiver, served, with the CLI's environment."""
    async with make_world(tmp_path) as built:
        yield built
