"""The push trigger with replicas sharing PostgreSQL: the leader takes it, a standby answers 503
(nothing forwarded) so the caller retries, perhaps reaching the leader."""

from __future__ import annotations

import time

import aiohttp
import pytest

from tests.fakes.cli import World
from tests.fakes.replicas import elect, serve_replicas
from tests.fakes.subprocess_daemon import Daemon

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]

TOKEN = "ha-trigger-T0ken-0123456789abcdef"


def trigger_url(daemon: Daemon, path: str = "/1") -> str:
    listening = daemon.event("status_listening")
    assert listening is not None
    return f"http://127.0.0.1:{listening['port']}/trigger/{TOKEN}{path}"


async def test_the_leader_takes_a_trigger_and_a_standby_answers_503(
    world: World, postgres_url: str
) -> None:
    daemon_env = {
        "NOTIFIER_HEALTH_PORT": "0",
        "NOTIFIER_TRIGGER_TOKEN": TOKEN,
        "NOTIFIER_POLL_INTERVAL_SECONDS": "300",
        "NOTIFIER_LEASE_SECONDS": "30",
    }
    async with serve_replicas(world, postgres_url, **daemon_env) as cluster:
        leader, (standby,) = await elect(cluster, "replica-a", "replica-b")
        await standby.wait_event("status_listening")
        listings = world.sim.request_counts["runs"]
        async with aiohttp.ClientSession() as http:
            async with http.post(trigger_url(standby)) as answer:
                assert (answer.status, await answer.json()) == (503, {"status": "standby"})
                assert answer.headers["Retry-After"] == "1"
            async with http.post(trigger_url(standby, "x")) as answer:
                assert answer.status == 401  # a standby tells nothing to a stranger either
            assert world.sim.request_counts["runs"] == listings  # nothing polled, nothing sent

            run_id = cluster.add(1, "alert")
            triggered_at = time.monotonic()
            async with http.post(trigger_url(leader)) as answer:
                assert answer.status == 202
            await leader.wait_for(
                lambda: any(run_id in seen for seen in cluster.received().values()), within=10
            )
            took = time.monotonic() - triggered_at
            async with http.get(trigger_url(standby).split("/trigger")[0] + "/metrics") as answer:
                metrics = await answer.text()
        print(f"through the leader's trigger: delivered after {took:.2f} s")
        assert took < 3
        assert 'datafold_notifier_triggers_total{outcome="standby"} 1.0' in metrics
        assert standby.find("triggered_cycle_finished") is None
        assert leader.find("triggered_cycle_finished") is not None
        for daemon in (standby, leader):
            assert await daemon.stop() == 0
        assert TOKEN not in leader.output + standby.output
