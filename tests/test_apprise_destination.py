"""The `apprise` destination in a routes file: the URL from the environment, its shape, plain
http only to this machine, and which of its parts the log pipeline redacts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from notifier.domain.models import MonitorInfo
from notifier.route.destinations import AppriseDestination
from notifier.route.destinations.apprise import url_secret_parts
from notifier.route.routes_file import RoutesError, parse_routes
from notifier.route.rules import route_event

TOKEN = "s3cr3tAppriseT0ken"


def routes(url: str, extra: str = "", *, allow_http: bool = False) -> AppriseDestination:
    raw = (
        f'[destinations.chat]\ntype = "apprise"\nurl = "env:APPRISE_URL"\n{extra}\n'
        '[default]\nto = ["chat"]\n'
    )
    parsed = parse_routes(raw.encode(), "routes.toml", {"APPRISE_URL": url}, allow_http=allow_http)
    destination = parsed.destinations["chat"]
    assert isinstance(destination, AppriseDestination)
    return destination


def refused(url: str, *, allow_http: bool = False) -> str:
    with pytest.raises(RoutesError) as error:
        routes(url, allow_http=allow_http)
    message = str(error.value)
    assert "\n" not in message and TOKEN not in message
    return message


def test_the_url_comes_from_the_environment_and_recoveries_are_on() -> None:
    chat = routes(f"discord://123456789/{TOKEN}")
    assert chat.url.get_secret_value() == f"discord://123456789/{TOKEN}"
    assert chat.recovery is True and routes("tgram://1/2", "recovery = false").recovery is False
    assert TOKEN not in repr(chat) and TOKEN not in str(chat.model_dump())


def test_recovery_false_keeps_recoveries_away() -> None:
    raw = (
        '[destinations.chat]\ntype = "apprise"\nurl = "env:A"\nrecovery = false\n'
        '[destinations.all]\ntype = "apprise"\nurl = "env:A"\n[default]\nto = ["chat", "all"]\n'
    )
    parsed = parse_routes(raw.encode(), "routes.toml", {"A": "tgram://123:abc/4"})
    monitor, now = MonitorInfo(id=1, name="m"), datetime(2025, 1, 1, tzinfo=UTC)
    assert route_event(parsed, monitor, "alert", now).to == ["chat", "all"]
    assert route_event(parsed, monitor, "recovered", now).to == ["all"]


def test_the_url_is_never_written_in_the_file() -> None:
    raw = f'[destinations.chat]\ntype = "apprise"\nurl = "discord://1/{TOKEN}"\n'
    with pytest.raises(RoutesError) as error:
        parse_routes(raw.encode(), "routes.toml", {})
    assert "env:NAME" in str(error.value) and TOKEN not in str(error.value)


@pytest.mark.parametrize(
    "url",
    [
        f"https//discord/{TOKEN}",
        f"{TOKEN}",
        f"discord:/{TOKEN}",
        f"discord://1/{TOKEN} tgram://2/3",
        f"discord://1/{TOKEN},tgram://2/3",
        f"discord:// {TOKEN}",
        f"1discord://1/{TOKEN}",
    ],
)
def test_one_service_url_only(url: str) -> None:
    assert "one Apprise URL" in refused(url)


@pytest.mark.parametrize("scheme", ["json", "form", "xml", "JSON"])
def test_plain_http_schemes_only_to_this_machine_unless_allowed(scheme: str) -> None:
    message = refused(f"{scheme}://hooks.example.test/in/{TOKEN}")
    assert "plain http" in message and "NOTIFIER_ALLOW_HTTP" in message
    for host in ("127.0.0.1:8080", "localhost", "[::1]:9000", "app.localhost"):
        routes(f"{scheme}://{host}/in/{TOKEN}")
    routes(f"{scheme}://hooks.example.test/in/{TOKEN}", allow_http=True)
    routes(f"{scheme}s://hooks.example.test/in/{TOKEN}")


def test_a_host_that_does_not_parse_is_not_taken_for_this_machine() -> None:
    assert "plain http" in refused(f"json://[::1/{TOKEN}")


@pytest.mark.parametrize(
    ("url", "secret", "kept"),
    [
        # The path as the service's own request shows it, and its token-like segment.
        (f"json://127.0.0.1:8080/hooks/{TOKEN}?format=markdown", TOKEN, ["markdown", "hooks"]),
        # A query value sent as a request parameter.
        ("json://localhost/in?-token=abc123xyz", "abc123xyz", ["localhost"]),
        # Telegram's bot token is the "host": its requests put it in another URL's path.
        ("tgram://123456789:AAHsecretBotToken/-100200", "123456789:AAHsecretBotToken", []),
        # Pushover's user key and app token.
        ("pover://userkey123@apptoken456", "apptoken456", []),
        ("pover://userkey123@apptoken456", "userkey123", []),
        # A password, raw and percent-decoded.
        ("json://user:pa%2Fssw0rd@localhost/x", "pa/ssw0rd", ["localhost"]),
        # ... and as the HTTP Basic header carries it (base64 of "user:pa/ssw0rd").
        ("json://user:pa%2Fssw0rd@localhost/x", "dXNlcjpwYS9zc3cwcmQ=", ["localhost"]),
        # Slack's three tokens, each shown alone in hooks.slack.com/services/A/B/C.
        ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general", "A1BRTD4JD", []),
    ],
)
def test_the_parts_that_may_be_credentials_are_redacted(
    url: str, secret: str, kept: list[str]
) -> None:
    parts = url_secret_parts(url)
    assert secret in parts
    assert not set(kept) & set(parts)
    assert [s.get_secret_value() for s in routes(url).secret_values()] == [url]


def test_host_names_and_short_words_are_not_redacted() -> None:
    assert url_secret_parts("jsons://hooks.example.test/notify?format=markdown") == ["/notify"]
