"""The PostgreSQL state store against a real, private server: lease, fencing, mutes, failures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from urllib.parse import quote

import psycopg
import psycopg.sql
import pytest

from notifier.domain.models import (
    Mute,
    NotifierState,
)
from notifier.domain.mutes import MuteSelector
from notifier.store.postgres import (
    SCHEMA_VERSION,
    LeaseLost,
    PostgresStateError,
    PostgresStore,
    url_secrets,
)
from tests.fakes.postgres import (
    PASSWORD,
    PostgresServer,
    postgres_server_fixture,  # noqa: F401  # the fixture, registered by importing it
    postgres_url_fixture,  # noqa: F401
)
from tests.fakes.states import T0, sample_state

pytestmark = pytest.mark.postgres

TTL = timedelta(seconds=1.5)


def mute(mute_id: str, *, monitor_id: int | None = None, tag: str | None = None) -> Mute:
    return Mute(
        id=mute_id,
        monitor_id=monitor_id,
        tag=tag,
        until=T0 + timedelta(hours=1),
        reason="deploy",
        created_at=T0,
    )


@asynccontextmanager
async def opened(
    url: str, holder: str = "a", ttl: timedelta = TTL, connect_timeout: float = 3.0
) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(url, holder=holder, lease_ttl=ttl, connect_timeout=connect_timeout)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def assert_clean(message: str) -> None:
    """One line, no password, no URL."""
    assert "\n" not in message
    assert PASSWORD not in message
    assert "postgresql://" not in message


async def test_load_without_a_saved_state_is_empty(postgres_url: str) -> None:
    async with opened(postgres_url) as store:
        assert await store.load() == NotifierState()
        assert await store.lease() is None


async def test_round_trip_with_outbox_and_unchanged_state_is_not_rewritten(
    postgres_url: str,
) -> None:
    async with opened(postgres_url) as store:
        assert await store.try_acquire()
        assert await store.save(sample_state()) is True
        assert await store.save(sample_state()) is False
    async with opened(postgres_url, holder="a") as again:
        # A restarted replica is another process: it waits for its predecessor's lease to lapse.
        assert not await again.try_acquire()
        await asyncio.sleep(TTL.total_seconds())
        assert await again.try_acquire()
        loaded = await again.load()
        assert loaded == sample_state()
        assert loaded.outbox[0].attempts == 2
        assert await again.save(loaded) is False  # same bytes as loaded: not written
        assert await again.save(sample_state(run_id=71)) is True


async def test_save_without_the_lease_raises_and_writes_nothing(postgres_url: str) -> None:
    async with opened(postgres_url) as store:
        with pytest.raises(LeaseLost):
            await store.save(sample_state())
        assert await store.load() == NotifierState()


async def test_only_one_acquires_and_the_other_after_the_ttl(postgres_url: str) -> None:
    async with opened(postgres_url, "a") as a, opened(postgres_url, "b") as b:
        assert await a.try_acquire()
        assert not await b.try_acquire()
        assert a.has_lease() and not b.has_lease()
        first = await a.lease()
        assert first is not None and first.holder == "a"
        assert 0 < first.expires_in <= TTL.total_seconds()
        assert await a.try_acquire()  # renewal keeps the fence
        renewed = await a.lease()
        assert renewed is not None and renewed.fence == first.fence
        await asyncio.sleep(TTL.total_seconds() + 0.1)
        assert not a.has_lease()
        assert await b.try_acquire()
        taken = await b.lease()
        assert taken is not None and taken.holder == "b" and taken.fence == first.fence + 1
        assert not await a.try_acquire()
        assert not a.has_lease()


async def test_the_old_leader_cannot_save_after_a_takeover(postgres_url: str) -> None:
    async with opened(postgres_url, "a") as a, opened(postgres_url, "b") as b:
        assert await a.try_acquire()
        assert await a.save(sample_state(run_id=1))
        await asyncio.sleep(TTL.total_seconds() + 0.1)
        assert await b.try_acquire()
        assert (await b.load()) == sample_state(run_id=1)
        assert await b.save(sample_state(run_id=2))
        with pytest.raises(LeaseLost) as lost:
            await a.save(sample_state(run_id=3))
        assert_clean(str(lost.value))
        assert not a.has_lease()
        assert (await a.load()) == sample_state(run_id=2)


async def test_has_lease_ends_no_later_than_another_replica_can_acquire(
    postgres_url: str,
) -> None:
    async with opened(postgres_url, "a") as a, opened(postgres_url, "b") as b:
        acquired_at = time.monotonic()
        assert await a.try_acquire()
        believed_until = acquired_at
        deadline = acquired_at + TTL.total_seconds() + 2
        while time.monotonic() < deadline:
            if a.has_lease():
                believed_until = time.monotonic()
            if await b.try_acquire():
                assert not a.has_lease(), "b acquired while a still believed it led"
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("b never acquired the lapsed lease")
        # a let go close to the TTL, not long before it.
        assert believed_until - acquired_at > TTL.total_seconds() - 0.5


async def test_release_lets_a_standby_take_over_at_once(postgres_url: str) -> None:
    async with (
        opened(postgres_url, "a", ttl=timedelta(seconds=60)) as a,
        opened(postgres_url, "b", ttl=timedelta(seconds=60)) as b,
    ):
        assert await a.try_acquire()
        assert not await b.try_acquire()
        await a.release()
        assert not a.has_lease()
        info = await a.lease()
        assert info is not None and info.expires_in <= 0
        assert await b.try_acquire()
        with pytest.raises(LeaseLost):
            await a.save(sample_state())


async def test_concurrent_open_on_a_fresh_database_migrates_once(postgres_url: str) -> None:
    stores = [
        PostgresStore(postgres_url, holder=f"r{n}", lease_ttl=TTL, connect_timeout=3)
        for n in range(5)
    ]
    try:
        await asyncio.gather(*(store.open() for store in stores))
        with psycopg.connect(postgres_url) as conn:
            row = conn.execute("SELECT version FROM notifier_schema_version").fetchone()
        assert row == (SCHEMA_VERSION,)
        acquired = await asyncio.gather(*(store.try_acquire() for store in stores))
        assert sorted(acquired) == [False] * 4 + [True]
    finally:
        for store in stores:
            await store.close()


async def test_a_newer_schema_is_refused(postgres_url: str) -> None:
    async with opened(postgres_url):
        pass
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE notifier_schema_version SET version = 99")
    store = PostgresStore(postgres_url, holder="a", lease_ttl=TTL)
    with pytest.raises(PostgresStateError) as refused:
        await store.open()
    assert "upgrade datafold-notifier" in str(refused.value)
    assert "99" in str(refused.value)
    assert_clean(str(refused.value))


async def test_a_newer_document_is_refused(postgres_url: str) -> None:
    async with opened(postgres_url) as store:
        assert await store.try_acquire()
        assert await store.save(NotifierState(version=2))
        with pytest.raises(PostgresStateError, match="upgrade datafold-notifier"):
            await store.load()


async def test_mutes_add_list_remove_and_save_leaves_them_alone(postgres_url: str) -> None:
    async with opened(postgres_url) as store:
        await store.add_mute(mute("m1", monitor_id=7), T0)
        await store.add_mute(mute("m2", tag="Finance"), T0)
        await store.add_mute(mute("m3", monitor_id=8), T0)
        assert [m.id for m in await store.mutes()] == ["m1", "m2", "m3"]
        assert (await store.mutes())[0] == mute("m1", monitor_id=7)

        assert await store.try_acquire()
        state = sample_state()
        state.mutes = []  # the daemon's copy: save must not touch the table
        assert await store.save(state)
        loaded = await store.load()
        assert [m.id for m in loaded.mutes] == ["m1", "m2", "m3"]

        assert [m.id for m in await store.remove_mutes(MuteSelector(tag=" finance "), T0)] == ["m2"]
        assert [m.id for m in await store.remove_mutes(MuteSelector(monitor_id=7), T0)] == ["m1"]
        assert await store.remove_mutes(MuteSelector(mute_id="nope"), T0) == []
        assert [m.id for m in await store.remove_mutes(MuteSelector(mute_id="m3"), T0)] == ["m3"]
        assert await store.mutes() == []
        with pytest.raises(ValueError, match="needs"):
            MuteSelector()


async def test_export_import_round_trip_and_refusal_while_leased(postgres_url: str) -> None:
    wanted = sample_state()
    wanted.mutes = [mute("m1", monitor_id=7), mute("m2", tag="ops")]
    async with opened(postgres_url, "leader") as leader, opened(postgres_url, "admin") as admin:
        await admin.import_state(wanted)  # nobody holds the lease
        assert await admin.export_state() == wanted

        assert await leader.try_acquire()
        replacement = sample_state(run_id=99)
        with pytest.raises(PostgresStateError) as refused:
            await admin.import_state(replacement)
        assert "leader" in str(refused.value)
        assert_clean(str(refused.value))
        assert await admin.export_state() == wanted

        assert await admin.import_state(replacement, force=True) == "leader"
        assert await admin.export_state() == replacement  # mutes replaced too: none
        with pytest.raises(LeaseLost):  # fenced out: its view predates the import
            await leader.save(wanted)
        assert await admin.export_state() == replacement
        assert await leader.try_acquire()  # retaken under a new fence, then read afresh
        state, _ = await leader.load_leased()
        assert state == replacement
        assert await leader.save(wanted)


async def test_server_stop_fails_fast_then_the_same_store_reconnects(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    async with opened(postgres_url, ttl=timedelta(seconds=30), connect_timeout=3) as store:
        assert await store.try_acquire()
        assert await store.save(sample_state(run_id=1))
        await asyncio.to_thread(postgres_server.stop)
        try:
            for operation in (store.load, store.try_acquire, store.mutes):
                started = time.monotonic()
                with pytest.raises(PostgresStateError) as down:
                    await operation()
                assert time.monotonic() - started < 3.5
                assert_clean(str(down.value))
                assert "127.0.0.1" in str(down.value)
                assert store.has_lease()  # an error is not a loss: the deadline still stands
        finally:
            await asyncio.to_thread(postgres_server.start)
        assert await store.try_acquire()
        assert await store.save(sample_state(run_id=2))
        assert await store.load() == sample_state(run_id=2)


async def test_a_restart_between_operations_is_invisible(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    async with opened(postgres_url) as store:
        assert await store.try_acquire()
        await asyncio.to_thread(postgres_server.stop)
        await asyncio.to_thread(postgres_server.start)
        assert await store.try_acquire()  # the dead connection is replaced and retried
        assert await store.save(sample_state())


async def test_no_password_in_repr_or_connection_errors(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    store = PostgresStore(postgres_url, holder="a", lease_ttl=TTL)
    assert PASSWORD not in repr(store) and "127.0.0.1" in repr(store)

    wrong = postgres_url.replace(PASSWORD, PASSWORD + "-wrong")
    with pytest.raises(PostgresStateError) as denied:
        await PostgresStore(wrong, holder="a", lease_ttl=TTL).open()
    assert "password authentication failed" in str(denied.value)
    assert_clean(str(denied.value))
    assert PASSWORD + "-wrong" not in str(denied.value)

    nowhere = postgres_url.replace(f":{postgres_server.port}/", ":1/")
    started = time.monotonic()
    with pytest.raises(PostgresStateError) as refused:
        await PostgresStore(nowhere, holder="a", lease_ttl=TTL, connect_timeout=2).open()
    assert time.monotonic() - started < 3
    assert_clean(str(refused.value))
    assert "127.0.0.1:1/" in str(refused.value)

    with pytest.raises(PostgresStateError) as invalid:
        PostgresStore(postgres_url + "?sslmode=bogus&nope=1", holder="a", lease_ttl=TTL)
    assert_clean(str(invalid.value))


#: Distinctive pieces a password is made of, so a test can find any fragment of it in a message.
PIECES = ("Zq7k", "vexq", "ingz")


@pytest.mark.parametrize("encoded", [True, False], ids=["encoded", "as-is"])
@pytest.mark.parametrize("char", ["/", "@", ":", "%", "#"])
async def test_no_fragment_of_any_password_in_any_message(
    postgres_server: PostgresServer, char: str, encoded: bool
) -> None:
    """Whatever the password holds, written percent-encoded or not: the URL works, or is refused
    up front; no message, repr or database name shows any piece of the password."""
    password = char.join(PIECES)
    role = f"special_{ord(char)}_{int(encoded)}"
    with psycopg.connect(postgres_server.url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                psycopg.sql.Identifier(role), psycopg.sql.Literal(password)
            )
        )
        conn.execute(
            psycopg.sql.SQL("CREATE DATABASE {0} OWNER {0}").format(psycopg.sql.Identifier(role))
        )
    written = quote(password, safe="") if encoded else password
    base = f"postgresql://{role}:{written}@127.0.0.1:{postgres_server.port}"
    messages: list[str] = []
    # libpq reads an unencoded / or @ as the end of the password, and % as an escape.
    works = encoded or char in ":#"
    try:
        store = PostgresStore(f"{base}/{role}", holder="a", lease_ttl=TTL)
    except PostgresStateError as refused:
        assert not works, str(refused)
        assert "percent-encode" in str(refused)
        messages.append(str(refused))
    else:
        assert works
        messages += [repr(store), store.where]
        await store.open()
        try:
            assert await store.try_acquire()
            assert await store.save(sample_state())
        finally:
            await store.close()
        for url in (
            f"{base}/nowhere",  # no such database
            f"{base.replace(written, written + 'x')}/{role}",  # wrong password
            f"{base.replace(f':{postgres_server.port}', ':1')}/{role}",  # nobody listening
        ):
            failing = PostgresStore(url, holder="a", lease_ttl=TTL, connect_timeout=2)
            messages += [repr(failing), failing.where]
            with pytest.raises(PostgresStateError) as failed:
                await failing.open()
            messages.append(str(failed.value))
    for message in messages:
        assert_clean(message)
        assert not [piece for piece in PIECES if piece in message], message


@pytest.mark.parametrize(
    ("url", "secrets"),
    [
        ("postgresql://u:p%2Fw@h/db", {"p/w", "p%2Fw", "p%252Fw"}),
        ("postgresql://u:p/w@h/db", {"p/w", "p%2Fw"}),
        ("postgresql://u:p@w@h/db", {"p", "p@w", "p%40w"}),
        ("postgresql://u:p#w@h/db", {"p#w", "p%23w"}),
        ("postgresql://u@h/db", set()),
        ("host=h user=u password=s3cret", {"s3cret"}),
    ],
)
def test_url_secrets_cover_the_password_as_libpq_reads_it_and_as_written(
    url: str, secrets: set[str]
) -> None:
    assert url_secrets(url) == secrets
