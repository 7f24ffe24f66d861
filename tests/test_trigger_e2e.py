"""The push trigger through the real daemon (`datafold-notifier run`) against the simulator and a
fake Slack: an alert reaches Slack about a second after a trigger, floods are held to the cap,
and the token shows nowhere, not even at debug level."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes.cli import CLI, World, cli
from tests.fakes.subprocess_daemon import Daemon

TOKEN = "e2e-trigger-T0ken-0123456789abcdef"

pytestmark = pytest.mark.timeout(60)


def trigger_env(world: World, **extra: str) -> dict[str, str]:
    """The world's daemon, polling every 300 s, its trigger on (the world logs at debug)."""
    return {
        **world.env,
        "NOTIFIER_POLL_INTERVAL_SECONDS": "300",
        "NOTIFIER_HEALTH_PORT": "0",
        "NOTIFIER_TRIGGER_TOKEN": TOKEN,
        **extra,
    }


async def start(env: dict[str, str], reaper: list[Daemon]) -> Daemon:
    """A daemon whose stdout is kept too (the token must not show there either)."""
    proc = await asyncio.create_subprocess_exec(
        CLI, "run", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    daemon = Daemon(proc)
    reaper.append(daemon)
    return daemon


async def ready(daemon: Daemon) -> str:
    """The daemon's base URL, once its first cycle is done."""
    index = await daemon.wait_event("status_listening")
    await daemon.wait_event("cycle_finished")
    return f"http://127.0.0.1:{daemon.events[index]['port']}"


async def post(
    http: aiohttp.ClientSession, url: str, body: Any = None, **headers: str
) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    async with http.post(url, data=data, headers=headers) as answer:
        return answer.status, await answer.json()


async def stop_quietly(daemon: Daemon) -> str:
    """Stop it; everything it wrote on stdout and stderr."""
    assert await daemon.stop() == 0
    assert daemon.proc.stdout is not None
    return (await daemon.proc.stdout.read()).decode() + daemon.output


@pytest.mark.parametrize("mode", ["poll", "feed"])
async def test_an_alert_reaches_slack_about_a_second_after_a_trigger(
    world: World, reaper: list[Daemon], mode: str
) -> None:
    daemon = await start(trigger_env(world, NOTIFIER_POLL_MODE=mode), reaper)
    url = await ready(daemon)
    world.sim.add_run(1, state="alert", started_at=world.now())
    async with aiohttp.ClientSession() as http:
        triggered_at = time.monotonic()
        status, body = await post(http, f"{url}/trigger/{TOKEN}", {"monitor_id": 1})
        answered = time.monotonic() - triggered_at
        assert (status, body) == (202, {"status": "accepted", "monitor_id": 1})
        await daemon.wait_for(lambda: len(world.slack.messages) == 1, within=10)
        took = time.monotonic() - triggered_at
        print(f"{mode}: trigger answered in {answered * 1000:.0f} ms; in Slack after {took:.2f} s")
        assert took < 3, f"the alert reached Slack {took:.2f} s after the trigger"
        finished = daemon.events[await daemon.wait_event("triggered_cycle_finished")]
        assert finished["monitors"] == [1] and finished["delivered"] >= 1
        async with http.get(f"{url}/metrics") as answer:
            metrics = await answer.text()
    assert 'datafold_notifier_triggers_total{outcome="accepted"} 1.0' in metrics
    assert "datafold_notifier_triggered_polls_total 1.0" in metrics
    assert len(daemon.named("cycle_finished")) == 1  # the regular cycle did not run again
    output = await stop_quietly(daemon)
    assert TOKEN not in output


async def test_a_flood_of_triggers_lists_no_more_than_the_cap(
    world: World, reaper: list[Daemon]
) -> None:
    for monitor_id in range(3, 21):
        world.sim.add_monitor(monitor_id, name=f"monitor {monitor_id}", monitor_type="metric")
    env = trigger_env(
        world,
        NOTIFIER_MONITOR_IDS=",".join(str(m) for m in range(1, 21)),
        NOTIFIER_TRIGGER_MAX_POLLS_PER_MINUTE="5",
    )
    daemon = await start(env, reaper)
    url = await ready(daemon)
    before = world.sim.request_counts["runs"]
    async with aiohttp.ClientSession() as http:
        started = time.monotonic()
        answers = await asyncio.gather(
            *(post(http, f"{url}/trigger/{TOKEN}/{1 + n % 20}") for n in range(150)),
            *(post(http, f"{url}/trigger/{TOKEN}/1") for _ in range(150)),
        )
        took = time.monotonic() - started
        assert [status for status, _ in answers] == [202] * 300
        # The bucket holds 5 listings and refills one every 12 s: 5 now, then nothing for a while.
        await daemon.wait_for(lambda: world.sim.request_counts["runs"] - before >= 5)
        await asyncio.sleep(1.5)
        listed = world.sim.request_counts["runs"] - before
        async with http.get(f"{url}/metrics") as answer:
            metrics = await answer.text()
    print(f"300 triggers answered in {took:.2f} s; {listed} run listings followed")
    assert listed == 5
    assert "datafold_notifier_triggered_polls_total 5.0" in metrics
    assert 'datafold_notifier_triggers_total{outcome="accepted"} 300.0' in metrics
    await stop_quietly(daemon)


async def test_the_token_shows_nowhere_at_debug_level(world: World, reaper: list[Daemon]) -> None:
    daemon = await start(trigger_env(world), reaper)
    url = await ready(daemon)
    async with aiohttp.ClientSession() as http:
        attempts = [
            post(http, f"{url}/trigger/{TOKEN}/1"),
            post(http, f"{url}/trigger/{TOKEN}/99"),
            post(http, f"{url}/trigger/{TOKEN}x"),
            post(http, f"{url}/trigger/{TOKEN}", "x" * 5000),
            post(http, f"{url}/trigger", Authorization=f"Bearer {TOKEN}"),
            post(http, f"{url}/trigger", Authorization=f"Bearer {TOKEN[:-1]}"),
        ]
        statuses = [status for status, _ in await asyncio.gather(*attempts)]
        async with http.get(f"{url}/trigger/{TOKEN}") as answer:  # a method it does not take
            statuses.append(answer.status)
    assert statuses == [202, 202, 401, 413, 202, 401, 405]
    await daemon.wait_event("triggered_cycle_finished")
    output = await stop_quietly(daemon)
    assert '"level": "debug"' in output  # debug lines were written, and none shows it
    assert TOKEN not in output and TOKEN[:-1] not in output


async def test_without_a_token_the_trigger_is_404(world: World, reaper: list[Daemon]) -> None:
    env = trigger_env(world)
    del env["NOTIFIER_TRIGGER_TOKEN"]
    daemon = await start(env, reaper)
    url = await ready(daemon)
    async with aiohttp.ClientSession() as http, http.post(f"{url}/trigger/{TOKEN}") as answer:
        assert answer.status == 404
    await stop_quietly(daemon)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"NOTIFIER_HEALTH_PORT": None},
            "NOTIFIER_TRIGGER_TOKEN is set but NOTIFIER_HEALTH_PORT is not",
        ),
        ({"NOTIFIER_TRIGGER_TOKEN": "short-T0ken"}, "NOTIFIER_TRIGGER_TOKEN: is shorter than 16"),
        (
            {"NOTIFIER_TRIGGER_TOKEN": "a/path/is/no/token/1234"},
            "NOTIFIER_TRIGGER_TOKEN: may hold only",
        ),
        ({"NOTIFIER_TRIGGER_MONITOR_FIELD": "monitor..id"}, "NOTIFIER_TRIGGER_MONITOR_FIELD:"),
        ({"NOTIFIER_TRIGGER_MAX_POLLS_PER_MINUTE": "0"}, "NOTIFIER_TRIGGER_MAX_POLLS_PER_MINUTE:"),
    ],
)
async def test_a_bad_trigger_setting_is_one_line_and_exit_2(
    world: World, tmp_path: Path, change: dict[str, str | None], message: str
) -> None:
    env = trigger_env(world)
    for name, value in change.items():
        if value is None:
            env.pop(name)
        else:
            env[name] = value
    result = await cli("run", env=env, cwd=tmp_path)
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    for value in (TOKEN, "short-T0ken", "a/path/is/no/token/1234"):
        assert value not in result.stderr


