"""Generated Datafold answers and listings: the client, detection and a cycle keep their contracts.

Answers are built by hand from the published schemas (`datafold-list-monitor-runs.md`, the state
enum of `datafold-monitors-openapi.yml`), absurd-but-valid values included, plus answers that break
the schema. CI runs a fixed, derandomized budget; `NOTIFIER_HYPOTHESIS_PROFILE=soak` runs ~30x more
examples with a fresh seed each time.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal, TypeVar

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from structlog.testing import capture_logs

from notifier.demo.records import RUN_STATES
from notifier.detect.runs import CLOCK_SKEW_MARGIN, DetectionPolicy, detect, new_monitor_state
from notifier.domain.models import (
    MonitorInfo,
    MonitorRun,
    MonitorState,
    MonitorSummary,
    NotifierState,
    RunDetail,
    is_in_progress,
)
from notifier.domain.outbox_requests import OutboxRequest
from notifier.domain.values import retry_after_seconds
from notifier.fetch.answers import RunPage
from notifier.fetch.datafold import DatafoldClient
from notifier.fetch.source import (
    ApiKeyRefused,
    ApiUnavailable,
    DatafoldError,
    MalformedAnswer,
    NotFound,
    RequestRejected,
)
from notifier.run.cycle import Notifier, ServiceConfig
from tests.fakes.scripted_api import (
    Answer,
    BackgroundLoop,
    Bulk,
    Json,
    Raw,
    Reply,
    ScriptedApi,
    Sliced,
    Slow,
    Truncated,
    start_server,
)
from tests.fakes.source import FakeSink

T = TypeVar("T")

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "soak",
    derandomize=False,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = os.environ.get("NOTIFIER_HYPOTHESIS_PROFILE", "ci")
_SCALE = {"ci": 1, "soak": 30}[PROFILE]
#: A soak runs for minutes: lift the per-test timeout for it.
pytestmark = [pytest.mark.timeout(0)] if PROFILE == "soak" else []


def budget(ci_examples: int, *, shared_fixture: bool = False) -> settings:
    """The property's CI example count, scaled up under the soak profile.

    `shared_fixture`: the test reuses a function-scoped fixture across examples on purpose
    (one server per test function, its script reset by every example).
    """
    base = settings.get_profile(PROFILE)
    checks = list(base.suppress_health_check)
    if shared_fixture:
        checks.append(HealthCheck.function_scoped_fixture)
    return settings(base, max_examples=ci_examples * _SCALE, suppress_health_check=checks)


MONITOR = 7
API_KEY = "dfk_prop_s3cr3t_0123456789abcdef"
SINCE = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
#: What `NOTIFIER_NOTIFY_STATES` accepts: finished states only.
FINISHED_STATES = ("alert", "error", "ok", "skipped", "cancelled")
RUN_FIELDS = frozenset({"run_id", "monitor_id", "state", "started_at", "diff_id"})
PAGE_FIELDS = frozenset({"count", "page", "page_size", "total_pages", "runs"})
DOCUMENTED_ERRORS = (ApiKeyRefused, NotFound, MalformedAnswer, ApiUnavailable, RequestRejected)
#: False while the OverflowError bug is open (`test_offset_stamp_at_calendar_end_*`): generated
#: stamps then avoid non-zero offsets on 0001-01-01 and 9999-12-31. Set True once it is fixed.
CALENDAR_ENDS_WITH_OFFSET = True
EXTREME_INTS = (0, -1, -(2**31), 2**31 - 1, 2**53 + 1, -(2**63), 2**63 - 1, 2**63, 10**30)


def weighted(*choices: tuple[int, st.SearchStrategy[T]]) -> st.SearchStrategy[T]:
    """One of `choices`, picked in proportion to its weight (shrinks towards the first)."""
    total = sum(weight for weight, _ in choices)

    @st.composite
    def pick(draw: st.DrawFn) -> T:
        ticket = draw(st.integers(0, total - 1))
        for weight, strategy in choices:
            if ticket < weight:
                return draw(strategy)
            ticket -= weight
        raise AssertionError("unreachable")

    return pick()


# --- values the published schemas allow ---------------------------------------------------------

absurd_ints = st.one_of(st.integers(-(2**70), 2**70), st.sampled_from(EXTREME_INTS))
small_or_absurd = weighted((4, st.integers(-2, 6)), (1, absurd_ints))
run_ids = weighted((6, st.integers(0, 6)), (1, absurd_ints))
states = weighted(
    (6, st.sampled_from(RUN_STATES)),
    (2, st.none()),
    (1, st.sampled_from(("ALERT", "Alert", " alert", "", "paused", "alert\n", "ok "))),
    (1, st.text(max_size=8)),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


def extra_fields(known: frozenset[str]) -> st.SearchStrategy[dict[str, Any]]:
    keys = st.text(max_size=10).filter(lambda key: key not in known)
    return weighted((3, st.just({})), (1, st.dictionaries(keys, json_values, max_size=3)))


@st.composite
def date_times(draw: st.DrawFn, calendar_ends_with_offset: bool) -> str:
    """RFC 3339 `date-time` text from year 1 to 9999: `Z`, numeric offsets, 0-9 fraction digits,
    lowercase `t`/`z` (RFC 3339 allows them), and near misses (no offset, a space separator).

    `calendar_ends_with_offset` allows a non-zero offset on 0001-01-01 and 9999-12-31, whose UTC
    equivalent may fall outside Python's calendar.
    """
    moment = draw(st.datetimes(min_value=datetime.min, max_value=datetime.max))
    text = moment.isoformat(timespec="seconds")
    digits = draw(st.integers(0, 9))
    if digits:
        text += "." + f"{moment.microsecond:06d}{draw(st.integers(0, 999)):03d}"[:digits]
    style = draw(st.sampled_from(("Z", "+00:00", "offset", "lower", "naive", "space")))
    at_end = moment.date() in (datetime.min.date(), datetime.max.date())
    if style == "offset" and at_end and not calendar_ends_with_offset:
        style = "Z"
    if style == "offset":
        minutes = draw(st.integers(-(23 * 60 + 59), 23 * 60 + 59))
        sign = "-" if minutes < 0 else "+"
        return f"{text}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    if style == "lower":
        return text.replace("T", "t") + "z"
    if style == "naive":
        return text
    if style == "space":
        return text.replace("T", " ") + "Z"
    return text + style


unparseable_dates = st.one_of(
    st.sampled_from(
        (
            "",
            "now",
            "2024-13-01T00:00:00Z",
            "2024-02-30T00:00:00Z",
            "2024-12-31T23:59:60Z",
            "0000-01-01T00:00:00Z",
            "10000-01-01T00:00:00Z",
            "2024-05-01T12:00:00+24:00",
            "2024-05-01",
            "1714564800",
        )
    ),
    st.text(max_size=20),
)


def started_ats(calendar_ends_with_offset: bool) -> st.SearchStrategy[str | None]:
    return weighted(
        (2, st.none()),
        (6, date_times(calendar_ends_with_offset)),
        (2, unparseable_dates),
    )


@st.composite
def run_objects(
    draw: st.DrawFn,
    monitor_ids: st.SearchStrategy[int] | None = None,
    calendar_ends_with_offset: bool = CALENDAR_ENDS_WITH_OFFSET,
) -> dict[str, Any]:
    """An `ApiPublicMonitorRunOut`: required `run_id` and `monitor_id`, each optional field
    absent, null or set, and unknown fields beside them."""
    if monitor_ids is None:
        monitor_ids = weighted((5, st.just(MONITOR)), (1, absurd_ints))
    run = draw(
        st.fixed_dictionaries(
            {"run_id": run_ids, "monitor_id": monitor_ids},
            optional={
                "state": states,
                "started_at": started_ats(calendar_ends_with_offset),
                "diff_id": st.none() | absurd_ints,
            },
        )
    )
    return {**run, **draw(extra_fields(RUN_FIELDS))}


@st.composite
def page_objects(draw: st.DrawFn, runs: st.SearchStrategy[list[dict[str, Any]]]) -> dict[str, Any]:
    """An `ApiPublicListMonitorRunsOut` whose numbers need not agree with anything."""
    page = {
        "count": draw(small_or_absurd),
        "page": draw(small_or_absurd),
        "page_size": draw(small_or_absurd),
        "total_pages": draw(small_or_absurd),
        "runs": draw(runs),
    }
    return {**page, **draw(extra_fields(PAGE_FIELDS))}


run_lists = st.lists(run_objects(), max_size=6)
valid_pages = st.builds(lambda body: Json(body, page_valid=True), page_objects(run_lists))
sliced_pages = st.builds(
    Sliced,
    runs=st.lists(run_objects(), max_size=12).map(tuple),
    count=small_or_absurd,
    total_pages=weighted((3, st.none()), (1, small_or_absurd)),
)
bulk_pages = st.builds(
    Bulk,
    size=st.integers(200, 3000),
    first_id=st.integers(0, 10),
    distinct=st.integers(1, 3000),
    monitor_id=st.just(MONITOR),
    foreign_every=st.integers(0, 7),
    total_pages=small_or_absurd,
)

# --- answers that break the schema or the HTTP exchange -----------------------------------------

#: Scripts with a `Slow` answer run with a short timeout that it outlasts; others with a long one,
#: so that a loaded CI machine never turns an answer into a timeout the course model did not expect.
SHORT_TIMEOUT = 0.25
LONG_TIMEOUT = 5.0
#: The client's longest pause between attempts (`backoff_max`, `max_retry_after` below).
MAX_WAIT = 0.005


@st.composite
def broken_bodies(draw: st.DrawFn) -> Any:
    page = draw(page_objects(run_lists))
    how = draw(st.sampled_from(("drop", "retype", "bad_run", "not_object")))
    if how == "drop":
        del page[draw(st.sampled_from(sorted(PAGE_FIELDS)))]
    elif how == "retype":
        page[draw(st.sampled_from(sorted(PAGE_FIELDS)))] = draw(
            st.sampled_from((None, "3", [], {}, 1.5, "many"))
        )
    elif how == "bad_run":
        bad = draw(
            st.sampled_from(
                ({}, {"run_id": 1}, {"monitor_id": MONITOR}, {"run_id": "x", "monitor_id": 1}, 3)
            )
        )
        page["runs"] = [*page["runs"], bad]
    else:
        return draw(st.sampled_from(([], "runs", None, 3, [page])))
    return page


raw_bodies = st.sampled_from(
    (
        b"",
        b"not json",
        b'{"count": 1, "runs": [',
        b"[" * 100_000,
        b"\xff\xfe\x00",
        b'{"count": NaN, "page": 1, "page_size": 1, "total_pages": 1, "runs": []}',
        b'{"count": 1'
        + b"0" * 5000
        + b', "page": 1, "page_size": 1, "total_pages": 1, "runs": []}',
    )
)
retry_afters = st.one_of(
    st.sampled_from(
        (
            "0",
            "-5",
            "1e308",
            "nan",
            "inf",
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "Fri, 31 Dec 9999 23:59:59 GMT",
            "9" * 400,
        )
    ),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12),
)
fastapi_details = st.one_of(
    st.text(max_size=30),
    st.just(f"invalid key {API_KEY}"),
    st.lists(
        st.fixed_dictionaries(
            {
                "loc": st.lists(st.text(max_size=5) | st.integers(), max_size=3),
                "msg": st.text(max_size=20),
                "type": st.text(max_size=8),
            }
        ),
        max_size=3,
    ),
)
transient_answers = st.one_of(
    st.builds(
        lambda status, detail, retry_after: Json(
            {"detail": detail},
            status=status,
            headers={} if retry_after is None else {"Retry-After": retry_after},
        ),
        st.sampled_from((429, 500, 502, 503, 504)),
        fastapi_details,
        st.none() | retry_afters,
    ),
    st.just(Truncated()),
)
refusals = st.builds(
    lambda status, detail: Json({"detail": detail}, status=status),
    st.sampled_from((301, 302, 307, 400, 401, 403, 404, 405, 409, 410, 418, 422, 501, 505)),
    fastapi_details,
)
broken_answers = st.one_of(
    st.builds(Json, broken_bodies(), status=st.sampled_from((200, 201, 203))),
    st.builds(Raw, raw_bodies, status=st.sampled_from((200, 204, 400, 500))),
)
slow_answers = st.builds(Slow, st.just(SHORT_TIMEOUT + 0.1), valid_pages)
answers = weighted(
    (25, valid_pages),
    (30, sliced_pages),
    (2, bulk_pages),
    (12, transient_answers),
    (6, refusals),
    (8, broken_answers),
    (1, slow_answers),
)


@dataclass(frozen=True)
class ClientSetup:
    page_size: int
    max_pages: int
    max_attempts: int

    def client(
        self, session: aiohttp.ClientSession, url: str, request_timeout: float = LONG_TIMEOUT
    ) -> DatafoldClient:
        return DatafoldClient(
            session,
            url,
            API_KEY,
            page_size=self.page_size,
            max_pages=self.max_pages,
            max_attempts=self.max_attempts,
            backoff_initial=0.001,
            backoff_max=0.002,
            max_retry_after=MAX_WAIT,
            request_timeout=request_timeout,
        )


client_setups = st.builds(
    ClientSetup,
    page_size=st.integers(1, 5),
    max_pages=st.integers(1, 4),
    max_attempts=st.integers(1, 3),
)


# --- 1. the client against a real server answering from a generated script ----------------------


@dataclass(repr=False)
class Served:
    """One scripted API, its server and a client session, alive for a whole test function."""

    loop: BackgroundLoop
    api: ScriptedApi
    url: str
    session: aiohttp.ClientSession
    server: TestServer


@pytest.fixture
def served() -> Iterator[Served]:
    loop = BackgroundLoop()
    api = ScriptedApi()

    async def open_all() -> tuple[TestServer, str, aiohttp.ClientSession]:
        server, url = await start_server(api)
        return server, url, aiohttp.ClientSession()

    server, url, session = loop.run(open_all(), timeout=10)
    try:
        yield Served(loop, api, url, session, server)
    finally:

        async def close_all() -> None:
            await session.close()
            await server.close()

        loop.run(close_all(), timeout=10)
        loop.close()


def list_runs(
    served: Served, setup: ClientSetup, request_timeout: float
) -> tuple[list[MonitorRun] | Exception, float]:
    """`list_runs` on the served loop: its result or the exception it raised, and the seconds."""
    client = setup.client(served.session, served.url, request_timeout)
    worst = setup.max_pages * setup.max_attempts * (request_timeout + MAX_WAIT)

    async def call() -> list[MonitorRun] | Exception:
        try:
            return await client.list_runs(MONITOR, SINCE)
        except Exception as exc:
            return exc

    started = time.monotonic()
    with capture_logs():
        outcome = served.loop.run(call(), timeout=worst + 10)
    return outcome, time.monotonic() - started


def _parsed(objects: Sequence[Any]) -> list[MonitorRun]:
    """The runs as the client documents reading them: each on its own; one that does not parse
    but has a readable run_id (and no other monitor's ID) is listed without a state."""
    runs = []
    for obj in objects:
        try:
            runs.append(MonitorRun.model_validate(obj))
        except ValidationError:
            if not isinstance(obj, dict):
                continue
            run_id, owner = _whole(obj.get("run_id")), _whole(obj.get("monitor_id"))
            if run_id is not None and owner in (None, MONITOR):
                runs.append(MonitorRun(run_id=run_id, monitor_id=MONITOR))
    return runs


def _whole(value: Any) -> int | None:
    """A raw ID the client can still read: a JSON integer, or a short string of digits."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) < 30:
        value = int(value.strip())
    return value if isinstance(value, int) and not isinstance(value, bool) else None


#: The statuses `DatafoldClient` documents as worth another attempt ("429/5xx" less 501, 505).
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Course:
    """What the client, as documented, does after a reply: ask for `page`, or end with `outcome`
    (`list` for a result, else the error class)."""

    page: int | None = None
    outcome: type | None = None


def documented_course(reply: Reply, page: int, attempt: int, setup: ClientSetup) -> Course:
    """Retries 429/5xx, timeouts and cut connections up to `max_attempts`, unless Retry-After
    asks for longer than `max_retry_after` (unavailable at once); follows pages until
    `total_pages` or an empty page; more than `max_pages`, a page of more runs than asked for, or
    a 2xx that is not a page, is malformed; 401/403 refused, 404 not found, other 5xx
    unavailable, 3xx/4xx rejected."""
    if reply.kind == "whole" and reply.status in RETRIED_STATUSES:
        wait = retry_after_seconds(reply.retry_after, datetime.now(UTC))
        if wait is not None and wait > MAX_WAIT:
            return Course(outcome=ApiUnavailable)
    if reply.kind != "whole" or reply.status in RETRIED_STATUSES:
        return Course(page=page) if attempt < setup.max_attempts else Course(outcome=ApiUnavailable)
    if 200 <= reply.status < 300:
        try:
            listing = RunPage.model_validate(json.loads(reply.body))
        except (ValueError, RecursionError):  # ValidationError is a ValueError
            return Course(outcome=MalformedAnswer)
        if len(listing.runs) > setup.page_size:  # more runs than asked for
            return Course(outcome=MalformedAnswer)
        if not listing.runs or page >= listing.total_pages:
            return Course(outcome=list)
        if page >= setup.max_pages:
            return Course(outcome=MalformedAnswer)
        return Course(page=page + 1)
    if reply.status in (401, 403):
        return Course(outcome=ApiKeyRefused)
    if reply.status == 404:
        return Course(outcome=NotFound)
    if reply.status >= 500:
        return Course(outcome=ApiUnavailable)
    return Course(outcome=RequestRejected)


def assert_documented_course(
    replies: Sequence[Reply], pages: Sequence[int], setup: ClientSetup, outcome: object
) -> None:
    """Each request follows from the previous reply, and the last reply decides the outcome."""
    page, attempt = 1, 1
    for index, reply in enumerate(replies):
        assert pages[index] == page, f"request {index + 1}"
        course = documented_course(reply, page, attempt, setup)
        if index == len(replies) - 1:
            assert course.outcome is type(outcome), f"after {reply!r:.300}"
        else:
            assert course.page is not None, f"request {index + 2} after {reply!r:.300}"
            attempt = attempt + 1 if course.page == page else 1
            page = course.page


def _schema_valid(answer: Answer) -> bool:
    return isinstance(answer, Sliced | Bulk) or (isinstance(answer, Json) and answer.page_valid)


ONE_PAGE_TWO_TRIES = ClientSetup(page_size=2, max_pages=1, max_attempts=2)
TWO_RUNS_OF_THREE = Sliced(
    ({"run_id": 1, "monitor_id": MONITOR}, {"run_id": 2, "monitor_id": 8}), 3
)


@budget(150, shared_fixture=True)
@given(setup=client_setups, script=st.lists(answers, min_size=1, max_size=6))
@example(ONE_PAGE_TWO_TRIES, [Json({"detail": "Not Found"}, status=404)])
@example(ONE_PAGE_TWO_TRIES, [Json({"detail": "Invalid API key"}, status=403)])
@example(ONE_PAGE_TWO_TRIES, [Json({"detail": [{"loc": ["query"], "msg": "x"}]}, status=422)])
@example(ONE_PAGE_TWO_TRIES, [Json({"detail": "no"}, status=501)])
@example(ONE_PAGE_TWO_TRIES, [Json({}, status=302, headers={"Location": "/elsewhere"})])
@example(ONE_PAGE_TWO_TRIES, [Json({}, status=503, headers={"Retry-After": "1e308"})])
@example(ONE_PAGE_TWO_TRIES, [Truncated(), TWO_RUNS_OF_THREE])
@example(ClientSetup(page_size=1, max_pages=3, max_attempts=1), [TWO_RUNS_OF_THREE])
def test_client_survives_any_answer(
    served: Served, setup: ClientSetup, script: list[Answer]
) -> None:
    """Bounded requests and time; only documented errors, each where the documentation puts it;
    only this monitor's runs, once each, each as served (the later copy of a duplicate);
    schema-valid pages are never refused."""
    api = served.api
    api.play(script)

    has_slow = any(isinstance(answer, Slow) for answer in script)
    request_timeout = SHORT_TIMEOUT if has_slow else LONG_TIMEOUT
    outcome, elapsed = list_runs(served, setup, request_timeout)

    requests = api.received
    answered = [script[min(i, len(script) - 1)] for i in range(len(requests))]
    assert 1 <= len(requests) <= setup.max_pages * setup.max_attempts
    pages = [int(seen.query["page"]) for seen in requests]
    assert pages[0] == 1
    assert all(later - earlier in (0, 1) for earlier, later in itertools.pairwise(pages))
    assert max(pages) <= setup.max_pages
    assert max(Counter(pages).values()) <= setup.max_attempts
    assert len(api.replies) == len(requests)
    if not has_slow:
        assert_documented_course(api.replies, pages, setup, outcome)
    for seen in requests:
        assert seen.path == f"/api/v1/monitors/{MONITOR}/runs"
        assert seen.authorization == f"Key {API_KEY}"
        assert seen.query["page_size"] == str(setup.page_size)
        assert seen.query["start_time"] == "2024-05-01T12:00:00Z"
    worst = len(requests) * (request_timeout + MAX_WAIT) + 2.0
    assert elapsed <= worst

    event(f"outcome: {type(outcome).__name__}, pages requested: {max(pages)}")
    if isinstance(outcome, Exception):
        assert type(outcome) in DOCUMENTED_ERRORS, repr(outcome)
        message = str(outcome)
        assert "\n" not in message and API_KEY not in message
        if all(_schema_valid(answer) for answer in answered):
            assert isinstance(outcome, MalformedAnswer) and "more than" in message, message
        return

    assert all(run.monitor_id == MONITOR for run in outcome)
    assert len({run.run_id for run in outcome}) == len(outcome)
    served_runs = _parsed(api.served_runs)
    assert set(outcome) <= set(served_runs)
    if not has_slow:
        expected = {run.run_id: run for run in served_runs if run.monitor_id == MONITOR}
        assert {run.run_id: run for run in outcome} == expected


# --- 1b. the run model, fast and without a server -----------------------------------------------


@budget(300)
@given(obj=run_objects(calendar_ends_with_offset=CALENDAR_ENDS_WITH_OFFSET))
def test_any_run_object_parses(obj: dict[str, Any]) -> None:
    """A schema-valid run always parses, into a UTC start time or none (unknown)."""
    run = MonitorRun.model_validate(obj)
    assert run.started_at is None or run.started_at.utcoffset() == timedelta(0)
    assert (run.run_id, run.monitor_id) == (obj["run_id"], obj["monitor_id"])


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
async def test_offset_stamp_at_calendar_end_is_unknown_not_a_crash(stamp: str) -> None:
    api = ScriptedApi()
    api.play(
        [
            Json(
                {
                    "count": 1,
                    "page": 1,
                    "page_size": 1,
                    "total_pages": 1,
                    "runs": [{"run_id": 1, "monitor_id": MONITOR, "started_at": stamp}],
                }
            )
        ]
    )
    server, url = await start_server(api)
    try:
        async with aiohttp.ClientSession() as session:
            setup = ClientSetup(page_size=1, max_pages=1, max_attempts=1)
            (run,) = await setup.client(session, url).list_runs(MONITOR, SINCE)
    finally:
        await server.close()
    assert run.started_at is None


# --- 2. detection over generated sequences of listings -----------------------------------------

detect_started_ats = weighted(
    (2, st.none()),
    (6, st.integers(-180, 300).map(lambda minutes: T0 + timedelta(minutes=minutes))),
    (1, st.datetimes(timezones=st.just(UTC))),
    (1, st.datetimes()),
    (
        1,
        st.datetimes(
            min_value=datetime(2, 1, 1),
            max_value=datetime(9998, 12, 31),
            timezones=st.builds(
                timezone, st.timedeltas(timedelta(hours=-23, minutes=-59), timedelta(hours=23))
            ),
        ),
    ),
)
detect_runs = st.builds(
    MonitorRun,
    run_id=st.integers(0, 7),
    monitor_id=st.just(MONITOR),
    state=states,
    started_at=detect_started_ats,
    diff_id=st.none() | st.integers(),
)
listings = st.lists(detect_runs, max_size=8)
notify_states = st.sets(st.sampled_from(FINISHED_STATES), min_size=1).map(frozenset)


@dataclass(frozen=True)
class Step:
    now: datetime
    listing: list[MonitorRun]
    gone: frozenset[int] = frozenset()


@st.composite
def timelines(draw: st.DrawFn, with_gone: bool) -> list[Step]:
    """Polls at non-decreasing times (0-45 min apart) with arbitrary listings."""
    steps, now = [], T0
    for _ in range(draw(st.integers(1, 8))):
        gone = draw(st.frozensets(st.integers(0, 7), max_size=3)) if with_gone else frozenset()
        steps.append(Step(now, draw(listings), gone))
        now += timedelta(minutes=draw(st.integers(0, 45)))
    return steps


@dataclass(frozen=True)
class Start:
    """The state before the first listing: none, or one left by polls that all failed."""

    previous: MonitorState | None
    cutoff: datetime


@st.composite
def starts(draw: st.DrawFn, policy: DetectionPolicy) -> Start:
    if draw(st.booleans()):
        return Start(None, T0 - policy.first_start_lookback)
    began = T0 - timedelta(minutes=draw(st.integers(0, 120)))
    previous = new_monitor_state(began, policy)
    return Start(previous, previous.watch_since - CLOCK_SKEW_MARGIN)


long_memory_policies = st.builds(
    DetectionPolicy,
    notify_states=notify_states,
    retention=st.just(timedelta(days=30)),
    in_progress_limit=st.just(timedelta(days=30)),
    first_start_lookback=st.integers(0, 60).map(lambda m: timedelta(minutes=m)),
)
short_memory_policies = st.builds(
    DetectionPolicy,
    notify_states=notify_states,
    retention=st.integers(0, 90).map(lambda m: timedelta(minutes=m)),
    in_progress_limit=st.integers(0, 90).map(lambda m: timedelta(minutes=m)),
    first_start_lookback=st.integers(0, 60).map(lambda m: timedelta(minutes=m)),
    stamp_granularity=st.integers(0, 10).map(lambda m: timedelta(minutes=m)),
)


@budget(300)
@given(policy=long_memory_policies, data=st.data())
def test_detection_is_exactly_once_per_run_and_state(
    policy: DetectionPolicy, data: st.DataObject
) -> None:
    """Memory longer than the timeline: (a) no (run, state) twice; (b) after the first listing, a
    run listed in a notify-state it was never listed in is notified then, and nothing else is;
    (c) the first listing notifies only runs started at/after the cutoff, and all of those."""
    start = data.draw(starts(policy))
    steps = data.draw(timelines(with_gone=False))
    state = start.previous
    listed_before: set[tuple[int, str | None]] = set()
    everything: list[tuple[int, str]] = []
    for index, step in enumerate(steps):
        detection = detect(state, step.listing, step.now, policy)
        got = [(event.run_id, event.state) for event in detection.events]
        assert len(got) == len(set(got))
        assert all(event.monitor_id == MONITOR for event in detection.events)
        candidates = {(r.run_id, r.state) for r in step.listing if r.state in policy.notify_states}
        if index == 0:
            news = {(r.run_id, r.state) for r in step.listing if not _history(r, start.cutoff)}
            history = {(r.run_id, r.state) for r in step.listing if _history(r, start.cutoff)}
            assert set(got) <= candidates
            assert candidates & news - history <= set(got)
            assert not set(got) & (history - news)
        else:
            assert set(got) == candidates - listed_before
        listed_before |= {(run.run_id, run.state) for run in step.listing}
        everything.extend(got)
        state = detection.state
    assert len(everything) == len(set(everything))


def _history(run: MonitorRun, cutoff: datetime) -> bool:
    return run.started_at is None or run.started_at < cutoff


@budget(300)
@given(policy=short_memory_policies, data=st.data())
def test_detection_memory_is_bounded_and_inputs_untouched(
    policy: DetectionPolicy, data: st.DataObject
) -> None:
    """(d) every remembered run is listed now, or finished and seen within `retention` (plus one
    stamp step), or in progress and first seen within `in_progress_limit`; so the memory holds at
    most the runs listed now and those listed within that span. (e) No input is mutated, nothing
    raises."""
    start = data.draw(starts(policy))
    steps = data.draw(timelines(with_gone=True))
    state = start.previous
    seen_at: list[tuple[datetime, set[int]]] = []
    for step in steps:
        before = state.model_dump() if state else None
        listing_before = [run.model_dump() for run in step.listing]
        detection = detect(state, step.listing, step.now, policy, gone=step.gone)
        assert (state.model_dump() if state else None) == before
        assert [run.model_dump() for run in step.listing] == listing_before

        listed = {run.run_id for run in step.listing}
        seen_at.append((step.now, listed))
        remembered = detection.state.runs
        for run_id, memory in remembered.items():
            assert memory.handled or is_in_progress(memory.state)
            assert set(memory.handled) <= policy.notify_states
            assert len(set(memory.handled)) == len(memory.handled)
            assert memory.first_seen <= memory.last_seen <= step.now
            lag = step.now - memory.last_seen
            if run_id in listed:
                assert lag == timedelta(0) or lag < policy.stamp_granularity
                continue
            assert run_id not in step.gone
            if is_in_progress(memory.state):
                assert step.now - memory.first_seen <= policy.in_progress_limit
            else:
                assert lag <= policy.retention + policy.stamp_granularity
        memory_span = max(policy.retention + policy.stamp_granularity, policy.in_progress_limit)
        horizon = step.now - memory_span
        recent = set().union(*(ids for when, ids in seen_at if when >= horizon))
        assert len(remembered) <= len(listed) + len(recent)
        previous_ids = set(state.runs) if state else set()
        assert set(detection.abandoned) <= previous_ids - listed
        state = detection.state


@budget(200)
@given(policy=short_memory_policies, data=st.data())
def test_detection_ignores_listing_order(policy: DetectionPolicy, data: st.DataObject) -> None:
    """Datafold documents no order: any order of a listing (one copy per run) decides the same."""
    state = None
    for step in data.draw(timelines(with_gone=False)):
        listing = list({run.run_id: run for run in step.listing}.values())
        shuffled = data.draw(st.permutations(listing))
        one = detect(state, listing, step.now, policy)
        other = detect(state, shuffled, step.now, policy)
        assert one.events == other.events
        assert one.state.model_dump() == other.state.model_dump()
        assert one.abandoned == other.abandoned
        state = one.state


# --- 3. whole cycles over a generated run source -----------------------------------------------


Listing = list[MonitorRun] | Exception
Feed = list[MonitorSummary] | DatafoldError
_DATAFOLD_ERRORS: tuple[Callable[[], DatafoldError], ...] = (
    lambda: ApiKeyRefused(401),
    lambda: ApiKeyRefused(403),
    lambda: NotFound(1),
    lambda: MalformedAnswer("answer does not match the schema"),
    lambda: ApiUnavailable("HTTP 503 after 4 attempts"),
    lambda: RequestRejected("request rejected (HTTP 422)"),
    lambda: DatafoldError("internal error"),
)
datafold_errors = st.sampled_from(_DATAFOLD_ERRORS).map(lambda make: make())
#: `Notifier._poll` also survives a source that breaks its protocol with a plain exception.
source_errors: st.SearchStrategy[Exception] = weighted(
    (7, datafold_errors), (1, st.builds(RuntimeError, st.just("a bug")))
)


@dataclass
class ScriptedSource:
    """A `RunSource` whose answers hypothesis drew; records which runs it gave for which monitor."""

    listings: list[dict[int, Listing]]
    feeds: list[Feed]
    details: dict[int, RunDetail | DatafoldError]
    infos: dict[int, MonitorInfo | DatafoldError]
    cycle: int = 0
    #: Monitors whose runs were listed, per cycle.
    listed: list[set[int]] = field(default_factory=list)
    #: (monitor asked about, the run's monitor_id, run_id, state) of every run handed out.
    handed_out: set[tuple[int, int, int, str | None]] = field(default_factory=set)

    def next_cycle(self, cycle: int) -> None:
        self.cycle = cycle
        self.listed.append(set())

    async def list_runs(
        self, monitor_id: int, since: datetime, until: datetime | None = None
    ) -> list[MonitorRun]:
        self.listed[self.cycle].add(monitor_id)
        listing = self.listings[self.cycle].get(monitor_id, [])
        if isinstance(listing, Exception):
            raise listing
        # The port's promise, kept as the adapter keeps it: a monitor's own runs only.
        own = [run for run in listing if run.monitor_id == monitor_id]
        for run in own:
            self.handed_out.add((monitor_id, run.monitor_id, run.run_id, run.state))
        return own

    async def get_run(self, monitor_id: int, run_id: int) -> RunDetail:
        detail = self.details.get(run_id, NotFound(monitor_id, run_id))
        if isinstance(detail, DatafoldError):
            raise detail
        self.handed_out.add((monitor_id, detail.monitor_id, detail.run_id, detail.state))
        return detail

    async def get_monitor(self, monitor_id: int) -> MonitorInfo:
        info = self.infos.get(monitor_id, MonitorInfo(id=monitor_id))
        if isinstance(info, DatafoldError):
            raise info
        return info

    async def list_monitors(self) -> list[MonitorSummary]:
        feed = self.feeds[self.cycle]
        if isinstance(feed, DatafoldError):
            raise feed
        return list(feed)


class MemoryStore:
    """A `StateStore` that proves every saved state survives a JSON round trip."""

    def __init__(self) -> None:
        self.saves = 0

    async def load(self) -> NotifierState:
        return NotifierState()

    async def save(self, state: NotifierState) -> bool:
        assert NotifierState.model_validate_json(state.model_dump_json()) == state
        self.saves += 1
        return True

    async def fresh_mutes(self) -> None:
        return None

    async def outbox_requests(self) -> list[OutboxRequest]:
        return []

    async def settle_outbox_requests(self, ids: Collection[str]) -> None:
        return None


CONFIGURABLE = (1, 2, 3, 4)
UNCONFIGURED = (99, -1, 0)


def cycle_runs(monitor_ids: st.SearchStrategy[int]) -> st.SearchStrategy[MonitorRun]:
    return st.builds(
        MonitorRun,
        run_id=run_ids,
        monitor_id=monitor_ids,
        state=states,
        started_at=detect_started_ats,
        diff_id=st.none() | absurd_ints,
    )


def summaries(configured: list[int]) -> st.SearchStrategy[MonitorSummary]:
    """`GET /api/v1/monitors` entries: the change feed, unconfigured monitors included."""
    return st.builds(
        MonitorSummary,
        id=st.sampled_from((*configured, *UNCONFIGURED)),
        name=st.none() | st.text(max_size=10),
        last_run=st.none() | st.sampled_from([T0 + timedelta(minutes=m) for m in (-10, 0, 10)]),
        state=st.none() | st.sampled_from(RUN_STATES),
    )


@st.composite
def scripted_sources(
    draw: st.DrawFn, configured: list[int], foreign: bool, cycles: int
) -> ScriptedSource:
    def run_monitor(asked: int) -> st.SearchStrategy[int]:
        if not foreign:
            return st.just(asked)
        return weighted((4, st.just(asked)), (1, st.sampled_from((*CONFIGURABLE, *UNCONFIGURED))))

    listings: list[dict[int, Listing]] = []
    feeds: list[Feed] = []
    for _ in range(cycles):
        listings.append({})
        for monitor in configured:
            answer: st.SearchStrategy[Listing] = weighted(
                (4, st.lists(cycle_runs(run_monitor(monitor)), max_size=6)), (1, source_errors)
            )
            listings[-1][monitor] = draw(answer)
        feed: st.SearchStrategy[Feed] = weighted(
            (4, st.lists(summaries(configured), max_size=5)), (1, datafold_errors)
        )
        feeds.append(draw(feed))
    details = draw(
        st.dictionaries(
            st.integers(0, 7),
            st.one_of(
                datafold_errors,
                st.builds(
                    RunDetail,
                    run_id=st.integers(0, 7),
                    monitor_id=st.sampled_from((*configured, 99)),
                    state=states,
                    error=st.none() | st.text(max_size=20),
                ),
            ),
        )
    )
    infos = draw(
        st.dictionaries(
            st.sampled_from(configured),
            st.one_of(
                datafold_errors,
                st.builds(MonitorInfo, id=st.sampled_from(configured), name=st.none() | st.text()),
            ),
        )
    )
    return ScriptedSource(listings, feeds, details, infos)


@budget(150)
@given(data=st.data())
def test_cycles_never_crash_or_notify_unasked_monitors(data: st.DataObject) -> None:
    """Whatever the source answers (errors, duplicates, odd states and stamps, a failing feed,
    failing details and sinks), in poll and feed mode: no crash, failures reported per monitor,
    nothing sent or queued for a monitor not configured or a run not listed under its own
    monitor, no destination sent the same notification twice, every saved state round-trips."""
    check_cycles(data, foreign_runs=False)


@settings(budget(150), phases=[Phase.explicit, Phase.generate], report_multiple_bugs=False)
@given(data=st.data())
def test_cycles_with_foreign_runs_from_source(data: st.DataObject) -> None:
    """The same with scripts that also hold other monitors' runs (this found the foreign-run bug;
    the adapter now drops them, as the `RunSource` port promises and `ScriptedSource` does too;
    its minimal example, through the adapter, is the next test)."""
    check_cycles(data, foreign_runs=True)


async def test_foreign_run_from_source_is_not_notified() -> None:
    """Another monitor's run in a listing: the adapter drops it (the `RunSource` port promises a
    monitor's own runs), so the cycle never notifies it."""
    foreign = {
        "run_id": 5,
        "monitor_id": 99,
        "state": "alert",
        "started_at": "2026-11-26T12:00:00Z",
    }
    api = ScriptedApi()
    api.play([Sliced(runs=(), count=0), Sliced(runs=(foreign,), count=1)])
    server, url = await start_server(api)
    sink = FakeSink("slack")
    clock = [T0]
    try:
        async with aiohttp.ClientSession() as session:
            client = ClientSetup(page_size=5, max_pages=2, max_attempts=1).client(session, url)
            notifier = Notifier(
                client, MemoryStore(), {"slack": sink}, cycle_config([1]), clock=lambda: clock[0]
            )
            with capture_logs() as logs:
                await notifier.run_cycle()
                clock[0] = T0 + timedelta(minutes=1)
                await notifier.run_cycle()
    finally:
        await server.close()
    assert sink.sent_keys == []
    assert [e["run_id"] for e in logs if e["event"] == "datafold.foreign_run_dropped"] == [5]


