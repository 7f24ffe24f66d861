"""The README's routing example works as written (issue 15, point 9): its TOML, copied into a
routes file, with only the variables it names set (`SLACK_BOT_TOKEN` read through `env:`, no
`SLACK_CHANNEL`), runs `once` and routes as its comments say: finance failures page on-call, the
staging route keeps quiet at night in Berlin (and only there), first match wins, `[default]`
takes only what no route matched, and data-alerts threads, mentions and digests."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from notifier.domain.models import MonitorInfo
from notifier.route.routes_file import parse_routes
from notifier.route.rules import Routes, route_event
from tests.fakes.cli import World, cli
from tests.fakes.slack import PostedMessage

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


STAGING_ROUTE = "staging, daytime only"


def readme_routes() -> Routes:
    """The example as the notifier reads it, its secrets stood in for."""
    environ = {"SLACK_BOT_TOKEN": "xoxb-readme", "ONCALL_WEBHOOK_URL": "https://oncall.test/am"}
    return parse_routes(routing_example().encode(), "README.md", environ)


STAGING = MonitorInfo(id=10, name="orders staging", tags=["staging"])
FINANCE = MonitorInfo(id=11, name="ledger", tags=["finance"])
BOTH = MonitorInfo(id=12, name="ledger staging", tags=["finance", "staging"])
PROD = MonitorInfo(id=13, name="orders", tags=["prod"])

#: Berlin is UTC+1 in winter (CET), UTC+2 in summer (CEST).
WINTER_0759 = datetime(2026, 1, 14, 6, 59, tzinfo=UTC)
WINTER_0800 = datetime(2026, 1, 14, 7, 0, tzinfo=UTC)
WINTER_1859 = datetime(2026, 1, 14, 17, 59, tzinfo=UTC)
WINTER_1900 = datetime(2026, 1, 14, 18, 0, tzinfo=UTC)
WINTER_0300 = datetime(2026, 1, 15, 2, 0, tzinfo=UTC)
SUMMER_0830 = datetime(2026, 7, 1, 6, 30, tzinfo=UTC)  # 06:30 UTC: still night in winter time
SUMMER_1930 = datetime(2026, 7, 1, 17, 30, tzinfo=UTC)  # 17:30 UTC: still day in winter time
ON_CALL = ["oncall", "data-alerts"]


@pytest.mark.parametrize(
    ("monitor", "kind", "now", "to", "quiet"),
    [
        # "nothing at night from a noisy staging tag": 19:00 to 08:00, Berlin's wall clock.
        (STAGING, "alert", WINTER_1859, ["data-alerts"], []),
        (STAGING, "alert", WINTER_1900, [], [STAGING_ROUTE]),
        (STAGING, "error", WINTER_0300, [], [STAGING_ROUTE]),
        (STAGING, "alert", WINTER_0759, [], [STAGING_ROUTE]),
        (STAGING, "alert", WINTER_0800, ["data-alerts"], []),
        (STAGING, "alert", SUMMER_0830, ["data-alerts"], []),
        (STAGING, "alert", SUMMER_1930, [], [STAGING_ROUTE]),
        (STAGING, "recovered", WINTER_0300, [], [STAGING_ROUTE]),
        (STAGING, "reminder", WINTER_0300, [], [STAGING_ROUTE]),
        # Staging never pages on-call, by day either.
        (STAGING, "error", WINTER_0800, ["data-alerts"], []),
        # "finance failures page on-call", at night too: that route has no quiet hours.
        (FINANCE, "alert", WINTER_0300, ON_CALL, []),
        (FINANCE, "error", WINTER_0300, ON_CALL, []),
        # The first matching route wins: finance before staging, so a finance error on a
        # staging monitor pages on-call even at night.
        (BOTH, "error", WINTER_0300, ON_CALL, []),
        # The finance route takes recoveries too, so that the page resolves (at night too),
        # also for a finance monitor tagged staging; reminders it leaves to the others.
        (BOTH, "recovered", WINTER_0300, ON_CALL, []),
        (FINANCE, "recovered", WINTER_0300, ON_CALL, []),
        (BOTH, "reminder", WINTER_0300, [], [STAGING_ROUTE]),
        (FINANCE, "reminder", WINTER_0300, ["data-alerts"], []),
        # "[default] takes only the events that no route matched": everything else.
        (PROD, "alert", WINTER_0300, ["data-alerts"], []),
        (PROD, "recovered", WINTER_1900, ["data-alerts"], []),
    ],
)
def test_the_readme_routes_send_each_event_where_its_text_says(
    monitor: MonitorInfo, kind: str, now: datetime, to: list[str], quiet: list[str]
) -> None:
    decision = route_event(readme_routes(), monitor, kind, now)
    assert (decision.to, decision.quiet) == (to, quiet)


def readme_setup(world: World, tmp_path: Path) -> dict[str, str]:
    """The README's set-up in `tmp_path`: its routes file and the `.env` lines it names
    (a relative NOTIFIER_ROUTES_FILE); the rest of the world's environment as variables."""
    env = {**world.env}
    (tmp_path / "routes.toml").write_text(routing_example())
    (tmp_path / ".env").write_text(
        "# chat:write; read by the routes file below (env:SLACK_BOT_TOKEN)\n"
        f"SLACK_BOT_TOKEN={env.pop('SLACK_BOT_TOKEN')}\n"
        "NOTIFIER_ROUTES_FILE=routes.toml\n"
        f"ONCALL_WEBHOOK_URL={env.pop('NOTIFIER_WEBHOOK_URLS')}\n"
    )
    del env["SLACK_CHANNEL"]
    return env


