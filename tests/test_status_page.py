"""The status page: its view (pure, as tables), its HTML (escaped, self-refreshing, no script)
and its routes on the status listener, over a real `Notifier` and its state."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import aiohttp
import pytest

from notifier.deliver.sink import DeliveryError
from notifier.domain.models import (
    Incident,
    MessageRef,
    MonitorInfo,
    MonitorState,
    Mute,
    Notification,
    NotifierState,
    OutboxEntry,
    RunEvent,
    TrackedRun,
)
from notifier.domain.report import CycleReport, Deferral
from notifier.run.cycle import Notifier
from notifier.run.health import HealthTracker
from notifier.run.logs import REDACTOR
from notifier.run.metrics import Metrics
from notifier.run.status_page import relative, render_status_page
from notifier.run.status_server import StatusSources, serve_status, status_app
from notifier.run.status_view import RECENT_CYCLES, StatusView, build_status, last_run
from notifier.store.file import StateFile
from tests.fakes.cycle import Clock, cycle_config
from tests.fakes.source import FakeSink, FakeSource

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)
HOSTILE = "<script>document.title='pwned'</script><img src=x onerror=alert(1)>\"'&"


def event(monitor_id: int, run_id: int, state: str = "alert") -> RunEvent:
    return RunEvent(monitor_id=monitor_id, run_id=run_id, state=state, started_at=T0)


def incident(monitor_id: int, run_id: int, state: str = "alert", opened: int = 0) -> Incident:
    e = event(monitor_id, run_id, state)
    at = T0 + opened * MINUTE
    return Incident(id=e.key, opened_at=at, first=e, last=e, last_notified_at=at)


def tracked(state: str | None, handled: tuple[str, ...] = ()) -> TrackedRun:
    return TrackedRun(state=state, handled=list(handled), first_seen=T0, last_seen=T0)


def polled(**fields: object) -> MonitorState:
    return MonitorState(watch_since=T0, baselined=True, last_polled_at=T0, **fields)  # type: ignore[arg-type]


def waiting(
    monitor_id: int,
    run_id: int,
    pending: list[str],
    *,
    minutes: int = 0,
    attempts: int = 0,
    error: str | None = None,
    name: str | None = None,
    tags: tuple[str, ...] = (),
) -> OutboxEntry:
    e = event(monitor_id, run_id)
    notification = Notification(
        id=e.key,
        event=e,
        monitor=MonitorInfo(id=monitor_id, name=name, tags=list(tags)),
        detected_at=T0 + minutes * MINUTE,
    )
    return OutboxEntry(
        notification=notification, pending=pending, attempts=attempts, last_error=error
    )


def view_of(
    state: NotifierState | None, cycles: list[CycleReport] | None = None, **kw: object
) -> StatusView:
    options: dict[str, object] = {"now": T0 + 10 * MINUTE, "leading": None, "health": "running"}
    options.update(kw)
    return build_status(state, cycles or [], **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("memory", "expected"),
    [
        pytest.param(MonitorState(watch_since=T0), (None, None), id="never-polled"),
        pytest.param(polled(), (None, "quiet"), id="polled-nothing-failing"),
        pytest.param(
            polled(runs={5: tracked("alert", ("alert",))}),
            (None, "quiet"),
            id="old-alert-recovered",
        ),
        pytest.param(
            polled(runs={5: tracked("checking"), 6: tracked(None)}),
            (6, "created"),
            id="running-newest",
        ),
        pytest.param(
            polled(runs={5: tracked("alert", ("alert",))}, incident=incident(1, 5)),
            (5, "alert"),
            id="incident",
        ),
        pytest.param(
            polled(runs={7: tracked("checking")}, incident=incident(1, 5)),
            (7, "checking"),
            id="running-beats-incident",
        ),
        pytest.param(
            polled(feed_key="2026-11-30T08:59:00+00:00|ok"), (None, "ok"), id="feed-says-ok"
        ),
        pytest.param(
            polled(feed_key="2026-11-30T08:59:00+00:00|checking", runs={7: tracked("checking")}),
            (7, "checking"),
            id="feed-agrees-with-tracked",
        ),
        pytest.param(polled(feed_key="-|-"), (None, "quiet"), id="feed-without-runs"),
    ],
)
def test_last_run(memory: MonitorState, expected: tuple[int | None, str | None]) -> None:
    assert last_run(memory) == expected


@pytest.mark.parametrize(
    ("leading", "standby_cycle", "role"),
    [
        (None, False, "single"),
        (None, True, "standby"),
        (True, False, "leader"),
        (False, True, "standby"),
        (False, False, "standby"),
    ],
)
def test_role(leading: bool | None, standby_cycle: bool, role: str) -> None:
    cycles = [CycleReport(standby=standby_cycle, started_at=T0, finished_at=T0)]
    assert view_of(NotifierState(), cycles, leading=leading).role == role


def test_monitors_failing_first_then_failed_polls_then_muted_and_bounded() -> None:
    state = NotifierState(
        monitors={
            1: polled(),
            2: polled(incident=incident(2, 20, opened=5)),
            3: polled(),
            4: polled(incident=incident(4, 40, "error", opened=1)),
            5: polled(),
            6: polled(),
        },
        mutes=[Mute(id="m", monitor_id=5, until=T0 + 60 * MINUTE, created_at=T0)],
    )
    latest = CycleReport(polled=[1, 2, 4, 5, 6], failed={3: "unavailable"}, started_at=T0)
    view = view_of(state, [latest], monitors_shown=5)
    assert [row.id for row in view.monitors] == [4, 2, 3, 5, 1]
    assert (view.monitors_total, view.monitors_muted) == (6, 1)
    assert view_of(state, [latest], monitors_shown=1).monitors_muted == 1  # counted, not shown
    by_id = {row.id: row for row in view.monitors}
    assert by_id[3].poll_error == "unavailable"
    assert by_id[4].incident_state == "error" and by_id[4].incident_since == T0 + MINUTE
    assert (by_id[5].muted_until, by_id[5].muted_by) == (T0 + 60 * MINUTE, "monitor 5")
    assert [(i.monitor_id, i.state) for i in view.incidents] == [(4, "error"), (2, "alert")]


@pytest.mark.parametrize(
    ("mute", "covers"),
    [
        pytest.param(
            Mute(id="a", monitor_id=1, until=T0 + 60 * MINUTE, created_at=T0), True, id="monitor"
        ),
        pytest.param(
            Mute(id="b", tag=" Finance ", until=T0 + 60 * MINUTE, created_at=T0), True, id="tag"
        ),
        pytest.param(
            Mute(id="c", tag="other", until=T0 + 60 * MINUTE, created_at=T0), False, id="other-tag"
        ),
        pytest.param(
            Mute(id="d", monitor_id=1, until=T0 + 5 * MINUTE, created_at=T0), False, id="run-out"
        ),
    ],
)
def test_mutes_shown_on_the_monitors_they_cover(mute: Mute, covers: bool) -> None:
    state = NotifierState(
        monitors={1: polled()},
        outbox=[waiting(1, 10, ["slack"], name="orders", tags=("finance",))],
        mutes=[mute],
    )
    view = view_of(state)
    assert (view.monitors[0].muted_until is not None) is covers
    assert [m.id for m in view.mutes] == ([] if mute.until <= T0 + 10 * MINUTE else [mute.id])
    assert view.monitors[0].name == "orders"


def test_outbox_per_destination_oldest_waiting_its_error_and_deferral() -> None:
    state = NotifierState(
        monitors={1: polled()},
        outbox=[
            waiting(
                1, 10, ["slack", "pagerduty"], minutes=1, attempts=4, error="pagerduty: HTTP 503"
            ),
            waiting(1, 11, ["pagerduty"], minutes=3, attempts=1, error="pagerduty: HTTP 429"),
            waiting(1, 12, [], minutes=0),  # delivered during the cycle, not yet settled
            waiting(1, 13, ["slack"], minutes=2, attempts=2, error="slack: timed out"),
        ],
    )
    latest = CycleReport(
        sent_by_destination=Counter({"webhook-1a2b3c4d": 2}),
        deferred={
            "pagerduty": Deferral(until=T0 + 12 * MINUTE, reason="HTTP 429"),
            "slack": Deferral(until=T0 + 9 * MINUTE, reason="HTTP 429"),
        },
        started_at=T0,
    )
    view = view_of(state, [latest])
    rows = {row.name: row for row in view.destinations}
    assert list(rows) == ["pagerduty", "slack", "webhook-1a2b3c4d"]
    assert view.outbox_total == 3
    pd, slack, hook = rows["pagerduty"], rows["slack"], rows["webhook-1a2b3c4d"]
    assert (pd.waiting, pd.oldest_since, pd.oldest_attempts) == (2, T0 + MINUTE, 4)
    assert pd.last_error == "HTTP 429"  # the newest of its own errors, without its name
    assert (pd.deferred_until, pd.deferred_reason) == (T0 + 12 * MINUTE, "HTTP 429")
    assert (slack.waiting, slack.oldest_since, slack.last_error) == (2, T0 + MINUTE, "timed out")
    assert slack.deferred_until is None  # its deferral ran out before now
    assert (hook.waiting, hook.oldest_since, hook.last_error) == (0, None, None)


def test_recent_cycles_newest_first_and_bounded() -> None:
    cycles = [
        CycleReport(
            polled=[1] * n,
            started_at=T0 + n * MINUTE,
            finished_at=T0 + n * MINUTE + timedelta(seconds=2),
        )
        for n in range(RECENT_CYCLES + 5)
    ]
    rows = view_of(NotifierState(), cycles).cycles
    assert len(rows) == RECENT_CYCLES
    assert [r.polled for r in rows[:2]] == [RECENT_CYCLES + 4, RECENT_CYCLES + 3]
    assert rows[0].seconds == 2.0


def test_last_poll_is_the_latest_cycle_that_polled_the_monitor() -> None:
    """The state's stamp moves only every few minutes (to spare saves); the page shows the last
    cycle that polled each monitor, a standby's or a failed poll not counting."""
    state = NotifierState(monitors={1: polled(), 2: polled(), 3: polled()})
    second = CycleReport(polled=[1, 2, 3], started_at=T0 + MINUTE)
    second.fail(3, "timeout")
    cycles = [
        CycleReport(polled=[1, 2, 3], started_at=T0 + 30 * SECOND),
        second,
        CycleReport(polled=[1], started_at=T0 + 2 * MINUTE, standby=True),
    ]
    rows = {row.id: row.last_polled_at for row in view_of(state, cycles).monitors}
    assert rows == {1: T0 + MINUTE, 2: T0 + MINUTE, 3: T0 + 30 * SECOND}


