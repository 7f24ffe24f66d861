"""Routing: rules as documented, today's settings as one default route, one-line errors."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from notifier.daemon import build_sinks
from notifier.models import MonitorInfo
from notifier.routing import (
    EVENT_KINDS,
    Match,
    Routes,
    RoutesError,
    SlackDestination,
    SlackWebhookDestination,
    WebhookDestination,
    destinations_for,
    explain,
    load_routes,
    routes_from_settings,
    webhook_destination_name,
)
from notifier.settings import load_settings

DOCS_EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "routing.example.toml"

TOKEN = "xoxb-TOPSECRET-bot-token-4242"
SLACK_HOOK = "https://hooks.slack.example/services/TOPSECRET-slack-hook"
ONCALL_URL = "https://oncall.example/hook?token=TOPSECRET-oncall"
WHSEC = "whsec_" + base64.b64encode(b"TOPSECRET-signing-key-bytes").decode()
WHSEC_2 = "whsec_" + base64.b64encode(b"TOPSECRET-second-key-bytes!").decode()
ENV = {
    "SLACK_BOT_TOKEN": TOKEN,
    "TEAM_SLACK_WEBHOOK_URL": SLACK_HOOK,
    "ONCALL_WEBHOOK_URL": ONCALL_URL,
    "NOTIFIER_WEBHOOK_SECRET": WHSEC,
}
#: Every secret value any test hands over: none may appear in a message or a repr.
SECRETS = [TOKEN, SLACK_HOOK, ONCALL_URL, WHSEC, WHSEC_2, "TOPSECRET"]

DESTINATIONS = """
[destinations.data-alerts]
type = "slack"
channel = "C0123ABCD"
token = "env:SLACK_BOT_TOKEN"
[destinations.oncall-hook]
type = "webhook"
url = "env:ONCALL_WEBHOOK_URL"
secret = "env:NOTIFIER_WEBHOOK_SECRET"
[destinations.team-hook]
type = "slack-webhook"
url = "env:TEAM_SLACK_WEBHOOK_URL"
recovery = false
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("DATAFOLD_", "NOTIFIER_", "SLACK_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routes.toml"
    path.write_text(text, encoding="utf-8")
    return path


def monitor(**fields: Any) -> MonitorInfo:
    base: dict[str, Any] = {
        "id": 101,
        "name": "orders_daily",
        "monitor_type": "diff",
        "tags": ["finance", "Core"],
        "owner": "Ana@Example.com",
    }
    return MonitorInfo(**{**base, **fields})


def routes(table: dict[str, Any]) -> Routes:
    """A routing table over destinations a, b, c (c without recovery notices)."""
    destinations = {
        name: {"type": "slack", "channel": "C1", "token": "t", "recovery": name != "c"}
        for name in ("a", "b", "c")
    }
    return Routes.model_validate({"destinations": destinations, **table})


@pytest.mark.parametrize(
    ("match", "fields", "kind", "expected"),
    [
        ({}, {}, "alert", True),
        ({"monitor_ids": [101, 102]}, {}, "alert", True),
        ({"monitor_ids": [102]}, {}, "alert", False),
        ({"tags": ["finance", "x"]}, {}, "alert", True),
        ({"tags": ["FINANCE"]}, {}, "alert", True),
        ({"tags": ["core"]}, {}, "alert", True),
        ({"tags": ["x", "y"]}, {}, "alert", False),
        ({"tags": ["finance"]}, {"tags": None}, "alert", False),
        ({"all_tags": ["finance", "core"]}, {}, "alert", True),
        ({"all_tags": ["finance", "x"]}, {}, "alert", False),
        ({"types": ["metric", "Diff"]}, {}, "alert", True),
        ({"types": ["metric"]}, {}, "alert", False),
        ({"types": ["diff"]}, {"monitor_type": None}, "alert", False),
        ({"owners": ["ana@example.COM"]}, {}, "alert", True),
        ({"owners": ["bo@example.com"]}, {}, "alert", False),
        ({"owners": ["ana@example.com"]}, {"owner": None}, "alert", False),
        ({"name": "orders*"}, {}, "alert", True),
        ({"name": "ORDERS_*"}, {}, "alert", True),
        ({"name": "*_daily"}, {}, "alert", True),
        ({"name": "orders"}, {}, "alert", False),
        ({"name": "order?_daily"}, {}, "alert", True),
        ({"name": "*"}, {"name": None}, "alert", False),
        ({"name_regex": "^orders_"}, {}, "alert", True),
        ({"name_regex": "daily"}, {}, "alert", True),
        ({"name_regex": "^ORDERS"}, {}, "alert", False),
        ({"name_regex": "(?i)^ORDERS"}, {}, "alert", True),
        ({"name_regex": "orders*"}, {"name": "ship"}, "alert", False),
        ({"name_regex": ".*"}, {"name": None}, "alert", False),
        ({"kinds": ["alert", "error"]}, {}, "error", True),
        ({"kinds": ["alert", "error"]}, {}, "recovered", False),
        ({"kinds": ["reminder"]}, {}, "reminder", True),
        ({"tags": ["finance"], "kinds": ["alert"]}, {}, "alert", True),
        ({"tags": ["finance"], "kinds": ["alert"]}, {}, "error", False),
        ({"monitor_ids": [101], "types": ["diff"], "owners": ["ana@example.com"]}, {}, "x", True),
        (
            {"monitor_ids": [101], "types": ["metric"], "owners": ["ana@example.com"]},
            {},
            "x",
            False,
        ),
        ({"name": "orders*", "name_regex": "weekly$"}, {}, "alert", False),
        ({"name": "orders*", "name_regex": "daily$", "all_tags": ["core"]}, {}, "alert", True),
    ],
)
def test_match_conditions(
    match: dict[str, Any], fields: dict[str, Any], kind: str, expected: bool
) -> None:
    assert Match.model_validate(match).matches(monitor(**fields), kind) is expected


FINANCE = {"tags": ["finance"]}
OTHER = {"tags": ["other"]}


@pytest.mark.parametrize(
    ("table", "kind", "expected"),
    [
        # First match wins.
        ({"routes": [{"match": FINANCE, "to": ["a"]}, {"to": ["b"]}]}, "alert", ["a"]),
        ({"routes": [{"match": OTHER, "to": ["a"]}, {"to": ["b"]}]}, "alert", ["b"]),
        # `continue` goes on to later rules, in route order, de-duplicated.
        (
            {
                "routes": [
                    {"match": FINANCE, "to": ["b", "a"], "continue": True},
                    {"to": ["a", "c"]},
                ]
            },
            "alert",
            ["b", "a", "c"],
        ),
        (
            {
                "routes": [
                    {"to": ["a"], "continue": True},
                    {"match": OTHER, "to": ["b"]},
                    {"to": ["c"]},
                    {"to": ["b"]},
                ]
            },
            "alert",
            ["a", "c"],
        ),
        ({"routes": [{"to": ["a", "a", "b", "a"]}]}, "alert", ["a", "b"]),
        # The default only when no route matched (a matched `continue` route counts).
        ({"routes": [{"match": OTHER, "to": ["a"]}], "default": {"to": ["c"]}}, "alert", ["c"]),
        (
            {
                "routes": [{"match": FINANCE, "to": ["a"], "continue": True}],
                "default": {"to": ["c"]},
            },
            "alert",
            ["a"],
        ),
        ({"default": {"to": ["b", "a", "b"]}}, "alert", ["b", "a"]),
        ({"routes": [{"match": OTHER, "to": ["a"]}]}, "alert", []),
        # `to = []` drops matching events.
        ({"routes": [{"match": FINANCE, "to": []}], "default": {"to": ["a"]}}, "alert", []),
        # Kind filtering.
        (
            {"routes": [{"match": {"kinds": ["error"]}, "to": ["a"]}], "default": {"to": ["b"]}},
            "error",
            ["a"],
        ),
        (
            {"routes": [{"match": {"kinds": ["error"]}, "to": ["a"]}], "default": {"to": ["b"]}},
            "alert",
            ["b"],
        ),
        # `recovered` skips destinations with recovery = false; other kinds do not.
        ({"default": {"to": ["a", "c"]}}, "recovered", ["a"]),
        ({"default": {"to": ["a", "c"]}}, "reminder", ["a", "c"]),
    ],
)
def test_destinations_for(table: dict[str, Any], kind: str, expected: list[str]) -> None:
    assert destinations_for(routes(table), monitor(), kind) == expected


def test_explain_lists_every_kind() -> None:
    table = routes(
        {
            "routes": [
                {"match": {"kinds": ["alert", "error"]}, "to": ["b"], "continue": True},
                {"match": {"monitor_ids": [101]}, "to": ["c"]},
            ],
            "default": {"to": ["a"]},
        }
    )
    assert explain(table, monitor()) == {
        "alert": ["b", "c"],
        "error": ["b", "c"],
        "recovered": [],
        "reminder": ["c"],
    }
    assert list(explain(table, monitor(id=7))) == list(EVENT_KINDS)
    assert explain(table, monitor(id=7))["recovered"] == ["a"]


def test_file_loads_typed_destinations(tmp_path: Path) -> None:
    text = DESTINATIONS.replace(
        'channel = "C0123ABCD"',
        'channel = " C0123ABCD "\nthread = true\nmentions = ["U123", "S456", "@here"]\n'
        "mention_owner = true\ndigest_threshold = 10",
    ).replace(
        'secret = "env:NOTIFIER_WEBHOOK_SECRET"', 'secret = "env:SECRETS"\nformat = "alertmanager"'
    )
    text += '[[routes]]\nname = "finance"\nmatch = { tags = ["finance"] }\nto = ["oncall-hook"]\n'
    text += 'continue = true\n[default]\nto = ["data-alerts"]\n'
    table = load_routes(write(tmp_path, text), {**ENV, "SECRETS": f" {WHSEC} , {WHSEC_2} "})

    slack = table.destinations["data-alerts"]
    assert isinstance(slack, SlackDestination)
    assert (slack.channel, slack.token.get_secret_value()) == ("C0123ABCD", TOKEN)
    assert (slack.thread, slack.recovery, slack.mention_owner) == (True, True, True)
    assert (slack.mentions, slack.digest_threshold) == (["U123", "S456", "@here"], 10)
    hook = table.destinations["oncall-hook"]
    assert isinstance(hook, WebhookDestination)
    assert hook.url.get_secret_value() == ONCALL_URL
    assert [s.get_secret_value() for s in hook.secrets] == [WHSEC, WHSEC_2]
    assert (hook.format, hook.recovery) == ("alertmanager", True)
    team = table.destinations["team-hook"]
    assert isinstance(team, SlackWebhookDestination)
    assert (team.url.get_secret_value(), team.recovery) == (SLACK_HOOK, False)
    assert table.routes[0].continue_ and table.routes[0].label(0) == "finance"
    assert table.default is not None and table.default.to == ["data-alerts"]
    shown = repr(table) + str(table)
    assert not [secret for secret in SECRETS if secret in shown]
    assert sorted(table.secrets()) == sorted([TOKEN, ONCALL_URL, WHSEC, WHSEC_2, SLACK_HOOK])


@pytest.mark.parametrize(
    ("url", "allow_http", "ok"),
    [
        ("http://127.0.0.1:8080/hook", False, True),
        ("http://localhost/hook", False, True),
        ("http://oncall.example/TOPSECRET", False, False),
        ("http://oncall.example/TOPSECRET", True, True),
    ],
)
def test_plain_http_only_to_this_machine(
    tmp_path: Path, url: str, allow_http: bool, ok: bool
) -> None:
    path = write(tmp_path, DESTINATIONS + '[default]\nto = ["oncall-hook"]\n')
    environ = {**ENV, "ONCALL_WEBHOOK_URL": url}
    if ok:
        load_routes(path, environ, allow_http=allow_http)
    else:
        with pytest.raises(RoutesError, match=r"oncall-hook\.url: plain http://") as caught:
            load_routes(path, environ, allow_http=allow_http)
        assert "TOPSECRET" not in str(caught.value)


ROUTED = DESTINATIONS + '[default]\nto = ["data-alerts"]\n'


def _set(old: str, new: str) -> str:
    """ROUTED with the first `old` replaced."""
    assert old in ROUTED
    return ROUTED.replace(old, new, 1)


def _route(body: str) -> str:
    """ROUTED with one more route that goes nowhere."""
    return ROUTED + "[[routes]]\nto = []\n" + body + "\n"


def _env(**changes: str) -> dict[str, str]:
    return {**ENV, **changes}


HOOK_TEAM = "type = 'slack-webhook'\nurl = 'env:TEAM_SLACK_WEBHOOK_URL'\n"
NOT_WHSEC = "oncall-hook.secret: the secret must be a Standard Webhooks secret starting with whsec_"


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [
        # TOML syntax, with line and column (a secret written bare is not echoed).
        ("[destinations.a]\ntype = = 1\n", ENV, "(at line 2, column 8)"),
        (f"[destinations.a]\ntoken = {TOKEN}\n", ENV, "(at line 2, column 9)"),
        (
            ROUTED + "[destinations.data-alerts]\n",
            ENV,
            "Cannot declare ('destinations', 'data-alerts')",
        ),
        # Keys: required, unknown, wrong type or value.
        (
            _set('channel = "C0123ABCD"', ""),
            ENV,
            "destinations.data-alerts.channel: field required",
        ),
        (
            _set("channel =", "chanel ="),
            ENV,
            "data-alerts.chanel: unknown key (did you mean channel?)",
        ),
        (_route("match = { typs = ['diff'] }"), ENV, "routes[0].match.typs: unknown key (did you"),
        (ROUTED + "colour = 1\n", ENV, "default.colour: unknown key (use to)"),
        ("routs = 1\n" + ROUTED, ENV, "routes.toml: routs: unknown key (did you mean routes?)"),
        (_route("[[routes]]\nto = []\nmatch = { types = 'diff' }"), ENV, "routes[1].match.types: "),
        (_route("match = { tags = [] }"), ENV, "routes[0].match.tags: List should have at least 1"),
        (_route("continue = 'maybe'"), ENV, "routes[0].continue: Input should be a valid boolean"),
        (
            _route("match = { kinds = ['ok'] }"),
            ENV,
            "match.kinds[0]: Input should be 'alert', 'error'",
        ),
        (_route("match = { monitor_ids = [0] }"), ENV, "match.monitor_ids[0]: Input should be"),
        (_set("recovery = false", "digest_threshold = 0"), ENV, "team-hook.digest_threshold: "),
        (_set("channel =", 'mentions = ["bob"]\nchannel ='), ENV, "mentions: 'bob' is not a Slack"),
        # Types and formats.
        (
            _set('type = "slack"', 'type = "teams"'),
            ENV,
            "data-alerts.type: unknown type 'teams' (use",
        ),
        (_set('type = "slack"', ""), ENV, "destinations.data-alerts.type: field required"),
        (_set("secret =", "format = 'am'\nsecret ="), ENV, "oncall-hook.format: Input should be"),
        (ROUTED + "[destinations.x]\n", ENV, "destinations.x.type: field required"),
        ("destinations = { x = 'slack' }\n", ENV, "destinations.x: Input should be a valid dict"),
        # Regex.
        (_route("match = { name_regex = 'orders(' }"), ENV, "name_regex: not a valid regular expr"),
        # References between tables.
        (
            _route("[[routes]]\nto = ['oncall-hook', 'nope']"),
            ENV,
            "routes[1].to[1]: unknown destination 'nope' (known: data-alerts, oncall-hook, team-",
        ),
        (_set('to = ["data-alerts"]', 'to = ["Data"]'), ENV, "default.to[0]: unknown destination"),
        (
            ROUTED + "[destinations.Data-Alerts]\n" + HOOK_TEAM,
            ENV,
            "destinations.Data-Alerts: duplicate of destination data-alerts",
        ),
        (
            ROUTED + "[destinations.'on call']\n" + HOOK_TEAM,
            ENV,
            "destinations['on call']: a destination name uses only",
        ),
        (
            _route("name = 'r'\n[[routes]]\nname = 'r'\nto = []"),
            ENV,
            "routes[1].name: 'r' is already the name of routes[0]",
        ),
        ("", ENV, "routes.toml: no destinations"),
        (DESTINATIONS, ENV, "routes.toml: nothing is routed"),
        # Secrets: from the environment only, resolved, checked, never shown.
        (
            ROUTED,
            {k: v for k, v in ENV.items() if k != "ONCALL_WEBHOOK_URL"},
            "destinations.oncall-hook.url: environment variable ONCALL_WEBHOOK_URL is not set",
        ),
        (
            ROUTED,
            _env(ONCALL_WEBHOOK_URL=" "),
            "url: environment variable ONCALL_WEBHOOK_URL is empty",
        ),
        (_set("env:SLACK_BOT_TOKEN", TOKEN), ENV, 'data-alerts.token: write "env:NAME"'),
        (
            _set("env:SLACK_BOT_TOKEN", "env:" + TOKEN),
            ENV,
            'token: after "env:" give an environment',
        ),
        (_set('"env:SLACK_BOT_TOKEN"', "42"), ENV, 'data-alerts.token: write "env:NAME"'),
        (
            _set('"env:NOTIFIER_WEBHOOK_SECRET"', f'["env:NOTIFIER_WEBHOOK_SECRET", "{WHSEC_2}"]'),
            ENV,
            'oncall-hook.secret: write "env:NAME"',
        ),
        (
            ROUTED,
            _env(ONCALL_WEBHOOK_URL="ftp://h.example/TOPSECRET"),
            "url: must be an http:// or",
        ),
        (ROUTED, _env(ONCALL_WEBHOOK_URL="https://u:TOPSECRET@h.example/"), "url: must not carry"),
        (ROUTED, _env(TEAM_SLACK_WEBHOOK_URL="TOPSECRET"), "team-hook.url: must be an http:// or"),
        (ROUTED, _env(NOTIFIER_WEBHOOK_SECRET="TOPSECRET"), NOT_WHSEC),
        (ROUTED, _env(NOTIFIER_WEBHOOK_SECRET="whsec_TOPSECRET!!"), "secret is not valid base64"),
        (ROUTED, _env(NOTIFIER_WEBHOOK_SECRET="whsec_VE9QU0VDUkVU"), "the secret is too short"),
        (
            ROUTED,
            _env(NOTIFIER_WEBHOOK_SECRET=f"{WHSEC},whsec_VE9QU0VDUkVU"),
            "oncall-hook.secret: secret number 2 is too short",
        ),
    ],
)
def test_errors_are_one_line_naming_file_and_place(
    tmp_path: Path, text: str, environ: dict[str, str], expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RoutesError) as caught:
        load_routes(path, environ)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    assert expected in message, message
    assert not [secret for secret in SECRETS if secret in message], message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_file_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(RoutesError, match=r"missing\.toml: cannot read it \(No such file"):
        load_routes(tmp_path / "missing.toml", ENV)
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"# caf\xe9\n")
    with pytest.raises(RoutesError, match=r"latin1\.toml: not UTF-8 text$"):
        load_routes(path, ENV)


