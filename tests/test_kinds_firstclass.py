"""PagerDuty, Teams and email as first-class destinations (issue 14, points 6 and 7), through the
installed CLI against their local fakes: no secret in any output or the state file at debug
level, failures included; `check` probes each without sending; `/metrics` counts each by name; a
destination down for a cycle loses nothing across a restart; a PagerDuty reminder re-triggers the
incident's alert and the recovery resolves it. `/metrics` counts Alertmanager and Apprise
destinations by name too. Crashes: test_kinds_firstclass_crash.py; hostile answers:
test_kinds_firstclass_hostile.py; every kind's secrets at once: test_kinds_leak.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import trustme

from tests.fakes.alertmanager import running_alertmanager
from tests.fakes.cli import SECRETS, Result, World, cli
from tests.fakes.email import MailServer
from tests.fakes.pagerduty import ENQUEUE_PATH, FakePagerDuty
from tests.fakes.pagerduty import Reply as PagerDutyReply
from tests.fakes.scrape import sample
from tests.fakes.subprocess_daemon import Daemon
from tests.fakes.teams import SIGNATURE, FakeTeams
from tests.test_apprise_sink import JsonReceiver

pytestmark = [
    pytest.mark.filterwarnings("ignore:Session.login_data is deprecated"),
    pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning"),
]

ROUTING_KEY = "PdKinds0123456789abcdef01234567z"
SMTP_USERNAME = "smtp-user-distinct-4417"
SMTP_PASSWORD = "smtp-pass-distinct-8830"
WRONG_PASSWORD = "smtp-wrong-pass-distinct-5521"
PD, TEAMS, MAIL = "pd-oncall", "teams-ops", "ops-mail"
NAMES = (PD, TEAMS, MAIL)

ROUTES = """
[destinations.pd-oncall]
type = "pagerduty"
routing_key = "env:PD_ROUTING_KEY"
url = "{pd_url}"

[destinations.teams-ops]
type = "teams"
url = "env:KINDS_TEAMS_URL"

[destinations.ops-mail]
type = "email"
host = "127.0.0.1"
port = {smtp_port}
username = "env:SMTP_USERNAME"
password = "env:SMTP_PASSWORD"
from = "notifier@example.test"
to = ["oncall@example.test"]

