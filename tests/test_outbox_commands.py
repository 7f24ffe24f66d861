"""Outbox requests (`outbox retry`, `outbox drop`): how a cycle applies them (pure), and how both
state stores keep them (the same assertions against the state file and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from notifier.domain.models import OutboxEntry
from notifier.domain.outbox_requests import REQUESTS_MAX, OutboxRequest, apply_requests
from notifier.store.file import StateFile
from notifier.store.store import StateError, StateStore
from tests.fakes.postgres import LEASE_TTL, opened
from tests.fakes.states import T0, sample_state

Handles = Callable[[str], AbstractAsyncContextManager[StateStore]]


def request(
    request_id: str,
    action: str,
    *,
    notification: str | None = None,
    destination: str | None = None,
    minute: int = 0,
) -> OutboxRequest:
    return OutboxRequest.model_validate(
        {
            "id": request_id,
            "action": action,
            "notification_id": notification,
            "destination": destination,
            "requested_at": T0 + timedelta(minutes=minute),
        }
    )


def outbox() -> list[OutboxEntry]:
    """Two waiting notifications: 7-70-alert for slack and hook, 7-71-alert for hook."""
    first = sample_state(70).outbox[0].model_copy(update={"pending": ["slack", "hook"]})
    second = sample_state(71).outbox[0].model_copy(update={"pending": ["hook"]})
    return [first, second]


def waiting(entries: list[OutboxEntry]) -> dict[str, list[str]]:
    return {e.notification.id: e.pending for e in entries}


@pytest.mark.parametrize(
    ("requests", "left", "events"),
    [
        (
            [request("r1", "drop", notification="7-70-alert")],
            {"7-71-alert": ["hook"]},
            ["outbox_entry_dropped"],
        ),
        (
            [request("r1", "drop", notification="7-70-alert", destination="hook")],
            {"7-70-alert": ["slack"], "7-71-alert": ["hook"]},
            ["outbox_entry_dropped"],
        ),
        (
            [request("r1", "drop", notification="7-71-alert", destination="hook")],
            {"7-70-alert": ["slack", "hook"]},
            ["outbox_entry_dropped"],
        ),
        (
            [request("r1", "drop", notification="7-99-alert")],
            {"7-70-alert": ["slack", "hook"], "7-71-alert": ["hook"]},
            ["outbox_request_discarded"],
        ),
        (
            [request("r1", "drop", notification="7-71-alert", destination="slack")],
            {"7-70-alert": ["slack", "hook"], "7-71-alert": ["hook"]},
            ["outbox_request_discarded"],
        ),
        # Applied twice (a cycle that stopped before its save): the second changes nothing.
        (
            [
                request("r2", "drop", notification="7-70-alert", minute=1),
                request("r1", "drop", notification="7-70-alert"),
            ],
            {"7-71-alert": ["hook"]},
            ["outbox_entry_dropped", "outbox_request_discarded"],
        ),
    ],
)
def test_a_drop_removes_what_it_names_and_discards_what_is_not_waiting(
    requests: list[OutboxRequest], left: dict[str, list[str]], events: list[str]
) -> None:
    done = apply_requests(outbox(), requests, ["slack", "hook"])
    assert waiting(done.outbox) == left
    assert [a.event for a in done.applied] == events
    assert done.resume == frozenset()


def test_a_drop_tells_what_it_dropped_and_what_still_waits() -> None:
    done = apply_requests(
        outbox(), [request("r1", "drop", notification="7-70-alert", destination="hook")], ["hook"]
    )
    [applied] = done.applied
    assert applied.fields() == {
        "request": "r1",
        "action": "drop",
        "notification_id": "7-70-alert",
        "monitor_id": 7,
        "run_id": 70,
        "undelivered_to": ["hook"],
        "still_waiting_for": ["slack"],
        "attempts": 2,
    }


@pytest.mark.parametrize(
    ("destination", "resume", "event", "waiting_count"),
    [
        ("hook", {"hook"}, "outbox_retry_requested", 2),
        ("slack", {"slack"}, "outbox_retry_requested", 1),
        (None, {"slack", "hook"}, "outbox_retry_requested", 2),
        ("gone", set(), "outbox_request_discarded", None),
    ],
)
def test_a_retry_lifts_the_deferral_of_configured_destinations_only(
    destination: str | None, resume: set[str], event: str, waiting_count: int | None
) -> None:
    entries = outbox()
    done = apply_requests(
        entries, [request("r1", "retry", destination=destination)], ["slack", "hook"]
    )
    assert done.resume == resume
    assert waiting(done.outbox) == waiting(entries)  # nothing else changes
    [applied] = done.applied
    assert applied.event == event
    if waiting_count is not None:
        assert applied.details["waiting"] == waiting_count


@pytest.fixture(params=["file", pytest.param("postgres", marks=pytest.mark.postgres)])
def handles(request: pytest.FixtureRequest, tmp_path: Path) -> Handles:
    """Handles on one store: the same state file, or the same PostgreSQL database."""
    if request.param == "file":

        @asynccontextmanager
        async def file_handle(name: str) -> AsyncIterator[StateStore]:
            yield StateFile(tmp_path / "state.json")

        return file_handle
    url: str = request.getfixturevalue("postgres_url")

    @asynccontextmanager
    async def postgres_handle(name: str) -> AsyncIterator[StateStore]:
        async with opened(url, name, LEASE_TTL * 3) as store:
            yield store

    return postgres_handle


async def test_requests_are_kept_oldest_first_and_settled_by_id(handles: Handles) -> None:
    async with handles("cli") as cli_store, handles("daemon") as daemon:
        assert await daemon.outbox_requests() == []
        late = request("b", "retry", destination="hook", minute=2)
        early = request("a", "drop", notification="7-70-alert", destination="slack", minute=1)
        await cli_store.request_outbox(late)
        await cli_store.request_outbox(early)
        assert await daemon.outbox_requests() == [early, late]
        await daemon.settle_outbox_requests(["a"])
        newer = request("c", "retry", minute=3)
        await cli_store.request_outbox(newer)  # made while the daemon's cycle ran: stays
        await daemon.settle_outbox_requests(["b", "unknown"])
        assert await cli_store.outbox_requests() == [newer]
        await daemon.settle_outbox_requests(["c"])
        assert await daemon.outbox_requests() == []


async def test_requests_live_beside_the_document_and_never_in_it(handles: Handles) -> None:
    async with handles("daemon") as daemon, daemon.exclusive():
        state = await daemon.load()
        async with handles("cli") as cli_store:
            await cli_store.request_outbox(request("a", "retry"))
        state.outbox = sample_state().outbox
        assert await daemon.save(state) is True  # the daemon's save keeps the request
        assert [r.id for r in await daemon.outbox_requests()] == ["a"]
        assert await daemon.export_state() == state.model_copy(update={"mutes": []})


async def test_a_store_refuses_requests_past_its_bound(handles: Handles) -> None:
    async with handles("cli") as store:
        for number in range(REQUESTS_MAX):
            await store.request_outbox(request(f"r{number}", "retry"))
        with pytest.raises(StateError, match="outbox requests already wait"):
            await store.request_outbox(request("one-more", "retry"))
        assert len(await store.outbox_requests()) == REQUESTS_MAX


async def test_an_unreadable_requests_file_is_one_line_naming_it(tmp_path: Path) -> None:
    store = StateFile(tmp_path / "state.json")
    store.requests_path.write_text('[{"id": "x"}]')
    with pytest.raises(StateError) as raised:
        await store.outbox_requests()
    assert str(raised.value).startswith(f"{store.requests_path} is no list of outbox requests")
    assert "\n" not in str(raised.value)
