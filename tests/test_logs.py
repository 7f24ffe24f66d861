"""The log pipeline: one JSON object per line for every logger, and no secret ever."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from notifier.domain.text import secret_forms, without_secrets
from notifier.run.logs import REDACTED, SecretRedactor, configure_logging

SECRETS = ["dfk-very-secret-key", "https://hooks.slack.com/services/T1/B2/sEcReTpAtH"]


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure_logging(level="debug", fmt="json", secrets=SECRETS, stream=out)
    yield out
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_every_logger_writes_one_json_object_per_line(stream: io.StringIO) -> None:
    structlog.get_logger("notifier.x").info("ours", monitor_id=3)
    logging.getLogger("aiohttp.client").warning("library %s", "message")
    logging.getLogger("apscheduler.scheduler").error("scheduler trouble")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        structlog.get_logger("notifier.x").exception("failed")
        logging.getLogger("aiohttp.server").exception("library failed")
    parsed = lines(stream)
    assert [p["event"] for p in parsed] == [
        "ours",
        "library message",
        "scheduler trouble",
        "failed",
        "library failed",
    ]
    assert parsed[0]["monitor_id"] == 3
    for entry in parsed[3:]:
        [exc] = entry["exception"]  # type: ignore[misc]
        assert exc["exc_type"] == "RuntimeError" and "frames" in exc


def test_secrets_are_redacted_everywhere(stream: io.StringIO) -> None:
    key, url = SECRETS
    log = structlog.get_logger("notifier.x")
    log.info("plain", value=f"key={key}", nested={"url": url, "list": [url]})
    log.info(f"in the event text {key}")
    logging.getLogger("aiohttp.client").warning("POST %s failed", url)
    logging.getLogger("aiohttp.client").warning("path only: /services/T1/B2/sEcReTpAtH")
    try:
        raise ConnectionError(f"cannot connect to {url}")
    except ConnectionError:
        log.exception("failed")
    text = stream.getvalue()
    for secret in [*SECRETS, "/services/T1/B2/sEcReTpAtH"]:
        assert secret not in text
    assert text.count(REDACTED) >= 6


def test_slack_webhook_debug_logger_is_pinned_at_info(stream: io.StringIO) -> None:
    logging.getLogger("slack_sdk.webhook.async_client").debug("Sending a request - url: x")
    logging.getLogger("notifier.anything").debug("our debug line")
    assert [p["event"] for p in lines(stream)] == ["our debug line"]


def test_console_format_redacts_tracebacks() -> None:
    out = io.StringIO()
    configure_logging(level="info", fmt="console", secrets=SECRETS, stream=out)
    try:
        raise ValueError(f"bad {SECRETS[0]}")
    except ValueError:
        structlog.get_logger("x").exception("failed")
    assert SECRETS[0] not in out.getvalue() and "ValueError" in out.getvalue()
    logging.getLogger().handlers.clear()
    structlog.reset_defaults()


def test_a_secret_shows_in_none_of_its_forms() -> None:
    """Itself, percent-encoded, and a URL's path and query without its host (a request line
    said back by a proxy); the longest form goes first, so no fragment of it is left."""

    url = "https://proxy.example/am-s3cret/x?k=1"
    assert secret_forms(url) >= {url, "/am-s3cret/x?k=1"}
    assert secret_forms("tok+en/==") == {"tok+en/==", "tok%2Ben%2F%3D%3D"}
    assert secret_forms("short") == set()
    said = "POST /am-s3cret/x?k=1/api/v2/alerts Bearer tok%2Ben%2F%3D%3D or tok+en/== to " + url
    cleaned = without_secrets(said, [url, "tok+en/==", None])
    assert cleaned == (
        "POST [REDACTED]/api/v2/alerts Bearer [REDACTED] or [REDACTED] to [REDACTED]"
    )
    redactor = SecretRedactor([url, "tok+en/=="])
    assert redactor.redact(said) == cleaned
