"""Generated hostile listings of runs, served over a real local server to the real client.

Pages mix valid runs with malformed ones: wrong types, huge strings, deep nesting, unknown
states, missing fields, duplicated IDs, other monitors' runs, numbers too long to parse. Whatever
comes, `DatafoldClient.list_runs` returns every valid run of its monitor (one that cannot be read
costs only itself), raises nothing but a documented `DatafoldError`, logs short lines, and holds
memory in proportion to what it was sent.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import event, example, given, target
from hypothesis import strategies as st
from structlog.testing import capture_logs

from notifier.demo.records import RUN_STATES as SCHEMA_STATES
from notifier.domain.models import MonitorRun
from notifier.fetch.datafold import DatafoldClient
from notifier.fetch.source import AnswerTooLarge, DatafoldError, MalformedAnswer
from tests.fakes.scripted_api import Raw
from tests.test_properties import (  # the project's property-test conventions and fixture
    API_KEY,
    MONITOR,
    PROFILE,
    SINCE,
    Served,
    _parsed,
    budget,
    served,  # noqa: F401  # the fixture, registered by importing it
)

#: Nesting and digits far from what Python's parser refuses (about 990 levels, 4,300 digits),
#: so whether a page parses never depends on how deep the stack happens to be.
SHALLOW, DEEP = 400, 5_000
SHORT_DIGITS, LONG_DIGITS = 4_000, 5_000
DEFAULT_LIMIT = 4 * 1024 * 1024
SMALL_LIMIT = 64 * 1024
#: Memory the client may hold while reading one listing: this many times the bytes sent, plus
#: this much. The worst is a page of minimal runs: each 30-byte `{"run_id":1,"monitor_id":7}`
#: becomes a dict and a model of about 750 bytes together (25x; the soak profile's highest: 13x).
MEMORY_FACTOR = 32
MEMORY_CONSTANT = 2 * 1024 * 1024
#: The events the client may log about a listing, and how long one may be.
EXPECTED_EVENTS = frozenset({"datafold.run_unreadable", "datafold.foreign_run_dropped"})
LOG_LINE_MAX = 1_000
#: A soak runs for minutes: lift the per-test timeout for it.
pytestmark = [pytest.mark.timeout(0)] if PROFILE == "soak" else []


def _text(value: Any) -> str:
    return json.dumps(value)


def nested(depth: int) -> str:
    """JSON text nested `depth` levels deep (json.dumps cannot write what json.loads refuses)."""
    return "[" * depth + "]" * depth


def with_raw(obj: dict[str, Any], key: str, raw: str) -> str:
    """`obj` as JSON text with `key` set to the JSON text `raw`."""
    text = _text({k: v for k, v in obj.items() if k != key})
    return text[:-1] + f', "{key}": {raw}}}'


run_ids = st.one_of(st.integers(0, 30), st.integers(-(2**63), 2**63 - 1))
valid_runs = st.fixed_dictionaries(
    {"run_id": run_ids, "monitor_id": st.just(MONITOR)},
    optional={
        "state": st.one_of(
            st.sampled_from(SCHEMA_STATES),
            st.sampled_from(("ALERT", "paused", "", "future_state")),
            st.none(),
        ),
        "started_at": st.sampled_from(("2026-11-26T12:00:00Z", "2026-11-26T12:00:00+02:00", None)),
        "diff_id": st.none() | st.integers(0, 10**6),
    },
).map(_text)
foreign_runs = st.fixed_dictionaries(
    {"run_id": run_ids, "monitor_id": st.sampled_from((8, -1, 2**40)), "state": st.just("alert")}
).map(_text)
wrong_types = st.sampled_from(
    (
        None,
        True,
        1.5,
        "seven",
        "",
        [],
        [1, 2],
        {},
        {"nested": {"run_id": 1}},
        -(2**70),
    )
)


@st.composite
def malformed_runs(draw: st.DrawFn) -> str:
    """One listed run that breaks the schema in one way, as JSON text."""
    base: dict[str, Any] = {"run_id": draw(run_ids), "monitor_id": MONITOR, "state": "alert"}
    how = draw(
        st.sampled_from(
            (
                "retype",
                "drop",
                "huge_state",
                "huge_extra",
                "huge_extra",
                "nest_extra",
                "nest_field",
                "not_object",
                "long_digits",
            )
        )
    )
    if how == "retype":
        base[draw(st.sampled_from(("run_id", "monitor_id", "state", "diff_id")))] = draw(
            wrong_types
        )
    elif how == "drop":
        del base[draw(st.sampled_from(("run_id", "monitor_id")))]
    elif how == "huge_state":
        base["state"] = "a" * draw(st.integers(65, 200_000))
    elif how == "huge_extra":
        base["comment"] = "é" * draw(st.integers(1_000, 200_000))
    elif how == "not_object":
        return _text(draw(wrong_types))
    elif how == "long_digits":
        key = draw(st.sampled_from(("run_id", "diff_id", "extra")))
        return with_raw(base, key, "9" * draw(st.sampled_from((SHORT_DIGITS, LONG_DIGITS))))
    else:
        key = "extra" if how == "nest_extra" else "state"
        return with_raw(base, key, nested(draw(st.sampled_from((SHALLOW, DEEP)))))
    return _text(base)


items = st.one_of(valid_runs, valid_runs, foreign_runs, malformed_runs())


@dataclass(frozen=True)
class Listing:
    """The pages as sent (JSON text each) and the client's limit on one answer."""

    pages: tuple[bytes, ...]
    limit: int

    def __repr__(self) -> str:
        sizes = ", ".join(f"{len(page):,} B" for page in self.pages)
        return f"Listing(pages=[{sizes}], limit={self.limit:,}): {self.pages!r:.2000}"

    @property
    def size(self) -> int:
        return sum(len(page) for page in self.pages)


