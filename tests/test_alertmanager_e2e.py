"""An Alertmanager destination end to end: the installed CLI (every `once` a fresh process, so a
restart between cycles), a routes file, a real Alertmanager. The alert fires and reaches the
receiver Alertmanager routes it to; each cycle posts it again with its end moved on, never as a
second alert; an outage keeps it in the outbox; the recovery resolves it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from tests.fakes.alertmanager import running_alertmanager
from tests.fakes.cli import SECRETS, World, cli

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


def ends(alert: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(alert["endsAt"]).replace("Z", "+00:00"))


async def test_fires_is_kept_firing_across_restarts_survives_an_outage_and_resolves(
    world: World, tmp_path: Path
) -> None:
    async with running_alertmanager() as am:
        routes = tmp_path / "routes.toml"
        routes.write_text(ROUTES)
        env = {
            **world.env,
            "NOTIFIER_ROUTES_FILE": str(routes),
            "ALERTMANAGER_URL": am.url,
            "ALERTMANAGER_TOKEN": TOKEN,
            "NOTIFIER_LOG_LEVEL": "debug",
        }
        del env["NOTIFIER_WEBHOOK_URLS"]
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
