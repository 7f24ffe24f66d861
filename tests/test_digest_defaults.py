"""A storm becomes one digest by default (issue 15, point 7), through the installed CLI: the
env-configured Slack (bot token and channel, or an incoming webhook) and a routes file's Slack
destination without `digest_threshold` take more than 10 notifications in one cycle as one
message; 10 still go one by one; `SLACK_DIGEST_THRESHOLD=0` turns digests off."""

from __future__ import annotations

from pathlib import Path

from tests.fakes.cli import World, cli
from tests.fakes.slack import FakeSlack

#: Monitors 1 and 2 come with the world; these join them.
EXTRA_MONITORS = range(3, 13)

ROUTES = """
[destinations.team]
type = "slack"
channel = "C0123ABCD"
token = "env:SLACK_BOT_TOKEN"

[default]
to = ["team"]
"""


def slack_only(world: World, **changes: str) -> dict[str, str]:
    """The world's environment with Slack (bot token and channel) as the only destination."""
    env = {**world.env, **changes}
    del env["NOTIFIER_WEBHOOK_URLS"], env["NOTIFIER_WEBHOOK_SECRET"]
    return env


async def storm(world: World, env: dict[str, str], size: int) -> list[dict[str, object]]:
    """A baseline cycle, then one cycle in which the first `size` monitors each alert; the
    second cycle's log events."""
    for monitor in EXTRA_MONITORS:
        world.sim.add_monitor(monitor, name=f"table {monitor:02} freshness", monitor_type="metric")
    ids = list(range(1, size + 1))
    env = {**env, "NOTIFIER_MONITOR_IDS": ",".join(map(str, [1, 2, *EXTRA_MONITORS]))}
    baseline = await cli("once", env=env)
    assert baseline.code == 0, baseline.stderr
    for monitor in ids:
        world.sim.add_run(monitor, state="alert", started_at=world.now())
    result = await cli("once", env=env)
    assert result.code == 0, result.stderr
    return result.events()


def digests(events: list[dict[str, object]]) -> int:
    return sum(1 for e in events if e["event"] == "digest_sent")


async def test_the_env_bot_slack_digests_eleven_alerts_into_one_message(world: World) -> None:
    events = await storm(world, slack_only(world), 11)

    [digest] = world.slack.messages
    assert digest.channel == "C0123ABCD" and digest.thread_ts is None
    assert "11 notifications from 11 monitors" in (digest.text or "")
    assert "table 11 freshness" in (digest.text or "")
    assert digests(events) == 1


async def test_the_env_bot_slack_sends_ten_alerts_one_by_one(world: World) -> None:
    events = await storm(world, slack_only(world), 10)

    assert len(world.slack.messages) == 10
    assert not any("notifications from" in (m.text or "") for m in world.slack.messages)
    assert digests(events) == 0


async def test_slack_digest_threshold_zero_turns_the_env_bot_digest_off(world: World) -> None:
    events = await storm(world, slack_only(world, SLACK_DIGEST_THRESHOLD="0"), 12)

    assert len(world.slack.messages) == 12
    assert all(m.thread_ts is None for m in world.slack.messages)
    assert not any("notifications from" in (m.text or "") for m in world.slack.messages)
    assert digests(events) == 0


def webhook_only(world: World, **changes: str) -> dict[str, str]:
    """Slack through its incoming webhook (no bot token, no channel) as the only destination."""
    env = slack_only(world, **changes)
    base = env.pop("SLACK_API_URL").removesuffix("/api/")
    del env["SLACK_BOT_TOKEN"], env["SLACK_CHANNEL"]
    env["SLACK_WEBHOOK_URL"] = base + FakeSlack.WEBHOOK_PATH
    return env


async def test_the_env_slack_webhook_digests_eleven_alerts_into_one_message(
    world: World,
) -> None:
    events = await storm(world, webhook_only(world), 11)

    [digest] = world.slack.messages
    assert digest.channel is None  # it came through the webhook
    assert "11 notifications from 11 monitors" in (digest.text or "")
    assert world.slack.calls == ["webhook"]
    assert digests(events) == 1


async def test_slack_digest_threshold_zero_turns_the_env_webhook_digest_off(
    world: World,
) -> None:
    events = await storm(world, webhook_only(world, SLACK_DIGEST_THRESHOLD="0"), 11)

    assert len(world.slack.messages) == 11
    assert world.slack.calls == ["webhook"] * 11
    assert digests(events) == 0


async def test_a_routes_file_slack_without_digest_threshold_digests_eleven_alerts(
    world: World, tmp_path: Path
) -> None:
    routes = tmp_path / "routes.toml"
    routes.write_text(ROUTES)
    # The file's destination decides: the env's variable for the env-configured Slack is moot.
    env = slack_only(world, NOTIFIER_ROUTES_FILE=str(routes), SLACK_DIGEST_THRESHOLD="0")
    del env["SLACK_CHANNEL"]

    events = await storm(world, env, 11)

    [digest] = world.slack.messages
    assert digest.channel == "C0123ABCD"
    assert "11 notifications from 11 monitors" in (digest.text or "")
    assert digests(events) == 1
