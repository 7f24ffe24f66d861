"""PagerDuty Events API v2 events. Pure: same notification, same event.

One incident is one PagerDuty alert: `dedup_key` is the incident's ID, so every alert, error
and reminder of an open incident re-triggers the same alert (PagerDuty updates it and pages no
one again) and the recovery resolves it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, Literal

from notifier.domain.models import Notification
from notifier.domain.text import clip, iso_z, one_line

EventAction = Literal["trigger", "resolve"]
#: PagerDuty's documented limits (FACTS.md, "More destinations").
SUMMARY_MAX: Final = 1024
DEDUP_KEY_MAX: Final = 255
REQUEST_MAX_BYTES: Final = 512 * 1024
#: What an error message in `custom_details` is cut to.
ERROR_DETAIL_MAX: Final = 8_000
SOURCE: Final = "datafold"
CLIENT: Final = "datafold-notifier"
#: The severity of a state no mapping names.
FALLBACK_SEVERITY: Final = "warning"


def dedup_key(n: Notification) -> str:
    """The incident's ID (the notification that opened it), or the notification's own ID when it
    belongs to no incident; at most `DEDUP_KEY_MAX` characters."""
    key = n.incident.id if n.incident is not None else n.id
    return key[:DEDUP_KEY_MAX]


def event_action(n: Notification) -> EventAction:
    """`resolve` for a recovery, `trigger` for everything else (alert, error, reminder)."""
    return "resolve" if n.kind == "recovered" else "trigger"


def failing_state(n: Notification) -> str:
    """The state the alert is about: the run's, or for a reminder its incident's latest run's."""
    if n.kind == "reminder" and n.incident is not None:
        return n.incident.last.state
    return n.event.state


def severity(n: Notification, mapping: Mapping[str, str]) -> str:
    """The mapped severity of the failing state, `FALLBACK_SEVERITY` if it is not mapped."""
    return mapping.get(failing_state(n), FALLBACK_SEVERITY)


def summary(n: Notification) -> str:
    """One line, at most `SUMMARY_MAX` characters: what failed and how."""
    state = failing_state(n)
    head = {"reminder": f"Still {state}", "recovered": "Recovered"}.get(n.kind, state.upper())
    text = f"{head}: {n.monitor.title} (monitor {n.monitor.id}, run {n.event.run_id})"
    if n.error_message and n.kind != "recovered":
        text += f": {n.error_message}"
    return one_line(text, SUMMARY_MAX)


def _details(n: Notification, error_max: int) -> dict[str, Any]:
    details: dict[str, Any] = {
        "notification_id": n.id,
        "kind": n.event_kind,
        "monitor": {
            "id": n.monitor.id,
            "name": n.monitor.name,
            "type": n.monitor.monitor_type,
            "url": n.links.monitor,
        },
        "run": {
            "id": n.event.run_id,
            "state": n.event.state,
            "started_at": iso_z(n.event.started_at) if n.event.started_at else None,
            "diff_id": n.event.diff_id,
            "diff_url": n.links.diff,
        },
        "tags": list(n.monitor.tags),
        "owner": n.monitor.owner,
        "error": clip(n.error_message, error_max) if n.error_message else None,
    }
    if n.incident is not None:
        details["incident"] = {
            "id": n.incident.id,
            "opened_at": iso_z(n.incident.opened_at),
            "reminders": n.incident.reminders,
        }
    return details


def pagerduty_event(
    n: Notification, *, routing_key: str, severities: Mapping[str, str]
) -> dict[str, Any]:
    """The event to enqueue: a trigger (with payload, links, client) or a resolve (key only)."""
    action = event_action(n)
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": dedup_key(n),
    }
    if action == "resolve":
        return event
    payload: dict[str, Any] = {
        "summary": summary(n),
        "source": SOURCE,
        "severity": severity(n, severities),
        "timestamp": iso_z(n.detected_at),
        "component": clip(n.monitor.title, 255),
        "group": clip(n.monitor.monitor_type or "monitor", 255),
        "class": failing_state(n),
        "custom_details": _details(n, ERROR_DETAIL_MAX),
    }
    links = [
        {"href": href, "text": text}
        for href, text in ((n.links.diff, "Diff in Datafold"), (n.links.monitor, "Monitor"))
        if href
    ]
    event.update(payload=payload, client=CLIENT)
    if links:
        event["links"] = links
    if n.links.monitor:
        event["client_url"] = n.links.monitor
    return event


def event_body(event: dict[str, Any]) -> bytes:
    """The request body: compact JSON, keys sorted, the same bytes on every retry. The domain
    bounds every text in it (error 12,000 characters, 100 tags of 200), so it stays far below
    `REQUEST_MAX_BYTES`; the sink still checks."""
    return json.dumps(event, separators=(",", ":"), sort_keys=True).encode()
