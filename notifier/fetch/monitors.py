"""The monitors as the run source shows them: polling one, their details, the feed, tag discovery.

This is the I/O the cycle orchestrates; what to make of the answers is decided in `detect`. Every
failure of the source is caught here and reported as a value, so one monitor's trouble never
fails the cycle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from notifier.detect.feed import TagDiscovery
from notifier.detect.runs import listing_window, stale_in_progress
from notifier.domain.models import MonitorInfo, MonitorRun, MonitorState, MonitorSummary, RunEvent
from notifier.fetch.source import DatafoldError, NotFound, RunSource

log = structlog.get_logger(__name__)

#: In-progress runs that left the listing window are fetched one by one, at most this many per
#: monitor per cycle.
MAX_DIRECT_FETCHES = 20


async def fan_out(
    monitor_ids: Iterable[int],
    handle: Callable[[int], Awaitable[None]],
    *,
    offset: Callable[[int], float] = lambda _: 0.0,
    width: int,
) -> None:
    """`handle(m)` for every monitor, each started `offset(m)` seconds from now at the earliest
    (earliest first), at most `width` at once: a cycle of 10,000 monitors holds `width` tasks
    and call stacks, not 10,000 (each costs a few kilobytes while it waits for its turn)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    ordered = sorted(monitor_ids, key=offset)  # stable: equal offsets keep their order
    queue = iter(ordered)

    async def worker() -> None:
        for monitor_id in queue:  # shared: each worker takes the next monitor due
            wait = start + offset(monitor_id) - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            await handle(monitor_id)

    await asyncio.gather(*(worker() for _ in range(min(max(1, width), len(ordered)))))


@dataclass
class Poll:
    """One monitor's listing: its runs (None when the listing failed, with `error`), and the
    in-progress runs the source no longer knows (`gone`)."""

    monitor_id: int
    runs: list[MonitorRun] | None = None
    gone: list[int] = field(default_factory=list)
    error: DatafoldError | None = None


@dataclass(frozen=True)
class ListingReach:
    """How far back a monitor's listing reaches (see `listing_window`)."""

    lookback: timedelta
    catchup_limit: timedelta
    first_start_lookback: timedelta = timedelta(0)


_DETAILS = tuple(MonitorInfo.model_fields)


def _same_details(info: MonitorInfo, summary: MonitorSummary) -> bool:
    """Whether every field of `info` has the summary's value (a summary is the details plus its
    latest run)."""
    return info.__dict__.items() <= summary.__dict__.items()


class _Gone:
    """Marks a run the API answered 404 for."""


_GONE = _Gone()


