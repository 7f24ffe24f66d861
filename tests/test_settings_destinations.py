"""Destinations from environment variables alone (issue 14): PagerDuty, Teams, email,
Alertmanager and Apprise, one of each under a stable name, as Slack and webhooks always were.
Incomplete or invalid variables are one line naming them, never showing a secret; the secrets are
redacted; with a routes file they configure nothing. End to end: PAGERDUTY_* to the fake PagerDuty.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from notifier.route.destinations import (
    AlertmanagerDestination,
    AnyDestination,
    AppriseDestination,
    EmailDestination,
    PagerDutyDestination,
    SlackDestination,
    TeamsDestination,
)
from notifier.run.config import ConfigError, load_settings
from notifier.run.destination_settings import DESTINATION_HINT, NO_DESTINATION
from notifier.run.routes import routes_from_settings
from tests.fakes.cli import API_KEY, Result, World, cli
from tests.fakes.pagerduty import ENQUEUE_PATH, FakePagerDuty

KEY = "dfk-" + "destination-settings-api-key"
ROUTING_KEY = "PdEnv0123456789abcdef0123456789z"
TEAMS_URL = "https://prod-00.westus.logic.azure.test/workflows/1/triggers?sig=teams-env-sig-5521"
SMTP_USER = "smtp-env-user-3391"
SMTP_PASSWORD = "smtp-env-password-7710"
AM_URL = "https://alertmanager.example.test:9093/?token=am-env-url-token-4402"
AM_TOKEN = "am-env-bearer-token-8812"
APPRISE_URL = "discord://4174216298/apprise-env-token-6603"
#: Variable prefixes of the destinations beyond `bare_env`'s DATAFOLD_/NOTIFIER_/SLACK_.
PREFIXES = ("PAGERDUTY_", "TEAMS_", "ALERTMANAGER_", "APPRISE_")
EMAIL = {
    "NOTIFIER_SMTP_HOST": "smtp.example.test",
    "NOTIFIER_EMAIL_FROM": "notifier@example.test",
    "NOTIFIER_EMAIL_TO": "oncall@example.test, data@example.test",
}


@pytest.fixture(autouse=True)
def clean_env(bare_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATAFOLD_API_KEY", KEY)


def settings_with(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Any:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


@pytest.mark.parametrize(
    ("env", "name", "expected"),
    [
        (
            {"PAGERDUTY_ROUTING_KEY": ROUTING_KEY},
            "pagerduty",
            PagerDutyDestination(routing_key=SecretStr(ROUTING_KEY)),
        ),
        (
            {"PAGERDUTY_ROUTING_KEY": ROUTING_KEY, "PAGERDUTY_REGION": " EU "},
            "pagerduty",
            PagerDutyDestination(routing_key=SecretStr(ROUTING_KEY), region="eu"),
        ),
        (
            {"PAGERDUTY_ROUTING_KEY": ROUTING_KEY, "PAGERDUTY_URL": "https://pd-proxy.test/e"},
            "pagerduty",
            PagerDutyDestination(routing_key=SecretStr(ROUTING_KEY), url="https://pd-proxy.test/e"),
        ),
        ({"TEAMS_WEBHOOK_URL": TEAMS_URL}, "teams", TeamsDestination(url=SecretStr(TEAMS_URL))),
        (
            EMAIL,
            "email",
            EmailDestination(
                host="smtp.example.test",
                sender="notifier@example.test",
                to=["oncall@example.test", "data@example.test"],
            ),
        ),
        (
            {
                **EMAIL,
                "NOTIFIER_SMTP_PORT": "465",
                "NOTIFIER_SMTP_SECURITY": "TLS",
                "NOTIFIER_SMTP_USERNAME": SMTP_USER,
                "NOTIFIER_SMTP_PASSWORD": SMTP_PASSWORD,
            },
            "email",
            EmailDestination(
                host="smtp.example.test",
                port=465,
                security="tls",
                username=SecretStr(SMTP_USER),
                password=SecretStr(SMTP_PASSWORD),
                sender="notifier@example.test",
                to=["oncall@example.test", "data@example.test"],
            ),
        ),
        (
            {"ALERTMANAGER_URL": AM_URL},
            "alertmanager",
            AlertmanagerDestination(url=SecretStr(AM_URL)),
        ),
        (
            {"ALERTMANAGER_URL": AM_URL, "ALERTMANAGER_TOKEN": AM_TOKEN},
            "alertmanager",
            AlertmanagerDestination(url=SecretStr(AM_URL), token=SecretStr(AM_TOKEN)),
        ),
        ({"APPRISE_URL": APPRISE_URL}, "apprise", AppriseDestination(url=SecretStr(APPRISE_URL))),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_each_kind_from_its_variables_under_its_stable_name(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], name: str, expected: AnyDestination
) -> None:
    settings = settings_with(monkeypatch, env)
    routes = routes_from_settings(settings)
    assert routes.destinations == {name: expected}
    assert routes.default is not None and routes.default.to == [name]
    assert settings.has_destination()
    # the same variables, read again (a restart), name it the same: outbox entries stay valid
    assert routes_from_settings(load_settings()).destinations == {name: expected}


def test_every_kind_at_once_each_under_its_own_name(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_with(
        monkeypatch,
        {
            **EMAIL,
            "SLACK_BOT_TOKEN": "xoxb-env-token-1",
            "SLACK_CHANNEL": "C0123ABCD",
            "PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
            "TEAMS_WEBHOOK_URL": TEAMS_URL,
            "ALERTMANAGER_URL": AM_URL,
            "APPRISE_URL": APPRISE_URL,
        },
    )
    routes = routes_from_settings(settings)
    names = ["slack", "pagerduty", "teams", "email", "alertmanager", "apprise"]
    assert list(routes.destinations) == names
    assert isinstance(routes.destinations["slack"], SlackDestination)
    assert routes.default is not None and routes.default.to == names


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PAGERDUTY_REGION": "eu"}, []),
        ({"PAGERDUTY_URL": "https://pd-proxy.test/e"}, []),
        ({"NOTIFIER_SMTP_PORT": "2525", "NOTIFIER_SMTP_SECURITY": "none"}, []),
        ({"NOTIFIER_ROUTES_FILE": "routes.toml", "PAGERDUTY_ROUTING_KEY": ROUTING_KEY}, None),
    ],
)
def test_variables_that_only_adjust_a_destination_make_none(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: list[str] | None
) -> None:
    """Like SLACK_API_URL, a region, an endpoint, a port or a security mode alone is no
    destination (and no error); a routes file, not the variables, names the destinations."""
    settings = settings_with(monkeypatch, env)
    assert settings.has_destination() is (named is None)
    if named is not None:
        assert routes_from_settings(settings).destinations == {}


def one_line_error(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "\n" not in message
    for secret in (ROUTING_KEY, TEAMS_URL, SMTP_USER, SMTP_PASSWORD, AM_URL, AM_TOKEN):
        assert secret not in message
    assert "teams-env-sig" not in message and "apprise-env-token" not in message
    return message


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"NOTIFIER_SMTP_HOST": "smtp.example.test"}, ["NOTIFIER_EMAIL_FROM", "NOTIFIER_EMAIL_TO"]),
        (
            {"NOTIFIER_SMTP_HOST": "smtp.example.test", "NOTIFIER_EMAIL_FROM": "n@example.test"},
            ["NOTIFIER_EMAIL_TO"],
        ),
        (
            {"NOTIFIER_EMAIL_TO": "oncall@example.test"},
            ["NOTIFIER_SMTP_HOST", "NOTIFIER_EMAIL_FROM"],
        ),
        (
            {"NOTIFIER_SMTP_PASSWORD": SMTP_PASSWORD},
            ["NOTIFIER_SMTP_HOST", "NOTIFIER_EMAIL_FROM", "NOTIFIER_EMAIL_TO"],
        ),
        ({**EMAIL, "NOTIFIER_SMTP_USERNAME": SMTP_USER}, ["NOTIFIER_SMTP_PASSWORD"]),
        ({**EMAIL, "NOTIFIER_SMTP_PASSWORD": SMTP_PASSWORD}, ["NOTIFIER_SMTP_USERNAME"]),
        ({"ALERTMANAGER_TOKEN": AM_TOKEN}, ["ALERTMANAGER_URL"]),
        ({"SLACK_BOT_TOKEN": "xoxb-env-token-1"}, ["SLACK_CHANNEL"]),
    ],
)
def test_an_incomplete_destination_names_the_missing_variables(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: list[str]
) -> None:
    message = one_line_error(monkeypatch, env)
    missing = message.split(" set but ", 1)[1]
    for name in named:
        assert name in missing, message


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PAGERDUTY_ROUTING_KEY": ROUTING_KEY, "PAGERDUTY_REGION": "mars"}, "PAGERDUTY_REGION"),
        (
            {"PAGERDUTY_ROUTING_KEY": ROUTING_KEY, "PAGERDUTY_URL": "http://pd-proxy.test/e"},
            "PAGERDUTY_URL: plain http://",
        ),
        ({"PAGERDUTY_URL": "events.pagerduty.com/v2/enqueue"}, "PAGERDUTY_URL"),
        ({"TEAMS_WEBHOOK_URL": TEAMS_URL.replace("https", "http")}, "TEAMS_WEBHOOK_URL: plain"),
        ({"TEAMS_WEBHOOK_URL": TEAMS_URL.removeprefix("https://")}, "TEAMS_WEBHOOK_URL"),
        ({"ALERTMANAGER_URL": AM_URL.replace("https", "http")}, "ALERTMANAGER_URL: plain"),
        (
            {"APPRISE_URL": "json://hooks.example.test/apprise-env-token-6603"},
            "APPRISE_URL: json:// posts over plain http",
        ),
        ({"APPRISE_URL": "apprise-env-token-6603"}, "APPRISE_URL"),
        ({**EMAIL, "NOTIFIER_SMTP_SECURITY": "none"}, "NOTIFIER_SMTP_SECURITY: none"),
        ({**EMAIL, "NOTIFIER_SMTP_SECURITY": "ssl"}, "NOTIFIER_SMTP_SECURITY"),
        ({**EMAIL, "NOTIFIER_SMTP_PORT": "70000"}, "NOTIFIER_SMTP_PORT"),
        ({**EMAIL, "NOTIFIER_SMTP_HOST": "smtp example"}, "NOTIFIER_SMTP_HOST"),
        ({**EMAIL, "NOTIFIER_EMAIL_FROM": "notifier"}, "NOTIFIER_EMAIL_FROM"),
        ({**EMAIL, "NOTIFIER_EMAIL_TO": "oncall@example.test,nobody"}, "NOTIFIER_EMAIL_TO"),
    ],
)
def test_an_invalid_value_is_one_line_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    message = one_line_error(monkeypatch, env)
    assert message.startswith(named) or f"; {named}" in message, message


@pytest.mark.parametrize(
    "env",
    [
        {"PAGERDUTY_ROUTING_KEY": ROUTING_KEY, "PAGERDUTY_URL": "http://pd-proxy.test/e"},
        {"TEAMS_WEBHOOK_URL": TEAMS_URL.replace("https", "http")},
        {"ALERTMANAGER_URL": AM_URL.replace("https", "http")},
        {"APPRISE_URL": "json://hooks.example.test/apprise-env-token-6603"},
        {**EMAIL, "NOTIFIER_SMTP_SECURITY": "none"},
    ],
)
def test_plain_traffic_is_accepted_when_allowed_or_to_this_machine(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    assert settings_with(monkeypatch, {**env, "NOTIFIER_ALLOW_HTTP": "true"}).has_destination()
    monkeypatch.delenv("NOTIFIER_ALLOW_HTTP")
    local = {
        name: value.replace("hooks.example.test", "127.0.0.1")
        .replace("pd-proxy.test", "127.0.0.1")
        .replace("prod-00.westus.logic.azure.test", "localhost")
        .replace("alertmanager.example.test", "[::1]")
        .replace("smtp.example.test", "127.0.0.1")
        for name, value in env.items()
    }
    assert settings_with(monkeypatch, local).has_destination()


def test_with_a_routes_file_incomplete_variables_are_not_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The file names the destinations and reads secrets through env:NAME, so a token whose
    channel, URL or host is written in the file is no incomplete destination."""
    settings = settings_with(
        monkeypatch,
        {
            "NOTIFIER_ROUTES_FILE": "routes.toml",
            "SLACK_BOT_TOKEN": "xoxb-env-token-1",
            "ALERTMANAGER_TOKEN": AM_TOKEN,
            "NOTIFIER_SMTP_USERNAME": SMTP_USER,
            "TEAMS_WEBHOOK_URL": TEAMS_URL,
        },
    )
    assert settings.destination_variables_set() == ["SLACK_BOT_TOKEN", "TEAMS_WEBHOOK_URL"]
    # Those the file reads through env: are used: only the others are ignored.
    assert settings.destination_variables_set({"SLACK_BOT_TOKEN"}) == ["TEAMS_WEBHOOK_URL"]
    assert {AM_TOKEN, SMTP_USER, TEAMS_URL} <= set(settings.secrets())