def test_documented_example_stays_valid() -> None:
    text = DOCS_EXAMPLE.read_text(encoding="utf-8")
    names = set(re.findall(r'"env:([A-Za-z_][A-Za-z0-9_]*)"', text))
    assert names >= {"SLACK_BOT_TOKEN", "NOTIFIER_WEBHOOK_SECRET"}
    fake = {
        name: WHSEC if name.endswith("SECRET") else ("https://hooks.example/" + name.lower())
        for name in names
    }
    fake["SLACK_BOT_TOKEN"] = TOKEN
    table = load_routes(DOCS_EXAMPLE, fake)
    finance = explain(table, monitor(id=1, name="ledger", tags=["finance"]))
    assert finance["alert"] == ["oncall-hook", "finance-channel"]
    assert finance["recovered"] == ["data-alerts"]
    orders = monitor(id=2, owner="orders-team@example.com", tags=[])
    assert explain(table, orders) == {kind: ["team-hook"] for kind in EVENT_KINDS} | {
        "recovered": []
    }
    assert explain(table, monitor(id=4711, tags=[]))["alert"] == []
    assert explain(table, monitor(id=3, tags=[], name="misc"))["error"] == ["data-alerts"]


HOOK_1 = "https://one.example/hook?token=TOPSECRET-1"
HOOK_2 = "http://127.0.0.1:9/TOPSECRET-2"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, []),
        ({"SLACK_BOT_TOKEN": TOKEN, "SLACK_CHANNEL": "C0123ABCD"}, ["slack"]),
        ({"SLACK_WEBHOOK_URL": SLACK_HOOK}, ["slack-webhook"]),
        (
            {"NOTIFIER_WEBHOOK_URLS": f"{HOOK_1},{HOOK_2}", "NOTIFIER_WEBHOOK_SECRET": WHSEC},
            [webhook_destination_name(HOOK_1), webhook_destination_name(HOOK_2)],
        ),
        (
            {
                "SLACK_BOT_TOKEN": TOKEN,
                "SLACK_CHANNEL": "C0123ABCD",
                "SLACK_WEBHOOK_URL": SLACK_HOOK,
                "NOTIFIER_WEBHOOK_URLS": HOOK_1,
            },
            ["slack", "slack-webhook", webhook_destination_name(HOOK_1)],
        ),
    ],
)
async def test_routes_from_settings_match_todays_sinks(
    env: dict[str, str], expected: list[str]
) -> None:
    settings = load_settings(None, **{"DATAFOLD_API_KEY": "dfk-TOPSECRET", **env})
    table = routes_from_settings(settings)
    assert list(table.destinations) == expected
    assert table.routes == []
    if expected:
        assert table.default is not None and table.default.to == expected
    else:
        assert table.default is None
    async with aiohttp.ClientSession() as session:
        assert list(build_sinks(table, settings, session)) == expected
    for kind in EVENT_KINDS:
        assert destinations_for(table, monitor(), kind) == expected
    shown = repr(table) + str(table)
    assert not [secret for secret in [*SECRETS, HOOK_1, HOOK_2] if secret in shown]


def test_routes_from_settings_carry_the_values() -> None:
    settings = load_settings(
        None,
        **{
            "DATAFOLD_API_KEY": "dfk-TOPSECRET",
            "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_CHANNEL": "C0123ABCD",
            "SLACK_WEBHOOK_URL": SLACK_HOOK,
            "NOTIFIER_WEBHOOK_URLS": HOOK_1,
            "NOTIFIER_WEBHOOK_SECRET": f"{WHSEC} {WHSEC_2}",
        },
    )
    table = routes_from_settings(settings)
    slack, team, hook = table.destinations.values()
    assert isinstance(slack, SlackDestination)
    assert (slack.channel, slack.token.get_secret_value(), slack.thread) == (
        "C0123ABCD",
        TOKEN,
        False,
    )
    assert isinstance(team, SlackWebhookDestination)
    assert team.url.get_secret_value() == SLACK_HOOK
    assert isinstance(hook, WebhookDestination)
    assert hook.url.get_secret_value() == HOOK_1
    assert [s.get_secret_value() for s in hook.secrets] == [WHSEC, WHSEC_2]
    assert hook.format == "standard"