def top_level(messages: list[PostedMessage]) -> list[PostedMessage]:
    return [m for m in messages if m.thread_ts is None]


async def test_staging_keeps_quiet_only_at_night_and_data_alerts_mentions_and_threads(
    world: World, tmp_path: Path
) -> None:
    quiet_hours = readme_routes().routes[1].quiet_hours
    assert quiet_hours is not None
    night = quiet_hours.covers(datetime.now(UTC))
    world.sim.add_monitor(4, name="orders staging", tags=["staging"], owner="alice@example.com")
    world.sim.add_monitor(5, name="orders freshness", tags=["prod"], owner="alice@example.com")
    world.slack.users["alice@example.com"] = "U0ALICE"
    env = {**readme_setup(world, tmp_path), "NOTIFIER_MONITOR_IDS": "4,5"}

    async def once() -> list[dict[str, object]]:
        result = await cli("once", env=env, cwd=tmp_path)
        assert result.code == 0, result.stderr
        return result.events()

    await once()
    world.sim.add_run(4, state="alert", started_at=world.now())
    world.sim.add_run(5, state="alert", started_at=world.now())
    events = await once()
    if quiet_hours.covers(datetime.now(UTC)) != night:
        pytest.skip("the test ran across 08:00 or 19:00 in Berlin")

    first = next(m for m in world.slack.messages if "orders freshness" in (m.text or ""))
    staged = [m for m in world.slack.messages if "orders staging" in (m.text or "")]
    quieted = [e for e in events if e["event"] == "notification_quiet"]
    if night:
        assert staged == [] and [e["routes"] for e in quieted] == [[STAGING_ROUTE]]
    else:
        assert len(staged) == 1 and staged[0].channel == "C0123ABCD" and quieted == []
    assert world.receiver.deliveries == []  # neither monitor pages on-call
    # mentions: the user group and the owner, looked up by email
    assert first.channel == "C0123ABCD"
    assert "<!subteam^S0DATAENG>" in (first.text or "") and "<@U0ALICE>" in (first.text or "")

    # thread = true: the failing monitor's next alert replies in its first alert's thread.
    world.sim.add_run(5, state="error", started_at=world.now(), error="relation gone")
    await once()
    reply = world.slack.messages[-1]
    assert reply.thread_ts == first.ts and "orders freshness" in (reply.text or "")
    assert len(top_level(world.slack.messages)) == 1 + len(staged)


async def test_more_than_ten_in_one_cycle_reach_data_alerts_as_one_digest(
    world: World, tmp_path: Path
) -> None:
    ids = range(21, 32)
    for monitor in ids:
        world.sim.add_monitor(monitor, name=f"table {monitor} freshness", tags=["prod"])
    env = {**readme_setup(world, tmp_path), "NOTIFIER_MONITOR_IDS": ",".join(map(str, ids))}
    assert (await cli("once", env=env, cwd=tmp_path)).code == 0
    for monitor in ids:
        world.sim.add_run(monitor, state="alert", started_at=world.now())
    result = await cli("once", env=env, cwd=tmp_path)

    assert result.code == 0, result.stderr
    [digest] = world.slack.messages
    assert "11 notifications from 11 monitors" in (digest.text or "")
    assert "<!subteam^S0DATAENG>" in (digest.text or "")
    assert world.receiver.deliveries == []


async def test_a_finance_error_pages_on_call_and_its_recovery_resolves_the_page(
    world: World, tmp_path: Path
) -> None:
    world.sim.add_monitor(3, name="ledger", monitor_type="metric", tags=["finance"])
    env = {**readme_setup(world, tmp_path), "NOTIFIER_MONITOR_IDS": "3"}

    async def once() -> None:
        result = await cli("once", env=env, cwd=tmp_path)
        assert result.code == 0, result.stderr

    await once()
    world.sim.add_run(3, state="error", started_at=world.now(), error="boom")
    await once()
    world.sim.add_run(3, state="ok", started_at=world.now())
    await once()

    # The route takes recoveries too: on-call hears the alert firing, then resolved.
    paged, resolved = [json.loads(d.body) for d in world.receiver.deliveries]
    assert (paged["status"], resolved["status"]) == ("firing", "resolved")
    assert [a["labels"]["monitor_id"] for a in paged["alerts"]] == ["3"]
    assert paged["groupKey"] == resolved["groupKey"]  # the same alert, resolved
    assert paged["alerts"][0]["fingerprint"] == resolved["alerts"][0]["fingerprint"]
    [alert] = top_level(world.slack.messages)
    [update] = world.slack.updates
    assert update.ts == alert.ts and "Resolved" in (update.text or "")