def test_every_secret_is_redacted_and_hidden_from_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        "TEAMS_WEBHOOK_URL": TEAMS_URL,
        "NOTIFIER_SMTP_USERNAME": SMTP_USER,
        "NOTIFIER_SMTP_PASSWORD": SMTP_PASSWORD,
        "ALERTMANAGER_URL": AM_URL,
        "ALERTMANAGER_TOKEN": AM_TOKEN,
        "APPRISE_URL": APPRISE_URL,
    }
    settings = settings_with(monkeypatch, {**EMAIL, **secrets})
    assert set(secrets.values()) <= set(settings.secrets())
    shown = repr(settings) + str(settings) + str(settings.model_dump())
    for name, value in secrets.items():
        assert value not in shown, name


# Through the installed CLI.


def bare_cli_env(**extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "DATAFOLD_API_KEY": API_KEY,
        "NOTIFIER_MONITOR_IDS": "1",
        **extra,
    }


def without_slack_and_webhooks(env: dict[str, str]) -> dict[str, str]:
    names = ("SLACK_BOT_TOKEN", "SLACK_CHANNEL", "NOTIFIER_WEBHOOK_URLS", "NOTIFIER_WEBHOOK_SECRET")
    return {name: value for name, value in env.items() if name not in names}


def assert_one_line_config_error(result: Result, *secrets: str) -> str:
    assert result.code == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("datafold-notifier: error: configuration: ")
    for secret in secrets:
        assert secret not in result.stderr
    return line


