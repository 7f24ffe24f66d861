"""`send-test` through the installed CLI: a marked test alert, then its recovery, through the real
destinations (fake Slack, a webhook receiver, the spec-enforcing fake PagerDuty), one line per
destination and step, exit 1 when one failed, and the state untouched."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trustme

from notifier.cli.send_test import TEST_NOTE, TEST_TAG, make_test_notifications, new_incident_key
from notifier.domain.models import Links, MonitorInfo
from notifier.route.destinations.fields import webhook_destination_name
from tests.fakes.alertmanager import running_alertmanager
from tests.fakes.cli import SECRETS, World, cli
from tests.fakes.email import PASSWORD, USERNAME, MailServer
from tests.fakes.pagerduty import ENQUEUE_PATH, FakePagerDuty

ROUTING_KEY = "PdSendTest0123456789abcdef012345"

ROUTES = """
[destinations.oncall]
type = "pagerduty"
routing_key = "env:PD_ROUTING_KEY"
url = "{url}"

[destinations.chat]
type = "slack"
token = "env:SLACK_BOT_TOKEN"
channel = "C0123ABCD"
recovery = false

[default]
to = ["oncall", "chat"]
"""


def _lines(stdout: str, name: str) -> list[str]:
    return [line for line in stdout.splitlines() if f" {name}: " in line]


def test_the_test_alert_opens_its_own_incident_and_the_recovery_closes_it() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    monitor = MonitorInfo(id=7, name="orders", tags=["prod"], owner="a@example.com")
    key = new_incident_key()
    alert, recovery = make_test_notifications(monitor, key=key, now=now, links=Links())
    assert alert.opens_incident and alert.id == key
    assert recovery.kind == "recovered" and recovery.incident == alert.incident
    assert recovery.id != alert.id
    for n in (alert, recovery):
        assert n.monitor.title == "[TEST] orders" and n.monitor.tags == [TEST_TAG, "prod"]
        assert n.monitor.id == 7 and n.monitor.owner == "a@example.com"
    assert alert.error_message == TEST_NOTE
    assert new_incident_key() != key and key.startswith(TEST_TAG)


async def test_slack_gets_a_marked_post_then_its_update_and_the_state_is_untouched(
    world: World,
) -> None:
    assert (await cli("once", env=world.env)).code == 0  # a state file to keep unchanged
    before = world.state_file.read_bytes()
    env = {**world.env}
    del env["DATAFOLD_API_KEY"]  # without --monitor, Datafold is not needed
    asked = len(world.sim.requests)

    result = await cli("send-test", "--destination", "slack", env=env)

    assert result.code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "ok   slack: test alert sent",
        "ok   slack: test recovery sent (on the alert's message)",
        result.stdout.splitlines()[-1],
    ]
    assert result.stdout.splitlines()[-1].endswith("1 destination(s), all ok")
    alert, reply = world.slack.messages
    assert alert.thread_ts is None and "[TEST] datafold-notifier test" in (alert.text or "")
    assert reply.thread_ts == alert.ts
    [update] = world.slack.updates
    assert update.ts == alert.ts and "Resolved: [TEST] datafold-notifier test" in (
        update.text or ""
    )
    assert "send-test" in json.dumps(alert.blocks)  # the note says what this is
    assert world.receiver.deliveries == []  # only the named destination
    assert world.state_file.read_bytes() == before
    assert len(world.sim.requests) == asked
    assert not [s for s in SECRETS if s in result.stdout + result.stderr]  # at debug level


async def test_every_destination_by_default_a_webhook_gets_the_alert_then_the_recovery(
    world: World,
) -> None:
    result = await cli("send-test", env=world.env)

    assert result.code == 0, result.stderr
    assert not world.state_file.exists()  # nothing read, nothing written
    alert, recovery = (json.loads(r.body) for r in world.receiver.deliveries)
    assert (alert["type"], recovery["type"]) == ("monitor.run.alert", "monitor.recovered")
    assert alert["data"]["monitor"]["name"] == "[TEST] datafold-notifier test"
    ids = [r.headers["webhook-id"] for r in world.receiver.deliveries]
    assert ids[0] != ids[1] and ids[0].startswith(TEST_TAG)
    assert len(world.slack.messages) == 2 and len(world.slack.updates) == 1
    webhook = webhook_destination_name(world.env["NOTIFIER_WEBHOOK_URLS"])
    assert _lines(result.stdout, webhook) == [
        f"ok   {webhook}: test alert sent",
        f"ok   {webhook}: test recovery sent",
    ]


async def test_pagerduty_triggers_then_resolves_the_runs_own_key_no_recovery_where_refused(
    world: World, tmp_path: Path
) -> None:
    pagerduty = FakePagerDuty()
    async with pagerduty.serve() as url:
        routes = tmp_path / "routes.toml"
        routes.write_text(ROUTES.format(url=url + ENQUEUE_PATH))
        env = {**world.env, "NOTIFIER_ROUTES_FILE": str(routes), "PD_ROUTING_KEY": ROUTING_KEY}
        del env["NOTIFIER_WEBHOOK_URLS"]
        result = await cli("send-test", env=env)

    assert result.code == 0, result.stderr
    assert ROUTING_KEY not in result.stdout + result.stderr
    assert pagerduty.refused == []
    trigger, resolve = pagerduty.events
    assert (trigger["event_action"], resolve["event_action"]) == ("trigger", "resolve")
    # The run's own key (fresh each run: see the first test), never a real incident's.
    assert resolve["dedup_key"] == trigger["dedup_key"]
    assert trigger["dedup_key"].startswith(TEST_TAG) and trigger["dedup_key"] in result.stdout
    assert trigger["payload"]["summary"].startswith("ALERT: [TEST] datafold-notifier test")
    # A destination that takes no recoveries gets none in the test either.
    assert len(world.slack.messages) == 1 and world.slack.updates == []
    assert "ok   chat: test recovery not sent (recovery = false here)" in result.stdout


async def test_a_failing_destination_is_named_and_exits_1_the_others_still_get_theirs(
    world: World,
) -> None:
    world.receiver.reply(500, 500)

    result = await cli("send-test", "--all", env=world.env)

    assert result.code == 1
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 2 and all("webhook-" in line and "HTTP 500" in line for line in failed)
    assert "test alert: HTTP 500" in failed[0] and "test recovery: HTTP 500" in failed[1]
    assert "1 of 2 failed: webhook-" in result.stdout.splitlines()[-1]
    assert _lines(result.stdout, "slack")[0] == "ok   slack: test alert sent"
    assert len(world.slack.messages) == 2


async def test_an_unknown_destination_is_refused_naming_the_known_ones(world: World) -> None:
    result = await cli("send-test", "--destination", "nope", env=world.env)

    assert result.code == 2
    assert "unknown destination 'nope'" in result.stderr and "known: slack, webhook-" in (
        result.stderr
    )
    assert world.slack.messages == [] and world.receiver.deliveries == []


async def test_with_monitor_the_test_wears_that_monitors_details(world: World) -> None:
    result = await cli("send-test", "--destination", "slack", "--monitor", "1", env=world.env)

    assert result.code == 0, result.stderr
    alert = world.slack.messages[0]
    assert "[TEST] orders prod vs staging" in (alert.text or "")
    assert "/monitors/1" in json.dumps(alert.blocks)

    missing = await cli("send-test", "--monitor", "999", env=world.env)
    assert missing.code == 2 and "monitor 999" in missing.stderr
    assert len(world.slack.messages) == 2  # nothing more was sent


MAIL_AND_AM = """
[destinations.mail]
type = "email"
host = "127.0.0.1"
port = {port}
username = "env:SMTP_USERNAME"
password = "env:SMTP_PASSWORD"
from = "notifier@example.test"
to = ["oncall@example.test"]

