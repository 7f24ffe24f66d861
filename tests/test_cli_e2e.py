"""The installed `datafold-notifier` command against the simulator, a fake Slack and a receiver."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from standardwebhooks import Webhook

from tests.fakes.cli import CLI, SECRETS, WHSEC, Result, World, cli, dead_kinds_env


def assert_no_secrets(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


async def test_once_twice_then_run(world: World) -> None:
    sim, slack, receiver = world.sim, world.slack, world.receiver
    sim.add_run(1, state="alert", started_at=world.now() - timedelta(minutes=5), diff_id=77)

    first = await cli("once", env=world.env)
    assert first.code == 0, first.stderr
    assert slack.messages == [] and receiver.deliveries == []  # history is silent
    assert any(e["event"] == "monitor_baselined" for e in first.events())

    alert = sim.add_run(1, state="alert", started_at=world.now(), diff_id=78)
    error = sim.add_run(
        2, state="error", started_at=world.now(), error="relation revenue does not exist"
    )
    sim.add_run(2, state="skipped", started_at=world.now())
    second = await cli("once", env=world.env)
    assert second.code == 0, second.stderr
    assert len(slack.messages) == 2
    texts = " ".join(m.text for m in slack.messages)
    assert "orders prod vs staging" in texts and "revenue metric" in texts
    blocks = json.dumps([m.blocks for m in slack.messages])
    assert "relation revenue does not exist" in blocks
    assert "/datadiffs/78/overview" in blocks
    assert len(receiver.deliveries) == 2
    verifier = Webhook(WHSEC)
    ids = set()
    for delivery in receiver.deliveries:
        payload = verifier.verify(delivery.body, delivery.headers)
        ids.add(delivery.headers["webhook-id"])
        assert payload["data"]["run"]["id"] in (alert, error)
    assert ids == {f"1-{alert}-alert", f"2-{error}-error"}
    sent = [e for e in second.events() if e["event"] == "notification_sent"]
    assert {(e["monitor_id"], e["run_id"]) for e in sent} == {(1, alert), (2, error)}

    third = await cli("once", env=world.env)
    assert third.code == 0 and len(slack.messages) == 2 and len(receiver.deliveries) == 2

    # the daemon: a new alert reaches both destinations within an interval or two
    proc = await asyncio.create_subprocess_exec(
        CLI, "run", env=world.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    await asyncio.sleep(1.5)
    late = sim.add_run(1, state="alert", started_at=world.now())
    deadline = time.monotonic() + 15
    while len(receiver.deliveries) < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert len(slack.messages) == 3 and len(receiver.deliveries) == 3
    assert json.loads(receiver.deliveries[-1].body)["data"]["run"]["id"] == late
    proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    out, err = await asyncio.wait_for(proc.communicate(), timeout=10)
    assert proc.returncode == 0
    assert time.monotonic() - started < 5
    run = Result(0, out.decode(), err.decode())
    names = [e["event"] for e in run.events()]
    assert "daemon_started" in names and "daemon_stopped" in names, names
    state = json.loads(world.state_file.read_text())
    assert state["version"] == 1 and state["outbox"] == []
    assert_no_secrets(first.stdout, first.stderr, second.stderr, third.stderr, run.stderr)


async def test_outbox_survives_slack_outage_across_processes(world: World) -> None:
    await cli("once", env=world.env)
    run_id = world.sim.add_run(1, state="alert", started_at=world.now())
    world.slack.server_error(times=100)
    down = await cli("once", env=world.env)
    assert down.code == 0
    assert world.slack.messages == [] and len(world.receiver.deliveries) == 1
    failed = [e for e in down.events() if e["event"] == "delivery_failed"]
    assert failed and failed[0]["destination"] == "slack"
    saved = json.loads(world.state_file.read_text())
    assert [e["pending"] for e in saved["outbox"]] == [["slack"]]

    world.slack.clear_faults()
    up = await cli("once", env=world.env)
    assert up.code == 0
    assert [m.text for m in world.slack.messages] and len(world.slack.messages) == 1
    assert len(world.receiver.deliveries) == 1  # the webhook is not repeated
    assert str(run_id) in world.slack.messages[0].text or any(
        str(run_id) in json.dumps(m.blocks) for m in world.slack.messages
    )


async def test_refused_key_fails_once(world: World) -> None:
    env = {**world.env, "DATAFOLD_API_KEY": "dfk-wrong-key-value-999"}
    result = await cli("once", env=env)
    assert result.code == 1
    assert any(e["event"] == "once_failed" for e in result.events())
    assert "dfk-wrong-key-value-999" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"NOTIFIER_POLL_INTERVAL_SECONDS": "often"}, "NOTIFIER_POLL_INTERVAL_SECONDS"),
        ({"DATAFOLD_API_KEY": ""}, "DATAFOLD_API_KEY"),
        ({"NOTIFIER_MONITOR_IDS": ""}, "NOTIFIER_MONITOR_IDS"),
        ({"NOTIFIER_WEBHOOK_SECRET": "whsec_!!"}, "NOTIFIER_WEBHOOK_SECRET"),
    ],
)
async def test_invalid_configuration_is_one_line_exit_2(
    world: World, override: dict[str, str], expected: str
) -> None:
    env = {**world.env, **override}
    for name, value in override.items():
        if not value:
            del env[name]
    result = await cli("once", env=env)
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in result.stderr


async def test_check_reports_each_dependency(world: World) -> None:
    ok = await cli("check", env=world.env)
    assert ok.code == 0, ok.stdout
    lines = ok.stdout.splitlines()
    assert any(line.startswith("ok") and "monitor 1" in line for line in lines)
    assert any(line.startswith("ok") and "API key accepted" in line for line in lines)
    assert not any(line.startswith("FAIL") for line in lines)

    bad = {
        **world.env,
        "NOTIFIER_MONITOR_IDS": "1,999",
        "SLACK_BOT_TOKEN": "xoxb-not-the-right-one",
    }
    failed = await cli("check", env=bad)
    assert failed.code == 1
    fails = [line for line in failed.stdout.splitlines() if line.startswith("FAIL")]
    assert any("999" in line and "404" in line for line in fails)
    assert any("invalid_auth" in line for line in fails)
    assert "xoxb-not-the-right-one" not in failed.stdout + failed.stderr

    refused = await cli("check", env={**world.env, "DATAFOLD_API_KEY": "dfk-refused-1234567"})
    assert refused.code == 1 and "refused the API key" in refused.stdout


async def test_second_daemon_on_one_state_file_is_refused(world: World) -> None:
    proc = await asyncio.create_subprocess_exec(
        CLI, "run", env=world.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 10
        while not world.state_file.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        second = await cli("once", env=world.env)
        assert second.code == 2
        assert "in use by another datafold-notifier" in second.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), timeout=10)
    assert proc.returncode == 0


async def test_help_lists_the_commands() -> None:
    result = await cli("--help", env={"PATH": os.environ.get("PATH", "")})
    assert result.code == 0
    for command in ("run", "once", "check", "demo", "simulate"):
        assert command in result.stdout


async def test_demo_shows_a_notification(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "NOTIFIER_LOG_FORMAT": "json"}
    result = await cli("demo", "--interval", "2", "--duration", "32", env=env, cwd=tmp_path)
    assert result.code == 0, result.stderr
    notifications = [line for line in result.stdout.splitlines() if "Alert: " in line]
    assert notifications, result.stdout  # the console sink's header line, not the banner
    assert list(tmp_path.iterdir()) == []  # the demo keeps its state in a temporary directory


async def test_no_secret_in_any_output_at_debug(world: World) -> None:
    slack_hook = world.env["SLACK_API_URL"].removesuffix("/api/") + world.slack.WEBHOOK_PATH
    dead_hook = "http://127.0.0.1:9/unreachable-hook-s3cr3t-path?token=dead-token-value"
    env = {
        **world.env,
        **dead_kinds_env(),  # every new kind's secrets (in SECRETS), on its error paths
        "SLACK_WEBHOOK_URL": slack_hook,
        "NOTIFIER_WEBHOOK_URLS": f"{world.env['NOTIFIER_WEBHOOK_URLS']},{dead_hook}",
        "NOTIFIER_LOG_LEVEL": "debug",
    }
    outputs = []
    for command in ("check", "once"):
        result = await cli(command, env=env)
        outputs += [result.stdout, result.stderr]
    world.sim.add_run(1, state="error", started_at=world.now(), error="boom")
    world.slack.server_error(times=3)
    result = await cli("once", env=env)
    outputs += [result.stdout, result.stderr]
    assert result.code == 0
    assert any(e["event"] == "delivery_failed" for e in result.events())
    assert world.receiver.deliveries  # the live webhook was reached
    failed = {e.get("destination") for e in result.events() if e["event"] == "delivery_failed"}
    assert {"pagerduty", "teams", "email", "alertmanager", "apprise"} <= failed

    # the daemon, until its first cycle has finished, then SIGTERM; and the demo
    delivered = len(world.receiver.deliveries)
    world.sim.add_run(2, state="alert", started_at=world.now())
    proc = await asyncio.create_subprocess_exec(
        CLI, "run", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    deadline = time.monotonic() + 15
    while len(world.receiver.deliveries) == delivered and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert len(world.receiver.deliveries) > delivered
    proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=15)
    assert proc.returncode == 0
    outputs += [out.decode(), err.decode()]
    demo = await cli("demo", "--interval", "1", "--duration", "3", env=env)
    assert demo.code == 0
    outputs += [demo.stdout, demo.stderr]

    secrets = [*SECRETS, slack_hook, dead_hook, "unreachable-hook-s3cr3t-path", "dead-token-value"]
    secrets += [env["TEAMS_WEBHOOK_URL"], env["APPRISE_URL"]]
    secrets += [quote(secret, safe="") for secret in secrets]  # URL-quoted too
    for text in outputs:
        for secret in secrets:
            assert secret not in text
