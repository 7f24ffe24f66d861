"""The standard webhook payload (docs/webhook-payload.md). Pure: same notification, same bytes."""

from __future__ import annotations

import json
import re
from typing import Any, Final

from notifier.domain.models import Incident, Notification, RunEvent
from notifier.domain.text import iso_z

WEBHOOK_PAYLOAD_VERSION: Final = 1
_EVENT_SLUG_MAX: Final = 64
#: The `type` of a recovery and of a reminder; a run's own state gives `monitor.run.<state>`.
RECOVERED_EVENT_TYPE: Final = "monitor.recovered"
REMINDER_EVENT_TYPE: Final = "monitor.reminder"
_KIND_EVENT_TYPES: Final = {"recovered": RECOVERED_EVENT_TYPE, "reminder": REMINDER_EVENT_TYPE}


def webhook_event_type(state: str) -> str:
    """`monitor.run.<state>`, the state reduced to `[a-z0-9_]` so receivers can route on it."""
    slug = re.sub(r"[^a-z0-9_]+", "_", state.lower()).strip("_")[:_EVENT_SLUG_MAX]
    return f"monitor.run.{slug or 'unknown'}"


def notification_event_type(n: Notification) -> str:
    """The payload's `type`: `monitor.run.<state>`, `monitor.recovered` or `monitor.reminder`."""
    return _KIND_EVENT_TYPES.get(n.kind) or webhook_event_type(n.event.state)


def webhook_payload(n: Notification) -> dict[str, Any]:
    """The versioned payload (docs/webhook-payload.md); same notification, same dict.

    `data.incident` is left out of a run's payload when the notification carries no incident, so
    an outbox entry from before incidents existed is re-sent with its original bytes; recoveries
    and reminders always have the key (`null` only if the notification lacks its incident).
    """
    data: dict[str, Any] = {
        "notification_id": n.id,
        "monitor": {
            "id": n.monitor.id,
            "name": n.monitor.name,
            "type": n.monitor.monitor_type,
            "tags": list(n.monitor.tags),
            "owner": n.monitor.owner,
            "url": n.links.monitor,
        },
        "run": {
            "id": n.event.run_id,
            "state": n.event.state,
            "started_at": _optional_iso_z(n.event),
            "diff_id": n.event.diff_id,
            "diff_url": n.links.diff,
            "error": n.error_message,
        },
    }
    if n.incident is not None or n.kind != "run":
        data["incident"] = None if n.incident is None else incident_object(n.incident)
    return {
        "type": notification_event_type(n),
        "timestamp": iso_z(n.detected_at),
        "version": WEBHOOK_PAYLOAD_VERSION,
        "data": data,
    }


def incident_object(incident: Incident) -> dict[str, Any]:
    """`data.incident`: its ID (the opening notification's ID), when and how it began, its latest
    failing run, and how many reminders were sent so far."""
    return {
        "id": incident.id,
        "opened_at": iso_z(incident.opened_at),
        "first_run": _run_reference(incident.first),
        "last_run": _run_reference(incident.last),
        "reminders": incident.reminders,
    }


def webhook_body(n: Notification) -> str:
    """The exact bytes (ASCII) a webhook sends and signs; a retry sends and signs the same."""
    return json_body(webhook_payload(n))


def json_body(payload: dict[str, Any]) -> str:
    """A payload as the bytes to send and sign: compact ASCII JSON, keys sorted, so the same
    payload always gives the same bytes (and signature)."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True)


def _run_reference(event: RunEvent) -> dict[str, Any]:
    return {"id": event.run_id, "state": event.state, "started_at": _optional_iso_z(event)}


def _optional_iso_z(event: RunEvent) -> str | None:
    return iso_z(event.started_at) if event.started_at else None
