"""A PagerDuty Events API v2 integration."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from notifier.route.destinations.fields import DestinationModel, EnvSecret, check_url

#: PagerDuty's severities, and which one each run state is sent as unless a destination says
#: otherwise (`severity = { alert = "warning" }`); a state not listed is sent as "warning".
PagerDutySeverity = Literal["critical", "error", "warning", "info"]
PAGERDUTY_SEVERITY: dict[str, PagerDutySeverity] = {"alert": "error", "error": "critical"}
PAGERDUTY_URLS = {
    "us": "https://events.pagerduty.com/v2/enqueue",
    "eu": "https://events.eu.pagerduty.com/v2/enqueue",
}


class PagerDutyDestination(DestinationModel):
    """A PagerDuty Events API v2 integration: one incident is one alert, keyed by its ID.

    `region` picks the endpoint; `url` replaces it (a proxy, tests). `severity` maps run states
    to PagerDuty severities over `PAGERDUTY_SEVERITY`.
    """

    type: Literal["pagerduty"] = "pagerduty"
    routing_key: EnvSecret
    region: Literal["us", "eu"] = "us"
    url: str | None = None
    severity: dict[str, PagerDutySeverity] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _check_endpoint(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        return check_url(SecretStr(value), info).get_secret_value()

    @property
    def endpoint(self) -> str:
        """Where events are posted: `url` if given, else the region's enqueue URL."""
        return self.url or PAGERDUTY_URLS[self.region]

    @property
    def severities(self) -> dict[str, PagerDutySeverity]:
        """The defaults with this destination's overrides."""
        return {**PAGERDUTY_SEVERITY, **self.severity}

    def secret_values(self) -> list[SecretStr]:
        """What the log pipeline must redact."""
        return [self.routing_key]
