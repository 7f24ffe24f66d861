"""Sample domain objects for the rendering tests: one diff monitor's alert, as Datafold reports it,
and the validator of a payload schema the notifier ships."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources

from jsonschema import Draft202012Validator

from notifier.domain.models import Links, MonitorInfo, Notification, RunEvent

STARTED = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
DETECTED = datetime(2025, 3, 14, 9, 41, 7, tzinfo=UTC)
DIFF_URL = "https://app.datafold.com/datadiffs/77001/overview"
MONITOR_URL = "https://app.datafold.com/monitors/4521"


def notification(
    *,
    state: str = "alert",
    run_id: int = 98123,
    name: str | None = "orders prod vs staging",
    monitor_type: str | None = "diff",
    tags: list[str] | None = None,
    owner: str | None = "data-team@example.com",
    started_at: datetime | None = STARTED,
    diff_id: int | None = 77001,
    error: str | None = None,
    links: Links | None = None,
    detected_at: datetime = DETECTED,
) -> Notification:
    """Run `run_id` of monitor 4521 ("orders prod vs staging"), any field overridable; `tags` and
    `links` default to finance/tier-1 and the monitor and diff pages."""
    event = RunEvent(
        monitor_id=4521, run_id=run_id, state=state, started_at=started_at, diff_id=diff_id
    )
    return Notification(
        id=event.key,
        event=event,
        monitor=MonitorInfo(
            id=4521,
            name=name,
            monitor_type=monitor_type,
            tags=["finance", "tier-1"] if tags is None else tags,
            owner=owner,
        ),
        error_message=error,
        links=Links(monitor=MONITOR_URL, diff=DIFF_URL) if links is None else links,
        detected_at=detected_at,
    )


def schema_validator(schema_file: str) -> Draft202012Validator:
    """A format-checking validator of `notifier/schemas/<schema_file>`, its schema checked."""
    text = resources.files("notifier").joinpath(f"schemas/{schema_file}").read_text()
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
