"""A routes file end to end through the CLI: per-monitor destinations, Alertmanager format."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
from standardwebhooks import Webhook

from tests.fakes.cli import WHSEC, World, cli
from tests.fakes.webhook import WebhookReceiver

SCHEMA = Path(__file__).resolve().parent.parent / "notifier/schemas/alertmanager-webhook.v4.json"

ROUTES = """
[destinations.finance-hook]
type = "webhook"
url = "env:FINANCE_HOOK_URL"
secret = "env:NOTIFIER_WEBHOOK_SECRET"
format = "alertmanager"

[destinations.team-slack]
type = "slack"
channel = "C0123ABCD"
token = "env:SLACK_BOT_TOKEN"

[[routes]]
name = "finance"
match = { tags = ["finance"], kinds = ["alert", "error"] }
to = ["finance-hook", "team-slack"]

[default]
to = ["team-slack"]
"""


async def test_routes_send_each_monitor_where_its_rules_say(world: World, tmp_path: Path) -> None:
    world.sim.add_monitor(3, name="ledger", monitor_type="metric", tags=["finance"])
    finance = WebhookReceiver()
    async with finance.serve() as finance_url:
        routes = tmp_path / "routes.toml"
        routes.write_text(ROUTES)
        env = {
            **world.env,
            "NOTIFIER_MONITOR_IDS": "1,3",
            "NOTIFIER_ROUTES_FILE": str(routes),
            "FINANCE_HOOK_URL": finance_url,
        }
        del env["NOTIFIER_WEBHOOK_URLS"]  # only the routes file's destinations
        assert (await cli("once", env=env)).code == 0
        ledger = world.sim.add_run(3, state="error", started_at=world.now(), error="boom")
        orders = world.sim.add_run(1, state="alert", started_at=world.now())
        result = await cli("once", env=env)
        assert result.code == 0, result.stderr

        # Slack hears about both monitors, the finance receiver only about the finance one
        assert len(world.slack.messages) == 2
        [delivery] = finance.deliveries
        payload = Webhook(WHSEC).verify(delivery.body, delivery.headers)
        jsonschema.validate(payload, json.loads(SCHEMA.read_text()))
        assert payload["version"] == "4" and payload["status"] == "firing"
        [alert] = payload["alerts"]
        assert alert["labels"]["monitor_id"] == "3"
        assert alert["annotations"]["run_id"] == str(ledger)
        assert world.receiver.deliveries == []  # NOTIFIER_WEBHOOK_URLS is not used
        assert str(orders) in json.dumps([m.blocks for m in world.slack.messages])

        check = await cli("check", env=env)
        assert check.code == 0, check.stdout
        lines = check.stdout.splitlines()
        assert any(
            "route monitor 3" in line and "finance-hook, team-slack" in line for line in lines
        )
        assert any("route monitor 1" in line and "alert → team-slack" in line for line in lines)


async def test_a_bad_routes_file_is_one_line_and_exit_2(world: World, tmp_path: Path) -> None:
    routes = tmp_path / "routes.toml"
    routes.write_text(ROUTES.replace('to = ["team-slack"]', 'to = ["nowhere"]'))
    env = {
        **world.env,
        "NOTIFIER_ROUTES_FILE": str(routes),
        "FINANCE_HOOK_URL": "https://x.example/h",
    }
    result = await cli("once", env=env)
    assert result.code == 2
    [line] = result.stderr.strip().splitlines()
    assert "routes.toml" in line and "nowhere" in line and "Traceback" not in result.stderr

    env["FINANCE_HOOK_URL"] = ""
    del env["FINANCE_HOOK_URL"]
    routes.write_text(ROUTES)
    missing = await cli("once", env=env)
    assert missing.code == 2 and "FINANCE_HOOK_URL" in missing.stderr
