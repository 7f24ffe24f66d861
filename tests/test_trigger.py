"""The push trigger (issue 17, point 1): its pure decisions, its routes on a real listener, its
coalescing task, and an in-process daemon whose full cycle a trigger moves up."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from notifier.domain.report import CycleReport
from notifier.run.daemon import Daemon, StatusListener
from notifier.run.metrics import Metrics
from notifier.run.status_server import serve_status, status_app
from notifier.run.trigger import (
    FULL_CYCLE_GAP,
    MAX_BODY_BYTES,
    TriggerConfig,
    TriggerQueue,
    bearer_token,
    full_cycle_at,
    monitor_id_of,
    monitor_in_body,
    parse_field_path,
    token_matches,
    token_problem,
    triggered,
)
from notifier.run.trigger_http import TriggerEndpoint
from notifier.run.trigger_loop import TriggerLoop

TOKEN = "trigger-Tok3n-0123456789abcdef"
T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


# --- the pure part ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (TOKEN, True),
        (TOKEN + "x", False),
        (TOKEN[:-1], False),
        ("", False),
        (None, False),
        (TOKEN.upper(), False),
        ("trigger-Tok3n-0123456789abcdeé", False),
    ],
)
def test_token_matches(given: str | None, expected: bool) -> None:
    assert token_matches(given, TOKEN) is expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"Bearer {TOKEN}", TOKEN),
        (f"bearer   {TOKEN} ", TOKEN),
        (f"Basic {TOKEN}", None),
        ("Bearer", None),
        ("Bearer   ", None),
        (TOKEN, None),
        (None, None),
    ],
)
def test_bearer_token(header: str | None, expected: str | None) -> None:
    assert bearer_token(header) == expected


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ("0123456789abcdef", None),
        ("A-b.c_d~e" * 4, None),
        ("0123456789abcde", "shorter than 16"),
        ("0123456789abcdef/", "only letters"),
        ("0123456789 abcdef", "only letters"),
        ("0123456789abcdef%2F", "only letters"),
    ],
)
def test_token_problem_never_quotes_the_token(token: str, problem: str | None) -> None:
    said = token_problem(token)
    assert (said is None) == (problem is None)
    if said is not None:
        assert problem is not None and problem in said and token not in said and "\n" not in said


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("monitor_id", ("monitor_id",)),
        ("monitor.id", ("monitor", "id")),
        (" data . monitor . id ", ("data", "monitor", "id")),
    ],
)
def test_field_path(text: str, segments: tuple[str, ...]) -> None:
    assert parse_field_path(text) == segments


@pytest.mark.parametrize("text", ["", ".", "monitor.", "a..b", ".".join("x" * 9), "x" * 101])
def test_field_path_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"segments|dotted path"):
        parse_field_path(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (7, 7),
        ("7", 7),
        (" 42 ", 42),
        (2**63 - 1, 2**63 - 1),
        (2**63, None),
        ("9" * 20, None),
        (0, None),
        (-3, None),
        ("-3", None),
        ("+3", None),
        ("3.0", None),
        (3.0, None),
        (True, None),
        ("٣", None),  # a digit, but not an ASCII one
        ("", None),
        (None, None),
        ([7], None),
        ({"id": 7}, None),
    ],
)
def test_monitor_id_of(value: object, expected: int | None) -> None:
    assert monitor_id_of(value) == expected


@pytest.mark.parametrize(
    ("body", "path", "expected"),
    [
        (b'{"monitor_id": 7}', ("monitor_id",), 7),
        (b'{"monitor_id": "7"}', ("monitor_id",), 7),
        (b'{"monitor": {"id": 12, "name": "x"}}', ("monitor", "id"), 12),
        (b'{"monitor": {"id": 12}}', ("monitor_id",), None),
        (b'{"monitor": [12]}', ("monitor", "id"), None),
        (b'{"monitor_id": null}', ("monitor_id",), None),
        (b'{"monitor_id": "7; DROP TABLE"}', ("monitor_id",), None),
        (b"[7]", ("monitor_id",), None),
        (b"7", ("monitor_id",), None),
        (b"", ("monitor_id",), None),
        (b"   ", ("monitor_id",), None),
        (b"not json", ("monitor_id",), None),
        (b'{"monitor_id": 7', ("monitor_id",), None),
        (b'{"monitor_id": 7}\xff', ("monitor_id",), None),
        (b"\xff\xfe{}", ("monitor_id",), None),
        (b"[" * MAX_BODY_BYTES, ("monitor_id",), None),  # nested past the recursion limit
        (b'{"monitor_id": 1e999}', ("monitor_id",), None),
        (b'{"monitor_id": 7, "monitor_id": 8}', ("monitor_id",), 8),  # JSON's last one wins
    ],
)
def test_monitor_in_body(body: bytes, path: tuple[str, ...], expected: int | None) -> None:
    assert monitor_in_body(body, path) == expected


@pytest.mark.parametrize(
    ("monitor_id", "watched", "outcome"),
    [
        (None, [1, 2], "accepted"),
        (1, [1, 2], "accepted"),
        (3, [1, 2], "ignored"),
        (3, None, "accepted"),  # not known yet: the partial cycle filters
        (3, [], "ignored"),
    ],
)
def test_triggered(monitor_id: int | None, watched: list[int] | None, outcome: str) -> None:
    assert triggered(monitor_id, watched) == outcome


@pytest.mark.parametrize(
    ("last_start", "now", "expected"),
    [
        (None, T0, T0),
        (T0 - timedelta(seconds=90), T0, T0),
        (T0 - FULL_CYCLE_GAP, T0, T0),
        (T0 - timedelta(seconds=10), T0, T0 + FULL_CYCLE_GAP - timedelta(seconds=10)),
        (T0, T0, T0 + FULL_CYCLE_GAP),
    ],
)
def test_full_cycle_waits_for_the_gap(
    last_start: datetime | None, now: datetime, expected: datetime
) -> None:
    assert full_cycle_at(last_start, now, FULL_CYCLE_GAP) == expected


def test_queue_coalesces_and_serves_the_newest_first() -> None:
    queue = TriggerQueue()
    for monitor_id in [5, 1, 5, 5, None, 3, 1, None]:
        queue.add(monitor_id, T0)
    assert list(queue.pending) == [5, 3, 1]  # a trigger renews its monitor's place
    assert queue.take_everything() is True
    assert queue.take_everything() is False
    assert queue.take(2, T0) == [1, 3]
    queue.add(5, T0)
    assert queue.take(0, T0) == [] and queue.take(-1, T0) == []
    assert queue.take(10, T0) == [5]
    assert not queue.pending


def test_a_monitor_taken_waits_out_its_gap_before_it_is_taken_again() -> None:
    second = timedelta(seconds=1)
    queue = TriggerQueue(gap=5 * second)
    queue.add(1, T0)
    assert queue.take(10, T0) == [1]
    queue.add(1, T0 + second)  # flooded: triggered again at once
    queue.add(2, T0 + second)
    assert queue.ready(T0 + second) == 1 and queue.due_in(T0 + second) == 0
    assert queue.take(10, T0 + second) == [2]  # 1 waits out its gap; 2 goes
    assert queue.ready(T0 + second) == 0 and queue.due_in(T0 + second) == 4
    assert queue.take(10, T0 + 4 * second) == []
    assert queue.take(10, T0 + 5 * second) == [1]
    queue.add(2, T0 + 5 * second)
    queue.give_back([2], T0 + 5 * second)  # taken, then not polled after all: no gap
    assert queue.take(10, T0 + 5 * second) == [2]
    assert TriggerQueue().due_in(T0) == 0  # nothing waits
    queue.add(3, T0)
    assert queue.take(10, T0 + 9 * second) == [3]
    queue.add(3, T0)  # the clock stepped back 9 s: the gap still ends within 5 s
    assert queue.due_in(T0) == 0 and queue.take(10, T0) == [3]


def test_queue_past_its_limit_asks_for_a_full_cycle_instead() -> None:
    queue = TriggerQueue(limit=3)
    for monitor_id in [1, 2, 3, 3, 1]:
        queue.add(monitor_id, T0)
    assert sorted(queue.pending) == [1, 2, 3] and not queue.everything
    queue.add(4, T0)
    assert sorted(queue.pending) == [1, 2, 3] and queue.everything


def test_a_cycle_does_what_triggers_from_before_it_asked() -> None:
    queue = TriggerQueue()
    minute = timedelta(minutes=1)
    queue.add(1, T0)
    queue.add(2, T0)
    queue.add(3, T0 + 2 * minute)  # triggered while the cycle ran
    queue.add(4, T0)  # not polled by it (failed)
    queue.add(1, T0 + 2 * minute)  # triggered again while the cycle ran: still due a poll
    assert queue.polled([1, 2, 3, 5], started_at=T0 + minute) == [2]
    assert list(queue.pending) == [3, 4, 1]


def test_config_repr_hides_the_token() -> None:
    assert TOKEN not in repr(TriggerConfig(token=TOKEN))


# --- the task: coalescing and the bucket --------------------------------------------------------


class PartialRunner:
    """Stands in for `Notifier`: records each partial cycle's monitors; `gate` holds them."""

    def __init__(self, watched: Collection[int] | None = (1, 2, 3)) -> None:
        self.watched = watched
        self.partials: list[list[int]] = []
        self.done = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()
        self.cycles = 0
        self.cycled = asyncio.Event()

    async def run_partial_cycle(self, monitor_ids: Collection[int]) -> CycleReport | None:
        await self.gate.wait()
        self.partials.append(list(monitor_ids))
        self.done.set()
        return CycleReport(polled=list(monitor_ids))

    def watched_monitors(self) -> Collection[int] | None:
        return self.watched

    async def run_cycle(self) -> CycleReport:
        self.cycles += 1
        self.cycled.set()
        return CycleReport(polled=list(self.watched or ()))

    async def save(self) -> bool:
        return True

    async def polled(self, count: int) -> None:
        """Until `count` monitors were polled by partial cycles, in all."""
        while sum(map(len, self.partials)) < count:
            self.done.clear()
            await asyncio.wait_for(self.done.wait(), timeout=5)