[default]
to = [{to}]
"""


def routes_text(pd_url: str, smtp_port: int, to: tuple[str, ...] = NAMES) -> str:
    return ROUTES.format(
        pd_url=pd_url, smtp_port=smtp_port, to=", ".join(f'"{name}"' for name in to)
    )


@dataclass
class Kinds:
    """The three fakes served beside the world, the CLI's environment, and every output seen."""

    world: World
    pagerduty: FakePagerDuty
    teams: FakeTeams
    mail: MailServer
    teams_url: str
    smtp_port: int
    env: dict[str, str]
    #: Holds the running SMTP server; closed and refilled by `smtp_stopped`.
    smtp: ExitStack
    outputs: list[str] = field(default_factory=list)

    @property
    def secrets(self) -> list[str]:
        return [
            *SECRETS,
            ROUTING_KEY,
            self.teams_url,
            SIGNATURE,
            SMTP_USERNAME,
            SMTP_PASSWORD,
            WRONG_PASSWORD,
        ]

    async def cli(self, *args: str, env: dict[str, str] | None = None) -> Result:
        result = await cli(*args, env=env or self.env)
        self.outputs += [result.stdout, result.stderr]
        assert "Traceback" not in result.stdout + result.stderr
        return result

    async def once(self, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
        result = await self.cli("once", env=env)
        assert result.code == 0, result.stderr
        return result.events()

    @contextmanager
    def smtp_stopped(self) -> Iterator[None]:
        """The SMTP server down (connections refused), then back on the same port."""
        self.smtp.close()
        try:
            yield
        finally:
            self.smtp.enter_context(self.mail.serve(self.smtp_port))

    def assert_no_secret(self) -> None:
        texts = [*self.outputs]
        if self.world.state_file.exists():
            texts.append(self.world.state_file.read_text())
        for number, text in enumerate(texts):
            for secret in self.secrets:
                assert secret not in text, f"output {number} shows a secret"


@asynccontextmanager
async def serve_kinds(world: World, tmp_path: Path, **extra_env: str) -> AsyncIterator[Kinds]:
    """PagerDuty, Teams and a STARTTLS+AUTH SMTP server, one destination each, at debug level."""
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    mail = MailServer(ca=ca, credentials=(SMTP_USERNAME, SMTP_PASSWORD))
    pagerduty, teams = FakePagerDuty(), FakeTeams()
    smtp = ExitStack()
    async with pagerduty.serve() as pd_url, teams.serve() as teams_url:
        with smtp:
            port = smtp.enter_context(mail.serve())
            routes = tmp_path / "routes.toml"
            routes.write_text(routes_text(pd_url + ENQUEUE_PATH, port))
            env = {
                **world.env,
                "NOTIFIER_MONITOR_IDS": "1,2",
                "NOTIFIER_ROUTES_FILE": str(routes),
                "NOTIFIER_LOG_LEVEL": "debug",
                "NOTIFIER_CA_BUNDLE": str(ca_file),
                "PD_ROUTING_KEY": ROUTING_KEY,
                "KINDS_TEAMS_URL": teams_url,
                "SMTP_USERNAME": SMTP_USERNAME,
                "SMTP_PASSWORD": SMTP_PASSWORD,
                **extra_env,
            }
            del env["NOTIFIER_WEBHOOK_URLS"]
            yield Kinds(world, pagerduty, teams, mail, teams_url, port, env, smtp)


def outbox_pending(kinds: Kinds) -> list[list[str]]:
    state = json.loads(kinds.world.state_file.read_text())
    return [sorted(entry["pending"]) for entry in state["outbox"]]


def failed_destinations(events: list[dict[str, Any]]) -> set[str]:
    """Destinations that failed a delivery (to retry it) or refused one for good (dropped)."""
    failures = ("delivery_failed", "notification_dropped")
    return {str(e["destination"]) for e in events if e["event"] in failures}


def message_ids(kinds: Kinds) -> list[str]:
    return [str(received.message["Message-ID"]) for received in kinds.mail.mails]


def triggers(kinds: Kinds) -> list[dict[str, Any]]:
    return [e for e in kinds.pagerduty.events if e["event_action"] == "trigger"]


async def test_no_secret_of_the_new_kinds_in_any_output_at_debug(
    world: World, tmp_path: Path
) -> None:
    """Deliveries, refusals (a PagerDuty 400 that echoes the routing key, a Teams 500, SMTP AUTH
    refused), an SMTP server down and a `check` of unreachable hosts: no routing key, webhook
    URL or signature, SMTP username or password in stdout, stderr or the state file."""
    async with serve_kinds(world, tmp_path) as kinds:
        await kinds.once()
        world.sim.add_run(1, state="alert", started_at=world.now())
        await kinds.once()
        assert len(kinds.pagerduty.events) == len(kinds.teams.cards) == len(kinds.mail.mails) == 1

        world.sim.add_run(2, state="error", started_at=world.now(), error="boom")
        echo = json.dumps({"status": "invalid event", "errors": [f"bad key {ROUTING_KEY}"]})
        kinds.pagerduty.reply(PagerDutyReply(400, body=echo.encode()))
        kinds.teams.reply(500)
        refused = await kinds.once({**kinds.env, "SMTP_PASSWORD": WRONG_PASSWORD})
        assert failed_destinations(refused) == set(NAMES)
        [dropped] = [e for e in refused if e["event"] == "notification_dropped"]
        assert dropped["destination"] == PD and "bad key ***" in dropped["detail"]

        world.sim.add_run(1, state="ok", started_at=world.now())
        with kinds.smtp_stopped():
            kinds.teams.reply(503)
            down = await kinds.once()
            assert {TEAMS, MAIL} <= failed_destinations(down)
            assert outbox_pending(kinds), "kept for the destinations that were down"
        await kinds.once()
        assert outbox_pending(kinds) == []

        dead = tmp_path / "dead-routes.toml"
        dead.write_text(routes_text("http://127.0.0.1:9/v2/enqueue", 9))
        dead_teams = kinds.teams_url.replace(urlsplit(kinds.teams_url).netloc, "127.0.0.1:9")
        dead_env = {**kinds.env, "NOTIFIER_ROUTES_FILE": str(dead)}
        dead_env["KINDS_TEAMS_URL"] = dead_teams
        checked = await kinds.cli("check", env=dead_env)
        assert checked.code == 1
        assert [line for line in checked.stdout.splitlines() if line.startswith("FAIL")]
        for text in kinds.outputs:
            assert dead_teams not in text
        kinds.assert_no_secret()


def check_lines(result: Result) -> dict[str, str]:
    """`check`'s line about each new destination, by name; each is exactly one line."""
    lines = result.stdout.splitlines()
    found = {}
    for name in NAMES:
        about = [line for line in lines if f"{name}: " in line]
        assert len(about) == 1, (name, result.stdout)
        found[name] = about[0]
    return found


async def test_check_probes_each_kind_without_sending(world: World, tmp_path: Path) -> None:
    """Reachable with good credentials: ok. Refused (a malformed routing key, a Teams host that
    answers 503, SMTP AUTH refused) or down: one FAIL line naming the destination, no secret,
    exit 1. Never an event, a card or a mail."""
    async with serve_kinds(world, tmp_path) as kinds:
        ok = await kinds.cli("check")
        assert ok.code == 0, ok.stdout
        lines = check_lines(ok)
        assert all(line.startswith("ok") for line in lines.values()), lines
        assert "no event was sent" in lines[PD] and "starttls; authenticated" in lines[MAIL]
        assert kinds.mail.logins == [SMTP_USERNAME]  # the credentials were tried

        kinds.teams.head_status = 503
        refused_env = {
            **kinds.env,
            "PD_ROUTING_KEY": "short-not-a-key",
            "SMTP_PASSWORD": WRONG_PASSWORD,
        }
        refused = await kinds.cli("check", env=refused_env)
        assert refused.code == 1
        lines = check_lines(refused)
        assert all(line.startswith("FAIL") for line in lines.values()), lines
        assert "routing key is not shaped" in lines[PD]
        assert "HTTP 503" in lines[TEAMS]
        assert "refused the credentials (535)" in lines[MAIL]

        with kinds.smtp_stopped():
            kinds.teams.head_status = 404
            dead = tmp_path / "dead-routes.toml"
            dead.write_text(routes_text("http://127.0.0.1:9/v2/enqueue", kinds.smtp_port))
            down_env = {**kinds.env, "NOTIFIER_ROUTES_FILE": str(dead)}
            down_env["KINDS_TEAMS_URL"] = "http://127.0.0.1:9/workflows/x?sig=" + SIGNATURE
            down = await kinds.cli("check", env=down_env)
        assert down.code == 1
        lines = check_lines(down)
        assert all(line.startswith("FAIL") for line in lines.values()), lines
        assert "unreachable" in lines[PD] and "unreachable" in lines[TEAMS]
        assert "could not connect" in lines[MAIL]

        assert kinds.pagerduty.events == [] and kinds.pagerduty.refused == []
        assert {method for method, _ in kinds.pagerduty.requests} == {"GET"}
        assert kinds.teams.cards == [] and kinds.teams.answered == [] and kinds.teams.heads == 2
        assert kinds.mail.mails == []
        kinds.assert_no_secret()


async def test_each_kind_down_for_a_cycle_loses_nothing_across_a_restart(
    world: World, tmp_path: Path
) -> None:
    """PagerDuty and Teams answer 503 and the SMTP server is stopped for one cycle: the outbox in
    the state file keeps both notifications for all three; the next process (a restart: each
    `once` is one) delivers each exactly once, then the recovery; a further cycle sends nothing."""
    async with serve_kinds(world, tmp_path) as kinds:
        await kinds.once()
        world.sim.add_run(1, state="alert", started_at=world.now())
        world.sim.add_run(2, state="error", started_at=world.now(), error="boom")
        with kinds.smtp_stopped():
            kinds.pagerduty.reply(503)
            kinds.teams.reply(503)
            down = await kinds.once()
        assert failed_destinations(down) == set(NAMES)
        assert kinds.pagerduty.events == [] and kinds.teams.cards == [] and kinds.mail.mails == []
        assert outbox_pending(kinds) == [sorted(NAMES)] * 2

        world.sim.add_run(1, state="ok", started_at=world.now())  # while it is not running
        up = await kinds.once()
        sent = [e["destination"] for e in up if e["event"] == "notification_sent"]
        assert sorted(sent) == sorted(NAMES * 3)
        assert outbox_pending(kinds) == []
        await kinds.once()

    alert, error = (t["dedup_key"] for t in triggers(kinds))
    assert alert != error  # two incidents
    assert [e["event_action"] for e in kinds.pagerduty.events] == ["trigger"] * 2 + ["resolve"]
    assert kinds.pagerduty.events[-1]["dedup_key"] == alert
    assert kinds.pagerduty.refused == []
    assert len(kinds.teams.cards) == 3 and kinds.teams.answered == [503, 202, 202, 202]
    assert len(kinds.mail.mails) == 3 and len(set(message_ids(kinds))) == 3
    kinds.assert_no_secret()


def count(text: str, what: str, destination: str) -> float:
    """`datafold_notifier_notifications_<what>_total` of a destination; 0 before its first."""
    try:
        name = f"datafold_notifier_notifications_{what}_total"
        return sample(text, name, destination=destination)
    except AssertionError:
        return 0.0


async def start_daemon(
    env: dict[str, str], reaper: list[Daemon], **extra: str
) -> tuple[Daemon, str]:
    """`run` with a status server, after its first cycle; its /metrics URL."""
    daemon = await Daemon.start({**env, "NOTIFIER_POLL_INTERVAL_SECONDS": "1", **extra})
    reaper.append(daemon)
    await daemon.wait_event("status_listening")
    listening = daemon.event("status_listening")
    assert listening is not None
    await daemon.wait_event("monitor_baselined", where=lambda e: e.get("monitor_id") == 2)
    await daemon.wait_event("state_saved")
    return daemon, f"http://127.0.0.1:{listening['port']}/metrics"


async def counted(
    daemon: Daemon, metrics_url: str, names: tuple[str, ...], *, failed: int, sent: int
) -> dict[str, tuple[float, float]]:
    """(failed, sent) of each destination, scraped once a cycle until each shows at least these
    counts."""
    found: dict[str, tuple[float, float]] = {}
    async with aiohttp.ClientSession() as http:
        for _ in range(15):
            async with http.get(metrics_url) as response:
                text = await response.text()
            found = {
                name: (count(text, "failed", name), count(text, "sent", name)) for name in names
            }
            if all(f >= failed and s >= sent for f, s in found.values()):
                return found
            await daemon.wait_event("cycle_finished", len(daemon.events))
    raise AssertionError(f"after 15 cycles: {found}")


async def test_metrics_count_sent_and_failed_per_new_destination(
    world: World, tmp_path: Path, reaper: list[Daemon]
) -> None:
    """`/metrics` of a running daemon: notifications_sent and notifications_failed by the
    destination's name, for a PagerDuty, a Teams and an email destination."""
    async with serve_kinds(world, tmp_path, NOTIFIER_HEALTH_PORT="0") as kinds:
        daemon, metrics_url = await start_daemon(kinds.env, reaper)
        world.sim.add_run(1, state="alert", started_at=world.now())
        await counted(daemon, metrics_url, NAMES, failed=0, sent=1)

        kinds.pagerduty.reply(503)
        kinds.teams.reply(503)
        kinds.mail.drop_in_data = True
        world.sim.add_run(2, state="error", started_at=world.now(), error="boom")
        await counted(daemon, metrics_url, NAMES, failed=1, sent=1)
        kinds.mail.drop_in_data = False
        final = await counted(daemon, metrics_url, NAMES, failed=1, sent=2)
        assert await daemon.stop() == 0
    # Sent once per run each; failed at least once (the SMTP drop may outlast one cycle).
    assert all(failed >= 1 and sent == 2 for failed, sent in final.values()), final
    kinds.outputs.append(daemon.output)
    kinds.assert_no_secret()


AM_AND_APPRISE = """
[destinations.am-data]
type = "alertmanager"
url = "env:KINDS_AM_URL"

[destinations.chat]
type = "apprise"
url = "env:KINDS_APPRISE_URL"

[default]
to = ["am-data", "chat"]
"""


async def test_metrics_count_sent_and_failed_for_alertmanager_and_apprise(
    world: World, tmp_path: Path, reaper: list[Daemon]
) -> None:
    """The same of an Alertmanager (the real one, then stopped) and an Apprise destination (a
    json:// receiver, then answering 500): each counted by its name, sent after a cycle that
    delivered to it, failed after one where it failed."""
    names = ("am-data", "chat")
    routes = tmp_path / "routes.toml"
    routes.write_text(AM_AND_APPRISE)
    apprise = JsonReceiver()
    async with apprise.serve() as apprise_url, AsyncExitStack() as am_running:
        am = await am_running.enter_async_context(running_alertmanager())
        env = {
            **world.env,
            "NOTIFIER_ROUTES_FILE": str(routes),
            "NOTIFIER_HEALTH_PORT": "0",
            "KINDS_AM_URL": am.url,
            "KINDS_APPRISE_URL": apprise_url,
        }
        del env["NOTIFIER_WEBHOOK_URLS"]
        daemon, metrics_url = await start_daemon(env, reaper)
        world.sim.add_run(1, state="alert", started_at=world.now())
        delivered = await counted(daemon, metrics_url, names, failed=0, sent=1)
        assert delivered == {name: (0.0, 1.0) for name in names}, delivered
        assert [a["labels"]["monitor_id"] for a in await am.alerts()] == ["1"]
        assert len(apprise.posts) == 1

        await am_running.aclose()  # Alertmanager stopped: its port refuses connections
        apprise.statuses = [500] * 100
        world.sim.add_run(2, state="error", started_at=world.now(), error="boom")
        final = await counted(daemon, metrics_url, names, failed=1, sent=1)
        assert await daemon.stop() == 0
    assert all(failed >= 1 and sent == 1 for failed, sent in final.values()), final
    failures = {e["destination"] for e in daemon.named("delivery_failed")}
    assert set(names) <= failures
    for secret in (*SECRETS, apprise_url):
        assert secret not in daemon.output


async def test_a_pagerduty_reminder_retriggers_the_same_alert_and_recovery_resolves_it(
    world: World, tmp_path: Path, reaper: list[Daemon]
) -> None:
    """With reminders every second, an open incident's reminders are triggers on the incident's
    `dedup_key` (PagerDuty updates the alert: no second incident); the recovery resolves it."""
    async with serve_kinds(world, tmp_path, NOTIFIER_HEALTH_PORT="0") as kinds:
        daemon, _ = await start_daemon(kinds.env, reaper, NOTIFIER_REMINDER_INTERVAL_SECONDS="1")
        run = world.sim.add_run(1, state="alert", started_at=world.now())
        await daemon.wait_for(lambda: len(triggers(kinds)) >= 2)
        world.sim.add_run(1, state="ok", started_at=world.now())
        await daemon.wait_for(lambda: kinds.pagerduty.events[-1]["event_action"] == "resolve")
        assert await daemon.stop() == 0

    first, *reminders = triggers(kinds)
    resolve = kinds.pagerduty.events[-1]
    assert {t["dedup_key"] for t in triggers(kinds)} == {resolve["dedup_key"]}
    assert first["payload"]["custom_details"]["run"]["id"] == run
    assert first["payload"]["summary"].startswith("ALERT: orders prod vs staging")
    for number, reminder in enumerate(reminders, start=1):
        assert reminder["payload"]["summary"].startswith("Still alert: orders prod vs staging")
        assert reminder["payload"]["custom_details"]["incident"]["reminders"] == number
    assert kinds.pagerduty.refused == []
    kinds.outputs.append(daemon.output)
    kinds.assert_no_secret()
