"""Destination models: one per kind of place a notification can go (a new kind is one model here,
added to `Destination` and `DESTINATION_TYPES`).

Pure: stdlib, pydantic and `notifier.domain`. In a routes file a secret is `env:NAME`, resolved
from the environment passed in (`FileContext`); built in code it is the value itself. Secrets are
`SecretStr`, and no repr or error message shows them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
)

from notifier.domain.values import (
    PLAIN_HTTP_REFUSED,
    http_url,
    is_loopback,
    is_remote_plain_http,
    nth_secret,
    split_list,
    whsec_problem,
)

_ENV_PREFIX = "env:"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Destination names end up in logs, the outbox and `check`: keep them one plain word.
DESTINATION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
#: Slack user (U…, W…) and user-group (S…) IDs, or a channel-wide mention.
_MENTION = re.compile(r"[UWS][A-Z0-9]{2,}|@here|@channel")


@dataclass(frozen=True)
class FileContext:
    """Validation context of a routes file: where `env:NAME` resolves, and the plain-http policy."""

    environ: Mapping[str, str]
    allow_http: bool


def file_context(info: ValidationInfo) -> FileContext | None:
    """The routes file being validated, or None for models built in code."""
    return info.context if isinstance(info.context, FileContext) else None


def _resolve_env(value: Any, info: ValidationInfo) -> Any:
    """In a routes file a secret is `env:NAME`; built in code (no file context) it is the value."""
    context = file_context(info)
    if context is None:
        return value
    if not isinstance(value, str) or not value.startswith(_ENV_PREFIX):
        # Not echoed: it may be the secret itself, written where it must not be.
        raise ValueError(
            'write "env:NAME" to read this secret from an environment variable '
            "(secrets are not written in the routes file)"
        )
    name = value.removeprefix(_ENV_PREFIX).strip()
    if not _ENV_NAME.fullmatch(name):
        raise ValueError('after "env:" give an environment variable name (letters, digits, _)')
    if name not in context.environ:
        raise ValueError(f"environment variable {name} is not set")
    resolved = context.environ[name].strip()
    if not resolved:
        raise ValueError(f"environment variable {name} is empty")
    return resolved


def _check_url(url: SecretStr, info: ValidationInfo) -> SecretStr:
    """An http(s) URL as settings require; plain http only to this machine unless allowed."""
    text = http_url(url.get_secret_value())
    context = file_context(info)
    if context is not None and not context.allow_http and is_remote_plain_http(text):
        raise ValueError(f"{PLAIN_HTTP_REFUSED}: use https:// or set NOTIFIER_ALLOW_HTTP=true")
    return SecretStr(text)


def _checked_mentions(value: list[str]) -> list[str]:
    for mention in value:
        if not _MENTION.fullmatch(mention):
            raise ValueError(
                f"{mention[:40]!r} is not a Slack user (U…/W…) or user-group (S…) ID, "
                "@here or @channel"
            )
    return value


#: A secret, `env:NAME` in a routes file.
EnvSecret = Annotated[SecretStr, BeforeValidator(_resolve_env)]
#: A secret http(s) URL (it may carry a token), `env:NAME` in a routes file.
SecretUrl = Annotated[SecretStr, BeforeValidator(_resolve_env), AfterValidator(_check_url)]
#: Slack mentions: user or user-group IDs, @here or @channel.
Mentions = Annotated[list[str], AfterValidator(_checked_mentions)]


def webhook_destination_name(url: str) -> str:
    """The stable name of a webhook configured by URL alone (no secret in it); `WebhookSink`
    uses it too, so outbox entries stay deliverable."""
    return "webhook-" + hashlib.sha256(url.encode()).hexdigest()[:8]


class StrictModel(BaseModel):
    """A routes-file table: unknown keys are refused (a typo must not pass silently); frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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


