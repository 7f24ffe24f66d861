"""Each destination kind is one model (`notifier.route.destinations`): the rules every model must
keep, checked over all of them so that a new kind cannot forget one."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from notifier.route.destinations import DESTINATION_TYPES, Destination
from notifier.route.rules import Routes

SECRET = "whsec_" + base64.b64encode(bytes(range(16))).decode()
#: One valid table per kind, as a routes file would give it after `env:` resolution.
EXAMPLES: dict[str, dict[str, Any]] = {
    "slack": {"channel": "#alerts", "token": "xoxb-token-1"},
    "slack-webhook": {"url": "https://hooks.slack.test/services/T/B/token-2"},
    "webhook": {"url": "https://receiver.test/hook?token=3", "secret": [SECRET]},
    "email": {
        "host": "smtp.example.test",
        "username": "mailer",
        "password": "smtp-password-4",
        "from": "notifier@example.test",
        "to": ["oncall@example.test"],
    },
    "pagerduty": {"routing_key": "R0123456789abcdef0123456789abcd", "region": "eu"},
    "teams": {"url": "https://prod-00.westus.logic.azure.test/workflows/1/triggers?sig=tm5"},
    "alertmanager": {"url": "https://alertmanager.test:9093", "token": "am-token-6"},
    "apprise": {"url": "discord://4174216298/apprise-token-7"},
}


def test_every_kind_has_an_example() -> None:
    assert set(EXAMPLES) == set(DESTINATION_TYPES)


@pytest.mark.parametrize("kind", sorted(DESTINATION_TYPES))
def test_a_kind_lists_every_secret_it_holds(kind: str) -> None:
    destination = DESTINATION_TYPES[kind].model_validate(EXAMPLES[kind])
    held = _secret_values(destination)
    assert held
    listed = {value.get_secret_value() for value in destination.secret_values()}
    assert held <= listed
    assert not any(value in repr(destination) for value in held)


@pytest.mark.parametrize("kind", sorted(DESTINATION_TYPES))
def test_a_kind_is_chosen_by_its_type_in_the_routes_table(kind: str) -> None:
    routes = Routes.model_validate({"destinations": {"d": {"type": kind, **EXAMPLES[kind]}}})
    destination: Destination = routes.destinations["d"]
    assert type(destination) is DESTINATION_TYPES[kind]
    assert set(routes.secrets()) == _secret_values(destination)


def _secret_values(model: BaseModel) -> set[str]:
    """Every `SecretStr` the model holds, in a field or a list field."""
    found: set[str] = set()
    for name in type(model).model_fields:
        value = getattr(model, name)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, SecretStr):
                found.add(item.get_secret_value())
    return found
