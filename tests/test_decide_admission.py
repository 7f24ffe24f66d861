"""Admission: mutes first, then the route's configured destinations; else quiet or unrouted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from notifier.domain.models import MonitorInfo, Mute, Notification, RunEvent
from notifier.route.admission import Admission, admit, covering_mute
from notifier.route.rules import RouteDecision

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DESTINATIONS = ("slack", "webhook")
NOTIFICATION = Notification(
    id="4521-10-alert",
    event=RunEvent(monitor_id=4521, run_id=10, state="alert"),
    monitor=MonitorInfo(id=4521, name="orders", tags=["Finance", "nightly"]),
    detected_at=T0,
)


def mute(
    mute_id: str, *, monitor_id: int | None = None, tag: str | None = None, hours: float = 1
) -> Mute:
    return Mute(
        id=mute_id,
        monitor_id=monitor_id,
        tag=tag,
        until=T0 + timedelta(hours=hours),
        created_at=T0 - timedelta(hours=1),
    )


BY_MONITOR = mute("m1", monitor_id=4521)
OTHER_MONITOR = mute("m2", monitor_id=1)
BY_TAG = mute("t1", tag=" finance ")
LAPSED = mute("old", monitor_id=4521, hours=0)


@pytest.mark.parametrize(
    ("mutes", "expected"),
    [
        ([], None),
        ([OTHER_MONITOR], None),
        ([LAPSED], None),
        ([BY_MONITOR], BY_MONITOR),
        ([OTHER_MONITOR, BY_TAG], BY_TAG),
        ([LAPSED, BY_TAG, BY_MONITOR], BY_TAG),
    ],
)
def test_covering_mute(mutes: list[Mute], expected: Mute | None) -> None:
    assert covering_mute(NOTIFICATION, mutes, T0) == expected


@pytest.mark.parametrize(
    ("mutes", "decision", "expected"),
    [
        pytest.param(
            [],
            RouteDecision(to=["slack", "webhook"], quiet=[]),
            Admission("queued", pending=["slack", "webhook"]),
            id="routed",
        ),
        pytest.param(
            [],
            RouteDecision(to=["webhook"], quiet=["night"]),
            Admission("queued", pending=["webhook"], quiet=["night"]),
            id="partly-quiet",
        ),
        pytest.param(
            [],
            RouteDecision(to=[], quiet=["night"]),
            Admission("quiet", quiet=["night"]),
            id="all-quiet",
        ),
        pytest.param([], RouteDecision(to=[], quiet=[]), Admission("unrouted"), id="unrouted"),
        pytest.param(
            [],
            RouteDecision(to=["gone", "slack"], quiet=[]),
            Admission("queued", pending=["slack"]),
            id="unconfigured-destination-skipped",
        ),
        pytest.param(
            [],
            RouteDecision(to=["gone"], quiet=["night"]),
            Admission("quiet", quiet=["night"]),
            id="only-unconfigured-and-quiet",
        ),
        pytest.param(
            [BY_MONITOR],
            RouteDecision(to=["slack"], quiet=[]),
            Admission("muted", mute=BY_MONITOR),
            id="muted",
        ),
        pytest.param(
            [LAPSED],
            RouteDecision(to=["slack"], quiet=[]),
            Admission("queued", pending=["slack"]),
            id="lapsed-mute",
        ),
    ],
)
def test_admit(mutes: list[Mute], decision: RouteDecision, expected: Admission) -> None:
    asked: list[tuple[str, datetime]] = []

    def route(notification: Notification, now: datetime) -> RouteDecision:
        asked.append((notification.id, now))
        return decision

    admission = admit(NOTIFICATION, mutes=mutes, route=route, destinations=DESTINATIONS, now=T0)
    assert admission == expected
    # A muted notification is not routed at all.
    assert asked == ([] if expected.outcome == "muted" else [(NOTIFICATION.id, T0)])


@pytest.mark.parametrize(
    ("verdict", "expected"),
    [
        (Admission("queued", pending=["slack"]), None),
        (
            Admission("queued", pending=["webhook"], quiet=["night"]),
            ("notification_quiet", {"routes": ["night"], "still_sent_to": ["webhook"]}),
        ),
        (Admission("quiet", quiet=["night"]), ("notification_quiet", {"routes": ["night"]})),
        (
            Admission("unrouted"),
            (
                "notification_unrouted",
                {"reason": "no route and no default route sends it anywhere"},
            ),
        ),
        (
            Admission("muted", mute=BY_TAG),
            (
                "notification_muted",
                {
                    "mute": "t1",
                    "muted": "tag  finance ",
                    "until": (T0 + timedelta(hours=1)).isoformat(),
                    "reason": None,
                },
            ),
        ),
    ],
)
def test_what_a_verdict_tells(
    verdict: Admission, expected: tuple[str, dict[str, object]] | None
) -> None:
    assert verdict.told() == expected
