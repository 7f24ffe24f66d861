"""Datafold-like switches on a route or a destination (issue 15, point 7): `notify = "first"`
(only an incident's first failing run that passes) and `min_consecutive_failures` (nothing until
the incident's Nth failing run; its recovery and reminders only after that). Pure tables, the
incident's count of failing runs, and one run through the CLI."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from pydantic import ValidationError

from notifier.deliver.sinks.context import SinkContext
from notifier.deliver.sinks.registry import build_sink
from notifier.deliver.sinks.slack_transport import ChannelPacer
from notifier.detect.runs import DetectionPolicy, detect
from notifier.domain.models import MonitorInfo, MonitorRun
from notifier.route.destinations.fields import NoticeSwitches
from notifier.route.rules import Routes, destinations_for, route_event
from tests.fakes.cli import World, cli

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("notify", "least", "kind", "failures", "passes"),
    [
        ("all", 1, "alert", 1, True),
        ("all", 1, "error", 5, True),
        ("first", 1, "alert", 1, True),
        ("first", 1, "alert", 2, False),
        ("first", 1, "recovered", 4, True),
        ("first", 1, "reminder", 4, True),
        ("all", 3, "alert", 2, False),
        ("all", 3, "error", 3, True),
        ("all", 3, "alert", 4, True),
        ("first", 3, "alert", 3, True),
        ("first", 3, "alert", 4, False),
        ("all", 3, "recovered", 2, False),
        ("all", 3, "reminder", 2, False),
        ("all", 3, "recovered", 3, True),
        ("first", 3, "alert", None, True),
    ],
)
def test_lets_through(
    notify: str, least: int, kind: str, failures: int | None, passes: bool
) -> None:
    switches = NoticeSwitches.model_validate({"notify": notify, "min_consecutive_failures": least})
    assert switches.lets_through(kind, failures) is passes


TABLE = Routes.model_validate(
    {
        "destinations": {
            "pager": {"type": "webhook", "url": "https://p.test/h", "notify": "first"},
            "chat": {"type": "webhook", "url": "https://c.test/h"},
            "mail": {"type": "webhook", "url": "https://m.test/h"},
        },
        "routes": [
            {"match": {"tags": ["flaky"]}, "to": ["mail"], "min_consecutive_failures": 3},
        ],
        "default": {"to": ["pager", "chat"]},
    }
)
STEADY = MonitorInfo(id=1, tags=[])
FLAKY = MonitorInfo(id=2, tags=["flaky"])


@pytest.mark.parametrize(
    ("monitor", "kind", "failures", "to"),
    [
        (STEADY, "alert", 1, ["pager", "chat"]),
        (STEADY, "error", 2, ["chat"]),
        (STEADY, "recovered", 2, ["pager", "chat"]),
        (FLAKY, "alert", 1, []),
        (FLAKY, "alert", 2, []),
        (FLAKY, "alert", 3, ["mail"]),
        (FLAKY, "recovered", 2, []),
        (FLAKY, "recovered", 3, ["mail"]),
    ],
)
def test_route_event_applies_route_and_destination_switches(
    monitor: MonitorInfo, kind: str, failures: int, to: list[str]
) -> None:
    assert route_event(TABLE, monitor, kind, T0, failures=failures).to == to


def test_check_explains_where_events_go_once_the_switches_let_them() -> None:
    assert destinations_for(TABLE, FLAKY, "alert") == ["mail"]


@pytest.mark.parametrize(
    "table",
    [
        {"notify": "second"},
        {"min_consecutive_failures": 0},
        {"min_consecutive_failures": 1001},
    ],
)
def test_bad_switches_are_refused(table: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Routes.model_validate(
            {
                "destinations": {"d": {"type": "webhook", "url": "https://d.test/h"}},
                "default": {"to": ["d"], **table},
            }
        )


def test_an_incident_counts_its_failing_runs() -> None:
    policy = DetectionPolicy(
        notify_states=frozenset({"alert", "error"}),
        retention=timedelta(hours=1),
        in_progress_limit=timedelta(hours=24),
    )
    state = detect(None, [], T0, policy).state
    runs: list[MonitorRun] = []
    counts = []
    for run_id, state_name in enumerate(["alert", "alert", "error"], start=1):
        started = T0 + timedelta(minutes=run_id)
        runs.append(MonitorRun(run_id=run_id, monitor_id=1, state=state_name, started_at=started))
        detection = detect(state, runs, started + timedelta(seconds=30), policy)
        state = detection.state
        counts.append([n.incident.failures for n in detection.notices])
    assert counts == [[1], [2], [3]]


ROUTES = """
[destinations.flaky-hook]
type = "webhook"
url = "env:HOOK_URL"
min_consecutive_failures = 2
notify = "first"

