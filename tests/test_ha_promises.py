"""High availability keeps its promises under pauses, name clashes, skew, outages and imports.

In process, against a real PostgreSQL: two replicas as two stores and two leased notifiers over
shared fakes, paused and resumed at chosen points, so that each sequence runs the same way every
time (issue 12). The subprocess version of the pause runs real `datafold-notifier run` replicas.
"""

from __future__ import annotations

import asyncio
import glob
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from structlog.testing import capture_logs

from notifier.domain.models import MessageRef, MonitorRun, Mute, Notification, NotifierState
from notifier.fetch.source import ApiUnavailable
from notifier.run.cycle import Notifier
from notifier.run.leadership import ElectedState, LeasedNotifier
from notifier.store.postgres import (
    LeaseLost,
    PostgresStateError,
    PostgresStore,
    StaleFence,
    read_clock,
)
from tests.fakes.cli import World, cli
from tests.fakes.cycle import Clock, cycle_config
from tests.fakes.delivery_audit import DESTINATIONS
from tests.fakes.postgres import LEASE_TTL, PostgresServer, opened, unavailable
from tests.fakes.replicas import Replicas, elect, serve_replicas
from tests.fakes.source import FakeSource
from tests.fakes.webhook import Reply

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]

TTL = LEASE_TTL


@dataclass
class Destination:
    """One Slack channel both replicas deliver to: every notification it accepted, and from
    which replica."""

    accepted: list[tuple[str, str]] = field(default_factory=list)

    def counts(self) -> Counter[str]:
        return Counter(key for _, key in self.accepted)


class ReplicaSink:
    """A replica's way to the shared destination. `freeze()` makes its next send hang right after
    the destination accepted it: the answer never comes back while the replica is frozen."""

    name = "slack"

    def __init__(self, replica: str, destination: Destination) -> None:
        self.replica = replica
        self.destination = destination
        self._thaw: asyncio.Event | None = None
        self.frozen = asyncio.Event()

    def freeze(self) -> asyncio.Event:
        self._thaw = asyncio.Event()
        return self._thaw

    async def send(
        self, notification: Notification, thread: MessageRef | None = None
    ) -> MessageRef | None:
        self.destination.accepted.append((self.replica, notification.id))
        if self._thaw is not None:
            thaw, self._thaw = self._thaw, None
            self.frozen.set()
            await thaw.wait()
        return None


@dataclass
class ReplicaSource(FakeSource):
    """A replica's view of the shared Datafold (the same run dictionaries); `freeze()` makes its
    next listing hang."""

    _thaw: asyncio.Event | None = None
    frozen: asyncio.Event = field(default_factory=asyncio.Event)

    def freeze(self) -> asyncio.Event:
        self._thaw = asyncio.Event()
        return self._thaw

    async def list_runs(
        self, monitor_id: int, since: datetime, until: datetime | None = None
    ) -> list[MonitorRun]:
        if self._thaw is not None:
            thaw, self._thaw = self._thaw, None
            self.frozen.set()
            await thaw.wait()
        return await super().list_runs(monitor_id, since, until)


@dataclass
class Replica:
    """One replica in process: its store, its leased notifier, its own sink and source."""

    name: str
    store: PostgresStore
    leased: LeasedNotifier
    sink: ReplicaSink
    source: ReplicaSource


@asynccontextmanager
async def replica(
    url: str, name: str, runs: FakeSource, destination: Destination, clock: Clock
) -> AsyncIterator[Replica]:
    """A replica wired as the daemon wires one: deliveries checked by `ElectedState.may_deliver`."""
    sink, source = ReplicaSink(name, destination), ReplicaSource(runs=runs.runs, infos=runs.infos)

    def build(elected: ElectedState) -> Notifier:
        return Notifier(
            source,
            elected,
            {sink.name: sink},
            cycle_config(monitor_ids=(1,)),
            clock=clock,
            may_deliver=elected.may_deliver,
        )

    async with opened(url, name) as store:
        yield Replica(name, store, LeasedNotifier(store, build), sink, source)


