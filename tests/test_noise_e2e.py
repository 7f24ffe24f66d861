"""Noise control end to end through the installed CLI: threads, recovery updates, mentions and
owner lookup, digests, reminders, mutes (also beside a running daemon), quiet hours and tag
discovery, against the simulator, the fake Slack and a webhook receiver."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from standardwebhooks import Webhook

from tests.fakes.cli import CLI, WHSEC, World, cli
from tests.fakes.slack import PostedMessage

ROUTES = """
[destinations.team]
type = "slack"
channel = "C0123ABCD"
token = "env:SLACK_BOT_TOKEN"
thread = true
mentions = ["S0DATAENG", "U0ALICE"]
mention_owner = true
digest_threshold = 3

[destinations.hook]
type = "webhook"
url = "env:HOOK_URL"
secret = "env:NOTIFIER_WEBHOOK_SECRET"

[default]
to = ["team", "hook"]
"""


def routed_env(world: World, tmp_path: Path, routes: str = ROUTES) -> dict[str, str]:
    path = tmp_path / "routes.toml"
    path.write_text(routes)
    env = {**world.env, "NOTIFIER_ROUTES_FILE": str(path)}
    env["HOOK_URL"] = env.pop("NOTIFIER_WEBHOOK_URLS")
    return env


def top_level(messages: list[PostedMessage]) -> list[PostedMessage]:
    return [m for m in messages if m.thread_ts is None]


def hook_payloads(world: World) -> list[dict[str, object]]:
    verifier = Webhook(WHSEC)
    return [verifier.verify(d.body, d.headers) for d in world.receiver.deliveries]


async def once(env: dict[str, str]) -> list[dict[str, object]]:
    result = await cli("once", env=env)
    assert result.code == 0, result.stderr
    return result.events()


async def test_an_incident_threads_updates_on_recovery_and_mentions(
    world: World, tmp_path: Path
) -> None:
    world.sim.add_monitor(7, name="orders freshness", owner="alice@example.com")
    world.slack.users["alice@example.com"] = "U0OWNER"
    env = {**routed_env(world, tmp_path), "NOTIFIER_MONITOR_IDS": "7"}
    await once(env)  # baseline

    alert = world.sim.add_run(7, state="alert", started_at=world.now())
    await once(env)
    [first] = world.slack.messages
    assert first.thread_ts is None
    for mention in ("<!subteam^S0DATAENG>", "<@U0ALICE>", "<@U0OWNER>"):
        assert mention in (first.text or "")
    assert world.slack.lookups == ["alice@example.com"]

    world.sim.add_run(7, state="error", started_at=world.now(), error="relation gone")
    await once(env)
    reply = world.slack.messages[1]
    assert reply.thread_ts == first.ts and not reply.reply_broadcast

    ok = world.sim.add_run(7, state="ok", started_at=world.now())
    events = await once(env)
    [update] = world.slack.updates
    assert update.ts == first.ts and "Resolved" in (update.text or "")
    recovered = world.slack.messages[2]
    assert recovered.thread_ts == first.ts and "<@U0ALICE>" not in (recovered.text or "")
    assert len(top_level(world.slack.messages)) == 1
    assert any(e["event"] == "monitor_recovered" for e in events)

    payloads = hook_payloads(world)
    assert [p["type"] for p in payloads] == [
        "monitor.run.alert",
        "monitor.run.error",
        "monitor.recovered",
    ]
    last = payloads[-1]["data"]
    assert isinstance(last, dict)
    assert last["run"]["id"] == ok and last["incident"]["id"] == f"7-{alert}-alert"

    await once(env)  # nothing new: nothing repeated
    assert len(world.slack.messages) == 3 and len(world.receiver.deliveries) == 3


async def test_a_storm_becomes_one_digest(world: World, tmp_path: Path) -> None:
    ids = [1, 2, 3, 4, 5]
    for m in (3, 4, 5):
        world.sim.add_monitor(m, name=f"table {m} freshness", monitor_type="metric")
    env = {**routed_env(world, tmp_path), "NOTIFIER_MONITOR_IDS": ",".join(map(str, ids))}
    await once(env)
    for m in ids:
        world.sim.add_run(m, state="alert" if m % 2 else "error", started_at=world.now())
    events = await once(env)
    [digest] = world.slack.messages
    body = json.dumps(digest.blocks) + (digest.text or "")
    for name in ("orders prod vs staging", "revenue metric", "table 5 freshness"):
        assert name in body
    assert "<!subteam^S0DATAENG>" in body
    assert len(world.receiver.deliveries) == 5  # the webhook has no threshold
    assert any(e["event"] == "digest_sent" for e in events)


async def test_mute_and_unmute_through_the_cli_also_beside_a_running_daemon(
    world: World,
) -> None:
    env = world.env
    await once(env)
    muted = await cli("mute", "--monitor", "1", "--for", "1h", "--reason", "backfill", env=env)
    assert muted.code == 0, muted.stderr
    assert muted.stdout.startswith("muted monitor 1 until ") and "backfill" in muted.stdout
    mute_id = muted.stdout.split("(mute ")[1].split(")")[0]

    check = await cli("check", env=env)
    assert any(
        "route monitor 1" in line and "MUTED until" in line and mute_id in line
        for line in check.stdout.splitlines()
    ), check.stdout
    assert f"mute {mute_id}: monitor 1 until" in check.stdout

    world.sim.add_run(1, state="alert", started_at=world.now())
    revenue = world.sim.add_run(2, state="error", started_at=world.now(), error="x")
    events = await once(env)
    assert [json.loads(d.body)["data"]["run"]["id"] for d in world.receiver.deliveries] == [revenue]
    assert any(e["event"] == "notification_muted" and e["monitor_id"] == 1 for e in events)

    # the daemon holds the state file the whole time; unmute and mute still work beside it
    proc = await asyncio.create_subprocess_exec(
        CLI, "run", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        await asyncio.sleep(1.5)
        unmuted = await cli("unmute", "--id", mute_id, env=env)
        assert unmuted.code == 0 and "unmuted monitor 1" in unmuted.stdout
        assert (await cli("mute", "--tag", "PROD", "--for", "30m", env=env)).code == 0
        await cli("unmute", "--tag", "prod", env=env)
        late = world.sim.add_run(1, state="alert", started_at=world.now())
        deadline = time.monotonic() + 15
        while len(world.receiver.deliveries) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert json.loads(world.receiver.deliveries[-1].body)["data"]["run"]["id"] == late
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), timeout=15)
    assert proc.returncode == 0

    again = await cli("unmute", "--monitor", "1", env=env)
    assert again.code == 1 and "no active mute" in again.stderr
    bad = await cli("mute", "--monitor", "1", "--for", "soon", env=env)
    assert bad.code == 2 and "not a duration" in bad.stderr


async def test_reminders_reply_in_the_thread_and_reach_the_channel(
    world: World, tmp_path: Path
) -> None:
    env = {**routed_env(world, tmp_path), "NOTIFIER_REMINDER_INTERVAL_SECONDS": "2"}
    await once(env)
    alert = world.sim.add_run(1, state="alert", started_at=world.now())
    await once(env)
    await asyncio.sleep(2.2)
    await once(env)
    first, reminder = world.slack.messages
    assert reminder.thread_ts == first.ts and reminder.reply_broadcast
    assert [p["type"] for p in hook_payloads(world)] == ["monitor.run.alert", "monitor.reminder"]
    data = hook_payloads(world)[1]["data"]
    assert (
        isinstance(data, dict) and data["run"]["id"] == alert and data["incident"]["reminders"] == 1
    )
    check = await cli("check", env=env)
    assert "reminder → team, hook" in check.stdout


async def test_quiet_hours_hold_events_back_and_check_shows_them(
    world: World, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    start, end = (
        (now - timedelta(hours=1)).strftime("%H:%M"),
        (now + timedelta(hours=1)).strftime("%H:%M"),
    )
    routes = ROUTES.replace(
        '[default]\nto = ["team", "hook"]',
        f'[default]\nto = ["team", "hook"]\n'
        f'quiet_hours = {{ start = "{start}", end = "{end}", timezone = "UTC" }}',
    )
    env = routed_env(world, tmp_path, routes)
    await once(env)
    world.sim.add_run(1, state="alert", started_at=world.now())
    events = await once(env)
    assert world.slack.messages == [] and world.receiver.deliveries == []
    assert any(e["event"] == "notification_quiet" for e in events)
    check = await cli("check", env=env)
    assert f"quiet {start}-{end} UTC" in check.stdout, check.stdout


async def test_monitors_found_by_tag_through_the_cli(world: World) -> None:
    env = {**world.env, "NOTIFIER_MONITOR_TAGS": "prod"}
    del env["NOTIFIER_MONITOR_IDS"]
    world.sim.add_run(1, state="alert", started_at=world.now() - timedelta(minutes=1))
    events = await once(env)
    assert world.slack.messages == []  # a monitor found is baselined silently
    assert any(e["event"] == "monitors_discovered" for e in events)
    world.sim.add_run(2, state="alert", started_at=world.now())  # not tagged prod
    tagged = world.sim.add_run(1, state="error", started_at=world.now(), error="boom")
    await once(env)
    assert [json.loads(d.body)["data"]["run"]["id"] for d in world.receiver.deliveries] == [tagged]
    check = await cli("check", env=env)
    assert "tag 'prod': 1 monitor(s): 1" in check.stdout


async def test_a_mute_that_expires_while_failing_lets_the_next_event_through(
    world: World,
) -> None:
    env = world.env
    await once(env)
    # Long enough for the next `once` to start within it on a loaded machine.
    muted = await cli("mute", "--monitor", "1", "--for", "6s", env=env)
    assert muted.code == 0, muted.stderr
    world.sim.add_run(1, state="alert", started_at=world.now())
    events = await once(env)
    assert world.slack.messages == [] and world.receiver.deliveries == []
    assert any(e["event"] == "notification_muted" for e in events)
    await asyncio.sleep(6.2)
    ok = world.sim.add_run(1, state="ok", started_at=world.now())
    await once(env)
    [recovered] = hook_payloads(world)
    assert recovered["type"] == "monitor.recovered"
    data = recovered["data"]
    assert isinstance(data, dict) and data["run"]["id"] == ok


async def test_slack_is_paced_per_channel_through_the_cli(world: World) -> None:
    env = {**world.env, "NOTIFIER_SLACK_MESSAGES_PER_SECOND": "1"}
    del env["NOTIFIER_WEBHOOK_URLS"]
    await once(env)
    for monitor_id in (1, 2):
        for _ in range(2):
            world.sim.add_run(monitor_id, state="alert", started_at=world.now())
    await once(env)
    arrivals = sorted(m.at for m in world.slack.messages)
    assert len(arrivals) == 4
    # one channel: about one message a second (loosely, the machine is shared)
    assert arrivals[-1] - arrivals[0] >= 2.5, arrivals
    assert min(b - a for a, b in itertools.pairwise(arrivals)) >= 0.5, arrivals


async def test_an_alertmanager_receiver_sees_firing_then_resolved_with_one_fingerprint(
    world: World, tmp_path: Path
) -> None:
    routes = """
