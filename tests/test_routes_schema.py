"""The routes file's JSON Schema (docs/routes.schema.json) and `check --routes FILE`.

The schema is generated from the models and committed; it must accept every file the models
accept in the ways the docs spell them, and refuse the mistakes users make most, as the models
do. `check --routes` validates one file with no Datafold key or other setting.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import tomllib
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from notifier.cli.main import main
from notifier.route.routes_file import RoutesError, parse_routes
from notifier.route.schema import routes_json_schema, routes_schema_text
from tests.fakes.cli import cli

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "docs" / "routes.schema.json"
EXAMPLE = ROOT / "docs" / "routing.example.toml"
REGENERATE = ".venv/bin/python tools/routes_schema.py"

WHSEC = "whsec_" + base64.b64encode(b"TOPSECRET-signing-key-bytes").decode()
TOKEN = "xoxb-TOPSECRET-token"
HOOK = "https://hooks.example/services/TOPSECRET-hook"
#: Every variable the cases name, set to a value its field accepts.
ENV = {
    "SLACK_TOKEN": TOKEN,
    "HOOK_URL": HOOK,
    "WHSEC": WHSEC,
    "AM_URL": "https://alertmanager.example:9093",
    "SMTP_USER": "mailer",
    "SMTP_PASSWORD": "TOPSECRET-smtp",
    "PD_KEY": "TOPSECRET-routing-key",
    "APPRISE_URL": "tgram://TOPSECRET-bot/12345",
}
SLACK = '[destinations.team]\ntype = "slack"\nchannel = "C0123ABCD"\ntoken = "env:SLACK_TOKEN"\n'
DEFAULT = '[default]\nto = ["team"]\n'


def as_json(value: Any) -> Any:
    """A TOML document as JSON sees it (as Taplo does): dates and times become ISO strings."""
    if isinstance(value, dict):
        return {key: as_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_json(item) for item in value]
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return value


def schema_errors(text: str) -> list[str]:
    validator = Draft202012Validator(routes_json_schema())
    return [error.message for error in validator.iter_errors(as_json(tomllib.loads(text)))]


def model_error(text: str, *, allow_http: bool = False) -> str | None:
    try:
        parse_routes(text.encode(), "routes.toml", ENV, allow_http=allow_http)
    except RoutesError as exc:
        return str(exc)
    return None


def test_the_committed_schema_is_what_the_models_generate() -> None:
    committed = SCHEMA_FILE.read_text(encoding="utf-8") if SCHEMA_FILE.exists() else ""
    assert committed == routes_schema_text(), (
        f"{SCHEMA_FILE.relative_to(ROOT)} is stale: the routes-file models changed. "
        f"Regenerate it with `{REGENERATE}` and commit it."
    )


def test_the_schema_is_a_valid_json_schema() -> None:
    Draft202012Validator.check_schema(json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))


def test_the_example_names_the_schema_for_editors() -> None:
    first = EXAMPLE.read_text(encoding="utf-8").splitlines()[0]
    assert first == "#:schema ./routes.schema.json"  # Taplo / Even Better TOML


def test_the_example_validates_against_the_schema() -> None:
    assert schema_errors(EXAMPLE.read_text(encoding="utf-8")) == []


ACCEPTED = {
    "env name with spaces": SLACK.replace('"env:SLACK_TOKEN"', '"env: SLACK_TOKEN "') + DEFAULT,
    "alertmanager url written out": (
        '[destinations.am]\ntype = "alertmanager"\nurl = "HTTPS://am.example:9093/"\n'
        '[destinations.am.labels]\nteam = "data"\n_x = "y"\n[default]\nto = ["am"]\n'
    ),
    "alertmanager url from env": (
        '[destinations.am]\ntype = "alertmanager"\nurl = "env:AM_URL"\n[default]\nto = ["am"]\n'
    ),
    "webhook secrets as a list": (
        '[destinations.hook]\ntype = "webhook"\nurl = "env:HOOK_URL"\n'
        'secret = ["env:WHSEC", "env:WHSEC"]\n[default]\nto = ["hook"]\n'
    ),
    "quiet hours as TOML times, days in any case": SLACK
    + '[[routes]]\nto = ["team"]\n[routes.quiet_hours]\nstart = 22:00:00\nend = "07:30"\n'
    'timezone = "Europe/Berlin"\ndays = ["Mon", " fri"]\n',
    "routes only, empty to": SLACK + '[[routes]]\nmatch = { name = "x*" }\nto = []\n',
    "email with credentials": (
        '[destinations.mail]\ntype = "email"\nhost = "smtp.example.com"\n'
        'username = "env:SMTP_USER"\npassword = "env:SMTP_PASSWORD"\n'
        'from = "n@example.com"\nto = ["a@example.com"]\n[default]\nto = ["mail"]\n'
    ),
    "every kind once": SLACK
    + '[destinations.pd]\ntype = "pagerduty"\nrouting_key = "env:PD_KEY"\nregion = "eu"\n'
    'url = "https://pd.example/enqueue"\nseverity = { alert = "warning" }\n'
    '[destinations.teams]\ntype = "teams"\nurl = "env:HOOK_URL"\n'
    '[destinations.tg]\ntype = "apprise"\nurl = "env:APPRISE_URL"\n'
    '[destinations.sw]\ntype = "slack-webhook"\nurl = "env:HOOK_URL"\nmentions = ["@here"]\n'
    '[[routes]]\nname = "all"\nmatch = { monitor_ids = [1], kinds = ["alert", "reminder"] }\n'
    'to = ["team", "pd", "teams", "tg", "sw"]\ncontinue = true\n' + DEFAULT,
}


@pytest.mark.parametrize("text", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_files_the_models_accept_the_schema_accepts(text: str) -> None:
    assert model_error(text) is None
    assert schema_errors(text) == []


def _dest(body: str) -> str:
    return f"[destinations.d]\n{body}\n" + '[default]\nto = ["d"]\n'


def _am(labels: str) -> str:
    return _dest(f'type = "alertmanager"\nurl = "env:AM_URL"\nlabels = {{ {labels} }}')


def _quiet(window: str) -> str:
    return SLACK + f'[[routes]]\nto = ["team"]\nquiet_hours = {{ {window} }}\n'


REFUSED = {
    "unknown top-level key": "routez = []\n" + SLACK + DEFAULT,
    "mistyped destination key": SLACK.replace("channel", "chanel") + DEFAULT,
    "unknown destination type": SLACK.replace('"slack"', '"slak"') + DEFAULT,
    "destination without type": SLACK.replace('type = "slack"\n', "") + DEFAULT,
    "secret written out": SLACK.replace('"env:SLACK_TOKEN"', f'"{TOKEN}"') + DEFAULT,
    "webhook url written out": _dest(f'type = "slack-webhook"\nurl = "{HOOK}"'),
    "webhook secret written out": _dest(
        f'type = "webhook"\nurl = "env:HOOK_URL"\nsecret = "{WHSEC}"'
    ),
    "env: without a variable name": SLACK.replace("env:SLACK_TOKEN", "env:1TOKEN") + DEFAULT,
    "file: without a path": SLACK.replace("env:SLACK_TOKEN", "file: ") + DEFAULT,
    "label name with a dash": _am('"team-name" = "data"'),
    "label the notifier sets": _am('severity = "page"'),
    "label reserved by Prometheus": _am('__meta = "x"'),
    "label in the tag_ namespace": _am('tag_prod = "x"'),
    "empty label value": _am('team = ""'),
    "alertmanager url without scheme": _dest('type = "alertmanager"\nurl = "am.example:9093"'),
    "hold under a minute": _dest('type = "alertmanager"\nurl = "env:AM_URL"\nhold = 30'),
    "time of day out of range": _quiet('start = "25:00", end = "07:00", timezone = "UTC"'),
    "day misspelt": _quiet('start = "22:00", end = "07:00", timezone = "UTC", days = ["monday"]'),
    "quiet hours without time zone": _quiet('start = "22:00", end = "07:00"'),
    "destination name with a space": SLACK.replace("team]", '"team a"]') + DEFAULT,
    "no destinations": DEFAULT.replace('["team"]', "[]"),
    "nothing routed": SLACK,
    "number for a text": SLACK.replace('"C0123ABCD"', "123") + DEFAULT,
    "text for a list": SLACK + 'mentions = "@here"\n' + DEFAULT,
    "username without password": _dest(
        'type = "email"\nhost = "smtp.example.com"\nusername = "env:SMTP_USER"\n'
        'from = "n@example.com"\nto = ["a@example.com"]'
    ),
    "no recipient": _dest('type = "email"\nhost = "h.example"\nfrom = "n@example.com"\nto = []'),
    "mention by channel name": SLACK + 'mentions = ["#general"]\n' + DEFAULT,
    "monitor id 0": SLACK + '[[routes]]\nmatch = { monitor_ids = [0] }\nto = ["team"]\n',
    "unknown event kind": SLACK + '[[routes]]\nmatch = { kinds = ["alerts"] }\nto = ["team"]\n',
    "unknown match key": SLACK + '[[routes]]\nmatch = { tag = ["prod"] }\nto = ["team"]\n',
    "route without to": SLACK + '[[routes]]\nname = "x"\n',
    "unknown security": _dest(
        'type = "email"\nhost = "h.example"\nsecurity = "ssl"\nfrom = "n@example.com"\n'
        'to = ["a@example.com"]'
    ),
    "unknown pagerduty region": _dest(
        'type = "pagerduty"\nrouting_key = "env:PD_KEY"\nregion = "ap"'
    ),
    "pagerduty url not http": _dest(
        'type = "pagerduty"\nrouting_key = "env:PD_KEY"\nurl = "ftp://pd.example/"'
    ),
    "teams digest threshold 0": _dest('type = "teams"\nurl = "env:HOOK_URL"\ndigest_threshold = 0'),
}


@pytest.mark.parametrize("text", REFUSED.values(), ids=REFUSED.keys())
def test_mistakes_are_refused_by_the_schema_and_the_models(text: str) -> None:
    assert model_error(text) is not None
    assert schema_errors(text) != []


#: Rules JSON Schema cannot state: the schema accepts these, only the models refuse them (the
#: daemon, `check` and `check --routes` do).
ONLY_THE_MODELS_REFUSE = {
    "route to an undefined destination": SLACK + '[default]\nto = ["tema"]\n',
    "names differing only in case": SLACK + SLACK.replace("team]", "Team]") + DEFAULT,
    "two routes with one name": SLACK + '[[routes]]\nname = "a"\nto = []\n' * 2,
    "unknown time zone": _quiet('start = "22:00", end = "07:00", timezone = "Mars/Olympus"'),
    "regex RE2 cannot compile": SLACK + '[[routes]]\nmatch = { name_regex = "(" }\nto = []\n',
    "plain http to another machine": _dest('type = "alertmanager"\nurl = "http://am.example"'),
    "a window without length": _quiet('start = "07:00", end = "07:00", timezone = "UTC"'),
}


@pytest.mark.parametrize("text", ONLY_THE_MODELS_REFUSE.values(), ids=ONLY_THE_MODELS_REFUSE.keys())
def test_what_only_the_models_refuse(text: str) -> None:
    assert schema_errors(text) == []
    assert model_error(text) is not None


#: The schema asks for the file's documented spelling where the models also take another: their
#: Python names (`validate_by_name`, for code building them) and, in pydantic's lax mode, a
#: boolean or number written as a string. An editor flags these; the daemon accepts them.
ONLY_THE_SCHEMA_REFUSES = {
    "boolean as a string": SLACK + 'recovery = "yes"\n' + DEFAULT,
    "number as a string": _dest(
        'type = "email"\nhost = "h.example"\nport = "587"\nfrom = "n@example.com"\nto = ["a@b.c"]'
    ),
    "continue_": SLACK + '[[routes]]\nto = ["team"]\ncontinue_ = true\n',
    "secrets": _dest('type = "webhook"\nurl = "env:HOOK_URL"\nsecrets = "env:WHSEC"'),
    "sender": _dest('type = "email"\nhost = "h.example"\nsender = "n@example.com"\nto = ["a@b.c"]'),
}


@pytest.mark.parametrize(
    "text", ONLY_THE_SCHEMA_REFUSES.values(), ids=ONLY_THE_SCHEMA_REFUSES.keys()
)
def test_the_schema_asks_for_the_documented_spelling(text: str) -> None:
    assert model_error(text) is None
    assert schema_errors(text) != []


def test_plain_http_is_refused_only_without_allow_http() -> None:
    text = ONLY_THE_MODELS_REFUSE["plain http to another machine"]
    assert model_error(text, allow_http=True) is None


# ---- `datafold-notifier check --routes FILE`, in an empty environment ----


async def test_check_routes_needs_no_setting_and_names_unset_variables(tmp_path: Path) -> None:
    result, plain = await asyncio.gather(
        cli("check", "--routes", str(EXAMPLE), env={}, cwd=tmp_path),
        cli("check", env={}, cwd=tmp_path),
    )
    assert result.code == 0, result.stderr
    assert result.stderr == ""
    [line] = result.stdout.splitlines()
    example = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    counts = f"{len(example['destinations'])} destinations, {len(example['routes'])} routes"
    assert line.startswith(f"{EXAMPLE}: valid: {counts} and a default route; "), line
    text = EXAMPLE.read_text(encoding="utf-8")
    named = set(re.findall(r'(?m)^[^#\n]*"env:([A-Za-z_][A-Za-z0-9_]*)"', text))
    assert line.endswith("not checked: " + ", ".join(sorted(named))), line
    # Without --routes, `check` needs the settings, DATAFOLD_API_KEY first.
    assert plain.code == 2 and "DATAFOLD_API_KEY" in plain.stderr


async def test_check_routes_checks_the_values_that_are_set(tmp_path: Path) -> None:
    env = {"TEAM_SLACK_WEBHOOK_URL": "TOPSECRET-not-a-url", "SLACK_BOT_TOKEN": TOKEN}
    result = await cli("check", "--routes", str(EXAMPLE), env=env, cwd=tmp_path)
    assert result.code == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(
        f"datafold-notifier: error: routes: {EXAMPLE}: destinations.team-hook.url:"
    )
    assert "TOPSECRET" not in line


async def test_check_routes_reads_the_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "ci.env"
    env_file.write_text("NOTIFIER_WEBHOOK_SECRET=TOPSECRET-no-whsec\n", encoding="utf-8")
    args = ("check", "--routes", str(EXAMPLE))
    result = await cli("--env-file", str(env_file), *args, env={}, cwd=tmp_path)
    assert result.code == 1
    assert "destinations.oncall-hook.secret:" in result.stderr
    assert "TOPSECRET" not in result.stderr + result.stdout


BAD_FILES = {
    "secret written out": (REFUSED["secret written out"], "destinations.team.token:"),
    "bad label": (REFUSED["label the notifier sets"], "destinations.d.labels:"),
    "unknown type": (REFUSED["unknown destination type"], "destinations.team.type:"),
    "not TOML": (SLACK + "[default\n", "line 5"),
}


@pytest.fixture
def empty_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """In-process runs of the command: no environment variable at all, no stray .env."""
    for name in list(os.environ):
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def run_check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`datafold-notifier check --routes path` in this process (the subprocess tests above
    cover the installed command; these cover more files faster)."""
    code = main(["check", "--routes", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("text", "key"), BAD_FILES.values(), ids=BAD_FILES.keys())
@pytest.mark.usefixtures("empty_env")
def test_check_routes_refuses_a_bad_file_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str
) -> None:
    path = tmp_path / "routing.toml"
    path.write_text(text, encoding="utf-8")
    code, out, err = run_check(path, capsys)
    assert code == 1 and out == ""
    [line] = err.splitlines()
    assert line.startswith(f"datafold-notifier: error: routes: {path}: "), line
    assert key in line and "TOPSECRET" not in line, line