@asynccontextmanager
async def running(loop: TriggerLoop) -> AsyncIterator[TriggerLoop]:
    task = asyncio.create_task(loop.run())
    try:
        yield loop
    finally:
        await loop.stop(task, grace=1)


def trigger_loop(
    runner: PartialRunner, lock: asyncio.Lock, cap: int = 60, gap: float = 5
) -> TriggerLoop:
    metrics = Metrics()
    config = TriggerConfig(
        token=TOKEN, max_polls_per_minute=cap, monitor_gap=timedelta(seconds=gap)
    )
    return TriggerLoop(
        runner, config, lock=lock, record=metrics.record_partial, full_cycle=lambda: None
    )


async def test_triggers_during_a_cycle_coalesce_and_are_polled_right_after_it() -> None:
    runner, lock = PartialRunner(), asyncio.Lock()
    async with running(trigger_loop(runner, lock)) as loop:
        async with lock:  # a full cycle runs
            for _ in range(100):
                assert loop.offer(2) == "accepted"
            assert loop.offer(1) == "accepted"
            assert loop.offer(9) == "ignored"
            await asyncio.sleep(0)
            assert runner.partials == []  # never beside a cycle
        await runner.polled(2)
    assert runner.partials == [[1, 2]]  # the newest first


async def test_a_flood_gets_no_more_listings_than_the_bucket_holds() -> None:
    runner, lock = PartialRunner(watched=range(1, 301)), asyncio.Lock()
    async with running(trigger_loop(runner, lock, cap=5)) as loop:
        for monitor_id in range(1, 301):
            loop.offer(monitor_id)
        await runner.polled(5)
        # The bucket refills one listing every 12 s: nothing more comes for a while.
        await asyncio.sleep(0.5)
        assert sum(map(len, runner.partials)) == 5
        assert list(loop.queue.pending)[-2:] == [294, 295] and len(loop.queue.pending) == 295
    assert runner.partials[0] == [300, 299, 298, 297, 296]  # the newest first


