"""The change-feed mode against the simulator: same notifications as polling, fewer requests."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import aiohttp
from structlog.testing import capture_logs

from notifier.demo.server import serve
from notifier.demo.simulator import Simulator
from notifier.fetch.datafold import DatafoldClient
from notifier.run.cycle import Notifier, ServiceConfig
from notifier.store.file import StateFile
from tests.fakes.cycle import T0, Clock, cycle_config
from tests.fakes.source import FakeSink

KEY = "dfk-feed-test-key-123"


def config(monitor_ids: list[int], mode: str, sweep: timedelta) -> ServiceConfig:
    return cycle_config(tuple(monitor_ids), mode=mode, sweep=sweep)


def scenario(clock: Clock, seed: int = 7) -> Simulator:
    """Monitors on schedules, short and long runs, alerts and errors, a few quiet ones."""
    sim = Simulator(KEY, clock=clock, seed=seed, record_requests=False)
    rng = random.Random(seed)
    for monitor_id in range(1, 21):
        outcomes = rng.choice(
            [
                None,
                ["ok", "ok", "alert"],
                ["error", "ok"],
                ["ok"],
                ["alert", "alert", "ok", "error"],
            ]
        )
        sim.add_monitor(
            monitor_id,
            name=f"monitor {monitor_id}",
            every=rng.choice([120, 300, 900, 1800]),
            duration=rng.choice([10, 90, 400]),
            outcomes=outcomes,
        )
    sim.add_monitor(99, name="never runs")
    return sim


@dataclass
class Outcome:
    sent: list[str]
    requests: Counter[str]
    unchanged: int
    late: list[int]


async def run_scenario(mode: str, tmp_path: Path, late_runs: bool = True) -> Outcome:
    clock = Clock()
    sim = scenario(clock)
    sink = FakeSink("webhook-1")
    unchanged = 0
    late: list[int] = []
    async with serve(sim) as url, aiohttp.ClientSession() as session:
        client = DatafoldClient(session, url, KEY, backoff_initial=0.01, max_retry_after=0.01)
        ids = [*range(1, 21), 99]
        notifier = Notifier(
            client,
            StateFile(tmp_path / f"{mode}.json"),
            {sink.name: sink},
            config(ids, mode, sweep=timedelta(minutes=20)),
            clock=clock,
        )
        for minute in range(150):
            clock.now = T0 + timedelta(minutes=minute)
            if late_runs and minute in (40, 41, 77):
                # listed late: started 10 minutes ago, already finished
                started = clock.now - timedelta(minutes=10)
                late.append(sim.add_run(3, state="alert", started_at=started))
            report = await notifier.run_cycle()
            unchanged += report.unchanged
            assert not report.failed
    return Outcome(sink.sent_keys, sim.request_counts, unchanged, late)


async def test_feed_and_polling_send_the_same_notifications(tmp_path: Path) -> None:
    polled = await run_scenario("poll", tmp_path)
    fed = await run_scenario("feed", tmp_path)
    assert len(polled.sent) > 20  # the scenario does alert
    assert len(set(polled.sent)) == len(polled.sent)  # each exactly once
    assert sorted(fed.sent) == sorted(polled.sent)
    assert len(fed.late) == 3 and {f"3-{run}-alert" for run in fed.late} <= set(fed.sent)
    # far fewer run listings: only changed, in-progress or swept monitors
    assert fed.requests["runs"] < polled.requests["runs"] * 0.6
    assert fed.unchanged > 0 and polled.unchanged == 0
    assert fed.requests["monitors"] == 150  # one listing page per cycle
    assert fed.requests["monitor"] == 0  # names come with the feed, no GET /monitors/{id}


async def test_feed_failure_falls_back_to_polling(tmp_path: Path) -> None:
    clock = Clock()
    sim = scenario(clock)
    sink = FakeSink("webhook-1")
    async with serve(sim) as url, aiohttp.ClientSession() as session:
        client = DatafoldClient(session, url, KEY, backoff_initial=0.01, max_attempts=1)
        notifier = Notifier(
            client,
            StateFile(tmp_path / "s.json"),
            {sink.name: sink},
            config([1, 2, 3], "feed", sweep=timedelta(hours=1)),
            clock=clock,
        )
        await notifier.run_cycle()
        clock.now += timedelta(minutes=1)
        sim.inject_fault(endpoint="monitors", status=503, times=1)
        before = sim.request_counts["runs"]
        with capture_logs() as logs:
            report = await notifier.run_cycle()
        assert report.feed_failed and report.unchanged == 0
        assert sim.request_counts["runs"] - before >= 3
        assert any(e["event"] == "feed_failed" and e["log_level"] == "warning" for e in logs)