@pytest.mark.usefixtures("empty_env")
def test_check_routes_follows_notifier_allow_http(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "routing.toml"
    path.write_text(ONLY_THE_MODELS_REFUSE["plain http to another machine"], encoding="utf-8")
    code, _, err = run_check(path, capsys)
    assert code == 1 and "NOTIFIER_ALLOW_HTTP" in err
    monkeypatch.setenv("NOTIFIER_ALLOW_HTTP", "true")
    assert run_check(path, capsys) == (
        0,
        f"{path}: valid: 1 destination, 0 routes and a default route\n",
        "",
    )
    monkeypatch.setenv("NOTIFIER_ALLOW_HTTP", "maybe")
    code, _, err = run_check(path, capsys)
    assert code == 2 and "NOTIFIER_ALLOW_HTTP: not a boolean" in err


async def test_check_routes_on_a_missing_file_is_an_unusable_argument(tmp_path: Path) -> None:
    result = await cli("check", "--routes", str(tmp_path / "nope.toml"), env={}, cwd=tmp_path)
    assert result.code == 2
    assert result.stderr == (
        f"datafold-notifier: error: routes: {tmp_path / 'nope.toml'}: cannot read it "
        "(No such file or directory)\n"
    )


@pytest.mark.usefixtures("empty_env")
def test_check_routes_an_empty_variable_is_an_error_not_an_unset_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "routing.toml"
    path.write_text(SLACK + DEFAULT, encoding="utf-8")
    assert run_check(path, capsys) == (
        0,
        f"{path}: valid: 1 destination, 0 routes and a default route; not set here, so their "
        "values were not checked: SLACK_TOKEN\n",
        "",
    )
    monkeypatch.setenv("SLACK_TOKEN", "  ")
    code, out, err = run_check(path, capsys)
    assert (code, out) == (1, "")
    assert err.endswith(": destinations.team.token: environment variable SLACK_TOKEN is empty\n")
