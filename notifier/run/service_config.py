"""What a cycle knows of the settings (`ServiceConfig`), taken from them once by
`service_config`: the cycle itself never reads `Settings`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from notifier.detect.runs import DetectionPolicy
from notifier.run.settings import Settings


@dataclass(frozen=True)
class ServiceConfig:
    """What a cycle needs to know, taken from the settings once."""

    monitor_ids: Sequence[int]
    policy: DetectionPolicy
    lookback: timedelta
    outbox_expiry: timedelta
    #: After downtime, listings reach back to the last successful poll, but no further than this.
    catchup_limit: timedelta
    host: str
    monitor_url_template: str
    monitor_cache: timedelta = timedelta(hours=1)
    #: Polls start at a stable per-monitor offset within this window, not all at once.
    spread: timedelta = timedelta(0)
    #: "poll": list every monitor's runs each cycle. "feed": read the monitors listing first and
    #: list runs only where (last_run, state) changed, runs are in progress, or a sweep is due.
    mode: Literal["poll", "feed"] = "poll"
    #: In feed mode, every monitor's runs are still listed at least this often.
    sweep: timedelta = timedelta(hours=1)
    #: Monitors carrying any of these tags are watched too, found by listing monitors per tag.
    monitor_tags: tuple[str, ...] = ()
    discovery_interval: timedelta = timedelta(minutes=5)
    #: An incident with nothing queued about it for this long is re-notified; None: never.
    reminder_interval: timedelta | None = None
    #: The longest a destination's Retry-After defers it (NOTIFIER_MAX_RETRY_AFTER_SECONDS).
    retry_after_cap: timedelta = timedelta(seconds=60)
    #: Notifications waiting at most; past it the oldest are dropped (NOTIFIER_OUTBOX_MAX_ENTRIES).
    outbox_max: int = 5000
    #: Monitors a cycle handles at once (`fan_out`'s width): four times the request concurrency,
    #: twice the client's door. More would only queue at the door, each holding its monitor's
    #: turn, so a push trigger's poll of it would wait for the queue (`run/expedite.py`).
    polls_at_once: int = 64


def service_config(settings: Settings, *, spread: bool = True) -> ServiceConfig:
    """The cycle's view of the settings; `spread=False` for one-shot cycles that should be quick."""
    lookback = timedelta(seconds=settings.lookback_seconds)
    return ServiceConfig(
        monitor_ids=tuple(settings.monitor_ids),
        policy=DetectionPolicy(
            notify_states=frozenset(settings.notify_states),
            retention=max(2 * lookback, timedelta(hours=1)),
            in_progress_limit=timedelta(hours=24),
            first_start_lookback=timedelta(seconds=settings.first_start_lookback_seconds),
            stamp_granularity=min(lookback / 4, timedelta(minutes=5)),
        ),
        lookback=lookback,
        outbox_expiry=timedelta(seconds=settings.outbox_expiry_seconds),
        catchup_limit=timedelta(seconds=settings.catchup_limit_seconds),
        host=settings.datafold_host,
        monitor_url_template=settings.monitor_url_template,
        monitor_cache=timedelta(seconds=settings.monitor_cache_seconds),
        spread=timedelta(seconds=settings.poll_spread if spread else 0.0),
        mode=settings.poll_mode,
        sweep=timedelta(seconds=settings.feed_sweep_seconds),
        monitor_tags=tuple(settings.monitor_tags),
        discovery_interval=timedelta(seconds=settings.discovery_interval_seconds),
        reminder_interval=(
            timedelta(seconds=settings.reminder_interval_seconds)
            if settings.reminder_interval_seconds > 0
            else None
        ),
        retry_after_cap=timedelta(seconds=settings.retry_after_cap),
        outbox_max=settings.outbox_max_entries,
        polls_at_once=4 * settings.max_concurrency,
    )
