"""Every value that validation accepts works at runtime: each numeric setting at its edges.

The settings and their bounds are read from `Settings` itself, so a new numeric setting is tested
without touching this file (a new `gt` bound fails until its "just above" value is chosen in
`JUST_ABOVE`). Each case runs one real cycle against the simulator, the fake Slack and a webhook
receiver: `once` in-process through `notifier.cli.main` (fast), or a `run` subprocess for the
settings only the daemon reads. A case passes when the command exits 0, the cycle polled its
monitor without failure, and a new alert reached both destinations.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog

from notifier.cli.main import main
from notifier.run.settings import Settings
from tests.fakes.cli import World
from tests.fakes.postgres import (
    postgres_server_fixture,  # noqa: F401  # the fixture, registered by importing it
    postgres_url_fixture,  # noqa: F401
)
from tests.fakes.subprocess_daemon import Daemon

#: For a `gt` bound: the value tested as "just above" it, and why that one.
JUST_ABOVE: dict[str, tuple[float, str]] = {
    "max_requests_per_second": (
        0.5,
        "below 1/s the limiter hands out one token per 1/rate s (the branch that used to fail "
        "every request); 0.5 proves it in about 2 s per request, 0.001 would take 1000 s",
    ),
    "slack_messages_per_second": (
        0.5,
        "below 1/s the pacer stretches its period to 1/rate s; the case's one message goes out at "
        "once, 0.5 proves the branch without waiting",
    ),
    "request_timeout_seconds": (
        0.5,
        "under a second: every request to the local fakes must finish within it, and the Slack "
        "client must get a fraction of a second, not int(0.5) = 0",
    ),
}

#: Settings that act only together with others: what each case sets beside them.
COMPANIONS: dict[str, dict[str, str]] = {
    # The sweep belongs to the change feed, and must stay shorter than the catch-up limit.
    "feed_sweep_seconds": {
        "NOTIFIER_POLL_MODE": "feed",
        "NOTIFIER_CATCHUP_LIMIT_SECONDS": str(30 * 86400),
    },
    # Discovery runs only when monitors are chosen by tag.
    "discovery_interval_seconds": {"NOTIFIER_MONITOR_TAGS": "{tag}"},
    # The lease belongs to the PostgreSQL store.
    "lease_seconds": {"NOTIFIER_STATE_URL": "{postgres}"},
}

#: Settings only `run` reads (`once` polls at once, serves nothing and has nothing to drain).
DAEMON_ONLY = {
    "poll_interval_seconds",
    "poll_spread_seconds",
    "shutdown_grace_seconds",
    "health_port",
}

#: Settings that decide the first start: their case skips the baseline cycle.
FIRST_START = {"first_start_lookback_seconds"}


@dataclass(frozen=True)
class Edge:
    """One numeric setting at one end of its accepted range."""

    field: str
    variable: str
    value: float
    side: str

    @property
    def text(self) -> str:
        return str(int(self.value)) if self.value == int(self.value) else repr(self.value)


def edges() -> list[Edge]:
    """Both accepted ends of every setting `Settings` bounds with ge/gt and le."""
    found = []
    for name, field in Settings.model_fields.items():
        bounds = {
            key: getattr(item, key)
            for item in field.metadata
            for key in ("ge", "gt", "le", "lt")
            if hasattr(item, key)
        }
        if not bounds:
            continue
        assert field.validation_alias is not None, name
        variable = str(field.validation_alias)
        assert "lt" not in bounds, f"{variable}: an lt bound needs a 'just below' value here"
        assert "le" in bounds, f"{variable}: a numeric setting without a highest value"
        if "ge" in bounds:
            low = bounds["ge"]
        else:
            assert name in JUST_ABOVE, (
                f"{variable} has a gt bound: choose the value just above it in JUST_ABOVE"
            )
            low = JUST_ABOVE[name][0]
            assert low > bounds["gt"]
        found += [
            Edge(name, variable, low, "lowest"),
            Edge(name, variable, bounds["le"], "highest"),
        ]
    return found


EDGES = edges()
_monitor_ids = itertools.count(100)


def test_every_numeric_setting_is_covered() -> None:
    covered = {edge.field for edge in EDGES}
    numeric = {
        name
        for name, field in Settings.model_fields.items()
        if field.annotation in (int, float, int | None, float | None)
    }
    assert numeric <= covered, f"numeric settings without bounds: {numeric - covered}"
    assert len(EDGES) >= 40


@pytest.fixture
def isolated_logging() -> Iterator[None]:
    """`main` configures logging for the process: put back what pytest had."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {
        name: logger.level
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    config = structlog.get_config()
    yield
    structlog.configure(**config)
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, value in levels.items():
        logging.getLogger(name).setLevel(value)
    logging.captureWarnings(False)


@dataclass
class Case:
    """One edge's world: its own monitor, tag and state, and the environment to run with."""

    world: World
    edge: Edge
    monitor_id: int
    env: dict[str, str]
    env_file: Path