class Monitors:
    """Reads monitors from the run source, and remembers their details for `cache` (a
    notification shows them) and what tag discovery found."""

    def __init__(
        self,
        source: RunSource,
        *,
        reach: ListingReach,
        cache: timedelta,
        source_offset: Callable[[], float],
    ) -> None:
        self._source = source
        self._reach = reach
        self._cache_for = cache
        #: Seconds the source's clock is ahead of ours (listings reach back further when behind).
        self._source_offset = source_offset
        self._info: dict[int, tuple[MonitorInfo, datetime]] = {}
        self.discovery = TagDiscovery()

    def has_details(self, monitor_id: int) -> bool:
        """Whether the monitor's details were ever read (routing may need them)."""
        return monitor_id in self._info

    def known(self) -> dict[int, MonitorInfo]:
        """The last details read of each monitor (names for the status page)."""
        return {monitor_id: info for monitor_id, (info, _) in self._info.items()}

    def _remember(self, summaries: Sequence[MonitorSummary], now: datetime) -> None:
        """A monitors listing carries what a notification shows of each: no extra request.

        Details as they were already are kept as they were (the feed lists every monitor every
        cycle, and they seldom change); others are taken from the summary, validated as read.
        """
        known = self._info
        for summary in summaries:
            cached = known.get(summary.id)
            if cached is not None and _same_details(cached[0], summary):
                known[summary.id] = (cached[0], now)
                continue
            details = {name: getattr(summary, name) for name in _DETAILS}
            known[summary.id] = (MonitorInfo.model_construct(None, **details), now)

    async def info(self, monitor_id: int, now: datetime) -> MonitorInfo:
        """The monitor's details: cached, fetched, or (when that fails) as last known or bare."""
        cached = self._info.get(monitor_id)
        if cached and now - cached[1] < self._cache_for:
            return cached[0]
        try:
            info = await self._source.get_monitor(monitor_id)
        except DatafoldError as exc:
            log.warning("monitor_detail_failed", monitor_id=monitor_id, error=str(exc))
            return cached[0] if cached else MonitorInfo(id=monitor_id)
        self._info[monitor_id] = (info, now)
        return info

    async def error_message(self, event: RunEvent) -> str | None:
        """An `error` run's message from its detail; None for other states or when unavailable."""
        if event.state != "error":
            return None
        try:
            detail = await self._source.get_run(event.monitor_id, event.run_id)
        except DatafoldError as exc:
            log.warning(
                "run_detail_failed",
                monitor_id=event.monitor_id,
                run_id=event.run_id,
                error=str(exc),
            )
            return None
        return detail.error

    async def feed(self, now: datetime) -> dict[int, str] | None:
        """The change feed: each monitor's (last_run, state) key, or None to poll everything."""
        try:
            summaries = await self._source.list_monitors()
        except DatafoldError as exc:
            log.warning(
                "feed_failed", kind=exc.kind, error=str(exc), fallback="polling every monitor"
            )
            return None
        self._remember(summaries, now)
        return {summary.id: summary.feed_key for summary in summaries}

    async def discover(self, tags: Sequence[str], now: datetime) -> DatafoldError | None:
        """List the monitors of each tag (any tag counts) into `discovery`; on failure keep what
        was found before and return the error. A monitor one listing misses is kept for now."""
        found: set[int] = set()
        try:
            for tag in tags:
                summaries = await self._source.list_monitors([tag])
                found.update(summary.id for summary in summaries)
                self._remember(summaries, now)
        except DatafoldError as exc:
            log.warning(
                "discovery_failed",
                kind=exc.kind,
                error=str(exc),
                keeping=len(self.discovery.monitors or ()),
            )
            self.discovery = self.discovery.failed(now)
            return exc
        previous = self.discovery.monitors or frozenset()
        self.discovery = self.discovery.listed(found, now)
        kept = self.discovery.monitors or frozenset()
        log.info(
            "monitors_discovered",
            tags=list(tags),
            monitors=len(kept),
            added=sorted(kept - previous),
            removed=sorted(previous - kept),
        )
        return None

    async def poll(self, monitor_id: int, state: MonitorState | None, now: datetime) -> Poll:
        """List the monitor's recent runs, and fetch one by one, up to
        `MAX_DIRECT_FETCHES`, the runs `state` has in progress that left the listing window."""
        try:
            window = listing_window(
                state,
                now,
                lookback=self._reach.lookback,
                catchup_limit=self._reach.catchup_limit,
                first_start_lookback=self._reach.first_start_lookback,
            )
            if window.limited:
                log.warning(
                    "catch_up_limited",
                    monitor_id=monitor_id,
                    since=window.since.isoformat(),
                    reason="the last successful poll is older than NOTIFIER_CATCHUP_LIMIT_SECONDS",
                )
            # Datafold's clock behind ours: its stamps are earlier than ours, so reach back as
            # far (an offset ahead only means listing a little more than needed).
            behind = timedelta(seconds=min(0.0, self._source_offset()))
            runs = list(await self._source.list_runs(monitor_id, window.since + behind))
            listed = {run.run_id for run in runs}
            stale = stale_in_progress(state, listed)[:MAX_DIRECT_FETCHES]
            if not stale:  # the common case: no gather, no extra task
                return Poll(monitor_id, runs=runs)
            found = await asyncio.gather(*(self._direct(monitor_id, run_id) for run_id in stale))
            gone = []
            for run_id, result in zip(stale, found, strict=True):
                if isinstance(result, _Gone):
                    gone.append(run_id)
                elif result is not None:
                    runs.append(result)
            return Poll(monitor_id, runs=runs, gone=gone)
        except DatafoldError as exc:
            log.warning("poll_failed", monitor_id=monitor_id, kind=exc.kind, error=str(exc))
            return Poll(monitor_id, error=exc)
        except Exception as exc:
            log.exception(
                "poll_failed", monitor_id=monitor_id, kind="internal", error=type(exc).__name__
            )
            return Poll(monitor_id, error=DatafoldError(f"internal error: {type(exc).__name__}"))

    async def _direct(self, monitor_id: int, run_id: int) -> MonitorRun | _Gone | None:
        """A run that left the window: its detail, `_GONE` if the source no longer has it, or
        None when it could not be fetched this time (it stays tracked)."""
        try:
            detail = await self._source.get_run(monitor_id, run_id)
        except NotFound:
            return _GONE
        except DatafoldError as exc:
            log.warning("run_fetch_failed", monitor_id=monitor_id, run_id=run_id, error=str(exc))
            return None
        if detail.run_id != run_id or detail.monitor_id != monitor_id:
            log.warning("run_fetch_mismatch", monitor_id=monitor_id, run_id=run_id)
            return None
        return detail