[destinations.am]
type = "webhook"
url = "env:HOOK_URL"
format = "alertmanager"

[default]
to = ["am"]
"""
    env = routed_env(world, tmp_path, routes)
    await once(env)
    world.sim.add_run(1, state="alert", started_at=world.now())
    await once(env)
    world.sim.add_run(1, state="ok", started_at=world.now())
    await once(env)
    firing, resolved = (json.loads(d.body) for d in world.receiver.deliveries)
    assert (firing["status"], resolved["status"]) == ("firing", "resolved")
    assert firing["alerts"][0]["fingerprint"] == resolved["alerts"][0]["fingerprint"]
    assert resolved["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"


def within_block_kit_limits(message: PostedMessage) -> bool:
    """Every Block Kit limit the notifier promises to respect, checked on what Slack received."""
    blocks = message.blocks or []
    if len(blocks) > 50 or len(message.text or "") > 4000:
        return False
    for block in blocks:
        text = (block.get("text") or {}).get("text", "")
        if block["type"] == "header" and len(text) > 150:
            return False
        if block["type"] == "section":
            fields = block.get("fields", [])
            if len(text) > 3000 or len(fields) > 10:
                return False
            if any(len(f["text"]) > 2000 for f in fields):
                return False
        if block["type"] == "context" and len(block.get("elements", [])) > 10:
            return False
    return True


async def test_long_errors_are_split_and_big_digests_packed_within_block_kit_limits(
    world: World, tmp_path: Path
) -> None:
    ids = list(range(1, 41))
    for m in ids[2:]:
        world.sim.add_monitor(m, name=f"monitor number {m} " + "x" * 120)
    env = {**routed_env(world, tmp_path), "NOTIFIER_MONITOR_IDS": ",".join(map(str, ids))}
    env["NOTIFIER_ROUTES_FILE"] = str(tmp_path / "split.toml")
    (tmp_path / "split.toml").write_text(
        ROUTES.replace("digest_threshold = 3", "digest_threshold = 5")
    )
    await once(env)
    long_error = "\n".join(f"line {i}: " + "relation does not exist " * 8 for i in range(40))
    world.sim.add_run(1, state="error", started_at=world.now(), error=long_error)
    await once(env)
    [single] = world.slack.messages
    assert within_block_kit_limits(single)
    error_sections = [b for b in single.blocks or [] if "*Error*" in json.dumps(b)]
    assert len(error_sections) >= 3  # split over sections, not cut to one
    assert "line 39" in json.dumps(single.blocks)  # nothing lost below the 12,000 cap

    for m in ids[2:]:
        world.sim.add_run(m, state="alert", started_at=world.now())
    await once(env)
    digest = world.slack.messages[1:]  # 38 long-named groups: packed, never over a limit
    assert digest and all(within_block_kit_limits(m) for m in digest)
    body = json.dumps([m.blocks for m in digest])
    assert all(f"monitor number {m} " in body for m in ids[2:])
