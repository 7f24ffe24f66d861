"""Reading the settings once at start-up, from the environment and `.env`: `load_settings`, and
every problem told in one line per variable, the value shown only where it holds no secret."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from notifier.run.secret_files import SecretFileError
from notifier.run.settings import Settings

#: Variables whose values may be echoed in an error message (none of them is a secret).
_ECHOABLE = {
    "NOTIFIER_MONITOR_IDS",
    "NOTIFIER_MONITOR_TAGS",
    "NOTIFIER_DISCOVERY_INTERVAL_SECONDS",
    "NOTIFIER_POLL_INTERVAL_SECONDS",
    "NOTIFIER_STATE_FILE",
    "NOTIFIER_NOTIFY_STATES",
    "NOTIFIER_LOOKBACK_SECONDS",
    "NOTIFIER_FIRST_START_LOOKBACK_SECONDS",
    "NOTIFIER_MAX_CONCURRENCY",
    "NOTIFIER_REQUEST_TIMEOUT_SECONDS",
    "NOTIFIER_PAGE_SIZE",
    "NOTIFIER_OUTBOX_EXPIRY_SECONDS",
    "NOTIFIER_SHUTDOWN_GRACE_SECONDS",
    "NOTIFIER_MONITOR_URL_TEMPLATE",
    "NOTIFIER_MONITOR_CACHE_SECONDS",
    "NOTIFIER_CATCHUP_LIMIT_SECONDS",
    "NOTIFIER_CA_BUNDLE",
    "NOTIFIER_ROUTES_FILE",
    "NOTIFIER_ALLOW_HTTP",
    "NOTIFIER_POLL_SPREAD_SECONDS",
    "NOTIFIER_POLL_MODE",
    "NOTIFIER_FEED_SWEEP_SECONDS",
    "NOTIFIER_MAX_REQUESTS_PER_SECOND",
    "NOTIFIER_HEALTH_PORT",
    "NOTIFIER_MAX_RESPONSE_BYTES",
    "NOTIFIER_MAX_RETRY_AFTER_SECONDS",
    "NOTIFIER_OUTBOX_MAX_ENTRIES",
    "NOTIFIER_HEALTH_HOST",
    "SLACK_CHANNEL",
    "PAGERDUTY_REGION",
    "NOTIFIER_SMTP_HOST",
    "NOTIFIER_SMTP_PORT",
    "NOTIFIER_SMTP_SECURITY",
    "NOTIFIER_LOG_LEVEL",
    "NOTIFIER_LOG_FORMAT",
}


class ConfigError(Exception):
    """A configuration problem, as one line that names the variable."""


class SettingError(ConfigError):
    """A variable missing or invalid: where the settings were read from (`env_source`) helps."""


def load_settings(env_file: Path | None = None, **overrides: Any) -> Settings:
    """Read and validate settings; `ConfigError` carries the one-line message for the user."""
    try:
        if env_file is not None:
            if not env_file.is_file():
                raise ConfigError(f"env file {env_file} does not exist")
            return Settings(_env_file=env_file, **overrides)
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingError(describe_validation_error(exc)) from None
    except SecretFileError as exc:  # NAME_FILE: names the variable and the path, not the value
        raise SettingError(str(exc)) from None
    except UnicodeDecodeError:
        raise ConfigError(f"env file {env_file or '.env'} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"env file {env_file or '.env'}: {exc.strerror}") from None


def env_source(env_file: Path | None) -> str:
    """Where the settings were read from, for a configuration error: the env file read (its
    full path), or that no `.env` was found in the working directory."""
    if env_file is not None:
        return f"(read from the environment and {env_file.absolute()})"
    default = Path(".env").absolute()
    if default.is_file():
        return f"(read from the environment and {default})"
    return f"(read from the environment; no .env file found in {default.parent})"


#: A value with a "# comment" after it: python-dotenv strips it, systemd's EnvironmentFile and
#: `docker run --env-file` keep it as part of the value.
_TRAILING_COMMENT = re.compile(r"\s#")
_COMMENT_HINT = (
    "a '# comment' after a value is part of it under systemd and docker --env-file: "
    "put comments on lines of their own"
)


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem, each naming the environment variable; secret inputs never shown."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = [str(part) for part in error.get("loc", ())]
        name = loc[0].upper() if loc else ""
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if error.get("type") == "missing":
            message = "is required but not set"
        if name and name in _ECHOABLE and "input" in error and not isinstance(error["input"], dict):
            message += f" (got {str(error['input'])[:80]!r})"
        if isinstance(error.get("input"), str) and _TRAILING_COMMENT.search(error["input"]):
            message += f" ({_COMMENT_HINT})"
        lines.append(f"{name}: {message}" if name else message)
    return "; ".join(lines)
