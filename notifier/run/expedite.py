"""Triggered polls inside a running regular cycle (the push trigger's fast lane).

A trigger that arrives while a regular cycle is polling does not wait for the cycle to end (at
5,000 monitors a polling cycle takes about 17 s): its monitor is polled at once, beside the
cycle's own polls, through the cycle's delivery workers and into its report and save. One poll
of a monitor at a time: a triggered poll of a monitor whose poll is under way waits for it, then
polls again (the run may have turned `alert` after that listing), so no two polls of one
monitor ever adopt at once. Once the cycle's polls are done the lane closes, and triggers go to
a partial cycle after it (`TriggerLoop`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from functools import partial


class Expedite:
    """The lane: `exclusive` wraps every poll of a regular cycle and of the lane; `window` is
    open while the cycle polls; `offer` starts triggered polls while it is open."""

    def __init__(self) -> None:
        #: Monitors whose poll is under way, and the event set when it ends.
        self._busy: dict[int, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._poll: Callable[[int], Awaitable[None]] | None = None

    async def exclusive(self, monitor_id: int, poll: Callable[[], Awaitable[None]]) -> None:
        """Run `poll` once no other poll of `monitor_id` is under way."""
        while (busy := self._busy.get(monitor_id)) is not None:
            await busy.wait()
        done = self._busy[monitor_id] = asyncio.Event()
        try:
            await poll()
        finally:
            del self._busy[monitor_id]
            done.set()

    @contextlib.asynccontextmanager
    async def window(self, poll: Callable[[int], Awaitable[None]]) -> AsyncIterator[None]:
        """Open the lane while the body (a cycle's polls) runs, with `poll(monitor_id)` as the
        triggered poll; on leaving, wait for the triggered polls it started (cancel them when
        the cycle itself is cancelled or failed)."""
        self._poll = poll
        try:
            yield
        except BaseException:
            self._poll = None
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            raise
        self._poll = None
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def offer(self, monitor_ids: Collection[int]) -> bool:
        """Poll `monitor_ids` now, within the open window; False (nothing started) when it is
        closed."""
        poll = self._poll
        if poll is None:
            return False
        for monitor_id in monitor_ids:
            task = asyncio.create_task(self.exclusive(monitor_id, partial(poll, monitor_id)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return True
