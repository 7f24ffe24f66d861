"""`outbox list`, `outbox retry` and `outbox drop` through the installed CLI, with the state file
and with PostgreSQL, against the simulator, a fake Slack and a webhook that is down: between
`once` runs, and beside a running daemon that applies them at its next cycle."""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from notifier.cli.main import main
from notifier.store.file import StateFile
from tests.fakes.cli import World, cli
from tests.fakes.postgres import opened
from tests.fakes.states import sample_state
from tests.fakes.subprocess_daemon import Daemon
from tests.fakes.webhook import Reply


@pytest.fixture(params=["file", pytest.param("postgres", marks=pytest.mark.postgres)])
def env(request: pytest.FixtureRequest, world: World) -> dict[str, str]:
    """The CLI's environment on the state file, or on a PostgreSQL database of its own; a run
    already there at the first poll is news (no baseline cycle needed)."""
    base = {**world.env, "NOTIFIER_FIRST_START_LOOKBACK_SECONDS": "3600"}
    if request.param == "file":
        return base
    return {**base, "NOTIFIER_STATE_URL": request.getfixturevalue("postgres_url")}


async def once(env: dict[str, str]) -> list[dict[str, object]]:
    result = await cli("once", env=env)
    assert result.code == 0, result.stderr
    return result.events()


async def listed(env: dict[str, str]) -> dict[str, list[dict[str, object]]]:
    result = await cli("outbox", "list", "--json", env=env)
    assert result.code == 0, result.stderr
    parsed: dict[str, list[dict[str, object]]] = json.loads(result.stdout)
    return parsed


def delivered_since(world: World, start: int) -> list[str]:
    """The webhook IDs the receiver took (it answered 200) from its `start`-th POST on."""
    return [d.headers["webhook-id"] for d in world.receiver.deliveries[start:]]


def webhook_down(world: World) -> None:
    world.receiver.reply(*[Reply(503)] * 200)


def webhook_up(world: World) -> int:
    """Answer 200 again; the number of POSTs so far (those it refused)."""
    world.receiver._replies.clear()
    return len(world.receiver.deliveries)


async def waiting_alert(world: World, env: dict[str, str]) -> tuple[str, str]:
    """An alert Slack took and the webhook (down) did not: its notification ID and the
    webhook destination's name, as the failed delivery was logged."""
    run = world.sim.add_run(1, state="alert", started_at=world.now())
    webhook_down(world)
    events = await once(env)
    [failed] = [
        e for e in events if e["event"] == "delivery_failed" and e["destination"] != "slack"
    ]
    return f"1-{run}-alert", str(failed["destination"])


async def test_list_shows_what_waits_and_a_drop_for_one_destination_is_applied_next_cycle(
    world: World, env: dict[str, str]
) -> None:
    world.slack.server_error(times=100)  # Slack down too: the alert waits for both
    notification, hook = await waiting_alert(world, env)
    dropped = await cli("outbox", "drop", notification, "--destination", hook, env=env)
    assert dropped.code == 0, dropped.stderr
    assert f"drop of {notification} at destination {hook} requested" in dropped.stdout

    table, as_json = await asyncio.gather(cli("outbox", "list", env=env), listed(env))
    assert table.code == 0, table.stderr
    header, row, total, requests, request = table.stdout.splitlines()
    for column in ("ID", "MONITOR", "RUN", "KIND", "WAITING FOR", "ATTEMPTS", "AGE", "LAST ERROR"):
        assert column in header
    assert row.startswith(notification) and "1 orders prod vs staging" in row
    assert " alert " in row and (f"{hook}, slack" in row or f"slack, {hook}" in row)
    assert "answered HTTP 500" in row or f"{hook}: HTTP 503" in row  # the last error
    assert total.startswith("1 notification(s) waiting (")
    assert requests == "requests for the next cycle:"
    assert f"drop {notification} at destination {hook}" in request
    [entry] = as_json["outbox"]
    assert entry["id"] == notification and entry["kind"] == "alert" and entry["monitor_id"] == 1
    assert sorted(entry["waiting_for"]) == sorted(["slack", hook])  # type: ignore[type-var]
    assert [r["action"] for r in as_json["requests"]] == ["drop"]

    world.slack.clear_faults()
    refused = webhook_up(world)
    events = await once(env)
    [applied] = [e for e in events if e["event"] == "outbox_entry_dropped"]
    assert applied["undelivered_to"] == [hook] and applied["still_waiting_for"] == ["slack"]
    assert await listed(env) == {"outbox": [], "requests": []}
    assert len(world.slack.messages) == 1  # Slack still got it
    assert delivered_since(world, refused) == []  # the webhook never did