async def acquire_within(store: PostgresStore, seconds: float) -> float:
    """Try to take the lease until it is ours; how long it took."""
    started = time.monotonic()
    while not await store.try_acquire():
        assert time.monotonic() - started < seconds, f"{store.holder} never got the lease"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def saved(url: str) -> tuple[str, str]:
    """The document in the database and who saved it."""
    async with await psycopg.AsyncConnection.connect(url, connect_timeout=5) as conn:
        cur = await conn.execute("SELECT document, saved_by FROM notifier_state WHERE id = 1")
        row = await cur.fetchone()
    assert row is not None
    return str(row[0]), str(row[1])


@pytest.mark.parametrize("frozen_at", ["listing", "delivering"])
async def test_a_frozen_leader_resumes_its_stale_cycle_without_repeats_or_overwrites(
    postgres_url: str, clock: Clock, frozen_at: str
) -> None:
    """A frozen mid-cycle; B takes over, delivers and saves, then dies; A resumes and retakes
    the lease under a new fence: A delivers nothing more of its stale cycle, its save is
    refused, and its next cycle starts from B's state and repeats nothing."""
    runs, destination = FakeSource(), Destination()
    runs.put(1, 10, "alert", clock.now - timedelta(minutes=5))
    async with (
        replica(postgres_url, "a", runs, destination, clock) as a,
        replica(postgres_url, "b", runs, destination, clock) as b,
    ):
        assert await a.store.try_acquire()
        baseline = await a.leased.run_cycle()
        assert not baseline.standby and destination.accepted == []

        clock.tick()
        runs.put(1, 11, "alert", clock.now - timedelta(seconds=20))
        runs.put(1, 12, "alert", clock.now - timedelta(seconds=10))
        part = a.source if frozen_at == "listing" else a.sink
        thaw = part.freeze()
        stale_cycle = asyncio.create_task(a.leased.run_cycle())
        await asyncio.wait_for(part.frozen.wait(), 5)
        in_flight = Counter(key for _, key in destination.accepted)  # the crash window

        took = await acquire_within(b.store, 3 * TTL.total_seconds())
        assert not a.store.has_lease()
        report = await b.leased.run_cycle()
        assert not report.standby and report.delivered == 2
        document, by = await saved(postgres_url)
        assert by == "b"

        await acquire_within(a.store, 3 * TTL.total_seconds())  # B died; its lease lapsed
        assert a.store.fence == b.store.fence + 1  # type: ignore[operator]
        with capture_logs() as logs:
            thaw.set()
            stale = await asyncio.wait_for(stale_cycle, 10)
        assert stale.standby
        events = [entry["event"] for entry in logs]
        assert "save_fenced" in events and "standing_by" in events
        if frozen_at == "listing":
            assert "delivery_fenced" in events  # the stale cycle found news and sent none
        assert await saved(postgres_url) == (document, "b"), "B's newer state was overwritten"

        again = await a.leased.run_cycle()  # read afresh under the new fence
        assert not again.standby and again.delivered == 0

    counts = destination.counts()
    assert counts == Counter({"1-11-alert": 1, "1-12-alert": 1}) + in_flight, destination.accepted
    print(f"takeover of a frozen leader ({frozen_at}): {took:.2f} s")  # `pytest -s` shows it


async def test_a_stale_state_is_never_saved_nor_delivered_under_the_new_fence(
    postgres_url: str,
) -> None:
    """The store's side of the promise, without a notifier: the fence travels with the state."""
    async with (
        opened(postgres_url, "a") as a,
        opened(postgres_url, "b") as b,
    ):
        assert await a.try_acquire()
        loaded, fence = await a.load_leased()
        elected = ElectedState(a, loaded, fence)
        assert elected.may_deliver()
        await acquire_within(b, 3 * TTL.total_seconds())
        assert await b.save(NotifierState())
        await asyncio.sleep(TTL.total_seconds())
        await acquire_within(a, 3 * TTL.total_seconds())
        assert a.has_lease() and a.fence == fence + 2
        assert not elected.may_deliver()
        with pytest.raises(StaleFence):
            await elected.save(loaded)
        assert a.has_lease(), "a refused stale save keeps the lease"
        fresh, new_fence = await a.load_leased()
        assert new_fence == fence + 2
        assert ElectedState(a, fresh, new_fence).may_deliver()


