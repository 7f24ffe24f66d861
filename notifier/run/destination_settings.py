"""The destination settings: where notifications go when environment variables alone configure
it (no routes file), one destination of each kind under a stable name.

`Settings` inherits them. A destination's variables come complete or not at all (a one-line
error names the missing ones); variables that only adjust a destination (PAGERDUTY_REGION,
PAGERDUTY_URL, NOTIFIER_SMTP_PORT, NOTIFIER_SMTP_SECURITY, like SLACK_API_URL) do nothing alone.
With NOTIFIER_ROUTES_FILE set these variables configure nothing (the file names the
destinations, reading secrets through `env:NAME`), so an incomplete set is not refused then.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode

from notifier.domain.values import (
    PLAIN_HTTP_REFUSED,
    http_url,
    is_loopback,
    is_remote_plain_http,
    nth_secret,
    split_list,
    whsec_problem,
)
from notifier.route.destinations import (
    AlertmanagerDestination,
    AnyDestination,
    AppriseDestination,
    EmailDestination,
    PagerDutyDestination,
    SlackDestination,
    SlackWebhookDestination,
    TeamsDestination,
    WebhookDestination,
    webhook_destination_name,
)
from notifier.route.destinations.apprise import PLAIN_HTTP_SCHEMES
from notifier.route.destinations.email import EmailAddress
from notifier.route.destinations.slack import DIGEST_THRESHOLD
from notifier.run.secret_files import secret_fields

#: The variables any of which makes a destination when set: asked for when there is none, and
#: named when a routes file makes them unused.
DESTINATION_VARIABLES = (
    "SLACK_BOT_TOKEN",
    "SLACK_WEBHOOK_URL",
    "NOTIFIER_WEBHOOK_URLS",
    "PAGERDUTY_ROUTING_KEY",
    "TEAMS_WEBHOOK_URL",
    "NOTIFIER_SMTP_HOST",
    "ALERTMANAGER_URL",
    "APPRISE_URL",
)
#: How to configure a destination, for the messages that find none.
DESTINATION_HINT = (
    "set NOTIFIER_ROUTES_FILE, or SLACK_BOT_TOKEN and SLACK_CHANNEL, SLACK_WEBHOOK_URL, "
    "NOTIFIER_WEBHOOK_URLS, PAGERDUTY_ROUTING_KEY, TEAMS_WEBHOOK_URL, NOTIFIER_SMTP_HOST with "
    "NOTIFIER_EMAIL_FROM and NOTIFIER_EMAIL_TO, ALERTMANAGER_URL or APPRISE_URL"
)
NO_DESTINATION = f"no destination: {DESTINATION_HINT}"

#: (variables any of which is given, variables then required, what needs them).
_TOGETHER: tuple[tuple[tuple[str, ...], tuple[str, ...], str], ...] = (
    (
        ("SLACK_BOT_TOKEN", "SLACK_CHANNEL"),
        ("SLACK_BOT_TOKEN", "SLACK_CHANNEL"),
        "chat.postMessage needs a bot token and a channel",
    ),
    (
        (
            "NOTIFIER_SMTP_HOST",
            "NOTIFIER_EMAIL_FROM",
            "NOTIFIER_EMAIL_TO",
            "NOTIFIER_SMTP_USERNAME",
            "NOTIFIER_SMTP_PASSWORD",
        ),
        ("NOTIFIER_SMTP_HOST", "NOTIFIER_EMAIL_FROM", "NOTIFIER_EMAIL_TO"),
        "email needs a server, a sender and recipients",
    ),
    (
        ("NOTIFIER_SMTP_USERNAME", "NOTIFIER_SMTP_PASSWORD"),
        ("NOTIFIER_SMTP_USERNAME", "NOTIFIER_SMTP_PASSWORD"),
        "SMTP authentication takes both, or neither",
    ),
    (("ALERTMANAGER_TOKEN",), ("ALERTMANAGER_URL",), "a bearer token needs its Alertmanager"),
)

#: Each kind's model fields by the variable that fills them, to name it in an error.
_FILLED_BY: dict[str, dict[str, str]] = {
    "slack": {"channel": "SLACK_CHANNEL", "token": "SLACK_BOT_TOKEN"},
    "slack-webhook": {"url": "SLACK_WEBHOOK_URL"},
    "webhook": {
        "url": "NOTIFIER_WEBHOOK_URLS",
        "secret": "NOTIFIER_WEBHOOK_SECRET",
        "secrets": "NOTIFIER_WEBHOOK_SECRET",
    },
    "pagerduty": {
        "routing_key": "PAGERDUTY_ROUTING_KEY",
        "region": "PAGERDUTY_REGION",
        "url": "PAGERDUTY_URL",
    },
    "teams": {"url": "TEAMS_WEBHOOK_URL"},
    "email": {
        "host": "NOTIFIER_SMTP_HOST",
        "port": "NOTIFIER_SMTP_PORT",
        "security": "NOTIFIER_SMTP_SECURITY",
        "username": "NOTIFIER_SMTP_USERNAME",
        "password": "NOTIFIER_SMTP_PASSWORD",
        "from": "NOTIFIER_EMAIL_FROM",
        "sender": "NOTIFIER_EMAIL_FROM",
        "to": "NOTIFIER_EMAIL_TO",
    },
    "alertmanager": {"url": "ALERTMANAGER_URL", "token": "ALERTMANAGER_TOKEN"},
    "apprise": {"url": "APPRISE_URL"},
}


def _url_problem(text: str) -> str | None:
    try:
        http_url(text)
    except ValueError as exc:
        return str(exc)
    return None


def _split_checked(
    value: Any, problem: Callable[[str], str | None], which: Callable[[int, int], str]
) -> Any:
    """`value` split into a list whose parts (text or `SecretStr`) must each pass `problem`; the
    first failure is raised as `{which(index, count)} {problem}`, the part itself not shown."""
    parts = split_list(value)
    if isinstance(parts, list):
        for index, part in enumerate(parts, start=1):
            text = part.get_secret_value() if isinstance(part, SecretStr) else str(part)
            found = problem(text)
            if found is not None:
                raise ValueError(f"{which(index, len(parts))} {found}")
    return parts


def _names(names: list[str]) -> str:
    """`A`, `A and B`, `A, B and C`; with the verb that agrees."""
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    return f"{listed} {'is' if len(names) == 1 else 'are'}"


class DestinationSettings(BaseSettings):
    """The destinations environment variables configure without a routes file; `Settings`
    inherits them and owns the model configuration."""

    slack_bot_token: SecretStr | None = Field(None, validation_alias="SLACK_BOT_TOKEN")
    slack_channel: str | None = Field(None, validation_alias="SLACK_CHANNEL")
    slack_webhook_url: SecretStr | None = Field(None, validation_alias="SLACK_WEBHOOK_URL")
    slack_api_url: str = Field("https://slack.com/api/", validation_alias="SLACK_API_URL")
    #: More than this many waiting for the Slack destinations after a cycle: one digest; 0: never.
    slack_digest_threshold: int = Field(
        DIGEST_THRESHOLD, ge=0, le=10_000, validation_alias="SLACK_DIGEST_THRESHOLD"
    )
    #: Slack accepts about one message per second per channel; bursts beyond it are paced.
    slack_messages_per_second: float = Field(
        1.0, gt=0.0, le=100.0, validation_alias="NOTIFIER_SLACK_MESSAGES_PER_SECOND"
    )

    webhook_urls: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, validation_alias="NOTIFIER_WEBHOOK_URLS"
    )
    webhook_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, validation_alias="NOTIFIER_WEBHOOK_SECRET"
    )

    pagerduty_routing_key: SecretStr | None = Field(None, validation_alias="PAGERDUTY_ROUTING_KEY")
    pagerduty_region: Literal["us", "eu"] = Field("us", validation_alias="PAGERDUTY_REGION")
    #: Replaces the region's endpoint (a proxy, tests).
    pagerduty_url: str | None = Field(None, validation_alias="PAGERDUTY_URL")
    teams_webhook_url: SecretStr | None = Field(None, validation_alias="TEAMS_WEBHOOK_URL")
    smtp_host: str | None = Field(None, max_length=253, validation_alias="NOTIFIER_SMTP_HOST")
    smtp_port: int = Field(587, ge=1, le=65535, validation_alias="NOTIFIER_SMTP_PORT")
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        "starttls", validation_alias="NOTIFIER_SMTP_SECURITY"
    )
    smtp_username: SecretStr | None = Field(None, validation_alias="NOTIFIER_SMTP_USERNAME")
    smtp_password: SecretStr | None = Field(None, validation_alias="NOTIFIER_SMTP_PASSWORD")
    email_from: EmailAddress | None = Field(None, validation_alias="NOTIFIER_EMAIL_FROM")
    email_to: Annotated[list[EmailAddress], NoDecode] = Field(
        default_factory=list, max_length=100, validation_alias="NOTIFIER_EMAIL_TO"
    )
    alertmanager_url: SecretStr | None = Field(None, validation_alias="ALERTMANAGER_URL")
    alertmanager_token: SecretStr | None = Field(None, validation_alias="ALERTMANAGER_TOKEN")
    apprise_url: SecretStr | None = Field(None, validation_alias="APPRISE_URL")

    routes_file: Path | None = Field(None, validation_alias="NOTIFIER_ROUTES_FILE")

    @field_validator("webhook_urls", mode="before")
    @classmethod
    def _parse_webhook_urls(cls, value: Any) -> Any:
        return _split_checked(value, _url_problem, lambda index, _: f"URL number {index}")

    @field_validator("webhook_secrets", mode="before")
    @classmethod
    def _check_secrets(cls, value: Any) -> Any:
        return _split_checked(value, whsec_problem, nth_secret)

    @field_validator("email_to", mode="before")
    @classmethod
    def _parse_addresses(cls, value: Any) -> Any:
        parts = split_list(value)
        return list(dict.fromkeys(parts)) if isinstance(parts, list) else parts

    @field_validator("slack_webhook_url", "teams_webhook_url", "alertmanager_url")
    @classmethod
    def _check_secret_url(cls, value: SecretStr | None) -> SecretStr | None:
        # Not echoed: the URL is the secret.
        return None if value is None else SecretStr(http_url(value.get_secret_value()))

    @field_validator("slack_api_url", "pagerduty_url")
    @classmethod
    def _check_plain_url(cls, value: str | None) -> str | None:
        return None if value is None else http_url(value)

    @field_validator("slack_api_url")
    @classmethod
    def _slash_api(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"

    @field_validator("pagerduty_region", "smtp_security", mode="before")
    @classmethod
    def _lower_choice(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("slack_channel", "smtp_host", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return (value.strip() or None) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _complete(self) -> DestinationSettings:
        if self.routes_file is not None:
            return self  # the file names the destinations; these only feed its env: secrets
        for given, required, need in _TOGETHER:
            present = [name for name in given if self._is_set(name)]
            missing = [name for name in required if not self._is_set(name)]
            if present and missing:
                raise ValueError(f"{_names(present)} set but {_names(missing)} not: {need}")
        self.environment_destinations()
        return self

    def _is_set(self, variable: str) -> bool:
        field = next(
            name
            for name, info in type(self).model_fields.items()
            if info.validation_alias == variable
        )
        return getattr(self, field) not in (None, [])

    def environment_destinations(self) -> dict[str, AnyDestination]:
        """The destinations these variables configure, under stable names (the outbox keeps
        them, so an entry stays deliverable across restarts). Raises `ValueError` naming the
        variable of a value a destination refuses."""
        built: dict[str, AnyDestination] = {}
        kind = ""
        try:
            if self.slack_bot_token is not None and self.slack_channel:
                kind = "slack"
                built[kind] = SlackDestination(
                    channel=self.slack_channel,
                    token=self.slack_bot_token,
                    digest_threshold=self.slack_digest_threshold,
                )
            if self.slack_webhook_url is not None:
                kind = "slack-webhook"
                built[kind] = SlackWebhookDestination(
                    url=self.slack_webhook_url, digest_threshold=self.slack_digest_threshold
                )
            for url in self.webhook_urls:
                kind = "webhook"
                built[webhook_destination_name(url.get_secret_value())] = WebhookDestination(
                    url=url, secrets=list(self.webhook_secrets)
                )
            if self.pagerduty_routing_key is not None:
                kind = "pagerduty"
                built[kind] = PagerDutyDestination(
                    routing_key=self.pagerduty_routing_key,
                    region=self.pagerduty_region,
                    url=self.pagerduty_url,
                )
            if self.teams_webhook_url is not None:
                kind = "teams"
                built[kind] = TeamsDestination(url=self.teams_webhook_url)
            if self.smtp_host and self.email_from and self.email_to:
                kind = "email"
                built[kind] = EmailDestination(
                    host=self.smtp_host,
                    port=self.smtp_port,
                    security=self.smtp_security,
                    username=self.smtp_username,
                    password=self.smtp_password,
                    sender=self.email_from,
                    to=self.email_to,
                )
            if self.alertmanager_url is not None:
                kind = "alertmanager"
                built[kind] = AlertmanagerDestination(
                    url=self.alertmanager_url, token=self.alertmanager_token
                )
            if self.apprise_url is not None:
                kind = "apprise"
                built[kind] = AppriseDestination(url=self.apprise_url)
        except ValidationError as exc:
            raise ValueError(_refusal(kind, exc)) from None
        return built

    def has_destination(self) -> bool:
        """Whether a routes file or these variables configure any destination."""
        return self.routes_file is not None or bool(self.environment_destinations())

    def destination_variables_set(self, referenced: Collection[str] = ()) -> list[str]:
        """The variables set that make (or sign) a destination without a routes file; with one,
        they are unused but for its `env:` references (`referenced`), left out here."""
        names = (*DESTINATION_VARIABLES, "NOTIFIER_WEBHOOK_SECRET")
        return [name for name in names if self._is_set(name) and name not in referenced]

    def destination_secrets(self) -> list[SecretStr]:
        """Every secret of these variables (each field typed `SecretStr`, so a new one cannot be
        forgotten), for the log pipeline to redact."""
        found: list[SecretStr] = []
        for field in secret_fields(DestinationSettings).values():
            value = getattr(self, field)
            found += value if isinstance(value, list) else [] if value is None else [value]
        return found

    def cleartext_problem(self, *first: tuple[str, str]) -> str | None:
        """The first variable (of `first`, then the destinations') whose server would be reached
        in clear on another machine (refused unless NOTIFIER_ALLOW_HTTP), as a one-line message;
        None if there is none."""
        secret_urls = {
            "SLACK_WEBHOOK_URL": self.slack_webhook_url,
            "TEAMS_WEBHOOK_URL": self.teams_webhook_url,
            "ALERTMANAGER_URL": self.alertmanager_url,
        }
        urls = [
            *first,
            ("SLACK_API_URL", self.slack_api_url),
            ("PAGERDUTY_URL", self.pagerduty_url),
        ]
        urls += [(name, u.get_secret_value()) for name, u in secret_urls.items() if u is not None]
        urls += [("NOTIFIER_WEBHOOK_URLS", u.get_secret_value()) for u in self.webhook_urls]
        for name, url in urls:
            if url is not None and is_remote_plain_http(url):
                return f"{name}: {PLAIN_HTTP_REFUSED}; use https:// or set NOTIFIER_ALLOW_HTTP=true"
        scheme = _remote_plain_apprise(self.apprise_url)
        if scheme is not None:
            return (
                f"APPRISE_URL: {scheme}:// posts over plain http, refused to a host other than "
                f"this machine; use {scheme}s:// or set NOTIFIER_ALLOW_HTTP=true"
            )
        if self.smtp_host and self.smtp_security == "none" and not is_loopback(self.smtp_host):
            return (
                "NOTIFIER_SMTP_SECURITY: none to a host other than this machine is refused (the "
                "mail and the password would cross the network in clear); use starttls or tls, "
                "or set NOTIFIER_ALLOW_HTTP=true"
            )
        return None


def _remote_plain_apprise(url: SecretStr | None) -> str | None:
    """The scheme of an Apprise URL that posts over plain http to another machine, or None."""
    if url is None:
        return None
    try:
        parts = urlsplit(url.get_secret_value())
        scheme, host = parts.scheme.lower(), parts.hostname
    except ValueError:
        return None  # not a URL at all: the destination model says so
    return scheme if scheme in PLAIN_HTTP_SCHEMES and not is_loopback(host) else None


def _refusal(kind: str, exc: ValidationError) -> str:
    """A destination model's first refusal, naming the variable behind the field (never the
    value: it may be a secret)."""
    error = exc.errors(include_url=False, include_input=False)[0]
    field = str(error["loc"][0]) if error["loc"] else ""
    message = str(error["msg"]).removeprefix("Value error, ")
    variable = _FILLED_BY[kind].get(field, f"the {kind} destination")
    return f"{variable}: {message}"
