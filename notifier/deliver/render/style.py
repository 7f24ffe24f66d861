"""How a notification reads in any destination: its label, emoji and symbol, and its urgency.

Pure. Shared by the Slack, console and Alertmanager renderers, so a state looks the same in all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from notifier.deliver.render.blockkit import fit
from notifier.domain.models import Notification, as_utc
from notifier.domain.text import one_line

#: The longest label an unknown state gets.
_LABEL_MAX: Final = 40


@dataclass(frozen=True)
class StateStyle:
    """How a run state reads in a message: a label, a Slack emoji code and a console symbol."""

    label: str
    slack_emoji: str
    symbol: str


_STATE_STYLES: Final = {
    "alert": StateStyle("Alert", ":rotating_light:", "🚨"),
    "error": StateStyle("Error", ":x:", "❌"),
    "ok": StateStyle("OK", ":white_check_mark:", "✅"),
}
RECOVERED: Final = StateStyle("Recovered", ":white_check_mark:", "✅")
_KIND_STYLES: Final = {
    "recovered": RECOVERED,
    "reminder": StateStyle("Reminder", ":alarm_clock:", "⏰"),
}


def state_style(state: str) -> StateStyle:
    """Known states get their own look; any other state string a neutral one, never an error."""
    known = _STATE_STYLES.get(state)
    if known is not None:
        return known
    label = one_line(state) or "unknown"
    return StateStyle(
        fit(label[:1].upper() + label[1:], _LABEL_MAX),
        ":information_source:",
        "\N{INFORMATION SOURCE}",
    )


def kind_style(n: Notification) -> StateStyle:
    """The look of a notification: that of a recovery or reminder, else its run state's."""
    return _KIND_STYLES.get(n.kind) or state_style(n.event.state)


#: Digest order: most severe first. Unknown run states rank between error and reminder.
SEVERITY: Final = {"alert": 4, "error": 3, "reminder": 1, "recovered": 0}
_OTHER_STATE_SEVERITY: Final = 2


def severity(n: Notification) -> int:
    """How urgent a notification is: alert > error > other run states > reminder > recovered."""
    return SEVERITY.get(n.event_kind, _OTHER_STATE_SEVERITY)


def human_time(value: datetime | None) -> str:
    """A stamp as people read it in a message (`2024-05-01 12:00:00 UTC`), or "unknown"."""
    return as_utc(value).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "unknown"


def facts(n: Notification, style: StateStyle) -> list[tuple[str, str]]:
    """The labelled values every rich message shows under its headline, in order."""
    pairs = [
        ("Monitor type", n.monitor.monitor_type or "unknown"),
        ("State", style.label if n.kind == "run" else state_style(n.event.state).label),
        ("Run ID", str(n.event.run_id)),
        ("Started", human_time(n.event.started_at)),
    ]
    if n.monitor.tags:
        pairs.append(("Tags", ", ".join(n.monitor.tags)))
    if n.monitor.owner:
        pairs.append(("Owner", n.monitor.owner))
    return pairs


def incident_summary(n: Notification, *, quote: Callable[[str], str] = str) -> str:
    """A reminder's or a recovery's line about its incident, as plain text (Teams; `quote`
    escapes the run state from Datafold for a markup, as Markdown does)."""
    incident = n.incident
    since = human_time(incident.opened_at) if incident else "unknown"
    failing = quote(one_line(incident.last.state, 40)) if incident else "failing"
    started = human_time(n.event.started_at)
    if n.kind == "reminder":
        count = (
            f" This is reminder {incident.reminders}." if incident and incident.reminders else ""
        )
        return (
            f"Still failing ({failing}) since {since}; latest failing run {n.event.run_id}, "
            f"started {started}.{count}"
        )
    last = f" (last failing run {incident.last.run_id})" if incident else ""
    return (
        f"Passing again. Was {failing} since {since}{last}; recovered by run {n.event.run_id}, "
        f"started {started}."
    )
