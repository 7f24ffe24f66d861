"""A notification as a few plain lines for a terminal (the `demo` command). Pure."""

from __future__ import annotations

from typing import Final

from notifier.deliver.render.blockkit import fit
from notifier.deliver.render.style import human_time, kind_style
from notifier.domain.models import Notification
from notifier.domain.text import one_line

#: The console shows only the start of a long error message.
CONSOLE_ERROR_MAX: Final = 500


def console_text(n: Notification) -> str:
    """A few plain lines for a terminal: what happened, the run, tags and owner, error, links."""
    style = kind_style(n)
    kind = f" ({one_line(n.monitor.monitor_type)})" if n.monitor.monitor_type else ""
    title = f"{style.symbol} {style.label}: {one_line(n.monitor.title)}{kind}"
    incident = n.incident
    since = human_time(incident.opened_at) if incident else "unknown"
    if n.kind == "reminder":
        count = f" (reminder {incident.reminders})" if incident and incident.reminders else ""
        title += f" still failing since {since}{count}"
    elif n.kind == "recovered":
        title += f" passing again, failing since {since}"
    lines = [
        title,
        f"   run {n.event.run_id} of monitor {n.monitor.id}"
        f" · started {human_time(n.event.started_at)}",
    ]
    about = []
    if n.monitor.tags:
        about.append("tags: " + ", ".join(one_line(t) for t in n.monitor.tags))
    if n.monitor.owner:
        about.append("owner: " + one_line(n.monitor.owner))
    if about:
        lines.append("   " + " · ".join(about))
    if n.error_message and n.kind != "recovered":
        lines.append("   error: " + fit(one_line(n.error_message), CONSOLE_ERROR_MAX))
    if n.links.diff:
        lines.append(f"   diff: {n.links.diff}")
    if n.links.monitor:
        lines.append(f"   monitor: {n.links.monitor}")
    return "\n".join(lines)