def make_case(world: World, edge: Edge, tmp_path: Path, request: pytest.FixtureRequest) -> Case:
    monitor_id = next(_monitor_ids)
    tag = f"edge-{monitor_id}"
    world.sim.add_monitor(monitor_id, name=f"edge {edge.variable}", tags=[tag])
    env = {
        **world.env,
        "NOTIFIER_MONITOR_IDS": str(monitor_id),
        "NOTIFIER_STATE_FILE": str(tmp_path / f"{monitor_id}.state.json"),
    }
    for variable, value in COMPANIONS.get(edge.field, {}).items():
        if value == "{postgres}":
            value = request.getfixturevalue("postgres_url")
        env[variable] = value.replace("{tag}", tag)
    env_file = tmp_path / f"{monitor_id}.env"  # empty: no ./.env is read
    env_file.write_text("")
    return Case(world, edge, monitor_id, env, env_file)


async def once(case: Case, env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> Any:
    """`datafold-notifier once` in this process, in a thread (it runs its own event loop)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        code = await asyncio.to_thread(main, ["--env-file", str(case.env_file), "once"])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    stderr = capsys.readouterr().err
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return code, events


def assert_polled(events: list[dict[str, Any]]) -> dict[str, Any]:
    [finished] = [e for e in events if e["event"] == "cycle_finished"]
    assert finished["monitors_polled"] == 1 and finished["monitors_failed"] == 0, finished
    return finished


def assert_delivered(case: Case, run_id: int) -> None:
    bodies = [json.loads(d.body) for d in case.world.receiver.deliveries]
    assert run_id in [body["data"]["run"]["id"] for body in bodies], "the webhook got nothing"
    slack = json.dumps([m.blocks for m in case.world.slack.messages]) + " ".join(
        m.text or "" for m in case.world.slack.messages
    )
    assert str(run_id) in slack, "Slack got nothing"


@pytest.mark.parametrize(
    "edge",
    [e for e in EDGES if e.field not in DAEMON_ONLY],
    ids=lambda e: f"{e.variable}={e.text}",
)
async def test_one_cycle_with_the_setting_at_its_edge(
    world: World,
    edge: Edge,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    isolated_logging: None,
    request: pytest.FixtureRequest,
) -> None:
    case = make_case(world, edge, tmp_path, request)
    if edge.field not in FIRST_START:
        code, events = await once(case, case.env, capsys)  # the baseline, at the defaults
        assert code == 0 and assert_polled(events)
    run_id = world.sim.add_run(
        case.monitor_id, state="alert", started_at=world.now() - timedelta(seconds=30)
    )
    code, events = await once(case, {**case.env, edge.variable: edge.text}, capsys)
    assert code == 0, [e for e in events if e["level"] in ("warning", "error")]
    assert_polled(events)
    if edge.field in FIRST_START and edge.value == 0:
        return  # history at the first start is silent: nothing to deliver
    assert_delivered(case, run_id)
    assert not [e for e in events if e["level"] == "error"]


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def run_daemon(case: Case) -> None:
    """`datafold-notifier run` with the edge, until a cycle has delivered; then SIGTERM."""
    run_id = case.world.sim.add_run(case.monitor_id, state="alert", started_at=case.world.now())
    env = {**case.env, case.edge.variable: case.edge.text}
    daemon = await Daemon.start(env)
    try:
        await daemon.wait_event("cycle_finished", where=lambda e: e["delivered"] >= 1, within=30)
        assert_polled([daemon.named("cycle_finished")[0]])
        if case.edge.field == "health_port":
            [listening] = daemon.named("status_listening")
            port = int(listening["port"])
            assert port == case.edge.value or (case.edge.value == 0 and port > 0)
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/healthz") as answer,
            ):
                assert answer.status == 200
    finally:
        code = await daemon.stop()
    assert code == 0, daemon.events[-6:]
    assert daemon.named("daemon_stopped") and not daemon.loose, daemon.loose[-5:]
    assert not [e for e in daemon.events if e["level"] == "error"], daemon.events[-6:]
    assert_delivered(case, run_id)


async def test_the_daemon_with_each_setting_at_its_edge(
    world: World,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    isolated_logging: None,
    request: pytest.FixtureRequest,
) -> None:
    """The settings only `run` reads, each edge in a daemon of its own, all at once (a process
    takes a second to start); every failure is reported, by edge."""
    cases = []
    for edge in [e for e in EDGES if e.field in DAEMON_ONLY]:
        if edge.field == "health_port" and edge.value and not _port_free(int(edge.value)):
            continue  # taken on this machine: the other edge still runs
        case = make_case(world, edge, tmp_path, request)
        code, events = await once(case, case.env, capsys)  # the baseline, at the defaults
        assert code == 0 and assert_polled(events)
        cases.append(case)
    assert len(cases) >= 2 * len(DAEMON_ONLY) - 1
    outcomes = await asyncio.gather(*(run_daemon(c) for c in cases), return_exceptions=True)
    failed = {
        f"{c.edge.variable}={c.edge.text}": repr(outcome)[:500]
        for c, outcome in zip(cases, outcomes, strict=True)
        if outcome is not None
    }
    assert failed == {}


def test_just_above_values_are_explained() -> None:
    for name, (value, why) in JUST_ABOVE.items():
        assert name in Settings.model_fields and math.isfinite(value) and len(why) > 20
