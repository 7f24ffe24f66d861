"""Logging: structlog for our events, the same pipeline for library loggers, secrets redacted."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

from notifier.domain.text import SECRET_MIN, secret_forms

REDACTED = "[REDACTED]"

#: Library loggers pinned at INFO or above whatever the level: slack_sdk.webhook logs the full
#: webhook URL (a secret) at DEBUG.
_QUIET_LOGGERS = (
    "slack_sdk",
    "slack_sdk.webhook",
    "slack_sdk.web",
    "filelock",
)


class SecretRedactor:
    """A structlog processor that replaces every known secret value in an event.

    It runs last before rendering, after tracebacks are formatted, so a URL in an exception text is
    caught too. Secrets shorter than 6 characters are not redacted (they would garble ordinary text
    and are rejected as secrets elsewhere anyway).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        # A URL's path and query are secret too when it is printed without its host, and a
        # secret may show percent-encoded (`secret_forms`).
        found = {form for s in secrets if len(s) >= SECRET_MIN for form in secret_forms(s)}
        self._secrets = sorted(found, key=len, reverse=True)

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
        if not self._secrets:
            return event
        return {key: self._clean(value) for key, value in event.items()}

    def redact(self, text: str) -> str:
        """`text` with every known secret replaced (for messages printed outside the log)."""
        cleaned: str = self._clean(text)
        return cleaned

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {k: self._clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(v) for v in value]
        if isinstance(value, BaseException | type):
            return value
        if value is None or isinstance(value, bool | int | float):
            return value
        return self._clean(str(value))


REDACTOR = SecretRedactor()


def configure_logging(
    *,
    level: str = "info",
    fmt: str | None = None,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Route structlog and the standard library's loggers to one renderer on stderr.

    `fmt` is "json" (one JSON object per line, tracebacks as a field) or "console"; None picks
    console on a terminal and JSON otherwise.
    """
    stream = stream or sys.stderr
    REDACTOR.update(secrets)
    if fmt is None:
        fmt = "console" if stream.isatty() else "json"
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        # Tracebacks as a structured field, without frame locals (they may hold secrets).
        exc_processors: list[Any] = [
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        ]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
        # Format tracebacks to text before redaction, not inside the renderer after it.
        exc_processors = [structlog.processors.format_exc_info]
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
    ]
    structlog.configure(
        # filter_by_level first: a debug call below the level costs one comparison, not a pipeline.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *exc_processors,
            REDACTOR,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    numeric = getattr(logging, level.upper(), logging.INFO)
    root.setLevel(numeric)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(numeric, logging.INFO))
    # APScheduler narrates every run at INFO; our cycle_* events say what matters.
    logging.getLogger("apscheduler").setLevel(max(numeric, logging.WARNING))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # Python warnings become log events too, so no loose line reaches stderr.
    logging.captureWarnings(True)
