"""Secrets from files (issue 15, point 4): every secret setting NAME also as NAME_FILE (the
Docker and Kubernetes secrets convention), and `file:PATH` beside `env:NAME` in the routes file.

One trailing newline is stripped, nothing else; an unusable file is one line naming the setting
(or the routes file's key) and the path, never the content.
"""

from __future__ import annotations

import base64
import json
import os
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from standardwebhooks import Webhook

from notifier.cli.main import main
from notifier.route.routes_file import RoutesError, parse_routes
from notifier.route.schema import routes_json_schema
from notifier.run.config import ConfigError, load_settings
from notifier.run.routes import load_routes
from notifier.run.secret_files import (
    MAX_SECRET_FILE_BYTES,
    SecretFileError,
    read_secret_file,
    secret_fields,
)
from notifier.run.settings import Settings
from tests.fakes.cli import API_KEY, WHSEC, World, cli
from tests.fakes.slack import FakeSlack
from tests.fakes.webhook import WebhookReceiver

KEY = "dfk-TOPSECRET-from-a-file"
MARKER = "TOPSECRET"

# ---- reading one file ----

CONTENTS = {
    "newline": (b"tok\n", "tok"),
    "crlf": (b"tok\r\n", "tok"),
    "no newline": (b"tok", "tok"),
    "only one newline stripped": (b"tok\n\n", "tok\n"),
    "crlf then newline: one stripped": (b"tok\r\n\n", "tok\r\n"),
    "a lone carriage return stays": (b"tok\r", "tok\r"),
    "spaces stay": (b" tok \n", " tok "),
    "empty": (b"", ""),
    "just a newline": (b"\n", ""),
    "utf-8": ("pässwörd\n".encode(), "pässwörd"),
    "exactly the cap": (b"x" * MAX_SECRET_FILE_BYTES, "x" * MAX_SECRET_FILE_BYTES),
}


@pytest.mark.parametrize(("raw", "value"), CONTENTS.values(), ids=CONTENTS.keys())
def test_a_files_value_is_its_text_less_one_trailing_newline(
    tmp_path: Path, raw: bytes, value: str
) -> None:
    path = tmp_path / "secret"
    path.write_bytes(raw)
    assert read_secret_file(path) == value


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "nope"


def _under_a_missing_directory(tmp_path: Path) -> Path:
    return tmp_path / "no-such-dir" / "secret"


def _under_a_file(tmp_path: Path) -> Path:
    (tmp_path / "plain").write_text(MARKER)
    return tmp_path / "plain" / "secret"


def _directory(tmp_path: Path) -> Path:
    (tmp_path / "dir").mkdir()
    return tmp_path / "dir"


def _fifo(tmp_path: Path) -> Path:
    os.mkfifo(tmp_path / "fifo")  # a reader would block forever: refused without opening it
    return tmp_path / "fifo"