async def test_a_stale_save_waiting_behind_a_retake_leaves_the_new_lease_alone(
    postgres_url: str,
) -> None:
    """Resumed, a leader's renewal retakes the lease while its stale cycle's save waits for the
    connection: the save is refused, and the lease just retaken stays ours."""
    async with opened(postgres_url, "a") as a, opened(postgres_url, "b") as b:
        assert await a.try_acquire()
        loaded, fence = await a.load_leased()
        await acquire_within(b, 3 * TTL.total_seconds())
        await asyncio.sleep(TTL.total_seconds())  # B dies; its lease lapses
        retake = asyncio.create_task(a.try_acquire())  # takes the connection first
        await asyncio.sleep(0)
        assert a.fence == fence  # the retake has not been answered yet: the save waits for it
        with pytest.raises(StaleFence):
            await a.save(loaded.model_copy(update={"version": 1}), fence=fence)
        assert await retake
        assert a.has_lease() and a.fence == fence + 2


def events_of(logs: list[dict[str, object]], name: str) -> list[dict[str, object]]:
    return [entry for entry in logs if entry["event"] == name]


async def test_two_processes_with_one_name_never_both_lead_and_the_clash_is_reported(
    postgres_url: str,
) -> None:
    async with (
        opened(postgres_url, "replica-0") as first,
        opened(postgres_url, "replica-0") as second,
    ):
        assert first.token != second.token
        assert await first.try_acquire()
        with capture_logs() as logs:
            for _ in range(4):
                assert not await second.try_acquire()
                assert await first.try_acquire()  # the namesake renews: a live process
                await asyncio.sleep(0.05)
        assert not second.has_lease()
        assert second.name_clash and second.name_clashes == 1
        clashes = events_of(logs, "replica_name_clash")
        assert len(clashes) == 1 and clashes[0]["log_level"] == "error"
        assert not first.name_clash  # the leader cannot see it; the standby reports it
        assert await first.save(NotifierState())

        await first.release()
        assert await second.try_acquire()
        assert not second.name_clash
        with pytest.raises(LeaseLost):
            await first.save(NotifierState(monitors={}))


async def test_a_restarted_replica_waits_for_its_predecessor_without_a_clash(
    postgres_url: str,
) -> None:
    """A dead predecessor of the same name never renews: no clash, the lease lapses and the
    restarted process takes it under a new fence."""
    async with opened(postgres_url, "replica-0") as dead:
        assert await dead.try_acquire()
        fence = dead.fence
    async with opened(postgres_url, "replica-0") as restarted:
        with capture_logs() as logs:
            took = await acquire_within(restarted, 3 * TTL.total_seconds())
        assert events_of(logs, "replica_name_clash") == []
        assert restarted.fence == fence + 1  # type: ignore[operator]
        assert took <= TTL.total_seconds() + 0.3


async def test_a_one_shot_with_the_leaders_name_never_takes_its_lease(
    postgres_url: str,
) -> None:
    """`once` (or any command) under the leader's name is another process: refused."""
    async with opened(postgres_url, "replica-0", ttl=timedelta(seconds=30)) as leader:
        assert await leader.try_acquire()
        before = await leader.lease()
        async with opened(postgres_url, "replica-0", ttl=timedelta(seconds=30)) as once:
            assert not await once.try_acquire()
            with pytest.raises(LeaseLost):
                await once.save(NotifierState())
            await once.release()
        after = await leader.lease()
        assert before is not None and after is not None
        assert (after.holder, after.token, after.fence) == (
            before.holder,
            before.token,
            before.fence,
        )
        assert after.token == leader.token
        assert await leader.try_acquire() and leader.fence == before.fence
        assert await leader.save(NotifierState())


