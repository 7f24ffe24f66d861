"""Routing: rules as documented, today's settings as one default route, one-line errors."""

from __future__ import annotations

import base64
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from notifier.domain.models import EVENT_KINDS, MonitorInfo
from notifier.route.destinations import (
    SlackDestination,
    SlackWebhookDestination,
    WebhookDestination,
    webhook_destination_name,
)
from notifier.route.routes_file import RoutesError
from notifier.route.rules import (
    Match,
    QuietHours,
    RouteDecision,
    Routes,
    destinations_for,
    explain,
    quiet_hours_summary,
    route_event,
)
from notifier.run.config import load_settings
from notifier.run.routes import load_routes, routes_from_settings
from notifier.run.wiring import build_sinks

#: No DATAFOLD_/NOTIFIER_/SLACK_ variable and no stray .env: only what each test sets.
pytestmark = pytest.mark.usefixtures("bare_env")

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


def _quiet(**changes: str | None) -> str:
    """ROUTED plus a route quiet 22:00-07:00 UTC, with keys changed (None drops one)."""
    keys: dict[str, str | None] = {"start": "'22:00'", "end": "'07:00'", "timezone": "'UTC'"}
    keys |= changes
    table = ", ".join(f"{key} = {value}" for key, value in keys.items() if value is not None)
    return _route(f"quiet_hours = {{ {table} }}")


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
        (
            ROUTED + "colour = 1\n",
            ENV,
            "default.colour: unknown key (use notify, min_consecutive_failures, to, quiet_hours)",
        ),
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
        (_set("recovery = false", "digest_threshold = -1"), ENV, "team-hook.digest_threshold: "),
        (_set("channel =", 'mentions = ["bob"]\nchannel ='), ENV, "mentions: 'bob' is not a Slack"),
        # Types and formats.
        (
            _set('type = "slack"', 'type = "carrier-pigeon"'),
            ENV,
            "data-alerts.type: unknown type 'carrier-pigeon' (use",
        ),
        (_set('type = "slack"', ""), ENV, "destinations.data-alerts.type: field required"),
        (_set("secret =", "format = 'am'\nsecret ="), ENV, "oncall-hook.format: Input should be"),
        (ROUTED + "[destinations.x]\n", ENV, "destinations.x.type: field required"),
        ("destinations = { x = 'slack' }\n", ENV, "destinations.x: Input should be a valid dict"),
        # Regex.
        (_route("match = { name_regex = 'orders(' }"), ENV, "name_regex: not a valid regular expr"),
        # Quiet hours.
        (_quiet(start="'25:00'"), ENV, "routes[0].quiet_hours.start: '25:00' is not a time of day"),
        (_quiet(end="'7:00'"), ENV, "routes[0].quiet_hours.end: '7:00' is not a time of day"),
        (_quiet(end="7"), ENV, 'quiet_hours.end: not a time of day: write "HH:MM"'),
        (_quiet(end="07:00:30"), ENV, "quiet_hours.end: not a time of day"),
        (
            _quiet(end="'22:00'"),
            ENV,
            "routes[0].quiet_hours: start and end are both 22:00: a window needs a length",
        ),
        (
            _quiet(timezone="'Europe/Berlinn'"),
            ENV,
            "routes[0].quiet_hours.timezone: unknown time zone 'Europe/Berlinn' (an IANA name",
        ),
        (_quiet(timezone="'/etc/passwd'"), ENV, "timezone: unknown time zone '/etc/passwd'"),
        (
            _quiet(timezone=None),
            ENV,
            "routes[0].quiet_hours.timezone: field required: an IANA time zone such as "
            "'Europe/Berlin' (there is no implicit UTC; write 'UTC' for that)",
        ),
        (
            _quiet(days="['mon', 'mo']"),
            ENV,
            "routes[0].quiet_hours.days[1]: 'mo' is not a day (use mon, tue, wed, thu, fri, sat, "
            "sun)",
        ),
        (_quiet(days="[]"), ENV, "routes[0].quiet_hours.days: List should have at least 1 item"),
        (
            _quiet(timezon="'UTC'"),
            ENV,
            "routes[0].quiet_hours.timezon: unknown key (did you mean timezone?)",
        ),
        (_quiet(strat="'UTC'"), ENV, "quiet_hours.strat: unknown key (did you mean start?)"),
        (
            _route("quiet_hours = '22-7'"),
            ENV,
            "routes[0].quiet_hours: Input should be a valid dict",
        ),
        (
            ROUTED + "quiet_hours = { start = '22:00', end = '07:00', timezone = 'UTC', dys = [] }",
            ENV,
            "default.quiet_hours.dys: unknown key (did you mean days?)",
        ),
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


