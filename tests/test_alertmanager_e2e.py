"""An Alertmanager destination end to end: the installed CLI (every `once` a fresh process, so a
restart between cycles), a routes file, a real Alertmanager. The alert fires and reaches the
receiver Alertmanager routes it to; each cycle posts it again with its end moved on, never as a
second alert; an outage keeps it in the outbox; the recovery resolves it. And a long-running `run`
SIGKILLed after posting the alert, then started again, neither drops nor duplicates it."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.alertmanager import Alertmanager, running_alertmanager
from tests.fakes.cli import SECRETS, World, cli
from tests.fakes.subprocess_daemon import Daemon

ROUTES = """
[destinations.am]
type = "alertmanager"
url = "env:ALERTMANAGER_URL"
token = "env:ALERTMANAGER_TOKEN"
labels = { team = "data" }

[default]
to = ["am"]
"""
TOKEN = "am-token-Vq83-never-shown"
#: On PYTHONPATH of the daemon: a `sitecustomize` that can hold a state write before its rename.
PAUSE_HOOK = Path(__file__).parent / "fakes" / "crash_sitecustomize"
BROKEN = {"cycle_failed", "crashed", "state_file_corrupt", "state_save_failed"}


def ends(alert: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(alert["endsAt"]).replace("Z", "+00:00"))


async def test_fires_is_kept_firing_across_restarts_survives_an_outage_and_resolves(
    world: World, tmp_path: Path
) -> None:
    async with running_alertmanager() as am:
        env = {**am_env(world, am, tmp_path), "NOTIFIER_LOG_LEVEL": "debug"}
        outputs: list[str] = []

        async def once(**changes: str) -> None:
            result = await cli("once", env={**env, **changes})
            outputs.extend([result.stdout, result.stderr])
            assert result.code == 0, result.stderr

        await once()
        world.sim.add_run(1, state="alert", started_at=world.now())
        await once()
        [fired] = await am.wait_alerts(lambda alerts: len(alerts) == 1)
        assert fired["labels"]["monitor_id"] == "1" and fired["labels"]["team"] == "data"
        assert fired["labels"]["alertname"] == "DatafoldMonitorAlert"
        firing = await am.receiver.wait_for("firing")
        assert [a["labels"]["monitor_id"] for a in firing["alerts"]] == ["1"]

        # Two more cycles, each a fresh process: the same alert, its end moved on each time.
        await once()
        [kept] = await am.wait_alerts(lambda a: len(a) == 1 and a[0]["endsAt"] != fired["endsAt"])
        await once()
        [kept_again] = await am.wait_alerts(
            lambda a: len(a) == 1 and a[0]["endsAt"] != kept["endsAt"]
        )
        assert fired["fingerprint"] == kept["fingerprint"] == kept_again["fingerprint"]
        assert ends(fired) < ends(kept) < ends(kept_again)
        assert [m["status"] for m in am.receiver.messages] == ["firing"]

        # Alertmanager unreachable while monitor 2 alerts: kept in the outbox, then delivered.
        world.sim.add_run(2, state="error", started_at=world.now(), error="boom")
        await once(ALERTMANAGER_URL="http://127.0.0.1:1")
        assert len(await am.alerts()) == 1
        await once()
        both = await am.wait_alerts(lambda alerts: len(alerts) == 2)
        assert sorted(a["labels"]["alertname"] for a in both) == [
            "DatafoldMonitorAlert",
            "DatafoldMonitorError",
        ]

        # Recovery of monitor 1: its alert resolves, monitor 2's keeps firing.
        world.sim.add_run(1, state="ok", started_at=world.now())
        await once()
        [left] = await am.wait_alerts(lambda alerts: len(alerts) == 1)
        assert left["labels"]["monitor_id"] == "2"
        resolved = await am.receiver.wait_for("resolved")
        assert [a["labels"]["monitor_id"] for a in resolved["alerts"]] == ["1"]

        check = await cli("check", env=env)
        outputs += [check.stdout, check.stderr]
        assert check.code == 0, check.stdout
        assert any(
            line.startswith("ok") and "am" in line and "Alertmanager 0.25" in line
            for line in check.stdout.splitlines()
        ), check.stdout

    for text in outputs:
        for secret in (TOKEN, *SECRETS):
            assert secret not in text


def am_env(world: World, am: Alertmanager, tmp_path: Path) -> dict[str, str]:
    """The CLI's environment with the Alertmanager destination only."""
    routes = tmp_path / "routes.toml"
    routes.write_text(ROUTES)
    env = {
        **world.env,
        "NOTIFIER_ROUTES_FILE": str(routes),
        "ALERTMANAGER_URL": am.url,
        "ALERTMANAGER_TOKEN": TOKEN,
    }
    del env["NOTIFIER_WEBHOOK_URLS"]
    return env


