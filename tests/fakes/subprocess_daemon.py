"""A `datafold-notifier run` subprocess whose JSON log lines are collected as they arrive.

Crash and high-availability tests start, kill and stop real daemons and wait for their events
with deadlines instead of sleeping.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.fakes.cli import CLI

Event = dict[str, Any]


class Daemon:
    """A `datafold-notifier run` subprocess whose JSON log lines are collected as they come.

    `arrived[i]` is when `events[i]` was read (`time.monotonic()`), for measuring takeovers.
    """

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[Event] = []
        self.arrived: list[float] = []
        self.loose: list[str] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(
        cls, env: dict[str, str], preexec_fn: Callable[[], None] | None = None
    ) -> Daemon:
        proc = await asyncio.create_subprocess_exec(
            CLI,
            "run",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=preexec_fn,
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            line = raw.decode().strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                self.loose.append(line)
            else:
                self.events.append(event)
                self.arrived.append(time.monotonic())

    @property
    def output(self) -> str:
        """Everything it wrote to stderr so far, one line per event (for secret checks)."""
        return "\n".join([json.dumps(event) for event in self.events] + self.loose)

    def find(
        self, name: str, start: int = 0, where: Callable[[Event], bool] | None = None
    ) -> int | None:
        """Index of the first event `name` at or after `start` that `where` accepts."""
        for index in range(start, len(self.events)):
            event = self.events[index]
            if event.get("event") == name and (where is None or where(event)):
                return index
        return None

    def event(self, name: str) -> Event | None:
        """The first event `name` logged so far, if any."""
        index = self.find(name)
        return None if index is None else self.events[index]

    def named(self, name: str) -> list[Event]:
        """Every event `name` logged so far."""
        return [event for event in self.events if event.get("event") == name]

    async def wait_for(self, predicate: Callable[[], bool], within: float = 20) -> None:
        """Until `predicate` holds; fails after `within` seconds or if the daemon exits, with
        its last events and loose lines (a traceback at start-up, say)."""
        deadline = time.monotonic() + within
        while not predicate():
            assert time.monotonic() < deadline, f"timed out; last events: {self.events[-6:]}"
            if self.proc.returncode is not None:
                await asyncio.wait_for(self._reader, timeout=5)
                raise AssertionError(f"daemon exited: {self.events[-6:]} {self.loose[-6:]}")
            await asyncio.sleep(0.02)

    async def wait_event(
        self,
        name: str,
        start: int = 0,
        where: Callable[[Event], bool] | None = None,
        within: float = 20,
    ) -> int:
        found: list[int] = []

        def seen() -> bool:
            index = self.find(name, start, where)
            if index is not None:
                found.append(index)
            return bool(found)

        await self.wait_for(seen, within)
        return found[0]

    async def kill(self) -> str:
        """SIGKILL; return the last event it had logged (where in the cycle it died)."""
        assert self.proc.returncode is None, f"daemon died on its own: {self.events[-6:]}"
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        await self._reader
        return str(self.events[-1].get("event")) if self.events else "(nothing)"

    async def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), timeout=15)
        await self._reader
        return code


@pytest.fixture(name="reaper")
async def reaper_fixture() -> AsyncIterator[list[Daemon]]:
    """Daemons a test starts; whatever is still alive at the end (a failed test) is killed."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        if daemon.proc.returncode is None:
            daemon.proc.kill()
            await daemon.proc.wait()
