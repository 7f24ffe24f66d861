"""The long tail through Apprise (an optional extra): Discord, Telegram, Pushover, ..."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr

from notifier.route.destinations.fields import EnvSecret, StrictModel


class AppriseDestination(StrictModel):
    """One Apprise URL (`discord://…`, `tgram://…`, `json://…`): it holds the service's
    credentials, so it is an `env:` secret. Fire and forget: no update, thread or digest."""

    type: Literal["apprise"] = "apprise"
    url: EnvSecret
    recovery: bool = True

    def secret_values(self) -> list[SecretStr]:
        """What the log pipeline must redact."""
        return [self.url]