async def test_a_trigger_during_a_long_regular_cycle_is_notified_before_the_cycle_ends(
    world: World, reaper: list[Daemon]
) -> None:
    """The regular cycle takes seconds (40 monitors, one request at a time, 0.1 s each): a run
    that turns `alert` after its monitor's listing in that cycle is notified about a second
    after its trigger, in the cycle's fast lane, not after the cycle."""
    for monitor_id in range(3, 41):
        world.sim.add_monitor(monitor_id, name=f"monitor {monitor_id}", monitor_type="metric")
    world.sim.latency = 0.1
    env = trigger_env(
        world,
        NOTIFIER_MONITOR_IDS=",".join(str(m) for m in range(1, 41)),
        NOTIFIER_MAX_CONCURRENCY="1",
        NOTIFIER_POLL_SPREAD_SECONDS="0",
    )
    daemon = await start(env, reaper)
    index = await daemon.wait_event("status_listening")
    url = f"http://127.0.0.1:{daemon.events[index]['port']}"
    await daemon.wait_for(lambda: daemon.find("monitor_baselined") is not None, within=20)
    assert daemon.find("cycle_finished") is None
    world.sim.add_run(1, state="alert", started_at=world.now())
    async with aiohttp.ClientSession() as http:
        triggered_at = time.monotonic()
        status, _ = await post(http, f"{url}/trigger/{TOKEN}/1")
        assert status == 202
        await daemon.wait_for(lambda: len(world.slack.messages) == 1, within=10)
        took = time.monotonic() - triggered_at
    print(f"in Slack {took:.2f} s after a trigger during a regular cycle")
    assert took < 3, f"the alert reached Slack {took:.2f} s after the trigger"
    assert daemon.find("cycle_finished") is None, "the trigger waited for the cycle's end"
    await daemon.wait_event("cycle_finished", within=30)
    await asyncio.sleep(0.5)
    assert len(world.slack.messages) == 1  # notified once
    assert TOKEN not in await stop_quietly(daemon)
