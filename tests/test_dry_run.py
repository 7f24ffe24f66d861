"""`once --dry-run` through the installed CLI: the real cycle against the simulator, what each
destination would get printed (readable, or `--json` payloads), nothing sent to the fakes,
nothing saved, and the alert still there for the next real `once`."""

from __future__ import annotations

import json
from pathlib import Path

from notifier.route.destinations.fields import webhook_destination_name
from tests.fakes.cli import World, cli
from tests.fakes.pagerduty import ENQUEUE_PATH, FakePagerDuty

ROUTING_KEY = "PdDryRun0123456789abcdef01234567"

ROUTES = """
[destinations.oncall]
type = "pagerduty"
routing_key = "env:PD_ROUTING_KEY"
url = "{url}"

[destinations.chat]
type = "slack"
token = "env:SLACK_BOT_TOKEN"
channel = "C0123ABCD"
thread = true

[[routes]]
match = {{ tags = ["prod"] }}
to = ["oncall", "chat"]

[default]
to = ["chat"]
"""


async def test_a_dry_run_prints_the_alert_sends_nothing_saves_nothing_and_once_still_sends_it(
    world: World,
) -> None:
    assert (await cli("once", env=world.env)).code == 0  # the baseline
    run = world.sim.add_run(1, state="alert", started_at=world.now())
    before = world.state_file.read_bytes()

    result = await cli("once", "--dry-run", env=world.env)

    assert result.code == 0, result.stderr
    webhook = webhook_destination_name(world.env["NOTIFIER_WEBHOOK_URLS"])
    would = f"  alert: monitor 1 'orders prod vs staging', run {run}, state alert"
    assert result.stdout.splitlines() == [
        "slack: 1 notification",
        would,
        f"{webhook}: 1 notification",
        would,
        "dry run: 2 notifications to 2 destination(s) would be sent; nothing was sent and the "
        "state was not saved",
    ]
    assert world.slack.calls == [] and world.receiver.requests == []
    assert world.state_file.read_bytes() == before
    sent = [e for e in result.events() if e["event"] == "notification_sent"]
    assert sent and all(e["dry_run"] is True for e in sent)

    assert (await cli("once", env=world.env)).code == 0
    [posted] = world.slack.messages
    assert "orders prod vs staging" in (posted.text or "")
    [delivered] = world.receiver.deliveries
    assert json.loads(delivered.body)["data"]["run"]["id"] == run


async def test_json_shows_each_destinations_rendered_payload_with_secrets_masked(
    world: World, tmp_path: Path
) -> None:
    pagerduty = FakePagerDuty()
    async with pagerduty.serve() as url:
        routes = tmp_path / "routes.toml"
        routes.write_text(ROUTES.format(url=url + ENQUEUE_PATH))
        env = {**world.env, "NOTIFIER_ROUTES_FILE": str(routes), "PD_ROUTING_KEY": ROUTING_KEY}
        del env["NOTIFIER_WEBHOOK_URLS"]
        assert (await cli("once", env=env)).code == 0
        run = world.sim.add_run(1, state="alert", started_at=world.now())
        world.sim.add_run(2, state="error", started_at=world.now(), error="boom")
        before = world.state_file.read_bytes()

        result = await cli("once", "--dry-run", "--json", env=env)

    assert result.code == 0, result.stderr
    assert ROUTING_KEY not in result.stdout + result.stderr
    destinations = json.loads(result.stdout)["destinations"]
    [event] = destinations["oncall"]  # only the prod monitor's alert is routed to PagerDuty
    assert event["notifications"][0]["run_id"] == run
    payload = event["payload"]
    assert payload["routing_key"] == "***" and payload["event_action"] == "trigger"
    assert payload["payload"]["summary"].startswith("ALERT: orders prod vs staging")
    chat = {entry["notifications"][0]["monitor_id"]: entry for entry in destinations["chat"]}
    assert set(chat) == {1, 2}
    [call] = chat[2]["payload"]
    assert call["method"] == "chat.postMessage" and call["channel"] == "C0123ABCD"
    assert "boom" in json.dumps(call["blocks"])
    assert pagerduty.events == [] and pagerduty.requests == []
    assert world.slack.calls == []
    assert world.state_file.read_bytes() == before


async def test_json_without_dry_run_is_refused(world: World) -> None:
    result = await cli("once", "--json", env=world.env)

    assert result.code == 2 and "--json goes with --dry-run" in result.stderr
    assert world.sim.requests == []
