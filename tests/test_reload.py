"""Reloading the configuration of a running daemon (issue 15, point 3): SIGHUP and POST /-/reload
on the health port, through real `datafold-notifier run` processes against the simulated world."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import aiohttp
import pytest

from notifier.run.reload import LIVE_SETTINGS, fixed_changes, live_changes
from notifier.run.settings import Settings
from tests.fakes.cli import CLI, SECRETS, World
from tests.fakes.subprocess_daemon import Daemon
from tests.fakes.webhook import Reply

SLACK_ONLY = """
[destinations.team-slack]
type = "slack"
channel = "C0123ABCD"
token = "env:SLACK_BOT_TOKEN"

[default]
to = ["team-slack"]
"""

HOOK_ONLY = """
[destinations.hook]
type = "webhook"
url = "env:HOOK_URL"
secret = "env:NOTIFIER_WEBHOOK_SECRET"

[default]
to = ["hook"]
"""

BOTH = """
[destinations.team-slack]
type = "slack"
channel = "C0123ABCD"
token = "env:SLACK_BOT_TOKEN"

[destinations.hook]
type = "webhook"
url = "env:HOOK_URL"
secret = "env:NOTIFIER_WEBHOOK_SECRET"

[default]
to = ["team-slack", "hook"]
"""

SUCCESSFUL = "datafold_notifier_config_last_reload_successful"
SUCCESS_AT = "datafold_notifier_config_last_reload_success_timestamp_seconds"


async def start(
    env: dict[str, str], reaper: list[Daemon], *args: str, cwd: Path | None = None
) -> Daemon:
    proc = await asyncio.create_subprocess_exec(
        CLI,
        *args,
        "run",
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    daemon = Daemon(proc)
    reaper.append(daemon)
    return daemon


def routed_env(world: World, routes: Path, text: str) -> dict[str, str]:
    """The world's environment with a routes file holding `text`, the health port on."""
    routes.write_text(text)
    env = {
        **world.env,
        "NOTIFIER_ROUTES_FILE": str(routes),
        "HOOK_URL": world.env["NOTIFIER_WEBHOOK_URLS"],
        "NOTIFIER_HEALTH_PORT": "0",
    }
    del env["NOTIFIER_WEBHOOK_URLS"]  # the routes file names the destinations
    return env


async def base_url(daemon: Daemon) -> str:
    index = await daemon.wait_event("status_listening")
    return f"http://127.0.0.1:{daemon.events[index]['port']}"