@pytest.mark.parametrize("gap", [0.0, 0.4])
async def test_one_monitor_flooded_is_polled_once_per_wakeup_and_gap(gap: float) -> None:
    runner, lock = PartialRunner(), asyncio.Lock()
    runner.gate.clear()
    async with running(trigger_loop(runner, lock, cap=5, gap=gap)) as loop:
        started = asyncio.get_running_loop().time()  # no later than the first take
        loop.offer(1)
        await asyncio.sleep(0)  # the first partial cycle starts and waits at the gate
        for _ in range(299):
            loop.offer(1)
        runner.gate.set()
        await runner.polled(2)
        between = asyncio.get_running_loop().time() - started
        await asyncio.sleep(0.3)
    assert runner.partials == [[1], [1]]  # the one under way, then the 299 coalesced into one
    assert between >= gap  # ... once the gap since the first poll began has passed


async def test_a_flooded_monitor_leaves_the_bucket_to_the_others() -> None:
    """Within one gap, a monitor triggered again and again is polled once; a monitor
    triggered after it still gets the bucket's next listing."""
    runner, lock = PartialRunner(watched=range(1, 10)), asyncio.Lock()
    async with running(trigger_loop(runner, lock, cap=3, gap=60)) as loop:
        for _ in range(50):
            loop.offer(1)
            await asyncio.sleep(0.01)
        loop.offer(2)
        await runner.polled(2)
        await asyncio.sleep(0.3)
        assert runner.partials == [[1], [2]] and list(loop.queue.pending) == [1]


