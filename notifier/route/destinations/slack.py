"""Slack destinations: a channel posted to with a bot token, and an incoming webhook."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from notifier.route.destinations.fields import EnvSecret, Mentions, SecretUrl, StrictModel


class SlackDestination(StrictModel):
    """A channel posted to with a bot token (`chat.postMessage`); the only one that can thread."""

    type: Literal["slack"] = "slack"
    channel: str = Field(min_length=1)
    token: EnvSecret
    thread: bool = False
    recovery: bool = True
    mentions: Mentions = Field(default_factory=list)
    mention_owner: bool = False
    digest_threshold: int | None = Field(None, ge=1)

    @field_validator("channel", mode="before")
    @classmethod
    def _strip_channel(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    def secret_values(self) -> list[SecretStr]:
        """What the log pipeline must redact."""
        return [self.token]


class SlackWebhookDestination(StrictModel):
    """A Slack incoming webhook; its URL is the secret."""

    type: Literal["slack-webhook"] = "slack-webhook"
    url: SecretUrl
    recovery: bool = True
    mentions: Mentions = Field(default_factory=list)
    digest_threshold: int | None = Field(None, ge=1)

    def secret_values(self) -> list[SecretStr]:
        """What the log pipeline must redact."""
        return [self.url]
