"""How far Datafold's clock is ahead of ours, as far as it is believed (`datafold_offset`)."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from notifier.fetch.datafold import DatafoldClient

log = structlog.get_logger(__name__)


#: Below this, our clock and Datafold's are taken to agree (its `Date` header has whole seconds).
CLOCK_OFFSET_MIN = 2.0
#: Beyond this, a `Date` header is not believed (a proxy's broken clock, a hostile answer): the
#: cycle keeps our own clock rather than judge every run by it.
CLOCK_OFFSET_MAX = 6 * 3600.0


def datafold_offset(client: DatafoldClient) -> Callable[[], float]:
    """How far Datafold's clock is ahead of ours (seconds), as its `Date` headers show it and as
    far as it is believed: 0 within the headers' resolution, and 0 past `CLOCK_OFFSET_MAX` (a
    proxy's broken clock, a hostile answer; logged once as an error). The cycle runs on our clock;
    the offset only widens listing windows and moves a first listing's history cutoff, so a
    replica an hour fast or slow neither misses runs nor takes history for news, and a wrong
    offset can only make a listing longer."""
    disbelieved = False

    def offset() -> float:
        nonlocal disbelieved
        measured = client.clock_offset
        if measured is None or abs(measured) < CLOCK_OFFSET_MIN:
            return 0.0
        if abs(measured) > CLOCK_OFFSET_MAX:
            if not disbelieved:
                disbelieved = True
                log.error(
                    "clock_offset_untrusted",
                    against="datafold",
                    offset_seconds=round(measured, 1),
                    bound_seconds=CLOCK_OFFSET_MAX,
                    action="not applied; check this machine's clock and any proxy",
                )
            return 0.0
        disbelieved = False
        return measured

    return offset
