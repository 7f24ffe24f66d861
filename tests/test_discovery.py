"""Monitors found by tag: merged with the configured IDs, refreshed, baselined, dropped."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import aiohttp
from structlog.testing import capture_logs

from notifier.demo.server import serve
from notifier.demo.simulator import Simulator
from notifier.fetch.datafold import DatafoldClient
from notifier.run.cycle import Notifier, ServiceConfig
from notifier.store.file import StateFile
from tests.fakes.cycle import T0, cycle_config
from tests.fakes.source import FakeSink

KEY = "dfk-discovery-key-12345"


def config() -> ServiceConfig:
    return cycle_config((4,), monitor_tags=("finance",), discovery_interval=timedelta(minutes=5))


async def test_tags_find_monitors_and_follow_changes(tmp_path: Path) -> None:
    now = [T0]
    sim = Simulator(KEY, clock=lambda: now[0])
    sim.add_monitor(1, name="ledger", tags=["finance"])
    sim.add_monitor(2, name="payments", tags=["finance", "ops"])
    sim.add_monitor(3, name="queues", tags=["ops"])
    sim.add_monitor(4, name="orders")
    sink = FakeSink("slack")
    async with serve(sim) as url, aiohttp.ClientSession() as session:
        client = DatafoldClient(session, url, KEY, backoff_initial=0.01, max_attempts=1)
        notifier = Notifier(
            client, StateFile(tmp_path / "s.json"), {"slack": sink}, config(), clock=lambda: now[0]
        )
        with capture_logs() as logs:
            await notifier.run_cycle()
        assert sorted(notifier.state.monitors) == [1, 2, 4]
        [found] = [e for e in logs if e["event"] == "monitors_discovered"]
        assert found["added"] == [1, 2] and found["tags"] == ["finance"]

        now[0] += timedelta(minutes=1)
        sim.add_run(2, state="alert", started_at=now[0])
        await notifier.run_cycle()
        assert sink.sent_keys[-1].startswith("2-")
        assert sink.sent[-1].monitor.name == "payments"  # details came with the discovery

        # a new finance monitor with an alert in its history: found later, baselined silently
        sim.add_monitor(5, name="fx", tags=["finance"])
        sim.add_run(5, state="alert", started_at=now[0] - timedelta(minutes=2))
        sim.set_tags(1, [])
        now[0] += timedelta(minutes=6)
        with capture_logs() as logs:
            await notifier.run_cycle()
        assert sorted(notifier.state.monitors) == [1, 2, 4, 5]  # one miss is not enough
        assert len(sink.sent) == 1
        [found] = [e for e in logs if e["event"] == "monitors_discovered"]
        assert found["added"] == [5] and found["removed"] == []
        now[0] += timedelta(minutes=6)
        with capture_logs() as logs:
            await notifier.run_cycle()
        assert sorted(notifier.state.monitors) == [2, 4, 5]
        [found] = [e for e in logs if e["event"] == "monitors_discovered"]
        assert found["removed"] == [1]
        assert any(e["event"] == "monitor_dropped" and e["monitor_id"] == 1 for e in logs)

        # discovery fails: keep watching what was found before
        sim.inject_fault(endpoint="monitors", status=503, times=5)
        now[0] += timedelta(minutes=6)
        with capture_logs() as logs:
            report = await notifier.run_cycle()
        assert any(e["event"] == "discovery_failed" for e in logs)
        assert sorted(report.polled) == [2, 4, 5]
        assert sorted(notifier.state.monitors) == [2, 4, 5]


async def test_failed_first_discovery_forgets_nothing(tmp_path: Path) -> None:
    now = [T0]
    sim = Simulator(KEY, clock=lambda: now[0])
    sim.add_monitor(1, name="ledger", tags=["finance"])
    sim.add_monitor(4, name="orders")
    async with serve(sim) as url, aiohttp.ClientSession() as session:
        client = DatafoldClient(session, url, KEY, backoff_initial=0.01, max_attempts=1)
        store = StateFile(tmp_path / "s.json")
        first = Notifier(client, store, {}, config(), clock=lambda: now[0])
        await first.run_cycle()
        assert sorted(first.state.monitors) == [1, 4]
        sim.inject_fault(endpoint="monitors", status=503, times=5)
        restarted = Notifier(
            client, StateFile(tmp_path / "s.json"), {}, config(), clock=lambda: now[0]
        )
        await restarted.run_cycle()
        assert sorted(restarted.state.monitors) == [1, 4]


async def test_refused_key_with_tags_only_fails_the_cycle(tmp_path: Path) -> None:
    sim = Simulator(KEY)
    sim.add_monitor(1, tags=["finance"])
    async with serve(sim) as url, aiohttp.ClientSession() as session:
        client = DatafoldClient(session, url, "dfk-wrong-key-9876543", max_attempts=1)
        tags_only = config()
        tags_only = ServiceConfig(**{**tags_only.__dict__, "monitor_ids": ()})
        notifier = Notifier(client, StateFile(tmp_path / "s.json"), {}, tags_only)
        report = await notifier.run_cycle()
    assert report.all_failed and report.key_refused and report.discovery_failed == "refused"
