"""Settings: every variable parsed as documented; bad values give one line naming the variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from notifier.run.config import ConfigError, load_settings

KEY = "dfk-" + "s3cr3t-api-key-value"
SECRET_VARIABLES = {
    "DATAFOLD_API_KEY",
    "SLACK_BOT_TOKEN",
    "SLACK_WEBHOOK_URL",
    "NOTIFIER_WEBHOOK_URLS",
    "NOTIFIER_WEBHOOK_SECRET",
}


@pytest.fixture(autouse=True)
def clean_env(bare_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATAFOLD_API_KEY", KEY)


def test_defaults() -> None:
    s = load_settings()
    assert s.datafold_host == "https://app.datafold.com"
    assert s.poll_interval_seconds == 60
    assert s.notify_states == ["alert", "error"]
    assert s.lookback_seconds >= 600
    assert s.slack_api_url == "https://slack.com/api/"
    assert s.monitor_ids == [] and s.webhook_urls == []


def test_lists_and_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFIER_MONITOR_IDS", " 12, 7 ,12,9 ")
    monkeypatch.setenv("NOTIFIER_NOTIFY_STATES", "ALERT, error ,ok")
    monkeypatch.setenv("NOTIFIER_WEBHOOK_URLS", "https://a.example/h,http://127.0.0.1:9/x")
    monkeypatch.setenv("DATAFOLD_HOST", "https://eu.datafold.com/")
    monkeypatch.setenv("SLACK_API_URL", "http://127.0.0.1:1/api")
    monkeypatch.setenv("NOTIFIER_LOG_FORMAT", "JSON")
    s = load_settings()
    assert s.monitor_ids == [12, 7, 9]
    assert s.notify_states == ["alert", "error", "ok"]
    assert [u.get_secret_value() for u in s.webhook_urls] == [
        "https://a.example/h",
        "http://127.0.0.1:9/x",
    ]
    assert s.datafold_host == "https://eu.datafold.com"
    assert s.slack_api_url == "http://127.0.0.1:1/api/"
    assert s.log_format == "json"


def test_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATAFOLD_API_KEY")
    env = tmp_path / "custom.env"
    env.write_text(f"DATAFOLD_API_KEY={KEY}\nNOTIFIER_MONITOR_IDS=5,6\n")
    assert load_settings(env).monitor_ids == [5, 6]
    (tmp_path / ".env").write_text(f"DATAFOLD_API_KEY={KEY}\nNOTIFIER_MONITOR_IDS=8\n")
    assert load_settings().monitor_ids == [8]
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.env")


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"NOTIFIER_POLL_INTERVAL_SECONDS": "soon"}, "NOTIFIER_POLL_INTERVAL_SECONDS"),
        ({"NOTIFIER_POLL_INTERVAL_SECONDS": "0"}, "NOTIFIER_POLL_INTERVAL_SECONDS"),
        ({"NOTIFIER_MONITOR_IDS": "1,two"}, "NOTIFIER_MONITOR_IDS"),
        ({"NOTIFIER_MONITOR_IDS": "-3"}, "NOTIFIER_MONITOR_IDS"),
        ({"NOTIFIER_NOTIFY_STATES": "alert,checking"}, "NOTIFIER_NOTIFY_STATES"),
        ({"NOTIFIER_NOTIFY_STATES": ","}, "NOTIFIER_NOTIFY_STATES"),
        ({"DATAFOLD_HOST": "app.datafold.com"}, "DATAFOLD_HOST"),
        ({"NOTIFIER_LOG_LEVEL": "loud"}, "NOTIFIER_LOG_LEVEL"),
        ({"NOTIFIER_LOG_FORMAT": "xml"}, "NOTIFIER_LOG_FORMAT"),
        ({"NOTIFIER_MAX_CONCURRENCY": "0"}, "NOTIFIER_MAX_CONCURRENCY"),
        ({"NOTIFIER_LOOKBACK_SECONDS": "5"}, "NOTIFIER_LOOKBACK_SECONDS"),
        ({"NOTIFIER_MONITOR_URL_TEMPLATE": "{host}/m/{id}"}, "NOTIFIER_MONITOR_URL_TEMPLATE"),
        ({"SLACK_BOT_TOKEN": "xoxb-secret-token-1"}, "SLACK_CHANNEL"),
        ({"SLACK_CHANNEL": "#alerts"}, "SLACK_BOT_TOKEN"),
        ({"SLACK_WEBHOOK_URL": "hooks.slack.com/services/SECRET"}, "SLACK_WEBHOOK_URL"),
        (
            {"NOTIFIER_WEBHOOK_URLS": "https://ok.example,ftp://secret-host/x"},
            "NOTIFIER_WEBHOOK_URLS",
        ),
        ({"NOTIFIER_WEBHOOK_SECRET": "not-a-whsec-secret"}, "NOTIFIER_WEBHOOK_SECRET"),
        ({"NOTIFIER_WEBHOOK_SECRET": "whsec_c2hvcnQ="}, "NOTIFIER_WEBHOOK_SECRET"),
        ({"DATAFOLD_API_KEY": ""}, "DATAFOLD_API_KEY"),
        ({"DATAFOLD_HOST": "http://user:pw@datafold.example"}, "DATAFOLD_HOST"),
        ({"DATAFOLD_HOST": "http://:80"}, "DATAFOLD_HOST"),
        ({"DATAFOLD_HOST": "https://datafold.example:99999"}, "DATAFOLD_HOST"),
        ({"NOTIFIER_NOTIFY_STATES": "alerts,errors"}, "NOTIFIER_NOTIFY_STATES"),
        ({"NOTIFIER_OUTBOX_EXPIRY_SECONDS": "inf"}, "NOTIFIER_OUTBOX_EXPIRY_SECONDS"),
        ({"NOTIFIER_OUTBOX_EXPIRY_SECONDS": "1e20"}, "NOTIFIER_OUTBOX_EXPIRY_SECONDS"),
        ({"NOTIFIER_MONITOR_CACHE_SECONDS": "1e14"}, "NOTIFIER_MONITOR_CACHE_SECONDS"),
        ({"NOTIFIER_CATCHUP_LIMIT_SECONDS": "nan"}, "NOTIFIER_CATCHUP_LIMIT_SECONDS"),
        (
            {"NOTIFIER_WEBHOOK_SECRET": "whsec_!!!!MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
            "NOTIFIER_WEBHOOK_SECRET",
        ),
        (
            {"NOTIFIER_WEBHOOK_URLS": "https://user:secretpw@hooks.example/x"},
            "NOTIFIER_WEBHOOK_URLS",
        ),
        ({"NOTIFIER_HEALTH_PORT": "70000"}, "NOTIFIER_HEALTH_PORT"),
    ],
)
def test_invalid_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], names: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert names in message
    assert "\n" not in message
    for name, value in env.items():
        if name in SECRET_VARIABLES:
            assert not value or value not in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("NOTIFIER_MONITOR_IDS", "101,102       # or NOTIFIER_MONITOR_TAGS=prod"),
        ("NOTIFIER_HEALTH_PORT", "8080\t# status page"),
    ],
)
def test_a_trailing_comment_kept_by_systemd_is_named_as_the_cause(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """python-dotenv strips `# ...` after a value; systemd's EnvironmentFile and docker's
    --env-file keep it: the error says so."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert f"{name}: " in str(info.value)
    assert "'# comment' after a value is part of it" in str(info.value)