class LaneRunner(PartialRunner):
    """A PartialRunner with the regular cycle's fast lane (`Notifier.expedite`): open while
    `lane_open`, it records the monitors handed to it."""

    def __init__(self) -> None:
        super().__init__(watched=range(1, 301))
        self.lane_open = False
        self.expedited: list[list[int]] = []
        self.handed = asyncio.Event()

    def expedite(self, monitor_ids: Collection[int]) -> bool:
        if self.lane_open and monitor_ids:
            self.expedited.append(list(monitor_ids))
            self.handed.set()
        return self.lane_open


async def test_triggers_during_a_polling_cycle_join_its_lane_within_the_bucket() -> None:
    """A regular cycle that holds the lock and polls takes triggered monitors into its lane at
    once (no waiting for its end), as many as the bucket holds; once its polls are done (lane
    closed), the rest wait for the lock and a partial cycle after it."""
    runner, lock = LaneRunner(), asyncio.Lock()
    counted: list[int] = []
    config = TriggerConfig(token=TOKEN, max_polls_per_minute=5)
    loop = TriggerLoop(
        runner,
        config,
        lock=lock,
        record=Metrics().record_partial,
        full_cycle=lambda: None,
        count_polls=counted.append,
    )
    async with running(loop):
        async with lock:  # a regular cycle
            runner.lane_open = True  # ... polling
            for monitor_id in range(1, 301):
                loop.offer(monitor_id)
            await asyncio.wait_for(runner.handed.wait(), timeout=5)
            newest = [300, 299, 298, 297, 296]
            assert runner.expedited == [newest] and counted == [5]
            assert runner.partials == []
            runner.lane_open = False  # its polls are done; it delivers and saves
        await asyncio.sleep(0.3)
        # The bucket is spent (5 a minute): the rest wait for it, in no lane and no partial.
        assert runner.expedited == [newest] and runner.partials == []
        assert list(loop.queue.pending)[-1:] == [295] and len(loop.queue.pending) == 295


async def test_a_trigger_waiting_for_the_lock_joins_the_lane_when_the_cycle_starts_polling() -> (
    None
):
    """The loop waits for the lock while the cycle loads its state; once the cycle polls, the
    monitor joins its lane instead of waiting for the cycle's end."""
    runner, lock = LaneRunner(), asyncio.Lock()
    async with running(trigger_loop(runner, lock)) as loop, lock:
        loop.offer(7)
        await asyncio.sleep(0.2)  # the cycle has the lock, and does not poll yet
        assert runner.expedited == [] and runner.partials == []
        runner.lane_open = True
        await asyncio.wait_for(runner.handed.wait(), timeout=5)
        assert runner.expedited == [[7]] and runner.partials == []


@pytest.mark.parametrize("every_monitor", [True, False])
async def test_a_regular_cycle_clears_the_backlog_it_polled_in_poll_mode(
    every_monitor: bool,
) -> None:
    runner, lock = PartialRunner(watched=range(1, 101)), asyncio.Lock()
    metrics = Metrics()
    config = TriggerConfig(
        token=TOKEN, max_polls_per_minute=1, cycles_list_every_monitor=every_monitor
    )
    loop = TriggerLoop(
        runner,
        config,
        lock=lock,
        record=metrics.record_partial,
        full_cycle=lambda: None,
        clock=lambda: T0,
    )
    async with running(loop):
        for monitor_id in range(1, 101):
            loop.offer(monitor_id)
        await runner.polled(1)
        assert len(loop.queue.pending) == 99
        polled = list(range(1, 101))
        loop.cycle_finished(CycleReport(polled=polled, started_at=T0 + timedelta(seconds=1)))
        assert len(loop.queue.pending) == (0 if every_monitor else 99)