async def test_the_cli_refuses_incomplete_or_invalid_variables_in_one_line(
    world: World, tmp_path: Path
) -> None:
    """Incomplete, invalid, none: `check` and `once` exit 2 with one line; `check` without a
    destination fails its destinations line, naming every kind's variables."""
    plain = TEAMS_URL.replace("https", "http")
    partial, invalid, nowhere, checked = await asyncio.gather(
        cli("check", env=bare_cli_env(NOTIFIER_SMTP_PASSWORD=SMTP_PASSWORD), cwd=tmp_path),
        cli("once", env=bare_cli_env(TEAMS_WEBHOOK_URL=plain), cwd=tmp_path),
        cli("once", env=bare_cli_env(PAGERDUTY_REGION="eu"), cwd=tmp_path),
        cli("check", env=without_slack_and_webhooks(world.env), cwd=tmp_path),
    )
    line = assert_one_line_config_error(partial, SMTP_PASSWORD)
    assert "NOTIFIER_SMTP_HOST, NOTIFIER_EMAIL_FROM and NOTIFIER_EMAIL_TO are not" in line
    line = assert_one_line_config_error(invalid, plain, "teams-env-sig-5521")
    assert "TEAMS_WEBHOOK_URL: plain http://" in line
    line = assert_one_line_config_error(nowhere)
    assert line.endswith(
        f"{NO_DESTINATION} (read from the environment; no .env file found in {tmp_path})"
    )
    for name in ("PAGERDUTY_ROUTING_KEY", "TEAMS_WEBHOOK_URL", "NOTIFIER_SMTP_HOST", "APPRISE_URL"):
        assert name in line
    assert checked.code == 1
    assert f"FAIL destinations: none configured: {DESTINATION_HINT}\n" in checked.stdout


