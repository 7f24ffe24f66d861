"""Which monitors to list this cycle: feed-mode changes, tag discovery, poll offsets (pure).

Every function takes the time as an argument; the cycle reads the clock and does the I/O.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from notifier.domain.models import MonitorState, is_in_progress

#: A monitor found by tag is dropped only when this many listings in a row miss it (one listing
#: that misses it, a tag edited and put back, must not make the notifier forget and re-baseline it).
DROP_AFTER_MISSES = 2


def poll_offset(monitor_id: int, spread: float) -> float:
    """A monitor's stable start offset within the spread window, so polls do not burst."""
    if spread <= 0:
        return 0.0
    return spread * (zlib.crc32(str(monitor_id).encode()) / 2**32)


def needs_poll(
    monitor_id: int,
    state: MonitorState | None,
    feed_key: str,
    now: datetime,
    *,
    sweep: timedelta,
) -> bool:
    """Whether a monitor's runs must be listed although the feed may say nothing changed: never
    polled well yet, its (last_run, state) changed, runs in progress, or its sweep is due."""
    if state is None or not state.baselined or state.last_polled_at is None:
        return True
    if state.feed_key != feed_key:
        return True
    if any(is_in_progress(run.state) for run in state.runs.values()):
        return True
    # Sweeps are spread: each monitor's falls due between half and all of the sweep interval.
    due_after = sweep * (0.5 + poll_offset(monitor_id, 0.5))
    return now - state.last_polled_at >= due_after


def to_list(
    monitor_ids: Iterable[int],
    feed: Mapping[int, str],
    states: Mapping[int, MonitorState],
    now: datetime,
    *,
    sweep: timedelta,
) -> tuple[list[int], list[int]]:
    """The monitors whose runs must be listed (in order), and those the feed shows unchanged.
    A monitor missing from the feed is listed."""
    listed: list[int] = []
    unchanged: list[int] = []
    for monitor_id in monitor_ids:
        key = feed.get(monitor_id)
        if key is None or needs_poll(monitor_id, states.get(monitor_id), key, now, sweep=sweep):
            listed.append(monitor_id)
        else:
            unchanged.append(monitor_id)
    return listed, unchanged


@dataclass(frozen=True)
class TagDiscovery:
    """The monitors found by tag, when they were last listed, and how many listings in a row
    missed each monitor still kept. `monitors` is None until a discovery succeeds."""

    monitors: frozenset[int] | None = None
    at: datetime | None = None
    misses: Mapping[int, int] = field(default_factory=dict)

    def due(self, now: datetime, interval: timedelta) -> bool:
        """Whether the tags should be listed again (never listed, or `interval` has passed)."""
        return self.at is None or now - self.at >= interval

    def listed(self, found: Iterable[int], now: datetime) -> TagDiscovery:
        """After a successful listing: what it found, plus monitors it missed fewer than
        `DROP_AFTER_MISSES` times in a row."""
        previous = self.monitors or frozenset()
        kept = set(found)
        misses = {m: self.misses.get(m, 0) + 1 for m in previous - kept}
        kept.update(m for m, count in misses.items() if count < DROP_AFTER_MISSES)
        return TagDiscovery(frozenset(kept), now, misses)

    def failed(self, now: datetime) -> TagDiscovery:
        """After a failed listing: keep what was found before; try again after the interval."""
        return TagDiscovery(self.monitors, now, self.misses)


def watched_monitors(configured: Sequence[int], discovered: Iterable[int] | None) -> list[int]:
    """The configured IDs in their order, then the monitors found by tag not among them."""
    ids = list(configured)
    if not discovered:
        return ids
    known = set(ids)
    return ids + sorted(m for m in discovered if m not in known)
