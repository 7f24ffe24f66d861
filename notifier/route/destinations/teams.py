"""A Microsoft Teams channel through a Workflows webhook."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from notifier.route.destinations.fields import DestinationModel, SecretUrl


class TeamsDestination(DestinationModel):
    """A Microsoft Teams channel through a Workflows webhook; its URL (with the flow's
    signature) is the secret."""

    type: Literal["teams"] = "teams"
    url: SecretUrl
    digest_threshold: int | None = Field(None, ge=1)

    def secret_values(self) -> list[SecretStr]:
        """What the log pipeline must redact."""
        return [self.url]