async def test_pagerduty_from_its_variables_end_to_end(world: World) -> None:
    """PAGERDUTY_ROUTING_KEY and PAGERDUTY_URL alone: the alert reaches the spec-enforcing fake
    as a trigger; a failed first attempt waits in the outbox under the name "pagerduty" and the
    next process (a restart) delivers it; the recovery resolves the same alert; the routing key is
    in no output or the state file at debug level."""
    pagerduty = FakePagerDuty()
    async with pagerduty.serve() as url:
        env = {
            **without_slack_and_webhooks(world.env),
            "NOTIFIER_MONITOR_IDS": "1",
            "NOTIFIER_FIRST_START_LOOKBACK_SECONDS": "3600",  # no silent baseline cycle
            "PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
            "PAGERDUTY_URL": url + ENQUEUE_PATH,
        }
        assert env["NOTIFIER_LOG_LEVEL"] == "debug"
        run = world.sim.add_run(1, state="alert", started_at=world.now())
        pagerduty.reply(503)
        results = [await cli("once", env=env)]
        state = json.loads(world.state_file.read_text())
        assert [entry["pending"] for entry in state["outbox"]] == [["pagerduty"]]
        results.append(await cli("once", env=env))
        world.sim.add_run(1, state="ok", started_at=world.now())
        results.append(await cli("once", env=env))

    for result in results:
        assert result.code == 0, result.stderr
        assert ROUTING_KEY not in result.stdout + result.stderr
    assert ROUTING_KEY not in world.state_file.read_text()
    assert pagerduty.refused == []
    trigger, resolve = pagerduty.events
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    assert trigger["routing_key"] == ROUTING_KEY
    assert trigger["payload"]["custom_details"]["run"]["id"] == run
    assert resolve["dedup_key"] == trigger["dedup_key"]
    assert world.slack.messages == [] and world.receiver.deliveries == []


