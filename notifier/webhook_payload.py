"""The standard webhook payload (docs/webhook-payload.md). Pure: same notification, same bytes."""

from __future__ import annotations

import json
import re
from typing import Any, Final

from notifier.models import Notification
from notifier.render import iso

WEBHOOK_PAYLOAD_VERSION: Final = 1
_EVENT_SLUG_MAX: Final = 64


def webhook_event_type(state: str) -> str:
    """`monitor.run.<state>`, the state reduced to `[a-z0-9_]` so receivers can route on it."""
    slug = re.sub(r"[^a-z0-9_]+", "_", state.lower()).strip("_")[:_EVENT_SLUG_MAX]
    return f"monitor.run.{slug or 'unknown'}"


def webhook_payload(n: Notification) -> dict[str, Any]:
    """The versioned payload (docs/webhook-payload.md); same notification, same dict."""
    return {
        "type": webhook_event_type(n.event.state),
        "timestamp": iso(n.detected_at),
        "version": WEBHOOK_PAYLOAD_VERSION,
        "data": {
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
                "started_at": iso(n.event.started_at) if n.event.started_at else None,
                "diff_id": n.event.diff_id,
                "diff_url": n.links.diff,
                "error": n.error_message,
            },
        },
    }


def webhook_body(n: Notification) -> str:
    """The exact bytes (ASCII) a webhook sends and signs; a retry sends and signs the same."""
    return json.dumps(webhook_payload(n), separators=(",", ":"), sort_keys=True)