def _too_large(tmp_path: Path) -> Path:
    (tmp_path / "big").write_text(MARKER * (MAX_SECRET_FILE_BYTES // len(MARKER) + 1))
    return tmp_path / "big"


def _not_utf8(tmp_path: Path) -> Path:
    (tmp_path / "latin1").write_bytes(MARKER.encode() + b"\xff\xfe")
    return tmp_path / "latin1"


def _dangling_symlink(tmp_path: Path) -> Path:
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    return tmp_path / "link"


#: What fails, even for root (tests run as root in CI's container): (path, reason, missing).
UNUSABLE: dict[str, tuple[Callable[[Path], Path], str, bool]] = {
    "missing": (_missing, "No such file or directory", True),
    "under a missing directory": (_under_a_missing_directory, "No such file or directory", True),
    "dangling symlink": (_dangling_symlink, "No such file or directory", True),
    "under a regular file": (_under_a_file, "Not a directory", True),
    "a directory": (_directory, "it is a directory", False),
    "a FIFO": (_fifo, "not a regular file", False),
    "too large": (_too_large, f"larger than {MAX_SECRET_FILE_BYTES} bytes", False),
    "not UTF-8": (_not_utf8, "not UTF-8 text", False),
}


@pytest.mark.parametrize(("make", "reason", "missing"), UNUSABLE.values(), ids=UNUSABLE.keys())
def test_an_unusable_file_is_one_line_naming_the_path_and_the_reason(
    tmp_path: Path, make: Callable[[Path], Path], reason: str, missing: bool
) -> None:
    path = make(tmp_path)
    with pytest.raises(SecretFileError) as caught:
        read_secret_file(path)
    assert str(caught.value) == f"cannot read {path} ({reason})"
    assert caught.value.missing is missing


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_a_file_without_read_permission(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text(MARKER)
    path.chmod(0)
    with pytest.raises(SecretFileError, match=r"\(Permission denied\)$"):
        read_secret_file(path)


# ---- NAME_FILE for every secret setting ----

#: The secret settings as the issue lists them: `secret_fields` must find exactly these.
SECRET_SETTINGS = {
    "DATAFOLD_API_KEY",
    "NOTIFIER_STATE_URL",
    "SLACK_BOT_TOKEN",
    "SLACK_WEBHOOK_URL",
    "NOTIFIER_WEBHOOK_URLS",
    "NOTIFIER_WEBHOOK_SECRET",
    "PAGERDUTY_ROUTING_KEY",
    "TEAMS_WEBHOOK_URL",
    "NOTIFIER_SMTP_USERNAME",
    "NOTIFIER_SMTP_PASSWORD",
    "ALERTMANAGER_URL",
    "ALERTMANAGER_TOKEN",
    "APPRISE_URL",
    "NOTIFIER_TRIGGER_TOKEN",
}
WHSEC_2 = "whsec_" + base64.b64encode(b"TOPSECRET-second-signing-key").decode()
#: A value each secret setting accepts, and the variables it needs beside it.
VALID: dict[str, tuple[str, dict[str, str]]] = {
    "DATAFOLD_API_KEY": (KEY, {}),
    "NOTIFIER_STATE_URL": ("postgresql://notifier:TOPSECRET-pg@db.example/notifier", {}),
    "SLACK_BOT_TOKEN": ("xoxb-TOPSECRET-token", {"SLACK_CHANNEL": "C0123ABCD"}),
    "SLACK_WEBHOOK_URL": ("https://hooks.slack.example/services/TOPSECRET", {}),
    "NOTIFIER_WEBHOOK_URLS": ("https://a.example/TOPSECRET-1\nhttps://b.example/TOPSECRET-2", {}),
    "NOTIFIER_WEBHOOK_SECRET": (f"{WHSEC}\n{WHSEC_2}", {}),
    "PAGERDUTY_ROUTING_KEY": ("R0123TOPSECRET456789abcdef012345", {}),
    "TEAMS_WEBHOOK_URL": ("https://teams.example/workflows/TOPSECRET", {}),
    "NOTIFIER_SMTP_USERNAME": (
        "mailer-TOPSECRET",
        {
            "NOTIFIER_SMTP_HOST": "smtp.example.com",
            "NOTIFIER_EMAIL_FROM": "n@example.com",
            "NOTIFIER_EMAIL_TO": "a@example.com",
            "NOTIFIER_SMTP_PASSWORD": "pw-TOPSECRET",
        },
    ),
    "NOTIFIER_SMTP_PASSWORD": (
        "pw-TOPSECRET",
        {
            "NOTIFIER_SMTP_HOST": "smtp.example.com",
            "NOTIFIER_EMAIL_FROM": "n@example.com",
            "NOTIFIER_EMAIL_TO": "a@example.com",
            "NOTIFIER_SMTP_USERNAME": "mailer-TOPSECRET",
        },
    ),
    "ALERTMANAGER_URL": ("https://am.example:9093/TOPSECRET", {}),
    "ALERTMANAGER_TOKEN": ("am-TOPSECRET-token", {"ALERTMANAGER_URL": "https://am.example"}),
    "APPRISE_URL": ("tgram://TOPSECRET-bot/12345", {}),
    "NOTIFIER_TRIGGER_TOKEN": ("trigger-TOPSECRET-0123456789", {"NOTIFIER_HEALTH_PORT": "0"}),
}


@pytest.fixture
def env(bare_env: None, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No setting but what the test sets, in the test's directory (no stray .env)."""
    return monkeypatch


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path


def test_the_secret_settings_are_found_on_the_model() -> None:
    assert set(secret_fields(Settings)) == SECRET_SETTINGS == set(VALID)
    aliases = {str(field.validation_alias) for field in Settings.model_fields.values()}
    assert not {f"{name}_FILE" for name in SECRET_SETTINGS} & aliases  # no NAME_FILE is a setting


@pytest.mark.parametrize("name", sorted(SECRET_SETTINGS))
def test_every_secret_setting_reads_name_file(
    env: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    value, beside = VALID[name]
    if name != "DATAFOLD_API_KEY":
        env.setenv("DATAFOLD_API_KEY", KEY)
    for variable, text in beside.items():
        env.setenv(variable, text)
    env.setenv(f"{name}_FILE", str(write(tmp_path / "secret", value + "\n")))
    from_file = load_settings()
    env.delenv(f"{name}_FILE")
    env.setenv(name, value)
    assert from_file == load_settings()  # the same as the variable itself
    shown = repr(from_file) + str(from_file.model_dump())
    assert MARKER not in shown
    # The log pipeline redacts it (a database URL by its password, not the database name).
    if name == "NOTIFIER_STATE_URL":
        assert "TOPSECRET-pg" in from_file.secrets()
    else:
        assert set(value.split()) <= set(from_file.secrets())


def _problem() -> str:
    """The one-line problem `load_settings` finds (it must find one)."""
    try:
        load_settings()
    except ConfigError as exc:
        return str(exc)
    raise AssertionError("accepted")


def test_name_and_name_file_both_set_is_refused(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("DATAFOLD_API_KEY", KEY)
    env.setenv("SLACK_BOT_TOKEN", "xoxb-TOPSECRET-a")
    env.setenv("SLACK_BOT_TOKEN_FILE", str(write(tmp_path / "t", "xoxb-TOPSECRET-b")))
    assert _problem() == "SLACK_BOT_TOKEN and SLACK_BOT_TOKEN_FILE are both set: give one of them"


@pytest.mark.parametrize(("make", "reason", "missing"), UNUSABLE.values(), ids=UNUSABLE.keys())
def test_an_unusable_name_file_is_one_line_naming_it_and_the_path(
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    make: Callable[[Path], Path],
    reason: str,
    missing: bool,
) -> None:
    path = make(tmp_path)
    env.setenv("DATAFOLD_API_KEY_FILE", str(path))
    assert _problem() == f"DATAFOLD_API_KEY_FILE: cannot read {path} ({reason})"


def test_an_empty_file_is_an_empty_variable(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = str(write(tmp_path / "empty", "\n"))
    env.setenv("DATAFOLD_API_KEY", KEY)
    env.setenv("SLACK_WEBHOOK_URL_FILE", empty)
    assert load_settings().slack_webhook_url is None  # as SLACK_WEBHOOK_URL= leaves it unset
    env.delenv("DATAFOLD_API_KEY")
    env.setenv("DATAFOLD_API_KEY_FILE", empty)
    assert _problem() == "DATAFOLD_API_KEY: is required but not set"
    env.setenv("DATAFOLD_API_KEY_FILE", "")  # an empty NAME_FILE is no NAME_FILE
    env.setenv("DATAFOLD_API_KEY", KEY)
    assert load_settings().datafold_api_key.get_secret_value() == KEY


def test_a_value_the_setting_refuses_is_told_without_it(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env.setenv("DATAFOLD_API_KEY", KEY)
    env.setenv("SLACK_WEBHOOK_URL_FILE", str(write(tmp_path / "u", "TOPSECRET-no-url\n")))
    problem = _problem()
    assert problem.startswith("SLACK_WEBHOOK_URL: ") and MARKER not in problem


def test_the_env_file_may_name_files_and_the_environment_still_wins(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key_file = write(tmp_path / "key", KEY + "\n")
    dotenv = write(tmp_path / ".env", f"DATAFOLD_API_KEY_FILE={key_file}\n")
    assert load_settings().datafold_api_key.get_secret_value() == KEY
    assert load_settings(dotenv).datafold_api_key.get_secret_value() == KEY  # --env-file

    # The environment's NAME wins over the env file's NAME_FILE, which is then not even read.
    write(dotenv, f"DATAFOLD_API_KEY_FILE={tmp_path / 'gone'}\n")
    env.setenv("DATAFOLD_API_KEY", "from-the-environment")
    assert load_settings().datafold_api_key.get_secret_value() == "from-the-environment"

    # The environment's NAME_FILE wins over the env file's NAME.
    env.delenv("DATAFOLD_API_KEY")
    env.setenv("DATAFOLD_API_KEY_FILE", str(key_file))
    write(dotenv, "DATAFOLD_API_KEY=from-the-env-file\n")
    assert load_settings().datafold_api_key.get_secret_value() == KEY

    # Both in the env file: refused, as both in the environment are.
    env.delenv("DATAFOLD_API_KEY_FILE")
    write(dotenv, f"DATAFOLD_API_KEY=x\nDATAFOLD_API_KEY_FILE={key_file}\n")
    assert _problem() == "DATAFOLD_API_KEY and DATAFOLD_API_KEY_FILE are both set: give one of them"


def test_a_value_given_in_code_wins_and_its_file_is_not_read(env: pytest.MonkeyPatch) -> None:
    """`send-test` and `demo` pass DATAFOLD_API_KEY themselves: a broken file must not stop them."""
    env.setenv("DATAFOLD_API_KEY_FILE", "/nonexistent/key")
    assert load_settings(DATAFOLD_API_KEY="given").datafold_api_key.get_secret_value() == "given"


# ---- file:PATH in the routes file ----

ROUTES = """
[destinations.hook]
type = "webhook"
url = "env:HOOK_URL"
secret = ["file:secrets/whsec", "env:OLD_WHSEC"]

[destinations.team]
type = "slack"
channel = "C0123ABCD"
token = "file: {token} "

[destinations.am]
type = "alertmanager"
url = "file:secrets/am-url"

[default]
to = ["hook", "team", "am"]
"""
HOOK = "https://hooks.example/TOPSECRET-hook"


def routes_dir(tmp_path: Path) -> Path:
    """A routes file (a relative `file:` from its directory, an absolute one elsewhere)."""
    (tmp_path / "conf" / "secrets").mkdir(parents=True)
    write(tmp_path / "conf" / "secrets" / "whsec", f"{WHSEC}, {WHSEC_2}\n")
    write(tmp_path / "conf" / "secrets" / "am-url", "https://am.example:9093\r\n")
    token = write(tmp_path / "token", "xoxb-TOPSECRET-token\n")
    write(tmp_path / "conf" / "routes.toml", ROUTES.format(token=token))
    return tmp_path / "conf"


def test_routes_read_file_secrets_relative_to_the_routes_file(tmp_path: Path) -> None:
    conf = routes_dir(tmp_path)
    routes = load_routes(conf / "routes.toml", {"HOOK_URL": HOOK, "OLD_WHSEC": WHSEC})
    hook, team, am = (routes.destinations[name] for name in ("hook", "team", "am"))
    assert [s.get_secret_value() for s in hook.secrets] == [WHSEC, WHSEC_2, WHSEC]  # type: ignore[union-attr]
    assert team.token.get_secret_value() == "xoxb-TOPSECRET-token"  # type: ignore[union-attr]
    assert am.url.get_secret_value() == "https://am.example:9093"  # type: ignore[union-attr]
    assert "xoxb-TOPSECRET-token" in routes.secrets()
    assert MARKER not in repr(routes)


def _am_url_a_directory(conf: Path) -> None:
    (conf / "secrets" / "am-url").unlink()
    (conf / "secrets" / "am-url").mkdir()


#: A broken `file:` reference: (what to do to the files, the key, the message's end).
BROKEN_REFERENCES: dict[str, tuple[Callable[[Path], object], str, str]] = {
    "missing": (
        lambda conf: (conf / "secrets" / "whsec").unlink(),
        "destinations.hook.secret",
        "secrets/whsec (No such file or directory)",
    ),
    "a directory": (
        _am_url_a_directory,
        "destinations.am.url",
        "secrets/am-url (it is a directory)",
    ),
    "empty": (
        lambda conf: write(conf / "secrets" / "am-url", "\n"),
        "destinations.am.url",
        "file secrets/am-url is empty",
    ),
}


@pytest.mark.parametrize(
    ("breaks", "key", "end"), BROKEN_REFERENCES.values(), ids=BROKEN_REFERENCES.keys()
)
def test_a_broken_file_reference_is_one_line_naming_the_key_and_the_path(
    tmp_path: Path, breaks: Callable[[Path], object], key: str, end: str
) -> None:
    conf = routes_dir(tmp_path)
    breaks(conf)
    with pytest.raises(RoutesError) as caught:
        load_routes(conf / "routes.toml", {"HOOK_URL": HOOK, "OLD_WHSEC": WHSEC})
    message = str(caught.value)
    assert message.startswith(f"{conf / 'routes.toml'}: {key}: ") and message.endswith(end)
    assert "\n" not in message and MARKER not in message


def test_without_a_reader_file_references_are_refused() -> None:
    raw = b'[destinations.t]\ntype = "teams"\nurl = "file:/run/secrets/teams"\n[default]\nto=["t"]'
    with pytest.raises(RoutesError, match=r'destinations\.t\.url: "file:" secrets are not read'):
        parse_routes(raw, "routes.toml", {})


def test_the_schema_takes_file_wherever_it_takes_env(tmp_path: Path) -> None:
    validator = Draft202012Validator(routes_json_schema())
    data = tomllib.loads(ROUTES.format(token="/run/secrets/slack"))
    assert [e.message for e in validator.iter_errors(data)] == []
    data["destinations"]["team"]["token"] = "file:  "
    assert list(validator.iter_errors(data)) != []


# ---- check --routes: a file that is not there is named, as an unset variable is ----


def test_check_routes_names_absent_files_and_refuses_broken_ones(
    bare_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = routes_dir(tmp_path)
    path = conf / "routes.toml"
    write(path, ROUTES.format(token="/run/secrets/nowhere/slack"))
    (conf / "secrets" / "whsec").unlink()
    code = main(["check", "--routes", str(path)])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert out == (
        f"{path}: valid: 3 destinations, 0 routes and a default route; not set here, so their "
        "values were not checked: HOOK_URL, OLD_WHSEC; files not found here, so not checked: "
        "/run/secrets/nowhere/slack, secrets/whsec\n"
    )
    (conf / "secrets" / "whsec").mkdir()  # there, but no file: an error, as an empty variable is
    code = main(["check", "--routes", str(path)])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err.endswith(
        f"destinations.hook.secret: cannot read {conf}/secrets/whsec (it is a directory)\n"
    )


# ---- through the installed CLI ----


async def test_once_with_its_secrets_in_files_never_shows_them(
    world: World, tmp_path: Path
) -> None:
    env = dict(world.env)
    env["DATAFOLD_API_KEY_FILE"] = str(write(tmp_path / "key", env.pop("DATAFOLD_API_KEY") + "\n"))
    token = env.pop("SLACK_BOT_TOKEN")
    env["SLACK_BOT_TOKEN_FILE"] = str(write(tmp_path / "slack", token + "\r\n"))
    assert env["NOTIFIER_LOG_LEVEL"] == "debug"
    first = await cli("once", env=env)
    assert first.code == 0, first.stderr
    world.sim.add_run(1, state="alert", started_at=world.now())
    second = await cli("once", env=env)
    assert second.code == 0, second.stderr
    assert len(world.slack.messages) == 1  # the token from the file was accepted
    assert any(e["event"] == "notification_sent" for e in second.events())
    for text in (first.stdout, first.stderr, second.stdout, second.stderr):
        assert API_KEY not in text and FakeSlack.token not in text


async def test_routes_file_secrets_from_files_end_to_end(world: World, tmp_path: Path) -> None:
    receiver = WebhookReceiver()
    async with receiver.serve() as hook_url:
        (tmp_path / "secrets").mkdir()
        write(tmp_path / "secrets" / "whsec", WHSEC + "\n")
        write(tmp_path / "secrets" / "slack", FakeSlack.token + "\n")
        routes = write(
            tmp_path / "routes.toml",
            '[destinations.hook]\ntype = "webhook"\nurl = "env:HOOK_URL"\n'
            'secret = "file:secrets/whsec"\n'
            '[destinations.team]\ntype = "slack"\nchannel = "C0123ABCD"\n'
            'token = "file:secrets/slack"\n[default]\nto = ["hook", "team"]\n',
        )
        env = {**world.env, "NOTIFIER_ROUTES_FILE": str(routes), "HOOK_URL": hook_url}
        for name in ("SLACK_BOT_TOKEN", "NOTIFIER_WEBHOOK_SECRET", "NOTIFIER_WEBHOOK_URLS"):
            del env[name]
        assert (await cli("once", env=env)).code == 0
        run = world.sim.add_run(2, state="error", started_at=world.now(), error="boom")
        result = await cli("once", env=env)
        assert result.code == 0, result.stderr
        [delivery] = receiver.deliveries
        payload = Webhook(WHSEC).verify(delivery.body, delivery.headers)  # signed with the file's
        assert payload["data"]["run"]["id"] == run
        assert len(world.slack.messages) == 1
        assert WHSEC not in result.stderr and FakeSlack.token not in result.stderr
        assert json.dumps(result.events())  # every line is a JSON event


async def test_a_missing_file_is_one_line_and_exit_2(world: World, tmp_path: Path) -> None:
    env = {**world.env, "DATAFOLD_API_KEY_FILE": str(tmp_path / "gone")}
    del env["DATAFOLD_API_KEY"]
    result = await cli("once", env=env, cwd=tmp_path)
    assert (result.code, result.stdout) == (2, "")
    assert result.stderr == (
        "datafold-notifier: error: configuration: DATAFOLD_API_KEY_FILE: cannot read "
        f"{tmp_path / 'gone'} (No such file or directory) (read from the environment; no .env "
        f"file found in {tmp_path})\n"
    )

    routes = write(
        tmp_path / "routes.toml",
        '[destinations.team]\ntype = "slack"\nchannel = "C0123ABCD"\n'
        'token = "file:/nonexistent/slack"\n[default]\nto = ["team"]\n',
    )
    result = await cli("once", env={**world.env, "NOTIFIER_ROUTES_FILE": str(routes)})
    assert (result.code, result.stdout) == (2, "")
    assert result.stderr == (
        f"datafold-notifier: error: routes: {routes}: destinations.team.token: cannot read "
        "/nonexistent/slack (No such file or directory)\n"
    )


def test_the_example_settings_name_every_secret_setting_that_takes_a_file() -> None:
    example = (Path(__file__).resolve().parent.parent / "settings.example.env").read_text()
    note = example[example.index("# Secrets from files") : example.index("# --- Datafold")]
    named = {word.strip(",.") for word in note.split() if word.strip(",.").isupper()}
    assert SECRET_SETTINGS <= named


def test_an_env_reference_reads_name_file_when_name_is_not_set(tmp_path: Path) -> None:
    token = tmp_path / "slack-token"
    token.write_text("xoxb-from-a-docker-secret\n")
    routes = tmp_path / "routes.toml"
    routes.write_text(
        '[destinations.chat]\ntype = "slack"\nchannel = "C1"\ntoken = "env:SLACK_BOT_TOKEN"\n'
        '[default]\nto = ["chat"]\n'
    )
    table = load_routes(routes, {"SLACK_BOT_TOKEN_FILE": str(token)})
    assert table.destinations["chat"].token.get_secret_value() == "xoxb-from-a-docker-secret"  # type: ignore[union-attr]
    # The variable itself wins over its file, as in the settings.
    table = load_routes(routes, {"SLACK_BOT_TOKEN": "xoxb-set", "SLACK_BOT_TOKEN_FILE": "/nope"})
    assert table.destinations["chat"].token.get_secret_value() == "xoxb-set"  # type: ignore[union-attr]
    with pytest.raises(RoutesError) as refused:
        load_routes(routes, {"SLACK_BOT_TOKEN_FILE": str(tmp_path / "missing")})
    message = str(refused.value)
    assert "destinations.chat.token" in message and "SLACK_BOT_TOKEN_FILE: cannot read" in message
    assert "\n" not in message
    with pytest.raises(RoutesError, match="environment variable SLACK_BOT_TOKEN is not set"):
        load_routes(routes, {})
