"""One `StateStore` protocol, one behaviour: every assertion here runs against the state file and
against PostgreSQL (a real private server, `postgres`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from notifier.domain.models import (
    NotifierState,
)
from notifier.domain.mutes import MuteSelector
from notifier.store.file import StateFile
from notifier.store.store import StateError, StateStore, StoreBusy
from tests.fakes.postgres import LEASE_TTL, opened
from tests.fakes.states import T0, mute, sample_state

#: A store handle for replica (or process) `name`, opened for the block and closed after.
Handles = Callable[[str], AbstractAsyncContextManager[StateStore]]


@pytest.fixture(params=["file", pytest.param("postgres", marks=pytest.mark.postgres)])
def handles(request: pytest.FixtureRequest, tmp_path: Path) -> Handles:
    """Handles on one store: the same state file, or the same PostgreSQL database."""
    if request.param == "file":
        path = tmp_path / "state.json"

        @asynccontextmanager
        async def file_handle(name: str) -> AsyncIterator[StateStore]:
            store = StateFile(path)
            try:
                yield store
            finally:
                await store.close()

        return file_handle
    url: str = request.getfixturevalue("postgres_url")

    @asynccontextmanager
    async def postgres_handle(name: str) -> AsyncIterator[StateStore]:
        async with opened(url, name, LEASE_TTL * 3) as store:
            yield store

    return postgres_handle


async def test_where_names_the_store_on_one_line(handles: Handles) -> None:
    async with handles("a") as store:
        assert store.where and "\n" not in store.where


async def test_an_empty_store_loads_an_empty_state(handles: Handles) -> None:
    async with handles("a") as store, store.exclusive():
        assert await store.load() == NotifierState()
        assert await store.mutes() == []


async def test_a_save_is_what_the_next_load_reads_and_is_not_repeated(handles: Handles) -> None:
    async with handles("a") as store, store.exclusive():
        await store.load()
        assert await store.save(sample_state()) is True
        assert await store.save(sample_state()) is False
        assert await store.load() == sample_state()
        assert await store.export_state() == sample_state()
    async with handles("b") as again, again.exclusive():
        assert await again.load() == sample_state()


async def test_mutes_are_listed_oldest_first_and_lifted_by_one_rule(handles: Handles) -> None:
    async with handles("a") as store:
        await store.add_mute(mute("m1", monitor_id=7, created=1), T0)
        await store.add_mute(mute("m2", tag="Finance", created=2), T0)
        await store.add_mute(mute("m3", monitor_id=8, created=3), T0)
        assert [m.id for m in await store.mutes()] == ["m1", "m2", "m3"]
        assert (await store.mutes())[0] == mute("m1", monitor_id=7, created=1)

        lifted = await store.remove_mutes(MuteSelector(tag=" finance "), T0)
        assert [m.id for m in lifted] == ["m2"]
        assert [m.id for m in await store.remove_mutes(MuteSelector(monitor_id=7), T0)] == ["m1"]
        assert await store.remove_mutes(MuteSelector(mute_id="nope"), T0) == []
        assert [m.id for m in await store.remove_mutes(MuteSelector(mute_id="m3"), T0)] == ["m3"]
        assert await store.mutes() == []


async def test_a_mute_with_a_known_id_replaces_it(handles: Handles) -> None:
    async with handles("a") as store:
        await store.add_mute(mute("m1", monitor_id=7), T0)
        await store.add_mute(mute("m1", tag="ops", created=1), T0)
        assert await store.mutes() == [mute("m1", tag="ops", created=1)]


async def test_setting_or_lifting_a_mute_drops_those_run_out(handles: Handles) -> None:
    later = T0 + timedelta(minutes=30)
    async with handles("a") as store:
        await store.add_mute(mute("short", monitor_id=7, minutes=10), T0)
        await store.add_mute(mute("long", monitor_id=7, minutes=120, created=1), T0)
        await store.add_mute(mute("new", tag="ops", created=2), later)
        assert [m.id for m in await store.mutes()] == ["long", "new"]

        await store.add_mute(mute("gone", monitor_id=9, minutes=40, created=3), later)
        much_later = T0 + timedelta(minutes=90)
        # "new" and "gone" ran out: lifting matches only active mutes, and drops the rest.
        assert await store.remove_mutes(MuteSelector(tag="ops"), much_later) == []
        assert [m.id for m in await store.mutes()] == ["long"]
        lifted = await store.remove_mutes(MuteSelector(monitor_id=7), much_later)
        assert [m.id for m in lifted] == ["long"]


async def test_mutes_set_by_another_handle_reach_a_running_one(handles: Handles) -> None:
    async with handles("a") as daemon, daemon.exclusive():
        await daemon.load()
        await daemon.save(sample_state())
        async with handles("b") as command:
            await command.add_mute(mute("m1", monitor_id=7), T0)
        fresh = await daemon.fresh_mutes()
        assert fresh is not None and [m.id for m in fresh] == ["m1"]
        state = await daemon.load()
        assert [m.id for m in state.mutes] == ["m1"]


async def test_an_import_replaces_everything_and_exports_back(handles: Handles) -> None:
    wanted = sample_state(run_id=71, mutes=(mute("m9", tag="ops"),))
    async with handles("a") as store:
        await store.add_mute(mute("m1", monitor_id=7), T0)
        assert await store.import_state(wanted) is None
        assert await store.export_state() == wanted
        assert await store.mutes() == wanted.mutes


async def test_an_import_is_refused_while_a_daemon_uses_the_store(handles: Handles) -> None:
    async with handles("a") as daemon, daemon.exclusive():
        await daemon.load()
        assert await daemon.save(sample_state())
        async with handles("b") as command:
            with pytest.raises(StateError):
                await command.import_state(sample_state(run_id=72))
            assert await command.export_state() == sample_state()


async def test_exclusive_use_is_refused_while_another_holds_it(handles: Handles) -> None:
    async with handles("a") as first:
        async with first.exclusive(), handles("b") as second:
            with pytest.raises((StateError, StoreBusy)):
                async with second.exclusive():
                    pass
        async with handles("b") as second, second.exclusive():
            assert await second.load() == NotifierState()


async def test_closing_keeps_the_state(handles: Handles) -> None:
    async with handles("a") as store, store.exclusive():
        await store.load()
        await store.save(sample_state())
    async with handles("b") as again:
        assert await again.export_state() == sample_state()