[destinations.am]
type = "alertmanager"
url = "env:ALERTMANAGER_URL"

[default]
to = ["mail", "am"]
"""


def mail_and_am_env(
    world: World, tmp_path: Path, *, smtp_port: int, am_url: str, ca: trustme.CA | None = None
) -> dict[str, str]:
    """A routes file with the email and Alertmanager destinations; the SMTP server's `ca`
    trusted, as an operator would."""
    routes = tmp_path / "routes.toml"
    routes.write_text(MAIL_AND_AM.format(port=smtp_port))
    env = {
        **world.env,
        "NOTIFIER_ROUTES_FILE": str(routes),
        "SMTP_USERNAME": USERNAME,
        "SMTP_PASSWORD": PASSWORD,
        "ALERTMANAGER_URL": am_url,
        "NOTIFIER_LOG_LEVEL": "debug",
    }
    if ca is not None:
        ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        env["NOTIFIER_CA_BUNDLE"] = str(ca_file)
    del env["NOTIFIER_WEBHOOK_URLS"], env["SLACK_CHANNEL"]
    return env


@pytest.mark.filterwarnings("ignore:Session.login_data is deprecated")
async def test_email_gets_the_marked_alert_then_its_recovery_threaded_under_it(
    world: World, tmp_path: Path
) -> None:
    ca = trustme.CA()
    server = MailServer(ca=ca, credentials=(USERNAME, PASSWORD))
    with server.serve() as port:
        env = mail_and_am_env(world, tmp_path, smtp_port=port, am_url="http://127.0.0.1:1", ca=ca)
        assert (await cli("once", env=env)).code == 0  # a state file to keep unchanged
        before = world.state_file.read_bytes()

        result = await cli("send-test", "--destination", "mail", env=env)

    assert result.code == 0, result.stderr
    assert result.stdout.splitlines()[:2] == [
        "ok   mail: test alert sent",
        "ok   mail: test recovery sent (on the alert's message)",
    ]
    assert result.stdout.splitlines()[-1].endswith("1 destination(s), all ok")
    alert, recovery = (mail.message for mail in server.mails)
    assert alert["Subject"].startswith("[Alert] [TEST] datafold-notifier test")
    assert "send-test" in alert.get_body(("plain",)).get_content()  # the note says what it is
    assert recovery["Subject"].startswith("[Recovered] [TEST] datafold-notifier test")
    assert recovery["In-Reply-To"] == alert["Message-ID"] == recovery["References"]
    assert TEST_TAG in alert["Message-ID"]  # the run's own incident: no real thread is joined
    assert [mail.recipients for mail in server.mails] == [["oncall@example.test"]] * 2
    assert world.state_file.read_bytes() == before
    assert world.slack.messages == []
    assert not [s for s in [*SECRETS, PASSWORD] if s in result.stdout + result.stderr]


def received(metrics: str, status: str) -> float:
    """Alertmanager's count of alerts posted to it with `status` ("firing", "resolved")."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("alertmanager_alerts_received_total{") and f'status="{status}"' in line
    )


async def test_alertmanager_gets_the_test_alert_firing_then_ended(
    world: World, tmp_path: Path
) -> None:
    async with running_alertmanager() as am:
        # No SMTP server listens: only `am` is named, and only `am` is sent to.
        env = mail_and_am_env(world, tmp_path, smtp_port=1, am_url=am.url)

        result = await cli("send-test", "--destination", "am", env=env)

        assert result.code == 0, result.stderr
        assert result.stdout.splitlines()[:2] == [
            "ok   am: test alert sent",
            "ok   am: test recovery sent",
        ]
        async with am.session.get(f"{am.url}/metrics") as response:
            metrics = await response.text()
        # Alertmanager took one alert firing (endsAt ahead), then the same ended (endsAt past).
        assert (received(metrics, "firing"), received(metrics, "resolved")) == (1, 1)
        assert await am.alerts(active="true") == []
        assert await am.alerts() == []
    assert not world.state_file.exists()