def test_a_relative_path_that_cannot_be_read_names_the_directory_it_was_taken_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under systemd the working directory is the state directory, not the env file's."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RoutesError) as caught:
        load_routes(Path("routes.toml"), ENV)
    assert str(caught.value) == (
        f"routes.toml (in {tmp_path}): cannot read it (No such file or directory)"
    )


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
    assert finance["recovered"] == ["oncall-hook", "finance-channel"]  # the page resolves
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


def at(iso: str) -> datetime:
    """An aware instant from ISO 8601 text with an offset."""
    instant = datetime.fromisoformat(iso)
    assert instant.utcoffset() is not None
    return instant


WORKDAY_NIGHTS = {
    "start": "22:00",
    "end": "07:00",
    "timezone": "Europe/Berlin",
    "days": ["mon", "tue", "wed", "thu", "fri"],
}
NIGHTS_BERLIN = {"start": "22:00", "end": "07:00", "timezone": "Europe/Berlin"}
TWO_AM_BERLIN = {"start": "02:00", "end": "03:00", "timezone": "Europe/Berlin"}
NOON_UTC = {"start": "12:00", "end": "13:00", "timezone": "UTC"}
NOON_BERLIN = {**NOON_UTC, "timezone": "Europe/Berlin"}
SUNDAY_LATE = {"start": "23:00", "end": "00:00", "timezone": "UTC", "days": ["sun"]}
WEEKEND_DAYS = {"start": "09:00", "end": "17:00", "timezone": "UTC", "days": ["SAT", " Sun"]}
NIGHTS_NEW_YORK = {**NIGHTS_BERLIN, "timezone": "America/New_York"}


@pytest.mark.parametrize(
    ("quiet_hours", "now", "expected"),
    [
        # A simple window: start included, end excluded; `now` may carry any offset.
        (NOON_UTC, "2025-01-06T12:00Z", True),
        (NOON_UTC, "2025-01-06T12:59:59Z", True),
        (NOON_UTC, "2025-01-06T13:00Z", False),
        (NOON_UTC, "2025-01-06T11:59Z", False),
        (NOON_UTC, "2025-01-06T17:30+05:00", True),
        # Local time: 12:30 UTC is 13:30 in Berlin in winter.
        (NOON_BERLIN, "2025-01-06T11:30Z", True),
        (NOON_BERLIN, "2025-01-06T12:30Z", False),
        # Across midnight; `days` names the day the window starts on (2025-01-06 is a Monday).
        (WORKDAY_NIGHTS, "2025-01-06T21:59+01:00", False),
        (WORKDAY_NIGHTS, "2025-01-06T22:00+01:00", True),
        (WORKDAY_NIGHTS, "2025-01-06T23:59+01:00", True),
        (WORKDAY_NIGHTS, "2025-01-07T00:00+01:00", True),
        (WORKDAY_NIGHTS, "2025-01-07T06:59+01:00", True),
        (WORKDAY_NIGHTS, "2025-01-07T07:00+01:00", False),
        (WORKDAY_NIGHTS, "2025-01-06T06:00+01:00", False),  # Monday morning: Sunday's night
        (WORKDAY_NIGHTS, "2025-01-11T06:00+01:00", True),  # Saturday morning: Friday's night
        (WORKDAY_NIGHTS, "2025-01-11T22:30+01:00", False),  # Saturday night
        (WORKDAY_NIGHTS, "2025-01-05T23:00+01:00", False),  # Sunday night
        (SUNDAY_LATE, "2025-01-05T23:30Z", True),
        (SUNDAY_LATE, "2025-01-06T00:00Z", False),
        # A days filter on a same-day window, case-insensitive.
        (WEEKEND_DAYS, "2025-01-11T10:00Z", True),
        (WEEKEND_DAYS, "2025-01-12T16:59Z", True),
        (WEEKEND_DAYS, "2025-01-13T10:00Z", False),
        # DST in Berlin: the window follows the wall clock. 05:30 UTC is 06:30 on the Saturday
        # before spring-forward (2025-03-30) and 07:30 on the day itself.
        (NIGHTS_BERLIN, "2025-03-29T05:30Z", True),
        (NIGHTS_BERLIN, "2025-03-30T04:59Z", True),
        (NIGHTS_BERLIN, "2025-03-30T05:30Z", False),
        (NIGHTS_BERLIN, "2025-03-29T21:30Z", True),  # 22:30 CET
        (NIGHTS_BERLIN, "2025-03-30T20:00Z", True),  # 22:00 CEST
        (NIGHTS_BERLIN, "2025-03-30T19:59Z", False),  # 21:59 CEST
        # 02:00-03:00 does not exist on spring-forward day, and happens twice on fall-back day.
        (TWO_AM_BERLIN, "2025-03-30T00:59Z", False),  # 01:59 CET
        (TWO_AM_BERLIN, "2025-03-30T01:00Z", False),  # 03:00 CEST
        (TWO_AM_BERLIN, "2025-10-25T23:59Z", False),  # 01:59 CEST
        (TWO_AM_BERLIN, "2025-10-26T00:30Z", True),  # 02:30 CEST
        (TWO_AM_BERLIN, "2025-10-26T01:30Z", True),  # 02:30 CET, the second time
        (TWO_AM_BERLIN, "2025-10-26T02:00Z", False),  # 03:00 CET
        (NIGHTS_BERLIN, "2025-10-25T05:30Z", False),  # 07:30 CEST
        (NIGHTS_BERLIN, "2025-10-26T05:30Z", True),  # 06:30 CET
        # America/New_York springs forward on 2025-03-09: 11:30 UTC is 06:30 EST, then 07:30 EDT.
        (NIGHTS_NEW_YORK, "2025-03-08T11:30Z", True),
        (NIGHTS_NEW_YORK, "2025-03-09T11:30Z", False),
    ],
)
def test_quiet_hours_window(quiet_hours: dict[str, Any], now: str, expected: bool) -> None:
    assert QuietHours.model_validate(quiet_hours).covers(at(now)) is expected