def skewed_clock(seconds: float) -> Callable[[], float]:
    return lambda: time.time() + seconds


@pytest.mark.parametrize("skew", [3600.0, -3600.0])
async def test_a_replica_whose_clock_is_far_off_refuses_to_lead(
    postgres_url: str, skew: float
) -> None:
    async with (
        opened(postgres_url, "skewed", wall_clock=skewed_clock(skew)) as off,
        opened(postgres_url, "sound") as sound,
    ):
        with capture_logs() as logs:
            assert not await off.try_acquire()
            assert not await off.try_acquire()
        assert off.clock_skewed and not off.has_lease()
        assert off.clock_offset is not None and abs(off.clock_offset + skew) < 1
        refusals = events_of(logs, "clock_skew_too_large")
        assert len(refusals) == 1 and refusals[0]["log_level"] == "error"
        assert abs(float(refusals[0]["offset_seconds"]) + skew) < 1  # type: ignore[arg-type]
        assert abs((off.trusted_now() - datetime.now(UTC)).total_seconds()) < 1
        assert await sound.try_acquire()
        assert sound.clock_offset is not None and abs(sound.clock_offset) < 0.5
        assert not sound.clock_skewed


async def test_a_leader_whose_clock_jumps_away_lets_the_lease_go(postgres_url: str) -> None:
    offset = [0.0]
    async with opened(postgres_url, "jumpy", wall_clock=lambda: time.time() + offset[0]) as jumpy:
        assert await jumpy.try_acquire()
        offset[0] = -7200.0  # the clock was set back two hours
        with capture_logs() as logs:
            assert not await jumpy.try_acquire()
        assert not jumpy.has_lease()
        assert [e["event"] for e in logs if e["log_level"] in ("warning", "error")] == [
            "clock_skew_too_large",
            "lease_lost",
        ]
        offset[0] = 0.0
        assert await jumpy.try_acquire()  # corrected: it may lead again, under a new fence
        assert not jumpy.clock_skewed


async def test_a_small_offset_is_measured_and_corrected(postgres_url: str) -> None:
    async with opened(postgres_url, "slightly", wall_clock=skewed_clock(90.0)) as slightly:
        assert await slightly.try_acquire()  # within the bound: it leads
        assert slightly.clock_offset is not None and abs(slightly.clock_offset + 90) < 0.5
        assert abs((slightly.trusted_now() - datetime.now(UTC)).total_seconds()) < 0.5


async def test_every_replica_knows_when_the_database_answered_and_anyone_last_polled(
    postgres_url: str, clock: Clock
) -> None:
    runs, destination = FakeSource(), Destination()
    async with (
        replica(postgres_url, "a", runs, destination, clock) as a,
        replica(postgres_url, "b", runs, destination, clock) as b,
    ):
        assert a.store.last_reachable_at is not None  # open() reached it
        assert a.store.last_cycle_at is None and b.store.last_cycle_at is None
        assert await a.store.try_acquire()
        before = datetime.now(UTC)
        report = await a.leased.run_cycle()
        after = datetime.now(UTC)
        assert not report.standby
        assert a.store.last_cycle_at is not None and a.store.last_cycle_by == "a"
        # Stamped on the database's clock, read back through the measured offset: either side
        # of our own by up to half a round trip.
        slack = timedelta(seconds=0.5)
        assert before - slack <= a.store.last_cycle_at <= after + slack
        assert not await b.store.try_acquire()  # a standby's renewal reads the stamp
        assert b.store.last_cycle_at is not None and b.store.last_cycle_by == "a"
        assert abs((b.store.last_cycle_at - a.store.last_cycle_at).total_seconds()) < 0.5
        reached = b.store.last_reachable_at
        assert reached is not None and (datetime.now(UTC) - reached).total_seconds() < 1
        lease = await b.store.lease()
        assert lease is not None and lease.last_cycle_by == "a"
        standby = await b.leased.run_cycle()
        assert standby.standby  # a standby's cycle stamps nothing
        lease_after = await b.store.lease()
        assert lease_after is not None and lease_after.last_cycle_at == lease.last_cycle_at


