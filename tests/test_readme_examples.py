"""The README's routing example works as written (issue 15, point 9): its TOML, copied into a
routes file, with only the variables it names set (`SLACK_BOT_TOKEN` read through `env:`, no
`SLACK_CHANNEL`), runs `once` and routes as its comments say."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.fakes.cli import World, cli

README = Path(__file__).resolve().parent.parent / "README.md"


def routing_example() -> str:
    """The first TOML block of the README's set-up section."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Set it up for real") :]
    found = re.search(r"```toml\n(.*?)```", section, re.DOTALL)
    assert found, "the README's set-up section has no TOML example"
    return found.group(1)


async def test_the_readme_routing_example_runs_as_written(world: World, tmp_path: Path) -> None:
    routes = tmp_path / "routes.toml"
    routes.write_text(routing_example())
    world.sim.add_monitor(3, name="ledger", monitor_type="metric", tags=["finance"])
    env = {**world.env, "NOTIFIER_ROUTES_FILE": str(routes), "NOTIFIER_MONITOR_IDS": "1,2,3"}
    env["ONCALL_WEBHOOK_URL"] = env.pop("NOTIFIER_WEBHOOK_URLS")
    del env["SLACK_CHANNEL"]  # the file names the channel; the token is only read by env:

    async def once() -> None:
        result = await cli("once", env=env)
        assert result.code == 0, result.stderr

    await once()
    world.sim.add_run(1, state="alert", started_at=world.now())
    world.sim.add_run(3, state="error", started_at=world.now(), error="boom")
    await once()

    # Monitor 1 (tag prod): the default route, the data-alerts channel. Monitor 3 (finance):
    # on-call's Alertmanager-format webhook and data-alerts.
    assert sorted(m.channel or "" for m in world.slack.messages) == ["C0123ABCD", "C0123ABCD"]
    [delivery] = world.receiver.deliveries
    payload = json.loads(delivery.body)
    assert [a["labels"]["monitor_id"] for a in payload["alerts"]] == ["3"]