async def test_bad_input_is_one_line_with_its_exit_code(world: World, env: dict[str, str]) -> None:
    async with AsyncExitStack() as stack:  # sample_state: 7-70-alert waits for "slack"
        if "NOTIFIER_STATE_URL" in env:
            store = await stack.enter_async_context(opened(env["NOTIFIER_STATE_URL"]))
            await store.import_state(sample_state())
        else:
            StateFile(world.state_file).replace(sample_state())
    cases = [
        (("outbox", "drop", "7-999-alert"), 1, "no notification 7-999-alert is waiting"),
        (
            ("outbox", "drop", "7-70-alert", "--destination", "elsewhere"),
            1,
            "notification 7-70-alert is not waiting for elsewhere (it waits for slack)",
        ),
        (("outbox", "retry", "--destination", "nowhere"), 2, "no destination is named 'nowhere'"),
    ]
    results = await asyncio.gather(*(cli(*args, env=env) for args, _, _ in cases))
    for (args, code, message), result in zip(cases, results, strict=True):
        assert result.code == code, (args, result.stderr)
        # The error is the one line that is no JSON log event (the level here is debug).
        [line] = [line for line in result.stderr.splitlines() if not line.startswith("{")]
        assert message in line and "Traceback" not in line, (args, line)
    left = await listed(env)
    assert [e["id"] for e in left["outbox"]] == ["7-70-alert"]
    assert left["requests"] == []  # nothing was asked


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["outbox", "drop", "no spaces allowed"], "is not a notification ID"),
        (["outbox", "drop", "x" * 5000], "is not a notification ID"),
        (["outbox", "retry", "--destination", "a\x1bb"], "control characters"),
        (["outbox", "retry", "--destination", "two words"], "it has spaces"),
        (["outbox", "drop"], "required: ID"),
        (["outbox"], "required: ACTION"),
    ],
)
def test_malformed_arguments_exit_2_with_one_line_before_anything_is_read(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert message in line and len(line) < 600


async def test_beside_a_running_daemon_drop_and_retry_act_at_its_next_cycle(
    world: World, env: dict[str, str], reaper: list[Daemon]
) -> None:
    env = {**env, "NOTIFIER_MAX_RETRY_AFTER_SECONDS": "3600"}
    webhook_down(world)
    daemon = await Daemon.start(env)
    reaper.append(daemon)
    run = world.sim.add_run(1, state="alert", started_at=world.now())
    failed = await daemon.wait_event("delivery_failed", where=lambda e: e["destination"] != "slack")
    dropped, hook = f"1-{run}-alert", str(daemon.events[failed]["destination"])
    result = await cli("outbox", "drop", dropped, env=env)
    assert result.code == 0, result.stderr
    await daemon.wait_event("outbox_entry_dropped", where=lambda e: e["notification_id"] == dropped)

    # The webhook comes back, asking once to be left alone for an hour.
    refused = webhook_up(world)
    world.receiver.reply(Reply(503, headers={"Retry-After": "3600"}))
    run = world.sim.add_run(1, state="error", started_at=world.now(), error="boom")
    deferred = await daemon.wait_event("destination_deferred")
    assert daemon.events[deferred]["destination"] == hook
    await daemon.wait_event("cycle_finished", start=deferred + 1)  # a cycle that left it alone
    assert delivered_since(world, refused) == [f"1-{run}-error"]  # the one refused attempt

    asked = await cli("outbox", "retry", "--destination", hook, env=env)
    assert asked.code == 0, asked.stderr
    assert f"tries the 1 notification(s) waiting for {hook}" in asked.stdout
    assert f"1-{run}-error → {hook}" in asked.stdout
    lifted = await daemon.wait_event("deferral_lifted")
    assert daemon.events[lifted]["destinations"] == [hook]
    await daemon.wait_event(
        "notification_sent", start=lifted, where=lambda e: e.get("destination") == hook
    )
    assert await daemon.stop() == 0
    assert delivered_since(world, refused) == [f"1-{run}-error", f"1-{run}-error"]
    assert dropped not in delivered_since(world, refused)
    assert await listed(env) == {"outbox": [], "requests": []}


async def test_list_hides_a_routes_file_secret_a_destination_echoed(
    world: World, tmp_path: Path
) -> None:
    """A last error that quotes a secret the routes file reads (a proxy's refusal echoing the
    request) shows redacted in `outbox list`, as in the daemon's logs."""
    secret_url = "http://127.0.0.1:9/hooks/oncall-s3cr3t-path-81f2"
    routes = tmp_path / "routes.toml"
    routes.write_text(
        '[destinations.oncall]\ntype = "webhook"\nurl = "env:ONCALL_URL"\n\n'
        '[default]\nto = ["oncall"]\n'
    )
    env = {
        **world.env,
        "NOTIFIER_FIRST_START_LOOKBACK_SECONDS": "3600",
        "NOTIFIER_ROUTES_FILE": str(routes),
        "ONCALL_URL": secret_url,
        "NOTIFIER_ALLOW_HTTP": "true",
    }
    world.sim.add_run(1, state="alert", started_at=world.now())
    assert (await cli("once", env=env)).code == 0
    document = json.loads(world.state_file.read_text())
    [entry] = document["outbox"]
    entry["last_error"] = f"oncall: HTTP 401: you asked for {secret_url}"
    world.state_file.write_text(json.dumps(document))
    table, as_json = await asyncio.gather(
        cli("outbox", "list", env=env), cli("outbox", "list", "--json", env=env)
    )
    for result in (table, as_json):
        assert result.code == 0, result.stderr
        assert "oncall-s3cr3t-path-81f2" not in result.stdout + result.stderr
    [listed_entry] = json.loads(as_json.stdout)["outbox"]
    assert listed_entry["last_error"] == "oncall: HTTP 401: you asked for [REDACTED]"
