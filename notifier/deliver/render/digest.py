"""Many notifications as one Slack digest, split over messages only as Block Kit limits force.

Pure. Sent instead of single messages when more than a destination's `digest_threshold` wait.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from notifier.deliver.render.blockkit import (
    BLOCKS_TEXT_MAX,
    HEADER_TEXT_MAX,
    SECTION_TEXT_MAX,
    SlackMessage,
    Unit,
    fit,
    header,
    link,
    mentions_text,
    pack,
    section,
    units,
)
from notifier.deliver.render.slack import state_word
from notifier.deliver.render.style import human_time, kind_style, severity
from notifier.domain.models import Notification
from notifier.domain.text import one_line

#: A digest shows this much of each event's error message.
DIGEST_ERROR_MAX: Final = 150


def slack_digest(
    notifications: Sequence[Notification], *, mentions: Sequence[str] = ()
) -> list[SlackMessage]:
    """Many notifications as one digest, split over messages only as Block Kit limits force.

    Grouped by monitor. Groups are ordered most severe first — by their most severe event, where
    alert > error > other run states > reminder > recovered — then by size and title. Each group
    lists its events by start time. Messages break between groups where possible. Mentions go on
    the first message if any event is not a recovery.
    """
    if not notifications:
        return []
    groups: dict[int, list[Notification]] = {}
    for n in notifications:
        groups.setdefault(n.monitor.id, []).append(n)
    ordered = sorted(
        groups.values(),
        key=lambda g: (-max(severity(n) for n in g), -len(g), one_line(g[0].monitor.title)),
    )
    worst = max(notifications, key=severity)
    emoji = kind_style(worst).slack_emoji
    count, monitors = len(notifications), len(ordered)
    headline = (
        f"{emoji} {count} notification{'s' * (count != 1)}"
        f" from {monitors} monitor{'s' * (monitors != 1)}"
    )
    names = ", ".join(one_line(g[0].monitor.title) for g in ordered)
    blocks_of: list[Unit] = [([header(headline)], frozenset())]
    for group in ordered:
        blocks_of += _digest_group(group)
    wants_mentions = any(n.kind != "recovered" for n in notifications)
    return pack(
        blocks_of,
        text=f"{headline}: {names}",
        mention=mentions_text(mentions) if wants_mentions else "",
        continued=f"{headline} (continued)",
        text_max=BLOCKS_TEXT_MAX,
    )


def _digest_group(group: list[Notification]) -> list[Unit]:
    """One monitor's events as sections of whole lines, each with the IDs of its events."""
    first = group[0]
    kind = f" ({one_line(first.monitor.monitor_type)})" if first.monitor.monitor_type else ""
    title = fit(one_line(first.monitor.title) + kind, HEADER_TEXT_MAX, escape=True)
    heading = f"*{title}* — {len(group)} event{'s' * (len(group) != 1)}"
    monitor_link = link(first.links.monitor, "Open monitor", budget=SECTION_TEXT_MAX // 3)
    if monitor_link:
        heading += f" · {monitor_link}"
    ordered = sorted(group, key=lambda n: (n.event.started_at is None, n.event.started_at or 0))
    out: list[Unit] = []
    text, members = heading, set[str]()
    for n in ordered:
        line = _digest_line(n)
        if units(text) + 1 + units(line) > SECTION_TEXT_MAX:
            out.append(([section(text)], frozenset(members)))
            text, members = f"*{title}* (continued)", set()
        text += "\n" + line
        members.add(n.id)
    out.append(([section(text)], frozenset(members)))
    return out


def _digest_line(n: Notification) -> str:
    style = kind_style(n)
    label = style.label if n.kind != "run" else state_word(n.event.state)
    parts = [
        f"• {style.slack_emoji} {label} — run {n.event.run_id}",
        f"started {human_time(n.event.started_at)}",
    ]
    if n.kind == "reminder" and n.incident is not None:
        parts.append(f"failing since {human_time(n.incident.opened_at)}")
    diff = link(n.links.diff, "diff", budget=1000)
    if diff:
        parts.append(diff)
    line = " · ".join(parts)
    if n.error_message and n.kind != "recovered":
        error = one_line(n.error_message).replace("`", "'")
        line += " · `" + fit(error, DIGEST_ERROR_MAX, escape=True) + "`"
    return line
