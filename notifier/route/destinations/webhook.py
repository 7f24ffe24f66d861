"""A signed webhook (Standard Webhooks, or Alertmanager's webhook format)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, SecretStr, ValidationInfo, field_validator

from notifier.domain.values import nth_secret, split_list, whsec_problem
from notifier.route.destinations.fields import (
    DestinationModel,
    SecretUrl,
    file_context,
    resolve_env,
)


class WebhookDestination(DestinationModel):
    """A signed webhook. In the file, `secret` is one `env:NAME` or `file:PATH` (or a list),
    each of which may hold several secrets (comma- or whitespace-separated) during a rotation."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

    type: Literal["webhook"] = "webhook"
    url: SecretUrl
    secrets: list[SecretStr] = Field(default_factory=list, alias="secret")
    format: Literal["standard", "alertmanager"] = "standard"

    @field_validator("secrets", mode="before")
    @classmethod
    def _secrets_from_env(cls, value: Any, info: ValidationInfo) -> Any:
        if file_context(info) is None:
            return value
        references = value if isinstance(value, list) else [value]
        return [part for ref in references for part in split_list(resolve_env(ref, info))]

    @field_validator("secrets")
    @classmethod
    def _check_secrets(cls, value: list[SecretStr]) -> list[SecretStr]:
        for index, secret in enumerate(value, start=1):
            problem = whsec_problem(secret.get_secret_value())
            if problem is not None:
                raise ValueError(f"{nth_secret(index, len(value))} {problem}")
        return value

    def secret_values(self) -> list[SecretStr]:
        """What the log pipeline must redact."""
        return [self.url, *self.secrets]
