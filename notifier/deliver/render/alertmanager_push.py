"""Notifications as alerts for Alertmanager's push API (`POST /api/v2/alerts`, `PostableAlerts`).

Pure: the time is passed in. An alert's identity is its label set, the same as the
`format = "alertmanager"` webhook sends (`render.alertmanager.alert_labels`), plus the
destination's own `labels`: the monitor and the alert state, never the run, so posting it again
(a later run, a reminder, the per-cycle keep-alive, a retry, a restart) updates the one alert
Alertmanager holds instead of adding one. A firing alert carries `endsAt` a hold ahead, and is
posted again every cycle while its incident is open; a recovery posts `endsAt` = now.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from notifier.deliver.render.alertmanager import (
    alert_annotations,
    alert_labels,
    fired_at,
    go_time,
    resolved_states,
)
from notifier.domain.models import Notification


def firing_states(n: Notification) -> list[str]:
    """The alert states a firing notification posts: a run's own state; for a reminder (and the
    keep-alive) every state its incident fired, as a recovery would resolve them."""
    if n.kind == "run":
        return [n.event.state]
    return resolved_states(n.incident)


def push_alerts(
    n: Notification,
    *,
    now: datetime,
    hold: timedelta,
    labels: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The alerts to post for one notification: firing until `now + hold` for a run or a
    reminder, ending at `now` for a recovery."""
    if n.kind == "recovered":
        return [
            _alert(n, state, resolved=True, ends_at=now, labels=labels)
            for state in resolved_states(n.incident)
        ]
    return [
        _alert(n, state, resolved=False, ends_at=now + hold, labels=labels)
        for state in firing_states(n)
    ]


def held_alerts(
    held: Iterable[Notification],
    *,
    now: datetime,
    hold: timedelta,
    labels: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The keep-alive: every state of each open incident's latest firing notification, posted
    again with `endsAt` moved to `now + hold`."""
    return [
        _alert(n, state, resolved=False, ends_at=now + hold, labels=labels)
        for n in held
        for state in resolved_states(n.incident)
    ]


def alerts_body(alerts: list[dict[str, Any]]) -> bytes:
    """The request body: the alerts as compact JSON, keys sorted."""
    return json.dumps(alerts, separators=(",", ":"), sort_keys=True).encode()


def _alert(
    n: Notification,
    state: str,
    *,
    resolved: bool,
    ends_at: datetime,
    labels: Mapping[str, str] | None,
) -> dict[str, Any]:
    own = alert_labels(n, alert_state=state)
    start = fired_at(n.incident, state) or n.event.started_at or n.detected_at
    alert: dict[str, Any] = {
        "labels": {**(labels or {}), **own},
        "annotations": alert_annotations(n, alert_state=state, resolved=resolved),
        # Alertmanager refuses an alert ending before it starts.
        "startsAt": go_time(min(start, ends_at)),
        "endsAt": go_time(ends_at),
    }
    if n.links.monitor:
        alert["generatorURL"] = n.links.monitor
    return alert
