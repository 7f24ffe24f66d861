"""Configuration: every setting, named by its environment variable, with its bounds and checks.

Read once at start-up (`notifier.run.config.load_settings`), validated, passed down; nothing below
the CLI reads `os.environ`. Secrets are `SecretStr` and never shown in a repr, a log
line or an error message. The destinations' variables are in `run.destination_settings`.
"""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from notifier.domain.models import IN_PROGRESS_STATES, KNOWN_STATES
from notifier.domain.values import http_url, split_list
from notifier.run.destination_settings import DestinationSettings
from notifier.run.secret_files import with_secret_files
from notifier.run.trigger import TriggerConfig, parse_field_path, token_problem


class Settings(DestinationSettings):
    """Every setting of the notifier, named by its environment variable (the destinations'
    in `DestinationSettings`)."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        validate_default=True,
        hide_input_in_errors=True,
        env_ignore_empty=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Every secret setting NAME may come as NAME_FILE, the path of a file holding it
        (`run.secret_files`)."""
        places = (env_settings, dotenv_settings)
        return with_secret_files(settings_cls, init_settings, places, file_secret_settings)

    datafold_api_key: SecretStr = Field(validation_alias="DATAFOLD_API_KEY")
    datafold_host: str = Field("https://app.datafold.com", validation_alias="DATAFOLD_HOST")

    monitor_ids: Annotated[list[int], NoDecode] = Field(
        default_factory=list, validation_alias="NOTIFIER_MONITOR_IDS"
    )
    monitor_tags: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="NOTIFIER_MONITOR_TAGS"
    )
    discovery_interval_seconds: float = Field(
        300.0, ge=10.0, le=86400.0, validation_alias="NOTIFIER_DISCOVERY_INTERVAL_SECONDS"
    )
    poll_interval_seconds: float = Field(
        60.0, ge=1.0, le=86400.0, validation_alias="NOTIFIER_POLL_INTERVAL_SECONDS"
    )
    #: 0 turns reminders off (the default).
    reminder_interval_seconds: float = Field(
        0.0, ge=0.0, le=30 * 86400.0, validation_alias="NOTIFIER_REMINDER_INTERVAL_SECONDS"
    )
    state_file: Path = Field(
        Path("datafold-notifier.state.json"), validation_alias="NOTIFIER_STATE_FILE"
    )
    #: postgresql://… : state in PostgreSQL, shared by replicas (high availability).
    state_url: SecretStr | None = Field(None, validation_alias="NOTIFIER_STATE_URL")
    #: How this replica names itself in the lease; default host name and process ID.
    replica_name: str | None = Field(
        None, validation_alias="NOTIFIER_REPLICA_NAME", min_length=1, max_length=200
    )
    #: Lease length; default the poll interval. A standby takes over within about 4/3 of it.
    lease_seconds: float | None = Field(
        None, ge=1.0, le=3600.0, validation_alias="NOTIFIER_LEASE_SECONDS"
    )
    notify_states: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["alert", "error"], validation_alias="NOTIFIER_NOTIFY_STATES"
    )
    lookback_seconds: float = Field(
        1800.0, ge=60.0, le=7 * 86400.0, validation_alias="NOTIFIER_LOOKBACK_SECONDS"
    )
    first_start_lookback_seconds: float = Field(
        0.0, ge=0.0, le=7 * 86400.0, validation_alias="NOTIFIER_FIRST_START_LOOKBACK_SECONDS"
    )
    max_concurrency: int = Field(16, ge=1, le=512, validation_alias="NOTIFIER_MAX_CONCURRENCY")
    request_timeout_seconds: float = Field(
        30.0, gt=0.0, le=600.0, validation_alias="NOTIFIER_REQUEST_TIMEOUT_SECONDS"
    )
    page_size: int = Field(100, ge=1, le=1000, validation_alias="NOTIFIER_PAGE_SIZE")
    outbox_expiry_seconds: float = Field(
        86400.0, ge=60.0, le=30 * 86400.0, validation_alias="NOTIFIER_OUTBOX_EXPIRY_SECONDS"
    )
    catchup_limit_seconds: float = Field(
        86400.0, ge=60.0, le=30 * 86400.0, validation_alias="NOTIFIER_CATCHUP_LIMIT_SECONDS"
    )
    shutdown_grace_seconds: float = Field(
        10.0, ge=0.0, le=600.0, validation_alias="NOTIFIER_SHUTDOWN_GRACE_SECONDS"
    )
    monitor_url_template: str = Field(
        "{host}/monitors/{monitor_id}", validation_alias="NOTIFIER_MONITOR_URL_TEMPLATE"
    )
    poll_spread_seconds: float | None = Field(
        None, ge=0.0, le=3600.0, validation_alias="NOTIFIER_POLL_SPREAD_SECONDS"
    )
    poll_mode: Literal["poll", "feed"] = Field("poll", validation_alias="NOTIFIER_POLL_MODE")
    feed_sweep_seconds: float = Field(
        3600.0, ge=60.0, le=7 * 86400.0, validation_alias="NOTIFIER_FEED_SWEEP_SECONDS"
    )
    max_requests_per_second: float | None = Field(
        None, gt=0.0, le=10_000.0, validation_alias="NOTIFIER_MAX_REQUESTS_PER_SECOND"
    )
    #: Bytes of one Datafold answer, counted after decompression; past it the monitor fails.
    max_response_bytes: int = Field(
        4 * 1024 * 1024,
        ge=64 * 1024,
        le=1024 * 1024 * 1024,
        validation_alias="NOTIFIER_MAX_RESPONSE_BYTES",
    )
    #: The longest wait a server may ask for (Retry-After); unset: the poll interval.
    max_retry_after_seconds: float | None = Field(
        None, ge=0.0, le=86400.0, validation_alias="NOTIFIER_MAX_RETRY_AFTER_SECONDS"
    )
    #: Notifications the outbox holds at most; past it the oldest are dropped (logged, counted).
    outbox_max_entries: int = Field(
        5000, ge=10, le=1_000_000, validation_alias="NOTIFIER_OUTBOX_MAX_ENTRIES"
    )
    health_port: int | None = Field(None, ge=0, le=65535, validation_alias="NOTIFIER_HEALTH_PORT")
    health_host: str = Field("127.0.0.1", validation_alias="NOTIFIER_HEALTH_HOST")
    #: The push trigger's token (POST /trigger/<token> on the health port); unset: no trigger.
    trigger_token: SecretStr | None = Field(None, validation_alias="NOTIFIER_TRIGGER_TOKEN")
    #: Where a trigger's JSON body names its monitor, as a dotted path.
    trigger_monitor_field: str = Field(
        "monitor_id", validation_alias="NOTIFIER_TRIGGER_MONITOR_FIELD", max_length=1000
    )
    trigger_max_polls_per_minute: int = Field(
        60, ge=1, le=6000, validation_alias="NOTIFIER_TRIGGER_MAX_POLLS_PER_MINUTE"
    )
    monitor_cache_seconds: float = Field(
        3600.0, ge=0.0, le=7 * 86400.0, validation_alias="NOTIFIER_MONITOR_CACHE_SECONDS"
    )

    ca_bundle: Path | None = Field(None, validation_alias="NOTIFIER_CA_BUNDLE")
    allow_http: bool = Field(False, validation_alias="NOTIFIER_ALLOW_HTTP")

    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", validation_alias="NOTIFIER_LOG_LEVEL"
    )
    log_format: Literal["json", "console"] | None = Field(
        None, validation_alias="NOTIFIER_LOG_FORMAT"
    )

    @field_validator("monitor_ids", mode="before")
    @classmethod
    def _parse_ids(cls, value: Any) -> Any:
        parts = split_list(value)
        if isinstance(parts, list):
            for part in parts:
                if isinstance(part, str) and not part.isdigit():
                    raise ValueError(f"{part!r} is not a monitor ID (a positive whole number)")
            return list(dict.fromkeys(int(p) for p in parts))
        return parts

    @field_validator("monitor_tags", mode="before")
    @classmethod
    def _parse_tags(cls, value: Any) -> Any:
        if isinstance(value, str):
            return list(dict.fromkeys(t.strip() for t in value.split(",") if t.strip()))
        return value

    @field_validator("notify_states", mode="before")
    @classmethod
    def _parse_states(cls, value: Any) -> Any:
        parts = split_list(value)
        if isinstance(parts, list):
            states = [str(p).strip().lower() for p in parts]
            if not states:
                raise ValueError("name at least one run state, such as alert,error")
            for state in states:
                if state in IN_PROGRESS_STATES:
                    raise ValueError(
                        f"{state!r} is an in-progress state; name finished states "
                        "(alert, error, ok, skipped, cancelled)"
                    )
                if state not in KNOWN_STATES:
                    raise ValueError(
                        f"{state!r} is not a Datafold run state; name finished states "
                        "(alert, error, ok, skipped, cancelled)"
                    )
            return list(dict.fromkeys(states))
        return parts

    @field_validator("datafold_api_key")
    @classmethod
    def _check_key(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("is empty")
        return value

    @field_validator("ca_bundle")
    @classmethod
    def _check_ca_bundle(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        if not value.is_file():
            raise ValueError(f"{value} is not a readable file")
        try:
            ssl.create_default_context().load_verify_locations(cafile=str(value))
        except (ssl.SSLError, OSError, ValueError):
            raise ValueError(f"{value} is not a PEM bundle of CA certificates") from None
        return value

    @field_validator("datafold_host")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return http_url(value)

    @field_validator("datafold_host")
    @classmethod
    def _strip_host(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("state_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        text = value.get_secret_value().strip()
        # Not echoed: the URL carries the password.
        if urlsplit(text).scheme not in ("postgresql", "postgres"):
            raise ValueError("give a postgresql://user:password@host:port/database URL")
        return SecretStr(text)

    @field_validator("trigger_token")
    @classmethod
    def _check_trigger_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        problem = token_problem(value.get_secret_value())
        if problem is not None:
            raise ValueError(problem)  # never the token itself
        return value

    @field_validator("trigger_monitor_field")
    @classmethod
    def _check_trigger_field(cls, value: str) -> str:
        parse_field_path(value)
        return value.strip()

    @field_validator("log_level", "log_format", "poll_mode", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip().lower() or None
        return value

    @field_validator("monitor_url_template")
    @classmethod
    def _check_template(cls, value: str) -> str:
        try:
            value.format(host="https://example", monitor_id=1)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                "may use only the placeholders {host} and {monitor_id}"
                f" ({type(exc).__name__}: {exc})"
            ) from None
        return value

    @model_validator(mode="after")
    def _plain_http(self) -> Settings:
        if self.allow_http:
            return self
        problem = self.cleartext_problem(("DATAFOLD_HOST", self.datafold_host))
        if problem is not None:
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _trigger_needs_listener(self) -> Settings:
        if self.trigger_token is not None and self.health_port is None:
            raise ValueError(
                "NOTIFIER_TRIGGER_TOKEN is set but NOTIFIER_HEALTH_PORT is not: the trigger is "
                "served on the health listener; set NOTIFIER_HEALTH_PORT or unset the token"
            )
        return self

    @model_validator(mode="after")
    def _sweep_within_catch_up(self) -> Settings:
        if self.poll_mode == "feed" and self.feed_sweep_seconds >= self.catchup_limit_seconds:
            raise ValueError(
                "NOTIFIER_FEED_SWEEP_SECONDS must be shorter than NOTIFIER_CATCHUP_LIMIT_SECONDS, "
                "or a sweep's listing would be cut short"
            )
        return self

    @property
    def poll_spread(self) -> float:
        """Seconds over which a cycle's polls start.

        Auto: a millisecond per monitor, at most a tenth of the interval and 5 s; the concurrency
        bound then paces the requests themselves.
        """
        if self.poll_spread_seconds is not None:
            return min(self.poll_spread_seconds, self.poll_interval_seconds * 0.9)
        return min(self.poll_interval_seconds / 10, 5.0, 0.001 * len(self.monitor_ids))

    @property
    def trigger(self) -> TriggerConfig | None:
        """The push trigger's settings; None when NOTIFIER_TRIGGER_TOKEN is unset (it is off)."""
        if self.trigger_token is None:
            return None
        return TriggerConfig(
            token=self.trigger_token.get_secret_value(),
            monitor_field=parse_field_path(self.trigger_monitor_field),
            max_polls_per_minute=self.trigger_max_polls_per_minute,
            cycles_list_every_monitor=self.poll_mode == "poll",
        )

    def secrets(self) -> list[str]:
        """Every secret value, so the log pipeline can redact it wherever it turns up."""
        values = [self.datafold_api_key, *self.destination_secrets()]
        if self.trigger_token is not None:
            values.append(self.trigger_token)
        found = [v.get_secret_value() for v in values if v.get_secret_value()]
        if self.state_url is not None:
            # The password as libpq reads it and as written (an unencoded '/' or '@' in it makes
            # the two differ), not the database name: logs may name the database.
            from notifier.store.postgres import url_secrets

            found += sorted(url_secrets(self.state_url.get_secret_value()))
        return found

    @property
    def replica(self) -> str:
        """This replica's name in the lease: NOTIFIER_REPLICA_NAME, or host name and PID."""
        return self.replica_name or f"{socket.gethostname()}:{os.getpid()}"

    @property
    def retry_after_cap(self) -> float:
        """The longest server-asked wait honoured: NOTIFIER_MAX_RETRY_AFTER_SECONDS, or the
        poll interval."""
        if self.max_retry_after_seconds is not None:
            return self.max_retry_after_seconds
        return self.poll_interval_seconds

    @property
    def lease(self) -> float:
        """The lease length in seconds: NOTIFIER_LEASE_SECONDS, or the poll interval."""
        return self.lease_seconds or max(1.0, self.poll_interval_seconds)
