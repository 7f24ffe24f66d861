"""The push trigger's fast lane: a trigger that arrives while a regular cycle polls is polled at
once inside that cycle (through its delivery workers, report and save), one poll of a monitor at
a time, instead of waiting for the cycle's end."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

import pytest

from notifier.domain.models import MonitorRun
from notifier.fetch.datafold import URGENT
from notifier.run.cycle import Notifier
from notifier.run.expedite import Expedite
from notifier.store.file import StateFile
from tests.fakes.cycle import Clock, cycle_config
from tests.fakes.source import FakeDigestSink, FakeSink, FakeSource

pytestmark = pytest.mark.timeout(20)


@dataclass
class GatedSource(FakeSource):
    """A FakeSource whose listing of `gated` waits for `gate`, as a slow API would; it notes
    which listings ran as urgent and when each began and ended."""

    gated: int | None = None
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    log: list[tuple[str, int, bool]] = field(default_factory=list)

    async def list_runs(
        self, monitor_id: int, since: datetime, until: datetime | None = None
    ) -> list[MonitorRun]:
        self.log.append(("begin", monitor_id, URGENT.get()))
        if monitor_id == self.gated:
            await self.gate.wait()
        try:
            return await super().list_runs(monitor_id, since, until)
        finally:
            self.log.append(("end", monitor_id, URGENT.get()))


async def eventually(check: object, within: float = 5) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "never happened"
        await asyncio.sleep(0.01)


async def test_a_monitor_triggered_during_a_cycle_is_polled_and_notified_before_it_ends(
    store: StateFile, clock: Clock
) -> None:
    source = GatedSource()
    slack = FakeDigestSink("slack")  # waits for the polls' end to decide on a digest...
    notifier = Notifier(source, store, {"slack": slack}, cycle_config(), clock=clock)
    await notifier.run_cycle()
    assert not notifier.expedite([1])  # no cycle polling: no lane
    clock.tick()
    source.gated = 2
    source.log.clear()
    cycle = asyncio.create_task(notifier.run_cycle())
    await eventually(lambda: source.log[-1:] == [("begin", 2, False)])  # the cycle waits on 2
    assert ("end", 1, False) in source.log  # and has listed monitor 1 already
    source.put(1, 11, "alert", clock.now)  # turns alert after its listing in this cycle
    assert notifier.expedite([1, 99])  # 99 is not watched: left out
    await eventually(lambda: slack.sent_keys == ["1-11-alert"])  # ... but not for a trigger's
    assert not cycle.done()  # notified while the cycle still waits on monitor 2
    assert ("begin", 1, True) in source.log and ("begin", 99, True) not in source.log
    source.gate.set()
    report = await cycle
    assert slack.sent_keys == ["1-11-alert"] and report.state_saved
    assert 11 in (await StateFile(store.path).load()).monitors[1].runs
    assert not notifier.expedite([1])  # the lane closed with the cycle's polls


async def test_a_monitor_being_polled_is_polled_again_after_not_beside(
    store: StateFile, clock: Clock
) -> None:
    source = GatedSource()
    slack = FakeSink("slack")
    notifier = Notifier(source, store, {"slack": slack}, cycle_config(), clock=clock)
    await notifier.run_cycle()
    clock.tick()
    source.gated = 2
    source.log.clear()
    cycle = asyncio.create_task(notifier.run_cycle())
    await eventually(lambda: ("begin", 2, False) in source.log)
    source.put(2, 21, "error", clock.now)
    assert notifier.expedite([2])
    await asyncio.sleep(0.05)
    assert [e for e in source.log if e[1] == 2] == [("begin", 2, False)]  # waits its turn
    source.gated = None
    source.gate.set()
    await cycle
    assert [e for e in source.log if e[1] == 2] == [
        ("begin", 2, False),
        ("end", 2, False),
        ("begin", 2, True),
        ("end", 2, True),
    ]
    assert slack.sent_keys == ["2-21-error"]  # found by one of the two polls, sent once


async def test_the_lane_runs_one_poll_of_a_monitor_at_a_time_and_drains_on_close() -> None:
    lane = Expedite()
    running: set[int] = set()
    overlaps: list[int] = []
    done: list[int] = []

    async def poll(monitor_id: int) -> None:
        if monitor_id in running:
            overlaps.append(monitor_id)
        running.add(monitor_id)
        await asyncio.sleep(0.02)
        running.discard(monitor_id)
        done.append(monitor_id)

    assert not lane.offer([1])
    async with lane.window(poll):
        assert lane.offer([1, 1, 2])
        await lane.exclusive(1, lambda: poll(1))
    assert not lane.offer([1])
    assert overlaps == [] and sorted(done) == [1, 1, 1, 2]  # every poll ran before the close


async def test_a_failed_cycle_cancels_its_triggered_polls() -> None:
    lane = Expedite()
    started = asyncio.Event()

    async def stuck(monitor_id: int) -> None:
        started.set()
        await asyncio.Event().wait()

    with pytest.raises(RuntimeError):
        async with lane.window(stuck):
            assert lane.offer([1])
            await started.wait()
            raise RuntimeError("the cycle failed")
    assert not lane.offer([1])


@dataclass
class DoorSource(FakeSource):
    """A FakeSource with the Datafold client's door: a cycle's listings pass it `width` at a
    time, each taking `latency` seconds; an urgent listing (a trigger's) skips it."""

    width: int = 2
    latency: float = 0.02
    log: list[tuple[int, bool]] = field(default_factory=list)
    door: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self.door = asyncio.Semaphore(self.width)

    async def list_runs(
        self, monitor_id: int, since: datetime, until: datetime | None = None
    ) -> list[MonitorRun]:
        if URGENT.get():
            self.log.append((monitor_id, True))
            return await super().list_runs(monitor_id, since, until)
        async with self.door:
            self.log.append((monitor_id, False))
            await asyncio.sleep(self.latency)
            return await super().list_runs(monitor_id, since, until)


@pytest.mark.parametrize(("polls_at_once", "waits"), [(8, False), (1040, True)])
async def test_a_triggered_poll_waits_at_the_door_only_when_the_cycle_took_its_monitor_up(
    store: StateFile, clock: Clock, polls_at_once: int, waits: bool
) -> None:
    """A cycle holds a monitor's turn from when it takes the monitor up; when it takes up far
    more than its listings can serve (the old fixed width), a monitor late in the order sits
    at the door with its turn held, and a trigger's poll of it waits there for the queue."""
    monitors = tuple(range(1, 121))
    source = DoorSource()
    slack = FakeSink("slack")
    config = cycle_config(monitors, polls_at_once=polls_at_once)
    notifier = Notifier(source, store, {"slack": slack}, config, clock=clock)
    await notifier.run_cycle()
    clock.tick()
    source.log.clear()
    cycle = asyncio.create_task(notifier.run_cycle())
    await eventually(lambda: len(source.log) >= 4)  # the cycle lists its first monitors
    source.put(110, 1101, "alert", clock.now)
    assert notifier.expedite([110])
    await eventually(lambda: slack.sent_keys == ["110-1101-alert"])
    regular_listings_before = len([e for e in source.log if not e[1]])
    await cycle
    order = [urgent for monitor_id, urgent in source.log if monitor_id == 110]
    # waiting: the regular listing came first (the queue ahead of it, ~55 listings at 2 a time)
    assert order == ([False, True] if waits else [True, False])
    if not waits:
        assert regular_listings_before < 60  # sent before the cycle reached monitor 110
    assert slack.sent_keys == ["110-1101-alert"]