class WebhookDestination(StrictModel):
    """A signed webhook. In the file, `secret` is one `env:NAME` (or a list), each of which may
    hold several comma-separated secrets during a rotation."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

    type: Literal["webhook"] = "webhook"
    url: SecretUrl
    secrets: list[SecretStr] = Field(default_factory=list, alias="secret")
    format: Literal["standard", "alertmanager"] = "standard"
    recovery: bool = True

    @field_validator("secrets", mode="before")
    @classmethod
    def _secrets_from_env(cls, value: Any, info: ValidationInfo) -> Any:
        if file_context(info) is None:
            return value
        references = value if isinstance(value, list) else [value]
        return [part for ref in references for part in split_list(_resolve_env(ref, info))]

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


#: An email address as the routes file gives it: `local@domain`, one line, no display name.
_EMAIL_ADDRESS = re.compile(
    r"[^@\s<>,;\"()\[\]\\]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?"
)


def _checked_address(value: str) -> str:
    address = value.strip()
    if not _EMAIL_ADDRESS.fullmatch(address):
        raise ValueError(f"{address[:60]!r} is not an email address (local@domain)")
    return address


#: An email address (no display name, no list).
EmailAddress = Annotated[str, AfterValidator(_checked_address)]


class EmailDestination(StrictModel):
    """Mail over SMTP: STARTTLS (default), implicit TLS, or none (to this machine unless plain
    traffic is allowed). `username` and `password` are `env:` secrets, both or neither."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

    type: Literal["email"] = "email"
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: EnvSecret | None = None
    password: EnvSecret | None = Field(None, validate_default=True)
    sender: EmailAddress = Field(alias="from")
    to: list[EmailAddress] = Field(min_length=1, max_length=100)
    recovery: bool = True
    digest_threshold: int | None = Field(None, ge=1)

    @field_validator("host")
    @classmethod
    def _check_host(cls, value: str) -> str:
        host = value.strip()
        if not re.fullmatch(r"[A-Za-z0-9.:_-]+", host):
            raise ValueError("must be a host name or an IP address")
        return host

    @field_validator("password")
    @classmethod
    def _both_or_neither(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if (value is None) != (info.data.get("username") is None):
            raise ValueError("give both username and password, or neither")
        return value

    @field_validator("to")
    @classmethod
    def _plain_only_to_this_machine(cls, value: list[str], info: ValidationInfo) -> list[str]:
        context = file_context(info)
        host = info.data.get("host")
        plain = info.data.get("security") == "none"
        if plain and context is not None and not context.allow_http and not is_loopback(host):
            raise ValueError(
                'security = "none" to a host other than this machine is refused (the mail and '
                'the password would cross the network in clear): use "starttls" or "tls", or set '
                "NOTIFIER_ALLOW_HTTP=true"
            )
        return value

    def secret_values(self) -> list[SecretStr]:
        """What the log pipeline must redact."""
        return [secret for secret in (self.username, self.password) if secret is not None]


#: PagerDuty's severities, and which one each run state is sent as unless a destination says
#: otherwise (`severity = { alert = "warning" }`); a state not listed is sent as "warning".
PagerDutySeverity = Literal["critical", "error", "warning", "info"]
PAGERDUTY_SEVERITY: dict[str, PagerDutySeverity] = {"alert": "error", "error": "critical"}
PAGERDUTY_URLS = {
    "us": "https://events.pagerduty.com/v2/enqueue",
    "eu": "https://events.eu.pagerduty.com/v2/enqueue",
}


class PagerDutyDestination(StrictModel):
    """A PagerDuty Events API v2 integration: one incident is one alert, keyed by its ID.

    `region` picks the endpoint; `url` replaces it (a proxy, tests). `severity` maps run states
    to PagerDuty severities over `PAGERDUTY_SEVERITY`.
    """

    type: Literal["pagerduty"] = "pagerduty"
    routing_key: EnvSecret
    region: Literal["us", "eu"] = "us"
    url: str | None = None
    recovery: bool = True
    severity: dict[str, PagerDutySeverity] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _check_endpoint(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        return _check_url(SecretStr(value), info).get_secret_value()

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


class TeamsDestination(StrictModel):
    """A Microsoft Teams channel through a Workflows webhook; its URL (with the flow's
    signature) is the secret."""

    type: Literal["teams"] = "teams"
    url: SecretUrl
    recovery: bool = True
    digest_threshold: int | None = Field(None, ge=1)

    def secret_values(self) -> list[SecretStr]:
        """What the log pipeline must redact."""
        return [self.url]


AnyDestination = (
    SlackDestination
    | SlackWebhookDestination
    | WebhookDestination
    | EmailDestination
    | PagerDutyDestination
    | TeamsDestination
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
}
