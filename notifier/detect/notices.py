"""From a notice to the notification sent about it, with its links into Datafold (pure).

The cycle fetches what a notification shows that detection does not know (the monitor's details,
an `error` run's message) and passes it in; the time of detection is passed in too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from notifier.detect.runs import Notice, due_reminder
from notifier.domain.models import (
    Incident,
    Links,
    MonitorInfo,
    MonitorState,
    Notification,
    RunEvent,
)


@dataclass(frozen=True)
class LinkTemplate:
    """Where the Datafold web app is and how a monitor's page is addressed there."""

    host: str
    #: With `{host}` and `{monitor_id}` placeholders.
    monitor_url_template: str

    def links(self, event: RunEvent) -> Links:
        """The data diff page when the run has one, and the monitor page from the template."""
        host = self.host.rstrip("/")
        diff = f"{host}/datadiffs/{event.diff_id}/overview" if event.diff_id is not None else None
        monitor = self.monitor_url_template.format(host=host, monitor_id=event.monitor_id)
        return Links(monitor=monitor, diff=diff)


def reminder_notice(incident: Incident) -> Notice:
    """The notice that an incident is still open, about its latest failing run; `incident` is
    the incident as it stands after this reminder (see `due_reminder`)."""
    return Notice("reminder", incident.last, incident)


def due_reminders(
    monitors: Mapping[int, MonitorState],
    polled: Iterable[int],
    now: datetime,
    interval: timedelta | None,
) -> list[Notice]:
    """Reminders of the incidents left open for `interval` on monitors just polled (so each
    incident is known to be still open, not just unseen)."""
    due = (due_reminder(monitors.get(monitor_id), now, interval) for monitor_id in polled)
    return [reminder_notice(incident) for incident in due if incident is not None]


def wants_error_message(notice: Notice) -> bool:
    """Whether the notification shows the run's error message (an `error` run or a reminder
    about one), which the cycle then fetches from the run's detail."""
    return notice.kind != "recovered" and notice.event.state == "error"


def notification_id(notice: Notice) -> str:
    """A notice's stable identity (the outbox key and webhook-id derive from it): its event's
    key, and for a reminder the incident with the reminder's number."""
    if notice.kind == "reminder":
        return f"{notice.incident.id}-reminder-{notice.incident.reminders}"
    return notice.event.key


def build_notification(
    notice: Notice,
    *,
    monitor: MonitorInfo,
    error_message: str | None,
    now: datetime,
    links: LinkTemplate,
) -> Notification:
    """The one builder for every notice (alert, error, recovered, reminder): what a destination
    renders, fixed at detection time `now` so a retry after a restart needs no API call."""
    event = notice.event
    return Notification(
        id=notification_id(notice),
        kind=notice.kind,
        event=event,
        monitor=monitor,
        error_message=error_message,
        links=links.links(event),
        detected_at=now,
        incident=notice.incident,
    )


def told(notice: Notice, monitor: MonitorInfo) -> tuple[str, dict[str, object]]:
    """The log event and fields that tell of a notice found (a reminder: once it goes out)."""
    event, incident = notice.event, notice.incident
    if notice.kind == "reminder":
        since = incident.opened_at.isoformat()
        fields = {"incident": incident.id, "open_since": since, "reminder": incident.reminders}
        return "reminder_due", {"monitor_id": event.monitor_id, **fields}
    about: dict[str, object] = {"monitor_id": event.monitor_id, "run_id": event.run_id}
    if notice.kind == "recovered":
        return "monitor_recovered", {**about, "monitor": monitor.title, "incident": incident.id}
    return "run_detected", {**about, "state": event.state, "monitor": monitor.title}
