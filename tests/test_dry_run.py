"""`once --dry-run` through the installed CLI: the real cycle against the simulator, what each
destination would get printed (readable, or `--json` payloads), nothing sent to the fakes,
nothing saved, and the alert still there for the next real `once`."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from notifier.cli.dry_run import summary
from notifier.deliver.sink import DigestSink, HoldingSink
from notifier.deliver.sinks.context import SinkContext
from notifier.deliver.sinks.registry import build_sink
from notifier.deliver.sinks.slack_transport import ChannelPacer
from notifier.domain.models import Incident, MessageRef, Notification, NotifierState, OutboxEntry
from notifier.route.destinations.fields import webhook_destination_name
from notifier.route.routes_file import parse_routes
from notifier.route.rules import Routes
from notifier.run.dry_run import (
    Recorded,
    RecordingHoldingSink,
    RecordingSink,
    UnsavedState,
    recording_sinks,
)
from notifier.run.preview import MASK, dumps, preview
from notifier.store.file import StateFile
from tests.fakes import samples
from tests.fakes.cli import World, cli
from tests.fakes.pagerduty import ENQUEUE_PATH, FakePagerDuty
from tests.fakes.postgres import opened

ROUTING_KEY = "PdDryRun0123456789abcdef01234567"

ROUTES = """
[destinations.oncall]
type = "pagerduty"
routing_key = "env:PD_ROUTING_KEY"
url = "{url}"

[destinations.chat]
type = "slack"
token = "env:SLACK_BOT_TOKEN"
channel = "C0123ABCD"
thread = true

[[routes]]
match = {{ tags = ["prod"] }}
to = ["oncall", "chat"]

[default]
to = ["chat"]
"""


async def test_a_dry_run_prints_the_alert_sends_nothing_saves_nothing_and_once_still_sends_it(
    world: World,
) -> None:
    assert (await cli("once", env=world.env)).code == 0  # the baseline
    run = world.sim.add_run(1, state="alert", started_at=world.now())
    before = world.state_file.read_bytes()

    result = await cli("once", "--dry-run", env=world.env)

    assert result.code == 0, result.stderr
    webhook = webhook_destination_name(world.env["NOTIFIER_WEBHOOK_URLS"])
    would = f"  alert: monitor 1 'orders prod vs staging', run {run}, state alert"
    assert result.stdout.splitlines() == [
        "slack: 1 notification",
        would,
        f"{webhook}: 1 notification",
        would,
        "dry run: 2 notifications to 2 destination(s) would be sent; nothing was sent and the "
        "state was not saved",
    ]
    assert world.slack.calls == [] and world.receiver.requests == []
    assert world.state_file.read_bytes() == before
    sent = [e for e in result.events() if e["event"] == "notification_sent"]
    assert sent and all(e["dry_run"] is True for e in sent)

    assert (await cli("once", env=world.env)).code == 0
    [posted] = world.slack.messages
    assert "orders prod vs staging" in (posted.text or "")
    [delivered] = world.receiver.deliveries
    assert json.loads(delivered.body)["data"]["run"]["id"] == run


async def test_json_shows_each_destinations_rendered_payload_with_secrets_masked(
    world: World, tmp_path: Path
) -> None:
    pagerduty = FakePagerDuty()
    async with pagerduty.serve() as url:
        routes = tmp_path / "routes.toml"
        routes.write_text(ROUTES.format(url=url + ENQUEUE_PATH))
        env = {**world.env, "NOTIFIER_ROUTES_FILE": str(routes), "PD_ROUTING_KEY": ROUTING_KEY}
        del env["NOTIFIER_WEBHOOK_URLS"]
        assert (await cli("once", env=env)).code == 0
        run = world.sim.add_run(1, state="alert", started_at=world.now())
        world.sim.add_run(2, state="error", started_at=world.now(), error="boom")
        before = world.state_file.read_bytes()

        result = await cli("once", "--dry-run", "--json", env=env)

    assert result.code == 0, result.stderr
    assert ROUTING_KEY not in result.stdout + result.stderr
    destinations = json.loads(result.stdout)["destinations"]
    [event] = destinations["oncall"]  # only the prod monitor's alert is routed to PagerDuty
    assert event["notifications"][0]["run_id"] == run
    payload = event["payload"]
    assert payload["routing_key"] == "***" and payload["event_action"] == "trigger"
    assert payload["payload"]["summary"].startswith("ALERT: orders prod vs staging")
    chat = {entry["notifications"][0]["monitor_id"]: entry for entry in destinations["chat"]}
    assert set(chat) == {1, 2}
    [call] = chat[2]["payload"]
    assert call["method"] == "chat.postMessage" and call["channel"] == "C0123ABCD"
    assert "boom" in json.dumps(call["blocks"])
    assert pagerduty.events == [] and pagerduty.requests == []
    assert world.slack.calls == []
    assert world.state_file.read_bytes() == before


async def test_json_without_dry_run_is_refused(world: World) -> None:
    result = await cli("once", "--json", env=world.env)

    assert result.code == 2 and "--json goes with --dry-run" in result.stderr
    assert world.sim.requests == []


KINDS = """
[destinations.bot]
type = "slack"
token = "env:SLACK_TOKEN"
channel = "C0123ABCD"
thread = true
digest_threshold = 5