async def test_a_stopped_loop_takes_no_more_triggers() -> None:
    runner, lock = PartialRunner(), asyncio.Lock()
    loop = trigger_loop(runner, lock)
    task = asyncio.create_task(loop.run())
    await loop.stop(task, grace=1)
    loop.offer(1)
    assert not loop.queue.pending and task.done()


# --- the routes, on a real listener --------------------------------------------------------------


class Endpoint:
    """What the routes were told: the offers and the outcomes counted."""

    def __init__(self, leading: bool | None = None, watched: Collection[int] = (1, 2)) -> None:
        self.offers: list[int | None] = []
        self.counted: list[str] = []
        self.leading = leading
        self.watched = watched

    def offer(self, monitor_id: int | None) -> Any:
        self.offers.append(monitor_id)
        return triggered(monitor_id, self.watched)

    def endpoint(self, field: tuple[str, ...] = ("monitor_id",)) -> TriggerEndpoint:
        config = TriggerConfig(token=TOKEN, monitor_field=field)
        return TriggerEndpoint(config, self.offer, lambda: self.leading, self.counted.append)


@asynccontextmanager
async def listener(endpoint: TriggerEndpoint | None) -> AsyncIterator[str]:
    from notifier.run.health import HealthTracker

    health = HealthTracker(started_at=T0, interval=timedelta(seconds=60))
    app = status_app(health, Metrics(), lambda: T0, trigger=endpoint)
    async with serve_status(app, "127.0.0.1", 0) as port:
        yield f"http://127.0.0.1:{port}"


async def post(url: str, body: bytes | None = None, **headers: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=body, headers=headers) as answer,
    ):
        text = await answer.text()
        return answer.status, json.loads(text) if text.startswith("{") else text


async def test_the_routes_answer_at_once_with_what_they_took() -> None:
    seen = Endpoint()
    async with listener(seen.endpoint(("monitor", "id"))) as url:
        assert await post(f"{url}/trigger/{TOKEN}/2") == (
            202,
            {"status": "accepted", "monitor_id": 2},
        )
        assert await post(f"{url}/trigger/{TOKEN}", b'{"monitor": {"id": "1"}}') == (
            202,
            {"status": "accepted", "monitor_id": 1},
        )
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert await post(f"{url}/trigger", b"garbage", **auth) == (
            202,
            {"status": "accepted", "monitor_id": None},
        )
        assert await post(f"{url}/trigger/{TOKEN}/77") == (
            202,
            {"status": "accepted", "monitor_id": 77, "ignored": "not watched"},
        )
        # The path's monitor wins over the body's.
        assert (await post(f"{url}/trigger/{TOKEN}/1", b'{"monitor": {"id": 2}}'))[1][
            "monitor_id"
        ] == 1
    assert seen.offers == [2, 1, None, 77, 1]
    assert seen.counted == ["accepted", "accepted", "accepted", "ignored", "accepted"]


async def test_a_wrong_or_missing_token_is_401_the_same_either_way() -> None:
    seen = Endpoint()
    async with listener(seen.endpoint()) as url:
        answers = [
            await post(f"{url}/trigger/{TOKEN}x"),
            await post(f"{url}/trigger/{TOKEN[:-1]}/1"),
            await post(f"{url}/trigger"),
            await post(f"{url}/trigger", Authorization=f"Bearer {TOKEN}x"),
            await post(f"{url}/trigger", Authorization=f"Basic {TOKEN}"),
        ]
    assert answers == [(401, {"status": "unauthorized"})] * 5
    assert seen.offers == [] and seen.counted == ["unauthorized"] * 5


async def test_a_body_over_4096_bytes_is_413_and_is_not_read_on() -> None:
    seen = Endpoint()
    async with listener(seen.endpoint()) as url:
        exact = b'{"monitor_id": 1}'.ljust(MAX_BODY_BYTES)
        assert (await post(f"{url}/trigger/{TOKEN}", exact))[0] == 202
        assert (await post(f"{url}/trigger/{TOKEN}", exact + b" "))[0] == 413

        async def endless() -> AsyncIterator[bytes]:  # chunked: no Content-Length to go by
            for _ in range(10_000):
                yield b" " * 1024

        status, body = await post(f"{url}/trigger/{TOKEN}", endless())  # type: ignore[arg-type]
        assert status == 413 and body["status"] == "error"
    assert seen.offers == [1] and seen.counted == ["accepted", "too_large", "too_large"]


