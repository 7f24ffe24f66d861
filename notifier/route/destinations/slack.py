"""Slack destinations: a channel posted to with a bot token, and an incoming webhook."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from notifier.route.destinations.fields import DestinationModel, EnvSecret, Mentions, SecretUrl

#: More than this many notifications waiting for a Slack destination after a cycle's polls go
#: out as one digest, unless the destination says otherwise (`digest_threshold`; 0: never).
DIGEST_THRESHOLD = 10


def digest_after(threshold: int) -> int | None:
    """A destination's `digest_threshold` as its sink takes it: None (never) for 0."""
    return threshold or None


class SlackDestination(DestinationModel):
    """A channel posted to with a bot token (`chat.postMessage`); the only one that can thread."""

    type: Literal["slack"] = "slack"
    channel: str = Field(min_length=1)
    token: EnvSecret
    thread: bool = False
    mentions: Mentions = Field(default_factory=list)
    mention_owner: bool = False
    digest_threshold: int = Field(DIGEST_THRESHOLD, ge=0)

    @field_validator("channel", mode="before")
    @classmethod
    def _strip_channel(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    def secret_values(self) -> list[SecretStr]:
        """What the log pipeline must redact."""
        return [self.token]


class SlackWebhookDestination(DestinationModel):
    """A Slack incoming webhook; its URL is the secret."""

    type: Literal["slack-webhook"] = "slack-webhook"
    url: SecretUrl
    mentions: Mentions = Field(default_factory=list)
    digest_threshold: int = Field(DIGEST_THRESHOLD, ge=0)

    def secret_values(self) -> list[SecretStr]:
        """What the log pipeline must redact."""
        return [self.url]