NIGHT = "2025-01-06T23:00+01:00"  # inside NIGHTS_BERLIN
DAY = "2025-01-06T12:00+01:00"
QUIET_A = {"to": ["a"], "quiet_hours": NIGHTS_BERLIN}
QUIET_C = {"to": ["c"], "quiet_hours": NIGHTS_BERLIN}
QUIET_A_ON = {**QUIET_A, "continue": True}
A_B_ON = {"to": ["a", "b"], "continue": True}
QUIET_B_C = {"to": ["b", "c"], "quiet_hours": NIGHTS_BERLIN}
QUIET_DEFAULT = {"to": ["a", "b"], "quiet_hours": NIGHTS_BERLIN}


@pytest.mark.parametrize(
    ("table", "kind", "now", "expected_to", "expected_quiet"),
    [
        # A quiet route still matched: the default does not step in, later routes are not tried.
        ({"routes": [QUIET_A], "default": {"to": ["b"]}}, "alert", NIGHT, [], ["routes[0]"]),
        ({"routes": [QUIET_A], "default": {"to": ["b"]}}, "alert", DAY, ["a"], []),
        (
            {"routes": [{**QUIET_A, "name": "night ops"}, {"to": ["b"]}]},
            "error",
            NIGHT,
            [],
            ["night ops"],
        ),
        # A route that does not match is not quiet either.
        (
            {"routes": [{**QUIET_A, "match": OTHER}], "default": {"to": ["b"]}},
            "alert",
            NIGHT,
            ["b"],
            [],
        ),
        # With `continue`, the routes after a quiet one still send.
        ({"routes": [QUIET_A_ON, {"to": ["b"]}]}, "alert", NIGHT, ["b"], ["routes[0]"]),
        ({"routes": [A_B_ON, QUIET_B_C]}, "alert", NIGHT, ["a", "b"], ["routes[1]"]),
        ({"routes": [A_B_ON, QUIET_B_C]}, "alert", DAY, ["a", "b", "c"], []),
        # A destination that another matched, non-quiet route reaches gets the event: none held.
        ({"routes": [QUIET_A_ON, {"to": ["b", "a"]}]}, "alert", NIGHT, ["b", "a"], []),
        (
            {"routes": [QUIET_A_ON, {"to": ["a", "b"], "quiet_hours": WORKDAY_NIGHTS}]},
            "alert",
            "2025-01-11T23:00+01:00",  # Saturday: only routes[0] is quiet
            ["a", "b"],
            [],
        ),
        # The default's own quiet hours, only when it applies.
        ({"default": QUIET_DEFAULT}, "alert", NIGHT, [], ["default"]),
        ({"default": QUIET_DEFAULT}, "alert", DAY, ["a", "b"], []),
        ({"routes": [{"to": ["c"]}], "default": QUIET_DEFAULT}, "alert", NIGHT, ["c"], []),
        # `recovered` skips recovery = false destinations, quiet or not; a quiet route that would
        # only have reached such a destination held nothing back.
        ({"routes": [{"to": ["a", "c"]}]}, "recovered", NIGHT, ["a"], []),
        ({"routes": [QUIET_C]}, "recovered", NIGHT, [], []),
        ({"routes": [QUIET_C]}, "alert", NIGHT, [], ["routes[0]"]),
        (
            {"routes": [{**QUIET_A_ON, "to": ["a", "c"]}, {"to": ["c"]}]},
            "recovered",
            NIGHT,
            [],
            ["routes[0]"],
        ),
        # `to = []` drops in or out of quiet hours; nothing is withheld.
        ({"routes": [{**QUIET_A, "to": []}]}, "alert", NIGHT, [], []),
    ],
)
def test_route_event_applies_quiet_hours(
    table: dict[str, Any], kind: str, now: str, expected_to: list[str], expected_quiet: list[str]
) -> None:
    decision = route_event(routes(table), monitor(), kind, at(now))
    assert decision == RouteDecision(to=expected_to, quiet=expected_quiet)