async def test_a_standby_answers_503_and_takes_nothing() -> None:
    seen = Endpoint(leading=False)
    async with listener(seen.endpoint()) as url:
        assert await post(f"{url}/trigger/{TOKEN}/1") == (503, {"status": "standby"})
        assert (await post(f"{url}/trigger/nope-nope-nope-nope"))[0] == 401
    assert seen.offers == [] and seen.counted == ["standby", "unauthorized"]


async def test_a_path_monitor_id_must_be_ascii_digits() -> None:
    seen = Endpoint()
    async with listener(seen.endpoint()) as url:
        for bad in ("abc", "-1", "1.0", "%D9%A3", "1" * 19):
            assert (await post(f"{url}/trigger/{TOKEN}/{bad}"))[0] == 404, bad
    assert seen.offers == []


async def test_without_a_token_the_trigger_paths_are_404() -> None:
    async with listener(None) as url:
        for path in (f"/trigger/{TOKEN}", f"/trigger/{TOKEN}/1", "/trigger"):
            assert (await post(url + path, Authorization=f"Bearer {TOKEN}"))[0] == 404


async def test_the_routes_log_nothing_of_the_token() -> None:
    seen = Endpoint(leading=False)
    with capture_logs() as logs:
        async with listener(seen.endpoint()) as url:
            await post(f"{url}/trigger/{TOKEN}/1")
            await post(f"{url}/trigger/{TOKEN}x")
            await post(f"{url}/trigger/{TOKEN}", b" " * 5000)
    assert TOKEN not in repr(logs)


# --- an in-process daemon: a trigger for every monitor moves the regular cycle up ---------------


async def test_a_trigger_for_every_monitor_runs_the_regular_cycle_soon_and_spaced() -> None:
    runner = PartialRunner()
    daemon = Daemon(runner, interval=300, grace=1, listener=StatusListener("127.0.0.1", 0))
    daemon.full_cycle_gap = timedelta(seconds=0.5)
    daemon.enable_trigger(TriggerConfig(token=TOKEN))
    with capture_logs() as logs:
        running_daemon = asyncio.create_task(daemon.run())
        await asyncio.wait_for(runner.cycled.wait(), timeout=5)
        runner.cycled.clear()
        port = next(e["port"] for e in logs if e["event"] == "status_listening")
        url = f"http://127.0.0.1:{port}/trigger/{TOKEN}"
        started = asyncio.get_running_loop().time()
        for _ in range(20):  # a burst: one full cycle, no sooner than the gap after the first
            assert (await post(url))[0] == 202
        await asyncio.wait_for(runner.cycled.wait(), timeout=5)
        took = asyncio.get_running_loop().time() - started
        daemon.request_stop()
        assert await running_daemon == 0
    assert took < 3, f"the triggered cycle came {took:.2f} s after the trigger"
    assert runner.cycles == 2 and runner.partials == []
    assert not [e for e in logs if e["event"] == "cycle_skipped"]
    assert sum(e["event"] == "cycle_triggered" for e in logs) >= 1


@pytest.mark.parametrize(
    ("change", "fixed"),
    [
        ({"NOTIFIER_TRIGGER_TOKEN": "another-T0ken-0123456789"}, ["NOTIFIER_TRIGGER_TOKEN"]),
        ({"NOTIFIER_TRIGGER_MONITOR_FIELD": "monitor.id"}, ["NOTIFIER_TRIGGER_MONITOR_FIELD"]),
        (
            {"NOTIFIER_TRIGGER_MAX_POLLS_PER_MINUTE": "10"},
            ["NOTIFIER_TRIGGER_MAX_POLLS_PER_MINUTE"],
        ),
    ],
)
def test_the_trigger_settings_need_a_restart(change: dict[str, str], fixed: list[str]) -> None:
    from notifier.run.reload import fixed_changes
    from notifier.run.settings import Settings

    base = {
        "DATAFOLD_API_KEY": "dfk-e2e-distinctive-api-key-0001",
        "NOTIFIER_MONITOR_IDS": "1,2",
        "NOTIFIER_HEALTH_PORT": "0",
        "NOTIFIER_TRIGGER_TOKEN": TOKEN,
    }
    old = Settings(**base)  # type: ignore[arg-type]
    new = Settings(**(base | change))  # type: ignore[arg-type]
    assert fixed_changes(old, new) == fixed
    assert old.trigger is not None and TOKEN not in repr(old) + repr(old.trigger)
    assert TOKEN in old.secrets()  # so the log pipeline redacts it wherever it turns up
