"""Prometheus Alertmanager's push API: Datafold incidents as alerts inside it."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from notifier.route.destinations.fields import DestinationModel, EnvSecret, PlainOrSecretUrl

#: Prometheus label names; those starting `__` are reserved.
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
#: The labels the notifier sets itself: the alert's identity, never overridden.
RESERVED_LABELS = frozenset(
    {"alertname", "monitor", "monitor_id", "monitor_type", "severity", "source", "state", "tags"}
)


class AlertmanagerDestination(DestinationModel):
    """An Alertmanager (its base URL; `POST /api/v2/alerts` below it). Each open incident is a
    firing alert, posted again every cycle with `endsAt` `hold` seconds ahead (default: four poll
    intervals, at least five minutes) so Alertmanager keeps it firing; a recovery ends it.
    `labels` are added to every alert (for Alertmanager's routes), after the notifier's own;
    `token` (an `env:` secret) is sent as a bearer token, for an Alertmanager behind a proxy."""

    type: Literal["alertmanager"] = "alertmanager"
    url: PlainOrSecretUrl
    token: EnvSecret | None = None
    hold: int | None = Field(None, ge=60, le=7 * 86400)
    labels: dict[str, str] = Field(default_factory=dict, max_length=20)

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
                raise ValueError(f"{name[:40]!r} is not a Prometheus label name")
            if name in RESERVED_LABELS or name.startswith("tag_"):
                raise ValueError(f"label {name} is set by the notifier itself")
            if not text or len(text) > 1024:
                raise ValueError(f"label {name} needs a value of 1 to 1024 characters")
        return value

    def secret_values(self) -> list[SecretStr]:
        """What the log pipeline must redact."""
        return [self.url] if self.token is None else [self.url, self.token]
