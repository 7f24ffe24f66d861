"""fan_out: every monitor handled once, at most `width` at once, none before its offset."""

from __future__ import annotations

import asyncio

import pytest

from notifier.fetch.monitors import fan_out


@pytest.mark.parametrize(("monitors", "width"), [(0, 4), (1, 4), (3, 4), (50, 4), (50, 1)])
async def test_every_monitor_once_never_more_than_width_at_once(monitors: int, width: int) -> None:
    handled: list[int] = []
    in_flight = most = 0

    async def handle(monitor_id: int) -> None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0)
        handled.append(monitor_id)
        in_flight -= 1

    await fan_out(range(monitors), handle, width=width)

    assert sorted(handled) == list(range(monitors))
    assert most == min(width, monitors)


async def test_monitors_start_in_offset_order_and_not_before_their_offset() -> None:
    loop = asyncio.get_running_loop()
    offsets = {1: 0.06, 2: 0.0, 3: 0.03, 4: 0.0}
    started: dict[int, float] = {}
    begun = loop.time()

    async def handle(monitor_id: int) -> None:
        started[monitor_id] = loop.time() - begun

    await fan_out([1, 2, 3, 4], handle, offset=offsets.__getitem__, width=2)

    assert list(started) == [2, 4, 3, 1]  # earliest first; equal offsets keep their order
    assert all(started[m] >= offsets[m] for m in offsets)


async def test_a_waiting_monitor_holds_no_place_from_one_already_due() -> None:
    """Monitors are taken in offset order, so one sleeping until its offset never holds up
    one due earlier."""
    order: list[int] = []

    async def handle(monitor_id: int) -> None:
        order.append(monitor_id)

    await fan_out([9, 8], handle, offset={9: 0.05, 8: 0.0}.__getitem__, width=1)

    assert order == [8, 9]