DEFAULT_POLICY = DetectionPolicy(
    frozenset({"alert", "error"}),
    retention=timedelta(days=30),
    in_progress_limit=timedelta(days=30),
)


def cycle_config(
    configured: list[int],
    policy: DetectionPolicy = DEFAULT_POLICY,
    mode: Literal["poll", "feed"] = "poll",
    sweep: timedelta = timedelta(hours=1),
) -> ServiceConfig:
    return ServiceConfig(
        monitor_ids=configured,
        policy=policy,
        lookback=timedelta(minutes=30),
        outbox_expiry=timedelta(days=1),
        catchup_limit=timedelta(days=1),
        host="https://app.example",
        monitor_url_template="{host}/monitors/{monitor_id}",
        mode=mode,
        sweep=sweep,
    )


def check_cycles(data: st.DataObject, *, foreign_runs: bool) -> None:
    configured = data.draw(st.lists(st.sampled_from(CONFIGURABLE), min_size=1, unique=True))
    cycles = data.draw(st.integers(1, 4))
    source = data.draw(scripted_sources(configured, foreign_runs, cycles))
    sinks = [FakeSink("slack"), FakeSink("webhook-1")]
    config = cycle_config(
        configured,
        data.draw(long_memory_policies),
        data.draw(st.sampled_from(("poll", "feed"))),
        timedelta(minutes=data.draw(st.integers(0, 120))),
    )
    clock = [T0]
    store = MemoryStore()
    notifier = Notifier(source, store, {s.name: s for s in sinks}, config, clock=lambda: clock[0])

    async def run_all() -> None:
        for cycle in range(cycles):
            source.next_cycle(cycle)
            for sink in sinks:
                sink.down = data.draw(st.booleans())
            with capture_logs():
                report = await notifier.run_cycle()
            listings = source.listings[cycle]
            raised = {m for m in source.listed[cycle] if isinstance(listings[m], Exception)}
            assert set(report.failed) == raised
            assert sorted(report.polled) == sorted(set(configured) - raised)
            refused = any(isinstance(listings[m], ApiKeyRefused) for m in raised)
            assert report.key_refused == refused
            assert set(notifier.state.monitors) <= set(configured)
            for entry in notifier.state.outbox:
                assert entry.notification.event.monitor_id in configured
            clock[0] += timedelta(minutes=data.draw(st.integers(1, 20)))

    asyncio.run(run_all())

    own = {
        (asked, run_id, state)
        for asked, belongs, run_id, state in source.handed_out
        if asked == belongs
    }
    for sink in sinks:
        assert len(set(sink.sent_keys)) == len(sink.sent_keys), sink.sent_keys
        for notification in sink.sent:
            event = notification.event
            assert event.monitor_id in configured
            assert (event.monitor_id, event.run_id, event.state) in own
    assert store.saves == cycles
