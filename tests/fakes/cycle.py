"""Shared scaffolding for cycle tests over the in-memory fakes: a settable clock and a config."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from notifier.detect.runs import DetectionPolicy
from notifier.run.cycle import ServiceConfig

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


class Clock:
    """The time a cycle sees; tests move it on by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def tick(self, minutes: float = 1) -> None:
        self.now += timedelta(minutes=minutes)


def cycle_config(monitor_ids: tuple[int, ...] = (1, 2), **overrides: Any) -> ServiceConfig:
    """A small ServiceConfig: alert and error notified, 30 minutes of lookback."""
    values: dict[str, Any] = {
        "monitor_ids": monitor_ids,
        "policy": DetectionPolicy(
            notify_states=frozenset({"alert", "error"}),
            retention=timedelta(hours=1),
            in_progress_limit=timedelta(hours=24),
        ),
        "lookback": timedelta(minutes=30),
        "outbox_expiry": timedelta(hours=24),
        "catchup_limit": timedelta(hours=24),
        "host": "https://app.example",
        "monitor_url_template": "{host}/monitors/{monitor_id}",
    }
    values.update(overrides)
    return ServiceConfig(**values)
