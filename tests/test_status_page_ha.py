"""The status page of replicas sharing PostgreSQL: each says whether it leads or stands by, and
no page shows the database password."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.fakes.cli import World
from tests.fakes.replicas import elect, eventually, serve_replicas
from tests.fakes.subprocess_daemon import Daemon

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]


async def status_of(daemon: Daemon) -> tuple[dict[str, Any], str]:
    """A replica's /api/status and its page."""
    index = await daemon.wait_event("status_listening")
    base = f"http://127.0.0.1:{daemon.events[index]['port']}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/api/status") as response:
            assert response.status == 200
            document: dict[str, Any] = await response.json()
        async with http.get(f"{base}/") as response:
            assert response.status == 200
            return document, await response.text()


async def test_leader_and_standby_say_so(world: World, postgres_url: str) -> None:
    async with serve_replicas(world, postgres_url, NOTIFIER_HEALTH_PORT="0") as replicas:
        leader, [standby] = await elect(replicas, "replica-a", "replica-b")

        async def standing_by() -> bool:
            document = (await status_of(standby))[0]
            return document["role"] == "standby" and bool(document["cycles"])

        await eventually(standing_by, "the standby's /api/status to show a standby cycle")
        led, led_page = await status_of(leader)
        stood, stood_page = await status_of(standby)
        for daemon in (standby, leader):
            assert await daemon.stop() == 0
    assert led["role"] == "leader" and led["cycles"] and not led["cycles"][0]["standby"]
    # The leader shows the state it polls with: the world's monitors.
    assert led["state_loaded"] and sorted(m["id"] for m in led["monitors"]) == [1, 2]
    assert stood["role"] == "standby" and stood["cycles"][0]["standby"]
    assert not stood["state_loaded"] and "stands by" in stood_page
    assert ">leader</span>" in led_page and ">standby</span>" in stood_page
    password = postgres_url.partition("://")[2].partition("@")[0].partition(":")[2]
    for shown in (str(led), led_page, str(stood), stood_page):
        assert postgres_url not in shown
        assert not password or password not in shown
