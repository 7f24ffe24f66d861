"""A Teams destination end to end: the installed CLI, a routes file, the strict fake Workflows
webhook. Cards, a recovery, a digest, an outage kept in the outbox, and the URL in no output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.fakes.cli import SECRETS, World, cli
from tests.fakes.teams import SIGNATURE, FakeTeams, Reply

ROUTES = """
[destinations.teams-ops]
type = "teams"
url = "env:TEAMS_WEBHOOK_URL"
digest_threshold = 2

[default]
to = ["teams-ops"]
"""


def headline(card: dict[str, Any]) -> str:
    return "".join(run["text"] for run in card["body"][0]["inlines"])


async def test_cards_recovery_digest_and_an_outage_through_the_cli(
    world: World, tmp_path: Path
) -> None:
    world.sim.add_monitor(3, name="**[ledger](https://evil.example)**", monitor_type="metric")
    teams = FakeTeams()
    async with teams.serve() as url:
        routes = tmp_path / "routes.toml"
        routes.write_text(ROUTES)
        env = {
            **world.env,
            "NOTIFIER_MONITOR_IDS": "1,2,3",
            "NOTIFIER_ROUTES_FILE": str(routes),
            "TEAMS_WEBHOOK_URL": url,
            "NOTIFIER_LOG_LEVEL": "debug",
        }
        del env["NOTIFIER_WEBHOOK_URLS"]
        outputs: list[str] = []

        async def once() -> None:
            result = await cli("once", env=env)
            outputs.extend([result.stdout, result.stderr])
            assert result.code == 0, result.stderr

        await once()
        world.sim.add_run(1, state="alert", started_at=world.now())
        world.sim.add_run(3, state="error", started_at=world.now(), error="boom *bold*")
        await once()
        assert sorted(headline(c) for c in teams.cards) == [
            "❌ Error: **[ledger](https://evil.example)**",
            "🚨 Alert: orders prod vs staging",
        ]
        assert world.slack.messages == []  # only the routes file's destination

        # Teams down: nothing lost, the outbox delivers on the next cycle.
        world.sim.add_run(1, state="ok", started_at=world.now())
        teams.reply(Reply(500))
        await once()
        assert len(teams.cards) == 2 and teams.answered[-1] == 500
        await once()
        assert headline(teams.cards[-1]) == "✅ Recovered: orders prod vs staging"

        # More than digest_threshold waiting: one digest card.
        for monitor in (1, 2, 3):
            world.sim.add_run(monitor, state="alert", started_at=world.now())
        await once()
        assert len(teams.cards) == 4
        assert headline(teams.cards[-1]) == "🚨 3 notifications from 3 monitors"

        check = await cli("check", env=env)
        outputs += [check.stdout, check.stderr]
        assert check.code == 0, check.stdout
        assert any(
            "teams-ops" in line and "reachable" in line for line in check.stdout.splitlines()
        )
        assert teams.refused == [] and teams.answered == [202, 202, 500, 202, 202]

    for text in outputs:
        for secret in (url, SIGNATURE, *SECRETS):
            assert secret not in text
