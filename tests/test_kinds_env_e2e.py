"""One destination from environment variables alone, delivered for real (issue 14: "the
single-destination case also works from environment variables"): Teams (TEAMS_WEBHOOK_URL), email
(NOTIFIER_SMTP_* and NOTIFIER_EMAIL_*), Alertmanager (ALERTMANAGER_URL) and Apprise (APPRISE_URL),
each through the installed CLI's `once` against its spec-enforcing fake, a real SMTP server or the
real Alertmanager: the alert arrives, then its recovery, under the kind's stable name, with no
secret in any output or the state file at debug level. PagerDuty's is in
test_settings_destinations.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.fakes.alertmanager import running_alertmanager
from tests.fakes.cli import SECRETS, Result, World, cli
from tests.fakes.email import MailServer
from tests.fakes.teams import SIGNATURE, FakeTeams
from tests.test_apprise_sink import PASSWORD as APPRISE_PASSWORD
from tests.test_apprise_sink import QUERY_TOKEN as APPRISE_QUERY_TOKEN
from tests.test_apprise_sink import TOKEN as APPRISE_TOKEN
from tests.test_apprise_sink import JsonReceiver

pytestmark = [
    pytest.mark.filterwarnings("ignore:Session.login_data is deprecated"),
    pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning"),
]

SMTP_USERNAME = "smtp-env-e2e-user-2207"
SMTP_PASSWORD = "smtp-env-e2e-pass-9154"
AM_TOKEN = "am-env-e2e-token-6630"
MONITOR = "orders prod vs staging"


class EnvDestination:
    """The world's CLI environment with Slack and the webhooks taken out and one kind's
    variables put in; every output of its `once` runs, kept for the secret check."""

    def __init__(self, world: World, **variables: str) -> None:
        dropped = ("SLACK_BOT_TOKEN", "SLACK_CHANNEL", "NOTIFIER_WEBHOOK_URLS")
        self.world = world
        self.env = {name: value for name, value in world.env.items() if name not in dropped}
        self.env.update(
            NOTIFIER_MONITOR_IDS="1",
            NOTIFIER_FIRST_START_LOOKBACK_SECONDS="3600",  # no silent baseline cycle
            NOTIFIER_LOG_LEVEL="debug",  # no secret at any level
            **variables,
        )
        self.outputs: list[str] = []

    async def once(self, kind: str) -> list[dict[str, Any]]:
        """One `once`; its events. It must have delivered to `kind` alone, and nothing failed."""
        result: Result = await cli("once", env=self.env)
        self.outputs += [result.stdout, result.stderr]
        assert result.code == 0, result.stderr
        events = result.events()
        sent = [e["destination"] for e in events if e["event"] == "notification_sent"]
        assert sent == [kind], [e for e in events if e.get("level") != "debug"]
        assert not [e for e in events if e["event"] in ("delivery_failed", "notification_dropped")]
        return events

    def assert_no_secret(self, *secrets: str) -> None:
        texts = [*self.outputs, self.world.state_file.read_text()]
        for number, text in enumerate(texts):
            for secret in (*secrets, *SECRETS):
                assert secret not in text, f"output {number} shows {secret[:8]}…"
        assert self.world.slack.messages == [] and self.world.receiver.deliveries == []


async def test_teams_from_its_variable_end_to_end(world: World) -> None:
    """TEAMS_WEBHOOK_URL alone: the alert's card, then the recovery's, reach the Workflows fake
    (which takes only 1.4 cards that validate against the schema)."""
    teams = FakeTeams()
    async with teams.serve() as url:
        destination = EnvDestination(world, TEAMS_WEBHOOK_URL=url)
        run = world.sim.add_run(1, state="alert", started_at=world.now(), diff_id=78)
        await destination.once("teams")
        world.sim.add_run(1, state="ok", started_at=world.now())
        await destination.once("teams")

    assert teams.refused == [] and teams.answered == [202, 202]
    alert, recovery = (json.dumps(card) for card in teams.cards)
    assert MONITOR in alert and str(run) in alert and "/datadiffs/78/overview" in alert
    assert MONITOR in recovery and "Recovered" in recovery
    destination.assert_no_secret(url, SIGNATURE)


async def test_email_from_its_variables_end_to_end(world: World, tmp_path: Path) -> None:
    """NOTIFIER_SMTP_HOST, _PORT, _USERNAME, _PASSWORD, NOTIFIER_EMAIL_FROM and _TO: the alert's
    mail to both recipients over STARTTLS with AUTH (a real aiosmtpd), then the recovery's,
    threaded under it."""
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = MailServer(ca=ca, credentials=(SMTP_USERNAME, SMTP_PASSWORD))
    with server.serve() as port:
        destination = EnvDestination(
            world,
            NOTIFIER_SMTP_HOST="127.0.0.1",
            NOTIFIER_SMTP_PORT=str(port),
            NOTIFIER_SMTP_USERNAME=SMTP_USERNAME,
            NOTIFIER_SMTP_PASSWORD=SMTP_PASSWORD,
            NOTIFIER_EMAIL_FROM="notifier@example.test",
            NOTIFIER_EMAIL_TO="oncall@example.test, data@example.test",
            NOTIFIER_CA_BUNDLE=str(ca_file),
        )
        run = world.sim.add_run(1, state="alert", started_at=world.now())
        await destination.once("email")
        world.sim.add_run(1, state="ok", started_at=world.now())
        await destination.once("email")

    assert server.logins == [SMTP_USERNAME, SMTP_USERNAME]
    alert, recovery = server.mails
    assert alert.sender == "notifier@example.test"
    assert alert.recipients == ["oncall@example.test", "data@example.test"]
    assert alert.message["Subject"] == f"[Alert] {MONITOR} (run {run})"
    assert recovery.message["Subject"].startswith(f"[Recovered] {MONITOR}")
    assert recovery.message["In-Reply-To"] == alert.message["Message-ID"]
    destination.assert_no_secret(SMTP_USERNAME, SMTP_PASSWORD)


async def test_alertmanager_from_its_variables_end_to_end(world: World) -> None:
    """ALERTMANAGER_URL and ALERTMANAGER_TOKEN: the alert fires in the real Alertmanager and
    reaches the receiver it routes to; the recovery resolves it there."""
    async with running_alertmanager() as am:
        destination = EnvDestination(world, ALERTMANAGER_URL=am.url, ALERTMANAGER_TOKEN=AM_TOKEN)
        world.sim.add_run(1, state="alert", started_at=world.now())
        await destination.once("alertmanager")
        [fired] = await am.wait_alerts(lambda alerts: len(alerts) == 1)
        assert fired["labels"]["monitor_id"] == "1"
        assert fired["labels"]["alertname"] == "DatafoldMonitorAlert"
        assert fired["status"]["state"] == "active"
        firing = await am.receiver.wait_for("firing")
        assert [a["labels"]["monitor"] for a in firing["alerts"]] == [MONITOR]

        world.sim.add_run(1, state="ok", started_at=world.now())
        await destination.once("alertmanager")
        await am.wait_alerts(lambda alerts: alerts == [])
        resolved = await am.receiver.wait_for("resolved")
        assert [a["labels"]["monitor_id"] for a in resolved["alerts"]] == ["1"]
    destination.assert_no_secret(AM_TOKEN)


async def test_apprise_from_its_variable_end_to_end(world: World) -> None:
    """APPRISE_URL alone (json:// with a password, a token in the path and one in the query):
    the alert's Markdown message, then the recovery's, reach the local server."""
    receiver = JsonReceiver()
    async with receiver.serve() as url:
        destination = EnvDestination(world, APPRISE_URL=url)
        world.sim.add_run(1, state="alert", started_at=world.now())
        await destination.once("apprise")
        world.sim.add_run(1, state="ok", started_at=world.now())
        await destination.once("apprise")

    alert, recovery = receiver.posts
    assert alert["title"] == f"🚨 Alert: {MONITOR}"
    assert f"- **Monitor:** {MONITOR} (\\#1)" in alert["message"]
    assert recovery["title"] == f"✅ Recovered: {MONITOR}"
    assert receiver.paths == [f"/hooks/{APPRISE_TOKEN}?key={APPRISE_QUERY_TOKEN}"] * 2
    destination.assert_no_secret(url, APPRISE_PASSWORD, APPRISE_TOKEN, APPRISE_QUERY_TOKEN)