def recorded(world: World, run_id: int) -> bool:
    """The saved state records the run as handled, with nothing left in the outbox."""
    state = json.loads(world.state_file.read_text())
    run = state["monitors"].get("1", {}).get("runs", {}).get(str(run_id))
    return run is not None and "alert" in run["handled"] and state["outbox"] == []


def one_alert(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Each message the receiver got as (status, fingerprint) of its one alert."""
    assert all(len(m["alerts"]) == 1 for m in messages), messages
    return [(m["status"], m["alerts"][0]["fingerprint"]) for m in messages]


@pytest.mark.parametrize("kill_at", ["mid_write", "saved"])
async def test_a_sigkilled_daemon_restarted_neither_drops_nor_duplicates_the_alert(
    world: World, tmp_path: Path, reaper: list[Daemon], kill_at: str
) -> None:
    """`run` posts the alert, is SIGKILLed, starts again, then the monitor recovers.

    "mid_write": Alertmanager has the alert, but the state write that records it is held
    before its rename when the kill comes, so the restart detects the run again and posts it
    again: the same labels, so the same one alert. "saved": the state recorded it; the restart
    only keeps it firing. Either way Alertmanager holds one alert, its `endsAt` moved on by the
    new process (kept firing, not left to expire), and its receiver hears "firing" once, then
    "resolved" once.
    """
    pause_flag = tmp_path / "pause-flag.json"
    async with running_alertmanager() as am:
        env = {
            **am_env(world, am, tmp_path),
            "PYTHONPATH": str(PAUSE_HOOK),
            "CRASH_PAUSE_FLAG": str(pause_flag),
        }

        async def start() -> Daemon:
            daemon = await Daemon.start(env)
            reaper.append(daemon)
            return daemon

        daemon = await start()
        await daemon.wait_event("monitor_baselined", where=lambda e: e.get("monitor_id") == 2)
        await daemon.wait_event("state_saved")
        await daemon.wait_event("cycle_finished", len(daemon.events))
        run_id = world.sim.add_run(1, state="alert", started_at=world.now())
        if kill_at == "mid_write":
            pause_flag.write_text(json.dumps([run_id]))
            await daemon.wait_event("crash_paused_before_replace")
            assert not recorded(world, run_id)
        else:
            await daemon.wait_for(lambda: recorded(world, run_id))
        [posted] = await am.wait_alerts(lambda alerts: len(alerts) == 1)
        assert posted["labels"]["monitor_id"] == "1" and posted["status"]["state"] == "active"
        firing = await am.receiver.wait_for("firing")
        await daemon.kill()
        pause_flag.unlink(missing_ok=True)

        daemon = await start()
        await daemon.wait_for(lambda: recorded(world, run_id))
        # Kept firing by the new process: one alert, the same fingerprint, its end moved on.
        [kept] = await am.wait_alerts(
            lambda alerts: len(alerts) == 1 and ends(alerts[0]) > ends(posted)
        )
        assert kept["fingerprint"] == posted["fingerprint"]
        assert kept["status"]["state"] == "active" and kept["startsAt"] == posted["startsAt"]
        assert [a["fingerprint"] for a in await am.alerts()] == [posted["fingerprint"]]

        world.sim.add_run(1, state="ok", started_at=world.now())
        assert await am.wait_alerts(lambda alerts: alerts == []) == []
        await am.receiver.wait_for("resolved")
        assert await daemon.stop() == 0

    # The resolution came through a group flush after the restart's posts: a second alert, or
    # the first posted anew as another, would have reached the receiver before it or with it.
    assert one_alert(am.receiver.messages) == [
        ("firing", posted["fingerprint"]),
        ("resolved", posted["fingerprint"]),
    ]
    assert firing["alerts"][0]["fingerprint"] == posted["fingerprint"]
    for process in reaper:
        assert not [e for e in process.events if e.get("event") in BROKEN], process.events[-6:]
        assert TOKEN not in process.output