[default]
to = ["flaky-hook"]
"""


def once_with_routes(world: World, tmp_path: Path, text: str) -> Callable[[], Awaitable[None]]:
    """`once` through the CLI with `text` as the routes file (its webhook reads HOOK_URL)."""
    routes = tmp_path / "routes.toml"
    routes.write_text(text)
    env = {**world.env, "NOTIFIER_ROUTES_FILE": str(routes)}
    env["HOOK_URL"] = env.pop("NOTIFIER_WEBHOOK_URLS")

    async def once() -> None:
        result = await cli("once", env=env)
        assert result.code == 0, result.stderr

    return once


async def test_through_the_cli_only_the_second_failure_and_its_recovery_go_out(
    world: World, tmp_path: Path
) -> None:
    once = once_with_routes(world, tmp_path, ROUTES)
    await once()
    for state in ("alert", "error", "alert"):
        world.sim.add_run(1, state=state, started_at=world.now())
        await once()
    world.sim.add_run(1, state="ok", started_at=world.now())
    await once()
    events = [json.loads(d.body) for d in world.receiver.deliveries]
    assert [(e["type"], e["data"]["run"]["state"]) for e in events] == [
        ("monitor.run.error", "error"),
        ("monitor.recovered", "ok"),
    ]


async def test_a_slack_destination_digests_a_storm_by_default_and_zero_turns_it_off() -> None:
    quiet = {"type": "slack", "channel": "C2", "token": "xoxb-2", "digest_threshold": 0}
    table = Routes.model_validate(
        {
            "destinations": {
                "chat": {"type": "slack", "channel": "C1", "token": "xoxb-1"},
                "hook": {"type": "slack-webhook", "url": "https://hooks.slack.test/s/1"},
                "quiet": quiet,
            },
            "default": {"to": ["chat"]},
        }
    )
    async with aiohttp.ClientSession() as session:
        context = SinkContext(session=session, timeout=5, slack_pacer=ChannelPacer())
        sinks = {name: build_sink(name, d, context) for name, d in table.destinations.items()}
    thresholds = {name: sink.digest_threshold for name, sink in sinks.items()}
    assert thresholds == {"chat": 10, "hook": 10, "quiet": None}


ON_A_ROUTE = Routes.model_validate(
    {
        "destinations": {
            "chat": {"type": "webhook", "url": "https://c.test/h"},
            "pager": {"type": "webhook", "url": "https://p.test/h"},
        },
        "routes": [
            {"match": {"tags": ["noisy"]}, "to": ["chat"], "notify": "first"},
            {
                "match": {"tags": ["shared"]},
                "to": ["chat", "pager"],
                "notify": "first",
                "continue": True,
            },
            {"match": {"tags": ["shared"]}, "to": ["chat"]},
        ],
        "default": {"to": ["chat", "pager"]},
    }
)
NOISY = MonitorInfo(id=3, tags=["noisy"])
SHARED = MonitorInfo(id=4, tags=["shared"])


@pytest.mark.parametrize(
    ("monitor", "kind", "failures", "to"),
    [
        (NOISY, "alert", 1, ["chat"]),
        # Held back by its route, the event still counts as matched: the default stays out.
        (NOISY, "alert", 2, []),
        (NOISY, "error", 3, []),
        (NOISY, "recovered", 3, ["chat"]),
        (NOISY, "reminder", 3, ["chat"]),
        # The switch is the route's: the default route, without it, sends every alert.
        (STEADY, "alert", 2, ["chat", "pager"]),
        # Another matched route without the switch still sends its own destinations.
        (SHARED, "alert", 1, ["chat", "pager"]),
        (SHARED, "alert", 2, ["chat"]),
    ],
)
def test_notify_first_on_a_route_lets_only_the_incidents_first_alert_through(
    monitor: MonitorInfo, kind: str, failures: int, to: list[str]
) -> None:
    assert route_event(ON_A_ROUTE, monitor, kind, T0, failures=failures).to == to


ROUTE_FIRST = """
[destinations.hook]
type = "webhook"
url = "env:HOOK_URL"
secret = "env:NOTIFIER_WEBHOOK_SECRET"

[[routes]]
name = "prod: first alert only"
match = { tags = ["prod"] }
to = ["hook"]
notify = "first"

[default]
to = ["hook"]
"""


async def test_through_the_cli_a_routes_notify_first_sends_the_first_alert_and_the_recovery(
    world: World, tmp_path: Path
) -> None:
    once = once_with_routes(world, tmp_path, ROUTE_FIRST)
    await once()
    first = world.sim.add_run(1, state="alert", started_at=world.now())  # monitor 1: tag prod
    await once()
    for state in ("error", "alert"):
        world.sim.add_run(1, state=state, started_at=world.now())
        world.sim.add_run(2, state=state, started_at=world.now())  # monitor 2: the default
        await once()
    world.sim.add_run(1, state="ok", started_at=world.now())
    await once()
    events = [json.loads(d.body) for d in world.receiver.deliveries]
    sent = [(e["data"]["monitor"]["id"], e["type"]) for e in events]
    assert [kind for monitor, kind in sent if monitor == 1] == [
        "monitor.run.alert",
        "monitor.recovered",
    ]
    assert events[0]["data"]["run"]["id"] == first
    assert [kind for monitor, kind in sent if monitor == 2] == [
        "monitor.run.error",
        "monitor.run.alert",
    ]
