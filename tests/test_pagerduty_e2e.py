"""PagerDuty end to end through the installed CLI: a routes file sends a monitor's incident to the
spec-enforcing fake PagerDuty as one trigger and one resolve on the same key."""

from __future__ import annotations

from pathlib import Path

from tests.fakes.cli import World, cli
from tests.fakes.pagerduty import ENQUEUE_PATH, FakePagerDuty

ROUTING_KEY = "PdE2e0123456789abcdef0123456789z"

ROUTES = """
[destinations.oncall]
type = "pagerduty"
routing_key = "env:PD_ROUTING_KEY"
url = "{url}"
severity = {{ alert = "warning" }}

[default]
to = ["oncall"]
"""


async def test_an_incident_is_one_pagerduty_alert_triggered_then_resolved(
    world: World, tmp_path: Path
) -> None:
    pagerduty = FakePagerDuty()
    async with pagerduty.serve() as url:
        routes = tmp_path / "routes.toml"
        routes.write_text(ROUTES.format(url=url + ENQUEUE_PATH))
        env = {
            **world.env,
            "NOTIFIER_MONITOR_IDS": "1",
            "NOTIFIER_ROUTES_FILE": str(routes),
            "PD_ROUTING_KEY": ROUTING_KEY,
        }
        del env["NOTIFIER_WEBHOOK_URLS"]
        results = [await cli("once", env=env)]
        run = world.sim.add_run(1, state="alert", started_at=world.now())
        results.append(await cli("once", env=env))
        world.sim.add_run(1, state="ok", started_at=world.now())
        results.append(await cli("once", env=env))
        results.append(await cli("check", env=env))

    for result in results:
        assert result.code == 0, result.stderr
        assert ROUTING_KEY not in result.stdout + result.stderr  # at debug level too
    assert pagerduty.refused == []
    trigger, resolve = pagerduty.events
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    details = trigger["payload"]["custom_details"]
    assert trigger["dedup_key"] == details["incident"]["id"] == details["notification_id"]
    assert resolve["dedup_key"] == trigger["dedup_key"]
    assert details["run"]["id"] == run and trigger["payload"]["severity"] == "warning"
    assert trigger["routing_key"] == ROUTING_KEY
    assert world.slack.messages == []  # the routes file sends only to PagerDuty
    [checked] = [line for line in results[-1].stdout.splitlines() if "oncall: " in line]
    assert checked.startswith("ok") and "no event was sent" in checked
    assert ("GET", "/") in pagerduty.requests