[destinations.sw]
type = "slack-webhook"
url = "env:SLACK_HOOK"
mentions = ["@here"]

[destinations.hook]
type = "webhook"
url = "env:HOOK_URL"

[destinations.amhook]
type = "webhook"
url = "env:HOOK_URL"
format = "alertmanager"

[destinations.pd]
type = "pagerduty"
routing_key = "env:PD_KEY"

[destinations.teams]
type = "teams"
url = "env:TEAMS_URL"
digest_threshold = 3

[destinations.mail]
type = "email"
host = "smtp.example.test"
from = "notifier@example.test"
to = ["oncall@example.test"]
digest_threshold = 4

[destinations.am]
type = "alertmanager"
url = "https://am.example.test:9093/"
labels = { team = "data" }

[destinations.apprise]
type = "apprise"
url = "env:APPRISE_URL"

[default]
to = ["bot"]
"""
KIND_SECRETS = {
    "SLACK_TOKEN": "xoxb-dry-run-token",
    "SLACK_HOOK": "https://hooks.slack.com/services/T0/B0/dryrunsecret",
    "HOOK_URL": "https://hooks.example.test/in?token=dry-run-url-token",
    "PD_KEY": "PdKinds0123456789abcdef012345678",
    "TEAMS_URL": "https://example.webhook.office.com/workflows/dry-run-sig",
    "APPRISE_URL": "jsons://hooks.example.test/dry-run-apprise",
}


def kinds_routes() -> Routes:
    return parse_routes(KINDS.encode(), "routes.toml", KIND_SECRETS)


def incident_pair() -> tuple[Notification, Notification]:
    """An alert opening an incident, and its recovery."""
    alert = samples.notification()
    incident = Incident(
        id=alert.id,
        opened_at=samples.DETECTED,
        first=alert.event,
        last=alert.event,
        last_notified_at=samples.DETECTED,
    )
    ok = samples.notification(state="ok", run_id=98124)
    recovery = ok.model_copy(update={"id": ok.id, "kind": "recovered", "incident": incident})
    return alert.model_copy(update={"incident": incident}), recovery


async def test_stand_ins_keep_each_sinks_name_digest_threshold_and_keep_alive(
    session: aiohttp.ClientSession,
) -> None:
    routes = kinds_routes()
    context = SinkContext(session=session, timeout=5, slack_pacer=ChannelPacer())
    # Apprise's sink loads its plugins (a deprecated import): it has no digest or keep-alive.
    real = {
        name: build_sink(name, d, context)
        for name, d in routes.destinations.items()
        if d.type != "apprise"
    }

    stand_ins = recording_sinks(real)

    assert list(stand_ins) == list(real)
    thresholds = {name: sink.digest_threshold for name, sink in stand_ins.items()}
    assert thresholds == {
        name: getattr(sink, "digest_threshold", None) for name, sink in real.items()
    }
    assert {name for name, s in stand_ins.items() if isinstance(s, HoldingSink)} == {"am"}
    assert all(isinstance(s, DigestSink) for s in stand_ins.values())
    assert await stand_ins["pd"].send(samples.notification()) is None


@pytest.mark.parametrize(
    "name", ["bot", "sw", "hook", "amhook", "pd", "teams", "mail", "am", "apprise"]
)
def test_every_kind_previews_its_alert_and_recovery_as_json_without_secrets(name: str) -> None:
    destination = kinds_routes().destinations[name]
    alert, recovery = incident_pair()
    anchor = MessageRef(channel="email" if name == "mail" else "C0123ABCD", ts="1700.01")
    options = {
        "now": samples.DETECTED,
        "external_url": "https://app.datafold.com",
        "poll_interval": 60.0,
    }

    shown = [
        dumps(preview(destination, name, Recorded("send", (alert,)), **options)),
        dumps(preview(destination, name, Recorded("send", (recovery,), anchor), **options)),
    ]
    if destination.type in ("slack", "slack-webhook", "teams", "email"):
        shown.append(
            dumps(preview(destination, name, Recorded("digest", (alert, recovery)), **options))
        )
    if destination.type == "alertmanager":
        shown.append(dumps(preview(destination, name, Recorded("hold", (alert,)), **options)))

    assert "orders prod vs staging" in shown[0]
    for text in shown:
        assert json.loads(text)
        assert not [secret for secret in KIND_SECRETS.values() if secret in text]


def test_previews_follow_the_incident_as_the_sinks_would() -> None:
    routes = kinds_routes().destinations
    alert, recovery = incident_pair()
    options = {"now": samples.DETECTED, "external_url": "", "poll_interval": 60.0}
    slack_anchor = MessageRef(channel="C0123ABCD", ts="1700.01")

    update, reply = preview(
        routes["bot"], "bot", Recorded("send", (recovery,), slack_anchor), **options
    )
    assert (update["method"], update["ts"]) == ("chat.update", "1700.01")
    assert reply["thread_ts"] == "1700.01"
    mail_anchor = MessageRef(channel="email", ts="<anchor@example.test>")
    mail = preview(routes["mail"], "mail", Recorded("send", (recovery,), mail_anchor), **options)
    assert mail["headers"]["In-Reply-To"] == "<anchor@example.test>"
    event = preview(routes["pd"], "pd", Recorded("send", (recovery,)), **options)
    assert event == {"routing_key": MASK, "event_action": "resolve", "dedup_key": alert.id}
    [ended] = preview(routes["am"], "am", Recorded("send", (recovery,)), **options)
    assert ended["endsAt"].startswith("2025-03-14T09:41:07") and ended["labels"]["team"] == "data"


def test_the_summary_names_retries_digests_and_keep_alives() -> None:
    alert, recovery = incident_pair()
    bot, am = RecordingSink("bot", digest_threshold=1), RecordingHoldingSink("am")
    bot.recorded += [Recorded("send", (alert,)), Recorded("digest", (alert, recovery))]
    am.recorded.append(Recorded("hold", (alert,)))
    quiet = RecordingSink("quiet")

    text = summary({"bot": bot, "am": am, "quiet": quiet}, waiting=frozenset({alert.id}))

    assert text.splitlines() == [
        "bot: 3 notifications",
        "  alert: monitor 4521 'orders prod vs staging', run 98123, state alert "
        "(waiting in the outbox: a retry)",
        "  digest of 2 notifications:",
        "    alert: monitor 4521 'orders prod vs staging', run 98123, state alert "
        "(waiting in the outbox: a retry)",
        "    recovered: monitor 4521 'orders prod vs staging', run 98124, state ok",
        "am: 0 notifications",
        "  keep-alive of 1 open incidents' alerts:",
        "    alert: monitor 4521 'orders prod vs staging', run 98123, state alert "
        "(waiting in the outbox: a retry)",
        "quiet: nothing",
        "dry run: 3 notifications to 3 destination(s) would be sent; nothing was sent and the "
        "state was not saved",
    ]


async def test_the_unsaved_state_reads_beside_a_running_daemon_and_never_writes(
    store: StateFile,
) -> None:
    alert, _ = incident_pair()
    state = NotifierState(outbox=[OutboxEntry(notification=alert, pending=["bot"])])
    await store.save(state)
    before = store.path.read_bytes()
    unsaved = UnsavedState(StateFile(store.path))

    async with store.exclusive():  # a daemon holds the file
        loaded = await unsaved.load()
        loaded.outbox.clear()
        assert await unsaved.save(loaded) is False

    assert unsaved.waiting == {alert.id}
    assert await unsaved.fresh_mutes() is None
    assert store.path.read_bytes() == before


@pytest.mark.postgres
async def test_the_unsaved_state_reads_postgresql_while_a_leader_holds_it_and_never_writes(
    postgres_url: str,
) -> None:
    alert, _ = incident_pair()
    state = NotifierState(outbox=[OutboxEntry(notification=alert, pending=["bot"])])
    async with opened(postgres_url, "leader") as leader, leader.exclusive():
        await leader.save(state)
        before = await leader.export_state()
        async with opened(postgres_url, "dry-run") as other:
            unsaved = UnsavedState(other)
            loaded = await unsaved.load()
            loaded.outbox.clear()
            assert await unsaved.save(loaded) is False
        assert unsaved.waiting == {alert.id}
        assert await leader.export_state() == before
        state.outbox.clear()
        assert await leader.save(state) is True  # the leader's lease and fence are intact