@st.composite
def listings(draw: st.DrawFn) -> Listing:
    count = draw(st.integers(1, 3))
    pages = []
    for number in range(1, count + 1):
        runs = draw(st.lists(items, min_size=1, max_size=40))
        if draw(st.integers(0, 3)) == 0:
            # Many minimal runs: what costs most to parse per byte.
            first = draw(st.integers(0, 10**6))
            dense = range(first, first + draw(st.integers(100, 1_500)))
            runs += [f'{{"run_id":{run_id},"monitor_id":{MONITOR}}}' for run_id in dense]
        head = {"count": 0, "page": number, "page_size": len(runs), "total_pages": count}
        pages.append((_text(head)[:-1] + ', "runs": [' + ", ".join(runs) + "]}").encode())
    limit = draw(st.sampled_from((DEFAULT_LIMIT, SMALL_LIMIT)))
    return Listing(tuple(pages), limit)


#: Runs a page is asked for: NOTIFIER_PAGE_SIZE's highest value, so that pages are large.
PAGE_SIZE = 1000


def documented_outcome(listing: Listing) -> type[DatafoldError] | list[MonitorRun]:
    """Pages are read in order; the first one too large or not JSON ends the listing. Else every
    run, read on its own, later copies winning (the project's `_parsed` reading)."""
    objects: list[Any] = []
    for page in listing.pages:
        if len(page) > listing.limit:
            return AnswerTooLarge
        try:
            runs = json.loads(page)["runs"]
        except (ValueError, RecursionError):
            return MalformedAnswer
        if len(runs) > PAGE_SIZE:  # more runs than asked for: refused before any is read
            return MalformedAnswer
        objects += runs
    latest: dict[int, MonitorRun] = {}
    for run in _parsed(objects):
        if run.monitor_id == MONITOR:
            latest[run.run_id] = run
    return list(latest.values())


def _example(*runs: str, limit: int = DEFAULT_LIMIT) -> Listing:
    head = '{"count": 1, "page": 1, "page_size": 1, "total_pages": 1, "runs": ['
    return Listing(((head + ", ".join(runs) + "]}").encode(),), limit)


VALID = {"run_id": 1, "monitor_id": MONITOR, "state": "alert"}


@budget(60, shared_fixture=True)
@given(listing=listings())
# A later unreadable copy of run 1 (nested state) replaces it with a run without a state.
@example(_example(_text(VALID), with_raw(VALID, "state", nested(SHALLOW))))
@example(_example(_text(VALID), with_raw({"monitor_id": MONITOR}, "x", nested(DEEP))))
@example(_example(_text(VALID), with_raw({"monitor_id": MONITOR}, "run_id", "9" * LONG_DIGITS)))
@example(_example(_text(VALID), _text({**VALID, "run_id": 2, "state": "a" * 100_000})))
@example(_example(_text(VALID), _text({**VALID, "note": "x" * 100_000}), limit=SMALL_LIMIT))
def test_hostile_listing_costs_only_itself(
    served: Served,  # noqa: F811  # the fixture imported above
    listing: Listing,
) -> None:
    """The documented outcome, exactly; only the DatafoldError family; short log lines; memory
    held in proportion to the bytes sent."""
    served.api.play([Raw(page) for page in listing.pages])
    client = DatafoldClient(
        served.session,
        served.url,
        API_KEY,
        page_size=PAGE_SIZE,
        max_response_bytes=listing.limit,
        request_timeout=10,
    )

    async def call() -> list[MonitorRun] | Exception:
        try:
            return await client.list_runs(MONITOR, SINCE)
        except Exception as exc:
            return exc

    expected = documented_outcome(listing)
    tracemalloc.start()
    try:
        with capture_logs() as logs:
            started = time.monotonic()
            outcome = served.loop.run(call(), timeout=30)
            elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    event(f"outcome: {type(outcome).__name__}")
    # Steers generation towards the listings that cost most memory per byte sent.
    target((peak - MEMORY_CONSTANT) / listing.size, label="memory per byte sent")
    assert elapsed < 20
    assert peak <= MEMORY_FACTOR * listing.size + MEMORY_CONSTANT, (peak, listing.size)
    for line in logs:
        assert line["event"] in EXPECTED_EVENTS, line
        assert len(repr(line)) <= LOG_LINE_MAX, repr(line)[:300]
    if isinstance(expected, list):
        assert not isinstance(outcome, Exception), repr(outcome)
        assert {run.run_id: run for run in outcome} == {run.run_id: run for run in expected}
        assert len(outcome) == len(expected)
        return
    assert isinstance(outcome, DatafoldError), repr(outcome)
    assert type(outcome) is expected, repr(outcome)
    message = str(outcome)
    assert "\n" not in message and len(message) < 300 and API_KEY not in message
