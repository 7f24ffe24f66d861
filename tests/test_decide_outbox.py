"""The outbox over time: admit, expire, trim, record sent, settle, anchors; and deferrals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from notifier.domain.models import (
    Incident,
    MessageRef,
    MonitorInfo,
    MonitorState,
    Notification,
    NotifierState,
    OutboxEntry,
    RunEvent,
)
from notifier.domain.report import Deferral
from notifier.route.outbox import (
    Removal,
    admit,
    anchor,
    expire,
    prune_anchors,
    record_held,
    record_sent,
    refuse,
    settle,
    still_held,
    trim,
    unqueued,
)

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
EXPIRY = timedelta(hours=24)
REF = MessageRef(channel="C1", ts="1.000")
OTHER_REF = MessageRef(channel="C1", ts="2.000")


def notification(
    run_id: int, *, age: timedelta = timedelta(0), incident: str | None = None
) -> Notification:
    event = RunEvent(monitor_id=1, run_id=run_id, state="alert")
    opened = None
    if incident is not None:
        opened = Incident(id=incident, opened_at=T0, first=event, last=event, last_notified_at=T0)
    return Notification(
        id=event.key,
        event=event,
        monitor=MonitorInfo(id=1),
        detected_at=T0 - age,
        incident=opened,
    )


def entry(run_id: int, *pending: str, age: timedelta = timedelta(0)) -> OutboxEntry:
    return OutboxEntry(notification=notification(run_id, age=age), pending=list(pending))


def test_admit_queues_behind_and_unqueued_skips_what_waits() -> None:
    outbox = [entry(1, "slack")]
    fresh = unqueued(outbox, [notification(1), notification(2), notification(3)])
    assert [n.id for n in fresh] == ["1-2-alert", "1-3-alert"]
    admit(outbox, fresh[0], ["slack", "webhook"])
    assert [(e.notification.id, e.pending) for e in outbox] == [
        ("1-1-alert", ["slack"]),
        ("1-2-alert", ["slack", "webhook"]),
    ]


@pytest.mark.parametrize(
    ("entries", "kept", "removed"),
    [
        pytest.param([entry(1, "slack")], [("1-1-alert", ["slack"])], [], id="fresh"),
        pytest.param(
            [entry(1, "slack", age=EXPIRY)], [("1-1-alert", ["slack"])], [], id="exactly-expiry"
        ),
        pytest.param(
            [entry(1, "slack", age=EXPIRY + timedelta(seconds=1))],
            [],
            [("1-1-alert", "expired", None)],
            id="expired",
        ),
        pytest.param(
            [entry(1, "slack", "gone")],
            [("1-1-alert", ["slack"])],
            [("1-1-alert", "destination_gone", "gone")],
            id="destination-removed",
        ),
        pytest.param(
            [entry(1, "gone"), entry(2, "slack", age=EXPIRY * 2), entry(3, "slack", "old")],
            [("1-3-alert", ["slack"])],
            [
                ("1-1-alert", "destination_gone", "gone"),
                ("1-2-alert", "expired", None),
                ("1-3-alert", "destination_gone", "old"),
            ],
            id="in-outbox-order",
        ),
    ],
)
def test_expire(
    entries: list[OutboxEntry],
    kept: list[tuple[str, list[str]]],
    removed: list[tuple[str, str, str | None]],
) -> None:
    left, removals = expire(entries, T0, expiry=EXPIRY, destinations={"slack", "webhook"})
    assert [(e.notification.id, e.pending) for e in left] == kept
    assert [(r.entry.notification.id, r.reason, r.destination) for r in removals] == removed


@pytest.mark.parametrize(
    ("pending", "limit", "dropped"),
    [
        ([["a"], ["a"], ["a"]], 3, []),
        ([["a"], ["a"], ["a"]], 5, []),
        ([["a"], ["a", "b"], ["a"]], 1, [1, 2]),
        ([[], ["a"], [], ["b"], ["a"]], 2, [2]),
        ([["a"], ["a"]], 0, [1, 2]),
    ],
)
def test_trim_empties_the_oldest_waiting(
    pending: list[list[str]], limit: int, dropped: list[int]
) -> None:
    outbox = [entry(i + 1, *p) for i, p in enumerate(pending)]
    before = {e.notification.event.run_id: tuple(e.pending) for e in outbox}
    removals = trim(outbox, limit)
    assert [r.entry.notification.event.run_id for r in removals] == dropped
    for removal in removals:
        assert removal.reason == "outbox_full"
        assert removal.undelivered == before[removal.entry.notification.event.run_id]
        assert removal.entry.pending == []
    # Emptied, not removed: the delivery workers' positions stay valid until `settle`.
    assert len(outbox) == len(pending)
    assert sum(1 for e in settle(outbox) if e.pending) == min(limit, sum(1 for p in pending if p))
    assert all(e.pending for e in settle(outbox))


def test_removal_defaults() -> None:
    removal = Removal(entry(1, "slack"), "expired")
    assert (removal.destination, removal.undelivered) == (None, ())


@pytest.mark.parametrize(
    ("opens", "known", "posted", "expected"),
    [
        pytest.param(True, None, REF, REF, id="first-message-anchors"),
        pytest.param(True, OTHER_REF, REF, REF, id="opening-message-replaces"),
        pytest.param(False, None, REF, REF, id="no-anchor-yet"),
        pytest.param(False, OTHER_REF, REF, OTHER_REF, id="later-message-keeps-anchor"),
        pytest.param(True, None, None, None, id="destination-says-nothing"),
    ],
)
def test_record_sent(
    opens: bool, known: MessageRef | None, posted: MessageRef | None, expected: MessageRef | None
) -> None:
    n = notification(2, incident="1-2-alert" if opens else "1-1-alert")
    state = NotifierState()
    if known is not None:
        state.messages[n.incident.id] = {"slack": known}  # type: ignore[union-attr]
    queued = OutboxEntry(notification=n, pending=["slack", "webhook"])
    record_sent(state, queued, "slack", posted)
    assert queued.pending == ["webhook"]
    assert anchor(state, "slack", n) == expected
    assert anchor(state, "webhook", n) is None
    record_sent(state, queued, "slack", None)  # a second report changes nothing
    assert queued.pending == ["webhook"]


def test_no_anchor_without_an_incident() -> None:
    state = NotifierState(messages={"x": {"slack": REF}})
    lone = OutboxEntry(notification=notification(3), pending=["slack"])
    assert anchor(state, "slack", lone.notification) is None
    record_sent(state, lone, "slack", OTHER_REF)
    assert state.messages == {"x": {"slack": REF}}
    assert lone.pending == []


def test_prune_keeps_anchors_of_open_or_waiting_incidents() -> None:
    open_incident = notification(1, incident="open").incident
    state = NotifierState(
        monitors={1: MonitorState(watch_since=T0, incident=open_incident)},
        outbox=[OutboxEntry(notification=notification(2, incident="waiting"), pending=["slack"])],
        messages={"open": {"slack": REF}, "waiting": {"slack": REF}, "closed": {"slack": REF}},
    )
    prune_anchors(state)
    assert sorted(state.messages) == ["open", "waiting"]


def test_held_alerts_follow_the_incident_latest_firing_notification() -> None:
    opened = notification(1, incident="inc")
    later = notification(2).model_copy(update={"incident": opened.incident})
    state = NotifierState(monitors={1: MonitorState(watch_since=T0, incident=opened.incident)})
    record_held(state, "am", notification(9))  # no incident: nothing to hold
    record_held(state, "am", opened)
    record_held(state, "am", later)
    assert still_held(state, "am") == [later]
    assert still_held(state, "other") == []

    recovered = later.model_copy(update={"id": "r", "kind": "recovered"})
    record_held(state, "am", recovered)
    assert state.held == {} and still_held(state, "am") == []


def test_only_open_incidents_are_held_and_prune_forgets_closed_ones() -> None:
    open_n, closed_n = notification(1, incident="open"), notification(2, incident="closed")
    state = NotifierState(monitors={1: MonitorState(watch_since=T0, incident=open_n.incident)})
    record_held(state, "am", open_n)
    record_held(state, "am", closed_n)
    assert still_held(state, "am") == [open_n]
    prune_anchors(state)
    assert list(state.held) == ["open"]


@pytest.mark.parametrize(
    ("asked", "cap", "waits"),
    [
        (1.5, timedelta(seconds=60), timedelta(seconds=1.5)),
        (60, timedelta(seconds=60), timedelta(seconds=60)),
        (3600, timedelta(seconds=60), timedelta(seconds=60)),
        (1e9, timedelta(seconds=60), timedelta(seconds=60)),
        (0, timedelta(seconds=60), timedelta(0)),
    ],
)
def test_a_deferral_is_capped(asked: float, cap: timedelta, waits: timedelta) -> None:
    deferral = Deferral.asked(asked, "HTTP 429", T0, cap)
    assert deferral == Deferral(until=T0 + waits, reason="HTTP 429")


@pytest.mark.parametrize(
    ("later", "holds", "short_wait"),
    [
        (timedelta(0), True, None),
        (timedelta(seconds=8), True, 2.0),
        (timedelta(seconds=9.5), True, 0.5),
        (timedelta(seconds=10), False, 0.0),
        (timedelta(seconds=30), False, 0.0),
    ],
)
def test_still_deferred_and_the_short_wait(
    later: timedelta, holds: bool, short_wait: float | None
) -> None:
    deferral = Deferral(until=T0 + timedelta(seconds=10), reason="HTTP 503")
    assert deferral.holds(T0 + later) is holds
    assert deferral.short_wait(T0 + later, timedelta(seconds=2)) == short_wait


def test_what_a_removal_tells() -> None:
    old = entry(1, "slack", age=EXPIRY * 2)
    old.attempts, old.last_error = 3, "slack: HTTP 503"
    about = {"notification_id": "1-1-alert", "monitor_id": 1, "run_id": 1}
    expired = Removal(old, "expired")
    assert expired.event == "notification_expired"
    assert expired.fields() == {
        **about,
        "undelivered_to": ["slack"],
        "attempts": 3,
        "last_error": "slack: HTTP 503",
    }
    gone = Removal(old, "destination_gone", destination="old")
    assert gone.event == "notification_dropped"
    assert gone.fields() == {
        "reason": "its destination is no longer configured",
        **about,
        "destination": "old",
    }
    full = Removal(old, "outbox_full", undelivered=("slack", "webhook"), limit=10)
    assert full.event == "notification_dropped"
    assert full.fields() == {
        "reason": "outbox_full",
        "limit": 10,
        **about,
        "undelivered_to": ["slack", "webhook"],
        "attempts": 3,
    }


def test_refuse_stops_waiting_for_that_destination_and_anchors_nothing() -> None:
    n = notification(2, incident="1-2-alert")
    state = NotifierState()
    queued = OutboxEntry(notification=n, pending=["pagerduty", "slack"])
    refuse(queued, "pagerduty")
    assert queued.pending == ["slack"] and state.messages == {}
    refuse(queued, "pagerduty")  # a second refusal changes nothing
    assert queued.pending == ["slack"]
