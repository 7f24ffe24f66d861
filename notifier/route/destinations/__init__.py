"""Destination models: one per kind of place a notification can go. A new kind is one module
here, added to `AnyDestination` and `DESTINATION_TYPES`.

Pure: stdlib, pydantic and `notifier.domain`. In a routes file a secret is `env:NAME`, resolved
from the environment passed in (`FileContext`, in `fields`); built in code it is the value
itself. Secrets are `SecretStr`, and no repr or error message shows them.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from notifier.route.destinations.alertmanager import AlertmanagerDestination
from notifier.route.destinations.apprise import AppriseDestination
from notifier.route.destinations.email import EmailDestination
from notifier.route.destinations.fields import (
    DESTINATION_NAME,
    EnvSecret,
    FileContext,
    Mentions,
    SecretUrl,
    StrictModel,
    file_context,
    webhook_destination_name,
)
from notifier.route.destinations.pagerduty import (
    PAGERDUTY_SEVERITY,
    PAGERDUTY_URLS,
    PagerDutyDestination,
    PagerDutySeverity,
)
from notifier.route.destinations.slack import SlackDestination, SlackWebhookDestination
from notifier.route.destinations.teams import TeamsDestination
from notifier.route.destinations.webhook import WebhookDestination

AnyDestination = (
    SlackDestination
    | SlackWebhookDestination
    | WebhookDestination
    | EmailDestination
    | PagerDutyDestination
    | TeamsDestination
    | AlertmanagerDestination
    | AppriseDestination
)
Destination = Annotated[AnyDestination, Field(discriminator="type")]
#: Each destination kind by its `type` in the routes file.
DESTINATION_TYPES: dict[str, type[AnyDestination]] = {
    "slack": SlackDestination,
    "slack-webhook": SlackWebhookDestination,
    "webhook": WebhookDestination,
    "email": EmailDestination,
    "pagerduty": PagerDutyDestination,
    "teams": TeamsDestination,
    "alertmanager": AlertmanagerDestination,
    "apprise": AppriseDestination,
}

__all__ = [
    "DESTINATION_NAME",
    "DESTINATION_TYPES",
    "PAGERDUTY_SEVERITY",
    "PAGERDUTY_URLS",
    "AlertmanagerDestination",
    "AnyDestination",
    "AppriseDestination",
    "Destination",
    "EmailDestination",
    "EnvSecret",
    "FileContext",
    "Mentions",
    "PagerDutyDestination",
    "PagerDutySeverity",
    "SecretUrl",
    "SlackDestination",
    "SlackWebhookDestination",
    "StrictModel",
    "TeamsDestination",
    "WebhookDestination",
    "file_context",
    "webhook_destination_name",
]