def test_destinations_for_and_explain_ignore_quiet_hours() -> None:
    table = routes({"routes": [QUIET_A_ON], "default": QUIET_DEFAULT})
    assert destinations_for(table, monitor(), "alert") == ["a"]
    assert explain(table, monitor())["error"] == ["a"]
    assert route_event(table, monitor(), "alert", at(NIGHT)) == RouteDecision([], ["routes[0]"])


def test_route_event_needs_an_aware_now() -> None:
    with pytest.raises(ValueError, match="now must be an aware datetime"):
        route_event(routes({"default": {"to": ["a"]}}), monitor(), "alert", datetime(2025, 1, 6))


def test_quiet_hours_summary() -> None:
    utc = {"start": "09:00", "end": "17:30", "timezone": "UTC"}
    table = routes(
        {
            "routes": [
                {"name": "night ops", "to": ["a"], "quiet_hours": WORKDAY_NIGHTS},
                {"to": ["b"]},
                {"to": ["b"], "quiet_hours": {**utc, "days": ["sun", "Wed", "sat", "wed"]}},
                {"to": ["b"], "quiet_hours": {**utc, "days": ["fri", "mon", "tue", "wed"]}},
                {"to": ["b"], "quiet_hours": {**utc, "days": ["mon", "tue"]}},
            ],
            "default": {"to": ["c"], "quiet_hours": {**utc, "start": "23:00", "end": "06:00"}},
        }
    )
    assert quiet_hours_summary(table) == [
        "route 'night ops': quiet 22:00-07:00 Europe/Berlin mon-fri",
        "routes[2]: quiet 09:00-17:30 UTC wed, sat, sun",
        "routes[3]: quiet 09:00-17:30 UTC mon-wed, fri",
        "routes[4]: quiet 09:00-17:30 UTC mon, tue",
        "default route: quiet 23:00-06:00 UTC every day",
    ]
    assert quiet_hours_summary(routes({"routes": [{"to": ["a"]}]})) == []


def test_quiet_hours_take_toml_local_times(tmp_path: Path) -> None:
    text = ROUTED + "quiet_hours = { start = 22:00:00, end = 07:00:00, timezone = 'UTC' }\n"
    table = load_routes(write(tmp_path, text), ENV)
    assert quiet_hours_summary(table) == ["default route: quiet 22:00-07:00 UTC every day"]


def test_documented_quiet_hours_example_is_valid(tmp_path: Path) -> None:
    text = DOCS_EXAMPLE.read_text(encoding="utf-8")
    assert text.count("# quiet_hours = {") == 1
    path = write(tmp_path, text.replace("# quiet_hours = {", "quiet_hours = {"))
    names = set(re.findall(r'"env:([A-Za-z_][A-Za-z0-9_]*)"', text))
    fake = {name: WHSEC if name.endswith("SECRET") else "https://hooks.example/x" for name in names}
    table = load_routes(path, fake)
    assert quiet_hours_summary(table) == [
        "route 'orders diffs': quiet 22:00-07:00 Europe/Berlin every day"
    ]
    orders = monitor(id=2, owner="orders-team@example.com", tags=[])
    assert route_event(table, orders, "alert", at(NIGHT)) == RouteDecision([], ["orders diffs"])
    assert route_event(table, orders, "alert", at(DAY)) == RouteDecision(["team-hook"], [])