def test_no_state_still_shows_health_cycles_and_destinations() -> None:
    cycles = [CycleReport(standby=True, started_at=T0, finished_at=T0)]
    view = view_of(None, cycles, leading=False, health="standby")
    assert not view.state_loaded and view.role == "standby" and view.monitors == ()
    assert len(view.cycles) == 1
    assert "stands by" in render_status_page(view, refresh_seconds=30)
    single = view_of(None, [], leading=None, health="starting")
    assert "No state loaded yet" in render_status_page(single, refresh_seconds=30)


def test_json_has_iso_times_and_only_plain_types() -> None:
    state = NotifierState(
        monitors={1: polled(incident=incident(1, 5))}, outbox=[waiting(1, 5, ["slack"])]
    )
    document = view_of(state, [CycleReport(polled=[1], started_at=T0, finished_at=T0)]).as_json()
    assert json.loads(json.dumps(document)) == document
    assert document["generated_at"] == "2026-11-30T09:10:00Z"
    assert document["incidents"][0]["opened_at"] == "2026-11-30T09:00:00Z"
    assert document["monitors"][0]["last_run_state"] == "alert"
    assert document["destinations"][0]["name"] == "slack"


@pytest.mark.parametrize(
    ("offset", "words"),
    [
        (timedelta(seconds=-2), "just now"),
        (timedelta(seconds=-42), "42 s ago"),
        (timedelta(minutes=-47, seconds=-10), "47 min ago"),
        (timedelta(hours=-3, minutes=-5), "3 h 5 min ago"),
        (timedelta(days=-2, hours=-4), "2 d 4 h ago"),
        (timedelta(minutes=95), "in 1 h 35 min"),
    ],
)
def test_relative_times(offset: timedelta, words: str) -> None:
    assert relative(T0 + offset, T0) == words


