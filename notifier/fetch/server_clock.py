"""Datafold's clock as its answers tell it: the offset of their `Date` headers from our clock.

Pure: each sample comes with our time (`now`) passed in.
"""

from __future__ import annotations

import statistics
from collections import deque
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

#: How many `Date` headers the clock offset is the median of.
OFFSET_SAMPLES = 5


class ServerClock:
    """The median offset of the last `samples` distinct `Date` headers from our clock."""

    def __init__(self, samples: int = OFFSET_SAMPLES) -> None:
        self._offsets: deque[float] = deque(maxlen=samples)
        self._offset: float | None = None
        self._last_date: str | None = None

    @property
    def offset(self) -> float | None:
        """Seconds Datafold's clock is ahead of ours (negative: behind); whole-second headers
        make it about ±1 s. None before any usable header."""
        return self._offset

    def note(self, value: str | None, now: datetime) -> None:
        """Take one `Date` header, read at the aware instant `now`, as a sample (once per
        distinct value: answers within the same second add nothing)."""
        if value is None or value == self._last_date:
            return
        self._last_date = value
        try:
            stamp = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        # The header is truncated to the second: its middle is the best estimate.
        self._offsets.append((stamp - now).total_seconds() + 0.5)
        self._offset = statistics.median(self._offsets)