def test_a_hash_inside_a_value_is_no_comment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFIER_HEALTH_PORT", "80#80")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "comment" not in str(info.value)


def test_missing_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATAFOLD_API_KEY")
    with pytest.raises(ConfigError, match="DATAFOLD_API_KEY: is required"):
        load_settings()


def test_repr_hides_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "SLACK_BOT_TOKEN": "xoxb-very-secret-token",
        "SLACK_CHANNEL": "#data-alerts",
        "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/secretpath",
        "NOTIFIER_WEBHOOK_URLS": "https://hooks.example/secret-receiver-path",
        "NOTIFIER_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    s = load_settings()
    shown = repr(s) + str(s) + str(s.model_dump())
    for name, value in {**secrets, "DATAFOLD_API_KEY": KEY}.items():
        if name != "SLACK_CHANNEL":
            assert value not in shown, name
    assert set(s.secrets()) >= {KEY, "xoxb-very-secret-token"}


def test_example_env_documents_every_setting_with_its_default() -> None:
    """settings.example.env names every variable, each with the code's default and a comment."""
    from notifier.run.settings import Settings

    example = Path(__file__).resolve().parent.parent / "settings.example.env"
    lines = example.read_text().splitlines()
    documented: dict[str, str] = {}
    for index, line in enumerate(lines):
        setting = re.match(r"^#?([A-Z][A-Z0-9_]+)=(.*)$", line)
        if setting:
            name, value = setting.groups()
            documented[name] = value
            assert lines[index - 1].startswith("# ") and "---" not in lines[index - 1], name
    aliases = {str(f.validation_alias): f for f in Settings.model_fields.values()}
    assert set(documented) == set(aliases)
    defaults = Settings(DATAFOLD_API_KEY="x")  # type: ignore[call-arg]
    for name, value in documented.items():
        field_name = next(k for k, f in Settings.model_fields.items() if f.validation_alias == name)
        if value:
            parsed = Settings(DATAFOLD_API_KEY="x", **{name: value})  # type: ignore[arg-type]
            assert getattr(parsed, field_name) == getattr(defaults, field_name), name
        elif name != "DATAFOLD_API_KEY":
            assert getattr(defaults, field_name) in (None, []), name


def test_env_file_that_is_not_utf8(tmp_path: Path) -> None:
    env = tmp_path / "bad.env"
    env.write_bytes(b"DATAFOLD_API_KEY=\xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings(env)


def test_several_webhook_secrets_for_a_rotation(monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtMTIz"
    monkeypatch.setenv("NOTIFIER_WEBHOOK_SECRET", f"{old}, {new}")
    s = load_settings()
    assert [x.get_secret_value() for x in s.webhook_secrets] == [old, new]
    assert old not in repr(s) and new not in repr(s)
    assert {old, new} <= set(s.secrets())