class Elements(HTMLParser):
    """Every start tag and its attributes, and the document's text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(page: str) -> Elements:
    parser = Elements()
    parser.feed(page)
    parser.close()
    return parser


def hostile_view() -> StatusView:
    """Everything from outside carries markup: the name, a tag mute's tag and reason, an error."""
    state = NotifierState(
        monitors={6: polled(incident=incident(6, 60))},
        outbox=[
            waiting(6, 60, [HOSTILE], error=f"{HOSTILE}: {HOSTILE}", name=HOSTILE, tags=(HOSTILE,))
        ],
        mutes=[
            Mute(id=HOSTILE, tag=HOSTILE, until=T0 + 60 * MINUTE, reason=HOSTILE, created_at=T0)
        ],
    )
    latest = CycleReport(polled=[6], failed={7: HOSTILE}, started_at=T0, finished_at=T0)
    return view_of(state, [latest], health_reason=HOSTILE)


def test_hostile_text_is_inert_on_the_page() -> None:
    page = render_status_page(hostile_view(), refresh_seconds=30)
    elements = parsed(page)
    tags = {tag for tag, _ in elements.tags}
    assert tags <= {
        "html",
        "head",
        "meta",
        "title",
        "style",
        "body",
        "header",
        "h1",
        "h2",
        "p",
        "span",
        "time",
        "section",
        "div",
        "b",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "footer",
        "a",
    }, tags
    assert "script" not in tags and "img" not in tags
    assert not [attrs for _, attrs in elements.tags if any(a.startswith("on") for a in attrs)]
    assert "<script" not in page and "<img" not in page
    assert page.count("&lt;script&gt;") >= 5  # name, tag mute, its reason, destination, error
    text = "".join(elements.text)
    assert HOSTILE in text  # shown as the text it is
    title = page[page.index("<title>") : page.index("</title>")]
    assert "pwned" not in title