async def metric(url: str, name: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as answer:
        text = await answer.text()
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


async def post_reload(url: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.post(f"{url}/-/reload") as answer:
        return answer.status, await answer.json()


async def test_sighup_moves_alerts_to_the_new_routes_and_a_bad_file_keeps_the_old(
    world: World, tmp_path: Path, reaper: list[Daemon]
) -> None:
    routes = tmp_path / "routes.toml"
    daemon = await start(routed_env(world, routes, SLACK_ONLY), reaper)
    url = await base_url(daemon)
    first = await daemon.wait_event("cycle_finished")
    assert await metric(url, SUCCESSFUL) == 1
    started_at = await metric(url, SUCCESS_AT)
    assert started_at > 0

    world.sim.add_run(1, state="alert", started_at=world.now())
    await daemon.wait_for(lambda: len(world.slack.messages) == 1)

    routes.write_text(HOOK_ONLY)
    daemon.proc.send_signal(signal.SIGHUP)
    reloaded = daemon.events[await daemon.wait_event("config_reloaded", first)]
    assert reloaded["destinations_added"] == ["hook"]
    assert reloaded["destinations_removed"] == ["team-slack"]
    assert await metric(url, SUCCESSFUL) == 1
    reloaded_at = await metric(url, SUCCESS_AT)
    assert reloaded_at > started_at

    world.sim.add_run(2, state="alert", started_at=world.now())
    await daemon.wait_for(lambda: len(world.receiver.deliveries) == 1)
    assert len(world.slack.messages) == 1  # the webhook only, now

    routes.write_text(HOOK_ONLY.replace('to = ["hook"]', 'to = ["nowhere"]'))
    mark = len(daemon.events)
    daemon.proc.send_signal(signal.SIGHUP)
    failed = daemon.events[await daemon.wait_event("config_reload_failed", mark)]
    assert str(routes) in str(failed["reason"]) and "nowhere" in str(failed["reason"])
    assert "\n" not in str(failed["reason"])
    assert await metric(url, SUCCESSFUL) == 0
    assert await metric(url, SUCCESS_AT) == reloaded_at

    world.sim.add_run(1, state="alert", started_at=world.now())
    await daemon.wait_for(lambda: len(world.receiver.deliveries) == 2)  # the old routes hold
    assert len(world.slack.messages) == 1
    assert len(daemon.named("config_reload_failed")) == 1

    assert await daemon.stop() == 0
    assert not any(secret in daemon.output for secret in SECRETS)


async def test_post_reload_answers_200_or_500_with_the_reason(
    world: World, tmp_path: Path, reaper: list[Daemon]
) -> None:
    routes = tmp_path / "routes.toml"
    daemon = await start(routed_env(world, routes, SLACK_ONLY), reaper)
    url = await base_url(daemon)
    await daemon.wait_event("cycle_finished")

    routes.write_text("[default]\nto = [")  # not TOML
    status, body = await post_reload(url)
    assert status == 500 and body["status"] == "error"
    assert str(routes) in str(body["error"])
    [failed] = daemon.named("config_reload_failed")
    assert failed["reason"] == body["error"]
    assert await metric(url, SUCCESSFUL) == 0

    async with aiohttp.ClientSession() as http, http.get(f"{url}/-/reload") as answer:
        assert answer.status == 405  # only POST reloads

    routes.write_text(HOOK_ONLY)
    status, body = await post_reload(url)
    assert (status, body) == (200, {"status": "success"})
    assert await metric(url, SUCCESSFUL) == 1
    # Applied once, when the answer came: the next alert goes to the webhook.
    assert len(daemon.named("config_reloaded")) == 1
    world.sim.add_run(1, state="alert", started_at=world.now())
    await daemon.wait_for(lambda: len(world.receiver.deliveries) == 1)
    assert world.slack.messages == []
    assert await daemon.stop() == 0


async def test_a_destination_removed_by_a_reload_drops_what_waited_for_it(
    world: World, tmp_path: Path, reaper: list[Daemon]
) -> None:
    routes = tmp_path / "routes.toml"
    daemon = await start(routed_env(world, routes, BOTH), reaper)
    url = await base_url(daemon)
    await daemon.wait_event("cycle_finished")

    world.receiver.reply(*[Reply(503)] * 50)  # the webhook is down: its copy waits
    run_id = world.sim.add_run(1, state="alert", started_at=world.now())
    await daemon.wait_for(lambda: len(world.slack.messages) == 1 and world.receiver.requests)
    failed = await daemon.wait_event("cycle_finished", where=lambda e: e["outbox"] == 1)

    routes.write_text(SLACK_ONLY)
    assert (await post_reload(url))[0] == 200
    index = await daemon.wait_event("notification_dropped", failed)
    dropped = daemon.events[index]
    assert dropped["reason"] == "its destination is no longer configured"
    assert dropped["destination"] == "hook" and dropped["run_id"] == run_id
    after = await daemon.wait_event("cycle_finished", index)
    assert daemon.events[after]["outbox"] == 0
    assert len(world.slack.messages) == 1  # Slack got it once, before; nothing more
    assert await daemon.stop() == 0


async def test_a_new_poll_interval_reschedules_and_fixed_settings_are_refused(
    world: World, tmp_path: Path, reaper: list[Daemon]
) -> None:
    env = {k: v for k, v in world.env.items() if k != "NOTIFIER_POLL_INTERVAL_SECONDS"}
    dotenv = tmp_path / ".env"
    dotenv.write_text("NOTIFIER_POLL_INTERVAL_SECONDS=60\n")
    daemon = await start(env, reaper, cwd=tmp_path)
    first = await daemon.wait_event("cycle_finished")

    dotenv.write_text("NOTIFIER_POLL_INTERVAL_SECONDS=1\n")
    daemon.proc.send_signal(signal.SIGHUP)
    reloaded = await daemon.wait_event("config_reloaded", first)
    assert daemon.events[reloaded]["changed"] == ["NOTIFIER_POLL_INTERVAL_SECONDS"]
    # Every second now, not in a minute.
    second = await daemon.wait_event("cycle_finished", reloaded, within=4)
    await daemon.wait_event("cycle_finished", second + 1, within=4)

    dotenv.write_text("NOTIFIER_POLL_INTERVAL_SECONDS=1\nNOTIFIER_LOOKBACK_SECONDS=900\n")
    mark = len(daemon.events)
    daemon.proc.send_signal(signal.SIGHUP)
    failed = daemon.events[await daemon.wait_event("config_reload_failed", mark)]
    assert failed["reason"] == "NOTIFIER_LOOKBACK_SECONDS: cannot change without a restart"
    assert await daemon.stop() == 0


async def test_a_reload_waits_for_the_running_cycle_and_none_is_lost(
    world: World, tmp_path: Path, reaper: list[Daemon]
) -> None:
    routes = tmp_path / "routes.toml"
    daemon = await start(routed_env(world, routes, SLACK_ONLY), reaper)
    url = await base_url(daemon)
    await daemon.wait_event("cycle_finished")

    listed = world.sim.request_counts["runs"]
    world.sim.latency = 1.0  # the next cycle takes a second or more
    await daemon.wait_for(lambda: world.sim.request_counts["runs"] > listed)  # it runs
    mark = len(daemon.events)
    routes.write_text(HOOK_ONLY)
    daemon.proc.send_signal(signal.SIGHUP)
    status, _ = await post_reload(url)  # answered once the reload is applied
    world.sim.latency = 0
    assert status == 200
    slow = daemon.find("cycle_finished", mark)
    assert slow is not None, "the reload was applied before the running cycle ended"
    reloads = [i for i, e in enumerate(daemon.events) if e["event"] == "config_reloaded"]
    assert len(reloads) == 2 and min(reloads) > slow  # the signal's and the POST's, after it
    assert daemon.events[reloads[0]]["destinations_added"] == ["hook"]
    assert daemon.events[reloads[1]]["destinations_added"] == []
    assert await daemon.stop() == 0


async def test_a_reload_reads_the_env_file_the_daemon_started_with(
    world: World, tmp_path: Path, reaper: list[Daemon]
) -> None:
    other = tmp_path / "other.env"
    other.write_text("NOTIFIER_REMINDER_INTERVAL_SECONDS=0\n")
    (tmp_path / ".env").write_text("NOTIFIER_LOOKBACK_SECONDS=900\n")  # not the daemon's file
    daemon = await start(world.env, reaper, "--env-file", str(other), cwd=tmp_path)
    first = await daemon.wait_event("cycle_finished")
    assert daemon.named("config_reload_unavailable") == []
    other.write_text("NOTIFIER_REMINDER_INTERVAL_SECONDS=600\n")
    daemon.proc.send_signal(signal.SIGHUP)
    reloaded = daemon.events[await daemon.wait_event("config_reloaded", first)]
    assert reloaded["changed"] == ["NOTIFIER_REMINDER_INTERVAL_SECONDS"]
    assert await daemon.stop() == 0


@pytest.mark.postgres
async def test_the_leader_of_a_cluster_reloads_within_its_term(
    world: World, tmp_path: Path, reaper: list[Daemon], postgres_url: str
) -> None:
    routes = tmp_path / "routes.toml"
    env = {
        **routed_env(world, routes, SLACK_ONLY),
        "NOTIFIER_STATE_URL": postgres_url,
        "NOTIFIER_REPLICA_NAME": "a",
    }
    daemon = await start(env, reaper)
    led = await daemon.wait_event("leading")
    first = await daemon.wait_event("cycle_finished", led)
    routes.write_text(HOOK_ONLY)
    daemon.proc.send_signal(signal.SIGHUP)
    await daemon.wait_event("config_reloaded", first)
    world.sim.add_run(1, state="alert", started_at=world.now())
    await daemon.wait_for(lambda: len(world.receiver.deliveries) == 1)
    assert world.slack.messages == [] and len(daemon.named("leading")) == 1  # the same term
    assert await daemon.stop() == 0


@pytest.mark.parametrize(
    ("change", "fixed", "changed"),
    [
        ({"NOTIFIER_POLL_INTERVAL_SECONDS": "5"}, [], ["NOTIFIER_POLL_INTERVAL_SECONDS"]),
        ({"NOTIFIER_MONITOR_IDS": "1,2,3"}, [], ["NOTIFIER_MONITOR_IDS"]),
        ({"NOTIFIER_NOTIFY_STATES": "error"}, [], ["NOTIFIER_NOTIFY_STATES"]),
        ({"NOTIFIER_REMINDER_INTERVAL_SECONDS": "600"}, [], ["NOTIFIER_REMINDER_INTERVAL_SECONDS"]),
        ({"NOTIFIER_LOG_LEVEL": "warning"}, [], ["NOTIFIER_LOG_LEVEL"]),
        ({"SLACK_BOT_TOKEN": "xoxb-another-token-0002"}, [], ["SLACK_BOT_TOKEN"]),
        ({"DATAFOLD_API_KEY": "dfk-another-key-0002"}, ["DATAFOLD_API_KEY"], ["DATAFOLD_API_KEY"]),
        ({"NOTIFIER_STATE_FILE": "/elsewhere.json"}, ["NOTIFIER_STATE_FILE"], None),
        ({"NOTIFIER_HEALTH_PORT": "9999"}, ["NOTIFIER_HEALTH_PORT"], None),
        ({"NOTIFIER_REPLICA_NAME": "b"}, ["NOTIFIER_REPLICA_NAME"], None),
        ({"NOTIFIER_LOOKBACK_SECONDS": "900"}, ["NOTIFIER_LOOKBACK_SECONDS"], None),
    ],
)
def test_which_settings_change_live(
    change: dict[str, str], fixed: list[str], changed: list[str] | None
) -> None:
    base = {"DATAFOLD_API_KEY": "dfk-e2e-distinctive-api-key-0001", "NOTIFIER_MONITOR_IDS": "1,2"}
    base |= {"SLACK_BOT_TOKEN": "xoxb-1234567890-abcdef", "SLACK_CHANNEL": "C0123ABCD"}
    old = Settings(**base)  # type: ignore[arg-type]
    new = Settings(**(base | change))  # type: ignore[arg-type]
    assert fixed_changes(old, new) == fixed
    assert live_changes(old, new) == (changed or fixed)


def test_every_live_setting_is_a_setting() -> None:
    assert LIVE_SETTINGS <= set(Settings.model_fields)