async def test_no_secret_of_the_new_variables_in_any_output_at_debug(
    world: World, tmp_path: Path
) -> None:
    """Every new kind from its variables, each pointed at a port where nothing listens: `check`
    fails them, `once` keeps the alert in the outbox for each, and no routing key, webhook URL,
    SMTP credential, Alertmanager URL or token, or Apprise URL shows in stdout, stderr or the
    state file."""
    dead = "127.0.0.1:9"
    secrets = {
        "PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        "TEAMS_WEBHOOK_URL": f"http://{dead}/workflows/1/triggers?sig=teams-env-sig-5521",
        "NOTIFIER_SMTP_USERNAME": SMTP_USER,
        "NOTIFIER_SMTP_PASSWORD": SMTP_PASSWORD,
        "ALERTMANAGER_URL": f"http://{dead}/?token=am-env-url-token-4402",
        "ALERTMANAGER_TOKEN": AM_TOKEN,
        "APPRISE_URL": f"json://{dead}/apprise-env-token-6603",
    }
    env = {
        **without_slack_and_webhooks(world.env),
        **secrets,
        "PAGERDUTY_URL": f"http://{dead}/v2/enqueue",
        "NOTIFIER_SMTP_HOST": "127.0.0.1",
        "NOTIFIER_SMTP_PORT": "9",
        "NOTIFIER_EMAIL_FROM": "notifier@example.test",
        "NOTIFIER_EMAIL_TO": "oncall@example.test",
        "NOTIFIER_MONITOR_IDS": "1",
        "NOTIFIER_FIRST_START_LOOKBACK_SECONDS": "3600",  # no silent baseline cycle
    }
    names = {"pagerduty", "teams", "email", "alertmanager", "apprise"}
    checked = await cli("check", env=env, cwd=tmp_path)
    assert checked.code == 1
    assert names <= {line.split(": ")[0].split()[-1] for line in checked.stdout.splitlines()}
    outputs = [checked.stdout, checked.stderr]
    world.sim.add_run(1, state="alert", started_at=world.now())
    result = await cli("once", env=env, cwd=tmp_path)
    assert result.code == 0, result.stderr
    outputs += [result.stdout, result.stderr]
    state = json.loads(world.state_file.read_text())
    assert [sorted(entry["pending"]) for entry in state["outbox"]] == [sorted(names)]
    outputs.append(world.state_file.read_text())
    parts = ["teams-env-sig-5521", "am-env-url-token-4402", "apprise-env-token-6603"]
    for number, text in enumerate(outputs):
        for secret in [*secrets.values(), *parts]:
            assert secret not in text, f"output {number} shows {secret[:6]}…"


async def test_with_a_routes_file_the_warning_names_only_variables_it_does_not_read(
    world: World, tmp_path: Path
) -> None:
    """SLACK_BOT_TOKEN read through env: is used, so not "ignored"; the webhook URLs and the
    signing secret the file never names are, as the variables that now do nothing."""
    routes = tmp_path / "routes.toml"
    routes.write_text(
        '[destinations.team]\ntype = "slack"\nchannel = "C0123ABCD"\n'
        'token = "env:SLACK_BOT_TOKEN"\n[default]\nto = ["team"]\n'
    )
    result = await cli("once", env={**world.env, "NOTIFIER_ROUTES_FILE": str(routes)})
    assert result.code == 0, result.stderr
    [warning] = [e for e in result.events() if e["event"] == "environment_destinations_ignored"]
    assert warning["variables"] == ["NOTIFIER_WEBHOOK_URLS", "NOTIFIER_WEBHOOK_SECRET"]
    assert "do nothing" in warning["reason"]
