"""`check` never says "ok" about a route it could not know: without a monitor's details (tags,
type, name) its routes are printed as `??` with the reason, and check does not pass."""

from __future__ import annotations

from pathlib import Path

from tests.fakes.cli import SECRETS, World, cli

ROUTES = """
[destinations.finance-slack]
type = "slack"
channel = "C0FINANCE"
token = "env:SLACK_BOT_TOKEN"

[destinations.team-slack]
type = "slack"
channel = "C0123ABCD"
token = "env:SLACK_BOT_TOKEN"

[[routes]]
name = "finance"
match = { tags = ["finance"] }
to = ["finance-slack"]

[default]
to = ["team-slack"]
"""


def route_line(stdout: str, monitor_id: int) -> str:
    [line] = [line for line in stdout.splitlines() if f"route monitor {monitor_id}:" in line]
    return line


async def test_refused_key_leaves_every_route_unknown(world: World) -> None:
    result = await cli("check", env={**world.env, "DATAFOLD_API_KEY": "dfk-refused-1234567"})
    assert result.code == 1
    for monitor_id in (1, 2):
        line = route_line(result.stdout, monitor_id)
        assert line.startswith("??") and "unknown" in line, line
        assert "API key was refused" in line
        assert "→" not in line  # no routing shown from placeholder data
    assert "unknown" in result.stdout.splitlines()[-1]
    for secret in SECRETS:
        assert secret not in result.stdout + result.stderr


async def test_unreadable_details_make_that_route_unknown(world: World, tmp_path: Path) -> None:
    world.sim.add_monitor(3, name="ledger", monitor_type="metric", tags=["finance"])
    world.sim.inject_fault(monitor_id=3, endpoint="monitor", status=400, times=5)
    routes = tmp_path / "routes.toml"
    routes.write_text(ROUTES)
    env = {**world.env, "NOTIFIER_MONITOR_IDS": "1,3", "NOTIFIER_ROUTES_FILE": str(routes)}
    del env["NOTIFIER_WEBHOOK_URLS"]
    result = await cli("check", env=env)
    assert result.code == 1, result.stdout

    ledger = route_line(result.stdout, 3)
    assert ledger.startswith("??"), ledger
    assert "details could not be read" in ledger and "400" in ledger
    assert "team-slack" not in ledger  # not shown as going to the default channel
    orders = route_line(result.stdout, 1)
    assert orders.startswith("ok") and "alert → team-slack" in orders
    assert result.stdout.splitlines()[-1].endswith("1 unknown")


async def test_all_details_read_means_no_unknown(world: World) -> None:
    result = await cli("check", env=world.env)
    assert result.code == 0, result.stdout
    assert not any(line.startswith("??") for line in result.stdout.splitlines())
    assert route_line(result.stdout, 1).startswith("ok")
