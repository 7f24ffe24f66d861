"""Links into the Datafold web app for a run (pure)."""

from __future__ import annotations

from notifier.domain.models import Links, RunEvent


def build_links(event: RunEvent, *, host: str, monitor_url_template: str) -> Links:
    """The data diff page when the run has one, and the monitor page from the template."""
    host = host.rstrip("/")
    diff = f"{host}/datadiffs/{event.diff_id}/overview" if event.diff_id is not None else None
    monitor = monitor_url_template.format(host=host, monitor_id=event.monitor_id)
    return Links(monitor=monitor, diff=diff)