def test_page_refreshes_itself_and_fits_a_phone() -> None:
    page = render_status_page(view_of(NotifierState()), refresh_seconds=45)
    metas = [attrs for tag, attrs in parsed(page).tags if tag == "meta"]
    assert {"http-equiv": "refresh", "content": "45"} in metas
    assert {"name": "viewport", "content": "width=device-width, initial-scale=1"} in metas
    assert "overflow-x:auto" in page and '<div class="scroll">' not in page  # no table: no rows
    assert "@media (max-width:48rem)" in page and "content:attr(data-label)" in page


class Tables(HTMLParser):
    """Per table: its headings and, per row, each cell's `data-label` and class."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[tuple[list[str], list[list[tuple[str | None, str | None]]]]] = []
        self.in_heading = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "table":
            self.tables.append(([], []))
        elif tag == "tr" and self.tables:
            self.tables[-1][1].append([])
        elif tag == "td":
            self.tables[-1][1][-1].append((found.get("data-label"), found.get("class")))
        self.in_heading = tag == "th"

    def handle_data(self, data: str) -> None:
        if self.in_heading:
            self.tables[-1][0].append(data)
            self.in_heading = False


def test_each_cell_is_labelled_with_its_column_heading_for_narrow_screens() -> None:
    page = render_status_page(hostile_view(), refresh_seconds=30)
    parser = Tables()
    parser.feed(page)
    assert len(parser.tables) == 5  # incidents, monitors, outbox, mutes, cycles
    for headings, rows in parser.tables:
        cells = [row for row in rows if row]  # the heading row has no td
        assert cells, headings
        for row in cells:
            assert [label for label, _ in row] == headings
    monitors = parser.tables[1][1][1]
    assert monitors[0] == ("Monitor", "name")  # the card's title on a phone
    assert [label for label, _ in monitors] == [
        "Monitor",
        "Last poll",
        "Last run",
        "Incident",
        "Muted until",
    ]


async def test_routes_over_a_real_notifier_and_its_state(tmp_path: Path) -> None:
    """A real `Notifier` runs three cycles over a state file with a destination down; the
    listener serves its state at / and /api/status, beside /healthz and /metrics."""
    clock = Clock(T0)
    source = FakeSource(
        infos={1: MonitorInfo(id=1, name=HOSTILE), 2: MonitorInfo(id=2, name="revenue")}
    )
    sinks = {"slack": FakeSink("slack"), "pagerduty": FakeSink("pagerduty", down=True)}
    notifier = Notifier(
        source, StateFile(tmp_path / "state.json"), sinks, cycle_config((1, 2)), clock=clock
    )
    cycles: list[CycleReport] = []
    health = HealthTracker(started_at=T0, interval=MINUTE)
    for n in range(3):
        if n == 1:  # after the first poll has baselined the monitor
            source.put(1, 100, "alert", clock.now)
        report = await notifier.run_cycle()
        cycles.append(report)
        health.record(report)
        clock.tick()
    app = status_app(health, Metrics(), clock, StatusSources.of(notifier, cycles))
    async with serve_status(app, "127.0.0.1", 0) as port, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{port}"
        async with http.get(f"{base}/") as response:
            assert response.status == 200
            assert response.content_type == "text/html"
            assert "script-src" not in response.headers["Content-Security-Policy"]
            assert "default-src 'none'" in response.headers["Content-Security-Policy"]
            page = await response.text()
        async with http.get(f"{base}/api/status") as response:
            assert response.status == 200
            document = await response.json()
        async with http.get(f"{base}/healthz") as response:
            assert response.status == 200
    assert "&lt;script&gt;" in page and "<script" not in page
    assert '<meta http-equiv="refresh" content="60">' in page
    assert document["role"] == "single" and document["health"] == "running"
    monitors = {m["id"]: m for m in document["monitors"]}
    assert monitors[1]["name"] == HOSTILE and monitors[1]["incident_state"] == "alert"
    assert monitors[2]["last_run_state"] == "quiet" and monitors[2]["name"] is None
    [pd] = [d for d in document["destinations"] if d["name"] == "pagerduty"]
    assert pd["waiting"] == 1 and pd["last_error"] == "HTTP 503" and pd["oldest_attempts"] == 2
    assert [c["delivery_failures"] for c in document["cycles"]] == [1, 1, 0]
    assert document["cycles"][0]["started_at"] == "2026-11-30T09:02:00Z"


class Replica:
    """Stands in for `LeasedNotifier` as far as the page sees it: it leads, or not."""

    def __init__(self, leading: bool) -> None:
        self.leading = leading


@pytest.mark.parametrize(("leading", "role"), [(True, "leader"), (False, "standby")])
def test_sources_of_a_leased_runner_tell_its_role_and_hold_no_state(
    leading: bool, role: str
) -> None:
    sources = StatusSources.of(Replica(leading), [])
    assert sources.state() is None and sources.leading() is leading
    view = build_status(sources.state(), [], now=T0, leading=sources.leading(), health="running")
    assert view.role == role


def test_monitors_are_named_from_the_details_read_from_datafold() -> None:
    state = NotifierState(
        monitors={1: polled(), 2: polled()},
        outbox=[waiting(2, 20, ["slack"], name="old name")],
    )
    details = {2: MonitorInfo(id=2, name="revenue"), 9: MonitorInfo(id=9, name="unwatched")}
    view = view_of(state, details=details)
    assert {row.id: row.name for row in view.monitors} == {1: None, 2: "revenue"}


class EchoingSink(FakeSink):
    """A destination whose refusals quote what it was sent, as a proxy answering 401 may."""

    async def send(
        self, notification: Notification, thread: MessageRef | None = None
    ) -> MessageRef | None:
        raise DeliveryError(self.name, f"HTTP 401: Authorization: Bearer {ECHOED}")


ECHOED = "tok-echoed-by-a-proxy-7f3a9c"


async def test_a_secret_a_destination_echoed_shows_on_no_page(tmp_path: Path) -> None:
    """The daemon's log redactor also cleans what the page shows of destinations' answers."""
    clock = Clock(T0)
    source = FakeSource(infos={1: MonitorInfo(id=1, name="orders")})
    notifier = Notifier(
        source,
        StateFile(tmp_path / "state.json"),
        {"oncall": EchoingSink("oncall")},
        cycle_config((1,)),
        clock=clock,
    )
    cycles = [await notifier.run_cycle()]
    clock.tick()
    source.put(1, 100, "alert", clock.now)
    cycles.append(await notifier.run_cycle())
    health = HealthTracker(started_at=T0, interval=MINUTE)
    app = status_app(health, Metrics(), clock, StatusSources.of(notifier, cycles))
    before = list(REDACTOR._secrets)
    REDACTOR.update([ECHOED])
    try:
        async with serve_status(app, "127.0.0.1", 0) as port, aiohttp.ClientSession() as http:
            pages = []
            for path in ("/", "/api/status"):
                async with http.get(f"http://127.0.0.1:{port}{path}") as response:
                    pages.append(await response.text())
    finally:
        REDACTOR.update(before)
    for page in pages:
        assert ECHOED not in page
        assert "HTTP 401: Authorization: Bearer [REDACTED]" in page
