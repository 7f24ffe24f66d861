"""Which monitors a cycle lists: needs-poll in feed mode, discovery hysteresis, poll offsets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from notifier.detect.feed import (
    DROP_AFTER_MISSES,
    TagDiscovery,
    needs_poll,
    poll_offset,
    to_list,
    watched_monitors,
)
from notifier.domain.models import MonitorState, TrackedRun

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
KEY = "2026-11-26T11:00:00+00:00|ok"
SWEEP = timedelta(hours=1)


def polled(
    *,
    baselined: bool = True,
    last_polled_at: datetime | None = T0,
    feed_key: str | None = KEY,
    run_state: str | None = "ok",
) -> MonitorState:
    runs = {7: TrackedRun(state=run_state, first_seen=T0, last_seen=T0)}
    return MonitorState(
        watch_since=T0 - timedelta(days=1),
        baselined=baselined,
        last_polled_at=last_polled_at,
        feed_key=feed_key,
        runs=runs,
    )


@pytest.mark.parametrize(
    ("state", "key", "later", "expected"),
    [
        pytest.param(None, KEY, timedelta(0), True, id="never-polled"),
        pytest.param(polled(baselined=False), KEY, timedelta(0), True, id="not-baselined"),
        pytest.param(polled(last_polled_at=None), KEY, timedelta(0), True, id="no-poll-stamp"),
        pytest.param(polled(), KEY, timedelta(minutes=1), False, id="unchanged"),
        pytest.param(
            polled(), KEY.replace("ok", "alert"), timedelta(minutes=1), True, id="changed"
        ),
        pytest.param(polled(feed_key=None), KEY, timedelta(minutes=1), True, id="no-key-yet"),
        pytest.param(polled(run_state="checking"), KEY, timedelta(minutes=1), True, id="running"),
        pytest.param(polled(run_state=None), KEY, timedelta(minutes=1), True, id="no-state-yet"),
        pytest.param(polled(), KEY, timedelta(minutes=29), False, id="before-half-sweep"),
        pytest.param(polled(), KEY, SWEEP, True, id="sweep-due"),
    ],
)
def test_needs_poll(state: MonitorState | None, key: str, later: timedelta, expected: bool) -> None:
    assert needs_poll(1, state, key, T0 + later, sweep=SWEEP) is expected


@pytest.mark.parametrize("monitor_id", [1, 2, 3, 17, 4521, 99999])
def test_a_monitors_sweep_falls_between_half_and_all_of_the_interval(monitor_id: int) -> None:
    due_after = SWEEP * (0.5 + poll_offset(monitor_id, 0.5))
    assert SWEEP / 2 <= due_after < SWEEP
    assert not needs_poll(
        monitor_id, polled(), KEY, T0 + due_after - timedelta(seconds=1), sweep=SWEEP
    )
    assert needs_poll(monitor_id, polled(), KEY, T0 + due_after, sweep=SWEEP)


@pytest.mark.parametrize(
    ("monitor_id", "spread"),
    [(1, 0.0), (1, -5.0), (1, 60.0), (2, 60.0), (4521, 300.0), (4521, 0.5)],
)
def test_poll_offset_is_stable_and_within_the_spread(monitor_id: int, spread: float) -> None:
    offset = poll_offset(monitor_id, spread)
    assert offset == poll_offset(monitor_id, spread)
    if spread <= 0:
        assert offset == 0.0
    else:
        assert 0.0 <= offset < spread


def test_poll_offsets_differ_between_monitors() -> None:
    assert len({poll_offset(m, 60.0) for m in range(1, 50)}) > 40


@pytest.mark.parametrize(
    ("listings", "expected"),
    [
        pytest.param([{1, 2}], {1, 2}, id="first-listing"),
        pytest.param([{1, 2}, {1, 2, 3}], {1, 2, 3}, id="added"),
        pytest.param([{1, 2}, {1}], {1, 2}, id="missed-once-kept"),
        pytest.param([{1, 2}, {1}, {1}], {1}, id="missed-twice-dropped"),
        pytest.param([{1, 2}, {1}, {1, 2}, {1}], {1, 2}, id="back-in-between-resets"),
        pytest.param([{1, 2}, {1}, {1}, {1, 2}], {1, 2}, id="found-again"),
        pytest.param([{1, 2}, set(), set()], set(), id="all-gone"),
    ],
)
def test_discovery_drops_a_monitor_only_after_missed_listings_in_a_row(
    listings: list[set[int]], expected: set[int]
) -> None:
    discovery = TagDiscovery()
    for i, found in enumerate(listings):
        discovery = discovery.listed(found, T0 + timedelta(minutes=5 * i))
    assert discovery.monitors == frozenset(expected)
    assert DROP_AFTER_MISSES == 2


def test_a_failed_discovery_keeps_what_was_found_and_waits_for_the_interval() -> None:
    interval = timedelta(minutes=5)
    assert TagDiscovery().due(T0, interval)
    failed_first = TagDiscovery().failed(T0)
    assert failed_first.monitors is None
    assert not failed_first.due(T0 + timedelta(minutes=4), interval)
    assert failed_first.due(T0 + interval, interval)
    found = TagDiscovery().listed({1, 2}, T0).listed({1}, T0 + interval)
    kept = found.failed(T0 + 2 * interval)
    assert kept.monitors == frozenset({1, 2})
    assert kept.at == T0 + 2 * interval
    # The miss counted before the failure still counts: one more miss drops the monitor.
    assert kept.listed({1}, T0 + 3 * interval).monitors == frozenset({1})


@pytest.mark.parametrize(
    ("configured", "discovered", "expected"),
    [
        ((4,), None, [4]),
        ((4,), frozenset(), [4]),
        ((4, 1), frozenset({3, 1, 2}), [4, 1, 2, 3]),
        ((), frozenset({9, 5}), [5, 9]),
    ],
)
def test_watched_monitors(
    configured: tuple[int, ...], discovered: frozenset[int] | None, expected: list[int]
) -> None:
    assert watched_monitors(configured, discovered) == expected


@pytest.mark.parametrize(
    ("feed", "listed", "unchanged"),
    [
        pytest.param({}, [3, 1, 2], [], id="not-in-feed"),
        pytest.param({1: KEY, 2: KEY, 3: KEY}, [3, 2], [1], id="unchanged-and-new"),
        pytest.param({1: "changed", 2: KEY}, [3, 1, 2], [], id="changed"),
    ],
)
def test_to_list_keeps_the_monitor_order(
    feed: dict[int, str], listed: list[int], unchanged: list[int]
) -> None:
    states = {1: polled(), 2: polled(run_state="checking")}
    later = T0 + timedelta(minutes=1)
    assert to_list([3, 1, 2], feed, states, later, sweep=SWEEP) == (listed, unchanged)