async def test_a_cycle_that_polled_nothing_is_not_recorded_as_polling(
    postgres_url: str, clock: Clock
) -> None:
    """With Datafold unreachable the leader's cycles poll nothing: they leave no stamp, so every
    replica's /healthz can say that nobody has polled."""
    runs, destination = FakeSource(), Destination()
    async with replica(postgres_url, "a", runs, destination, clock) as a:
        a.source.failures[1] = ApiUnavailable("monitor 1: Datafold unavailable")
        assert await a.store.try_acquire()
        report = await a.leased.run_cycle()
        assert not report.standby and report.polled == []
        lease = await a.store.lease()
        assert lease is not None and lease.last_cycle_at is None
        del a.source.failures[1]
        assert (await a.leased.run_cycle()).polled
        lease = await a.store.lease()
        assert lease is not None and lease.last_cycle_at is not None


async def test_unreachable_database_leaves_last_reachable_behind(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    async with opened(postgres_url, "a", ttl=timedelta(seconds=30)) as store:
        assert await store.try_acquire()
        reached = store.last_reachable_at
        assert reached is not None
        await asyncio.to_thread(postgres_server.stop)
        try:
            await asyncio.sleep(0.2)
            with pytest.raises(PostgresStateError, match=r"127\.0\.0\.1"):
                await store.try_acquire()
            assert store.last_reachable_at == reached
        finally:
            await asyncio.to_thread(postgres_server.start)
        assert await store.try_acquire()
        assert store.last_reachable_at is not None and store.last_reachable_at > reached


def mute(mute_id: str, reason: str = "deploy") -> Mute:
    now = datetime.now(UTC)
    return Mute(
        id=mute_id, monitor_id=7, until=now + timedelta(hours=1), reason=reason, created_at=now
    )


async def test_an_import_that_fails_half_way_changes_nothing(postgres_url: str) -> None:
    async with opened(postgres_url, "admin") as admin:
        first = NotifierState(mutes=[mute("m1"), mute("m2")])
        await admin.import_state(first)
        broken = NotifierState(mutes=[mute("m3"), mute("m4", reason="nul \x00 byte")])
        with pytest.raises(PostgresStateError) as failed:
            await admin.import_state(broken)
        assert "\n" not in str(failed.value)
        assert await admin.export_state() == first  # neither the document nor the mutes


async def test_a_forced_import_fences_out_the_live_leader(postgres_url: str, clock: Clock) -> None:
    """Without --force the import is refused; with it, the leader's save fails, its next renewal
    stops its deliveries, and its next cycle runs on the imported state and mutes."""
    runs, destination = FakeSource(), Destination()
    runs.put(1, 10, "alert", clock.now - timedelta(minutes=5))
    async with (
        replica(postgres_url, "leader", runs, destination, clock) as leader,
        opened(postgres_url, "admin") as admin,
    ):
        assert await leader.store.try_acquire()
        await leader.leased.run_cycle()
        exported = await admin.export_state()
        imported = exported.model_copy(update={"mutes": [mute("m1")]})
        with pytest.raises(PostgresStateError, match="leader holds the lease"):
            await admin.import_state(imported)
        assert leader.leased.may_deliver()
        assert await admin.import_state(imported, force=True) == "leader"
        assert await leader.store.try_acquire()  # its next renewal
        assert not leader.leased.may_deliver()  # the cycle under way would deliver nothing
        report = await leader.leased.run_cycle()
        assert not report.standby
        assert [m.id for m in (await admin.export_state()).mutes] == ["m1"]
        assert leader.leased.may_deliver()


@pytest.mark.parametrize(
    ("db_now", "sent", "received", "offset", "too_far"),
    [
        (1000.0, 1000.0, 1000.0, 0.0, False),
        (1000.5, 1000.0, 1001.0, 0.0, False),  # the midpoint of the round trip
        (1000.0, 3600.0 + 999.0, 3600.0 + 1001.0, -3600.0, True),  # ours an hour fast
        (4600.0, 999.0, 1001.0, 3600.0, True),  # ours an hour slow
        (1300.0, 1000.0, 1000.2, 299.9, False),  # within five minutes
        (1300.2, 1000.0, 1000.2, 300.1, True),
    ],
)
def test_clock_readings(
    db_now: float, sent: float, received: float, offset: float, too_far: bool
) -> None:
    reading = read_clock(db_now, sent, received, timedelta(minutes=5))
    assert reading.offset == pytest.approx(offset)
    assert reading.too_far is too_far
    assert reading.round_trip == pytest.approx(received - sent)


@pytest.fixture
async def replicas(world: World, postgres_url: str) -> AsyncIterator[Replicas]:
    async with serve_replicas(world, postgres_url) as started:
        yield started


#: Events that must never appear in these tests' replica logs.
BROKEN = {"cycle_failed", "crashed", "daemon_killed"}


async def test_a_frozen_run_replica_resumes_under_a_new_fence_without_repeats(
    replicas: Replicas,
) -> None:
    """The sequence of issue 12 with real processes: A is frozen (SIGSTOP) mid-delivery, B takes
    over, delivers and saves, B is killed and its lease lapses, A resumes (SIGCONT) and retakes
    the lease: nothing is repeated beyond the deliveries A had in flight (one per destination at
    most), and B's state stands."""
    a, (b,) = await elect(replicas, "replica-a", "replica-b")

    replicas.receiver.reply(Reply(delay=0.5))  # A's next webhook delivery is slow to answer
    replicas.add(1, "alert")
    replicas.add(2, "error")
    await a.wait_for(lambda: replicas.receiver.in_flight > 0)
    a.proc.send_signal(signal.SIGSTOP)
    frozen_at = time.monotonic()
    await asyncio.sleep(0.6)  # the answer A never reads while frozen
    await replicas.crashed()  # accepted, not saved: may be repeated once

    index = await b.wait_event("leading", within=10)
    b_fence = b.events[index]["fence"]
    print(f"takeover of a frozen run replica: {b.arrived[index] - frozen_at:.2f} s")
    await replicas.until_quiet()
    await b.kill()
    await asyncio.sleep(1.2)  # B's lease lapses

    woke, before_resume = len(a.events), replicas.received()
    a.proc.send_signal(signal.SIGCONT)
    ended = await a.wait_event("standing_by", woke)
    # A delivery that had passed its fence check when A froze (waiting in the Slack pacer, say)
    # goes out now: one per destination at most, the crash window. Nothing else may.
    after_resume = {dest: replicas.received()[dest] - before_resume[dest] for dest in DESTINATIONS}
    assert all(sum(runs.values()) <= 1 for runs in after_resume.values()), after_resume
    replicas.exposures.update((run, dest) for dest, runs in after_resume.items() for run in runs)
    assert await replicas.unrecorded() == [], "A's stale state overwrote B's"
    refused = {e.get("event") for e in a.events[woke:ended]} & {"save_fenced", "lease_lost"}
    assert refused, "the stale cycle's save was not refused"
    await a.wait_event("leading", ended, where=lambda e: e["fence"] > b_fence)
    replicas.add(1, "error")  # news, for A under its new fence
    await replicas.until_quiet()
    await asyncio.sleep(1)  # time for a repeat, should there be one
    assert await a.stop() == 0

    assert replicas.problems(BROKEN) == []
    print("replica-a after SIGCONT:", [e.get("event") for e in a.events[woke : ended + 1]])
    print("arrived after SIGCONT:", after_resume)


#: Where Debian and others put libfaketime (package `faketime`, tools/ensure-faketime.sh).
LIBFAKETIME = (
    "/usr/lib/*/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
)


@pytest.fixture(name="libfaketime")
def libfaketime_fixture() -> str:
    """libfaketime, preloaded into the replica itself (the `faketime` command forks, and a signal
    to it would not reach the replica); skipped where missing, a failure in CI."""
    for pattern in LIBFAKETIME:
        for found in sorted(glob.glob(pattern)):
            return found
    unavailable("libfaketime not found: run tools/ensure-faketime.sh")


@pytest.mark.parametrize("offset", ["+1h", "-1h"])
async def test_a_replica_an_hour_off_never_leads_and_nothing_is_lost(
    replicas: Replicas, libfaketime: str, offset: str
) -> None:
    """A `run` replica under faketime, an hour fast or slow, refuses to lead (an error naming the
    offset), even when it is alone; the sound replica delivers everything meanwhile."""
    skewed = await replicas.start(
        "skewed", LD_PRELOAD=libfaketime, FAKETIME=offset, FAKETIME_DONT_FAKE_MONOTONIC="1"
    )
    refused = skewed.events[await skewed.wait_event("clock_skew_too_large")]
    assert refused["level"] == "error"
    expected = -3600 if offset == "+1h" else 3600  # the database's clock minus ours
    assert abs(refused["offset_seconds"] - expected) < 5, refused

    sound = await replicas.start("sound")
    await sound.wait_event("leading")
    await sound.wait_event("cycle_finished")
    replicas.add(1, "alert")
    replicas.add(2, "error")
    await replicas.until_quiet()
    assert await sound.stop() == 0  # releases the lease: the skewed replica is alone
    await asyncio.sleep(1.5)  # four renewals of a one-second lease
    assert skewed.find("lease_acquired") is None and skewed.find("leading") is None
    assert len(skewed.named("clock_skew_too_large")) == 1  # logged once, not every renewal
    assert await skewed.stop() == 0
    assert replicas.problems(BROKEN) == []


async def test_once_run_with_a_live_leaders_name_leaves_its_lease_alone(
    replicas: Replicas,
) -> None:
    """`datafold-notifier once` as `kubectl exec` into the leader's pod would run it (the same
    NOTIFIER_REPLICA_NAME): another process, so it neither takes, renews nor releases the lease."""
    async with opened(replicas.url, "replica-0", ttl=timedelta(seconds=30)) as leader:
        assert await leader.try_acquire()
        before = await leader.lease()
        result = await cli("once", env={**replicas.env, "NOTIFIER_REPLICA_NAME": "replica-0"})
        assert result.code == 1, result.stderr
        assert "another replica holds the lease" in result.stderr
        after = await leader.lease()
        assert before is not None and after is not None
        assert (after.holder, after.token, after.fence) == (leader.holder, leader.token, 1)
        assert after.fence == before.fence and after.expires_in > 20
        assert await leader.try_acquire() and leader.fence == before.fence
        assert await leader.save(NotifierState())


async def test_state_import_force_names_the_leader_it_fenced_out(
    replicas: Replicas, tmp_path: Path
) -> None:
    """Through the CLI: the forced import says which leader it fenced out."""
    async with opened(replicas.url, "replica-0", ttl=timedelta(seconds=30)) as leader:
        assert await leader.try_acquire()
        source = tmp_path / "state.json"
        source.write_text(NotifierState().model_dump_json())
        refused = await cli("state", "import", str(source), env=replicas.env)
        assert refused.code == 2 and "holds the lease" in refused.stderr
        forced = await cli("state", "import", str(source), "--force", env=replicas.env)
        assert forced.code == 0, forced.stderr
        assert "fenced out the leader replica-0" in forced.stderr
