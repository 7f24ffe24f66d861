"""The `email` destination in a routes file: defaults, addresses, credentials, plain SMTP."""

from __future__ import annotations

import pytest

from notifier.route.destinations import EmailDestination
from notifier.route.routes_file import RoutesError, parse_routes

ENV = {"SMTP_USER": "mailer", "SMTP_PASSWORD": "smtp-routes-password-0002"}
BASE = 'type = "email"\nfrom = "notifier@example.test"\n'
TO = 'to = ["oncall@example.test"]'


def routes(table: str, *, allow_http: bool = False) -> EmailDestination:
    to = "" if f"\n{table}".count("\nto = ") else TO
    raw = f'[destinations.mail]\n{BASE}{to}\n{table}\n[default]\nto = ["mail"]\n'
    parsed = parse_routes(raw.encode(), "routes.toml", ENV, allow_http=allow_http)
    destination = parsed.destinations["mail"]
    assert isinstance(destination, EmailDestination)
    return destination


def refused(table: str, *, allow_http: bool = False) -> str:
    with pytest.raises(RoutesError) as error:
        routes(table, allow_http=allow_http)
    message = str(error.value)
    assert "\n" not in message and ENV["SMTP_PASSWORD"] not in message
    return message


def test_the_defaults_are_starttls_on_587_with_recoveries() -> None:
    mail = routes('host = "smtp.example.test"')
    assert (mail.port, mail.security, mail.recovery) == (587, "starttls", True)
    assert mail.sender == "notifier@example.test" and mail.to == ["oncall@example.test"]
    assert mail.username is None and mail.secret_values() == []


def test_credentials_come_from_the_environment_and_are_masked() -> None:
    mail = routes(
        'host = "smtp.example.test"\nusername = "env:SMTP_USER"\npassword = "env:SMTP_PASSWORD"'
    )
    assert [s.get_secret_value() for s in mail.secret_values()] == ["mailer", ENV["SMTP_PASSWORD"]]
    assert ENV["SMTP_PASSWORD"] not in repr(mail)
    assert "env:" in refused('host = "h.test"\nusername = "env:SMTP_USER"\npassword = "hunter2"')


@pytest.mark.parametrize(
    "table",
    [
        'host = "h.test"\nusername = "env:SMTP_USER"',
        'host = "h.test"\npassword = "env:SMTP_PASSWORD"',
    ],
)
def test_username_and_password_go_together(table: str) -> None:
    assert "both username and password" in refused(table)


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ('host = "h.test"\nto = []', "at least 1"),
        ('host = "h.test"\nto = ["not-an-address"]', "not an email address"),
        ('host = "h.test"\nto = ["a@b.test, c@d.test"]', "not an email address"),
        ('host = "h.test"\nto = ["Bob <bob@b.test>"]', "not an email address"),
        ('host = "h.test\\r\\nX: y"', "host name"),
        ('host = "h.test"\nport = 0', "port"),
        ('host = "h.test"\nsecurity = "ssl"', "security"),
    ],
)
def test_bad_tables_are_refused_on_one_line(table: str, says: str) -> None:
    assert says in refused(table)


def test_plain_smtp_only_to_this_machine_unless_allowed() -> None:
    assert routes('host = "127.0.0.1"\nsecurity = "none"\nport = 25').security == "none"
    assert routes('host = "localhost"\nsecurity = "none"').security == "none"
    message = refused('host = "smtp.example.test"\nsecurity = "none"')
    assert "NOTIFIER_ALLOW_HTTP" in message
    allowed = routes('host = "smtp.example.test"\nsecurity = "none"', allow_http=True)
    assert allowed.security == "none"
