"""Our clock an hour off Datafold's: listing windows reach back by the offset read from its
`Date` headers and history is judged on its clock, so nothing is missed, delayed past one cycle,
or taken for news; everything else runs on our own clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from notifier.demo.simulator import Simulator
from notifier.fetch.datafold import DatafoldClient
from notifier.run.cycle import Notifier
from notifier.run.metrics import Metrics
from notifier.run.wiring import datafold_offset
from notifier.store.file import StateFile
from tests.fakes.cycle import cycle_config
from tests.fakes.source import FakeSink


class SkewedClock:
    """Datafold's clock: ours plus `skew`."""

    def __init__(self, skew: timedelta) -> None:
        self.skew = skew

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.skew


@pytest.fixture(params=[timedelta(hours=1), timedelta(hours=-1)], ids=["ours-slow", "ours-fast"])
async def skewed(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[Simulator, str, SkewedClock]]:
    clock = SkewedClock(request.param)
    sim = Simulator("k", clock=clock)
    sim.add_monitor(1, name="orders")
    app = sim.app()

    async def stamp(_: web.Request, response: web.StreamResponse) -> None:
        response.headers["Date"] = format_datetime(clock(), usegmt=True)

    app.on_response_prepare.append(stamp)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield sim, f"http://127.0.0.1:{runner.addresses[0][1]}", clock
    finally:
        await runner.cleanup()


async def test_an_hour_of_skew_neither_misses_nor_invents_news(
    skewed: tuple[Simulator, str, SkewedClock], tmp_path: Path
) -> None:
    sim, url, datafold_now = skewed
    # History: an alert ten minutes ago by Datafold's clock, before watching began.
    sim.add_run(1, state="alert", started_at=datafold_now() - timedelta(minutes=10))
    sink = FakeSink("webhook")
    async with aiohttp.ClientSession() as session:
        client = DatafoldClient(session, url, "k")
        offset = await client.probe_clock()
        assert offset is not None and abs(offset - datafold_now.skew.total_seconds()) < 3
        metrics = Metrics()
        metrics.watch_clock("datafold", lambda: client.clock_offset)
        [line] = [
            line
            for line in metrics.render().decode().splitlines()
            if line.startswith('datafold_notifier_clock_offset_seconds{against="datafold"}')
        ]
        assert abs(float(line.split()[-1]) - datafold_now.skew.total_seconds()) < 3
        notifier = Notifier(
            client,
            StateFile(tmp_path / "state.json"),
            {sink.name: sink},
            cycle_config((1,)),
            source_offset=datafold_offset(client),
        )
        first = await notifier.run_cycle()
        assert first.polled == [1] and sink.sent == []  # history stays quiet

        run_id = sim.add_run(1, state="alert", started_at=datafold_now() - timedelta(seconds=5))
        second = await notifier.run_cycle()
        assert sink.sent_keys == [f"1-{run_id}-alert"]  # found in the very next cycle
        assert second.events == 1

        await notifier.run_cycle()
        assert sink.sent_keys == [f"1-{run_id}-alert"]


class _FixedOffset:
    """A run source's view of Datafold's clock: only `clock_offset` matters here."""

    def __init__(self, offset: float | None) -> None:
        self.clock_offset = offset


@pytest.mark.parametrize(
    ("offset", "applied", "untrusted"),
    [
        (None, 0.0, False),
        (1.5, 0.0, False),  # within the Date header's resolution: our clock
        (-3600.0, -3600.0, False),
        (6 * 3600.0, 6 * 3600.0, False),
        (6 * 3600.0 + 1, 0.0, True),  # a proxy's broken clock: not believed
        (-(10**9), 0.0, True),
    ],
)
def test_a_date_header_far_off_is_not_believed(
    offset: float | None, applied: float, untrusted: bool
) -> None:
    measured = datafold_offset(_FixedOffset(offset))  # type: ignore[arg-type]
    with capture_logs() as logs:
        first, second = measured(), measured()
    assert first == second == applied
    assert [e["event"] for e in logs] == (["clock_offset_untrusted"] if untrusted else [])
