"""Notifications as Microsoft Teams messages: an Adaptive Card 1.4 in the envelope a Workflows
webhook ("Post to a channel when a webhook request is received") takes.

Pure. What the Slack message says, in the same labels (`style`). Text from outside (monitor names,
tags, owners, errors) goes only into `TextRun`s, which Adaptive Cards never read as Markdown, so a
name such as `**[click](https://evil)**` shows as written. Every message stays under
`MESSAGE_BYTES_MAX`: the error is cut first, then the other outside text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from notifier.deliver.render.style import facts, human_time, incident_summary, kind_style, severity
from notifier.domain.models import Notification
from notifier.domain.text import ELLIPSIS, one_line

#: Teams renders no card above this version.
CARD_VERSION: Final = "1.4"
CARD_SCHEMA: Final = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_CONTENT_TYPE: Final = "application/vnd.microsoft.card.adaptive"
#: Teams refuses a message of 28 KB or more; this leaves room for its own wrapping.
MESSAGE_BYTES_MAX: Final = 27_000
#: A card shows at most this much of an error (characters); Datafold has the rest.
ERROR_TEXT_MAX: Final = 8_000
#: Outside one-line values (title, tags, owner, type) are cut to this many characters.
VALUE_MAX: Final = 300
#: A link longer than this gets no button (no real Datafold URL comes near it).
URL_MAX: Final = 2_000
#: A digest card shows this much of each event's error.
DIGEST_ERROR_MAX: Final = 150

_CONTINUED: Final = " (continued)"
#: Bidirectional overrides and isolates: dropped, so a name cannot show its text reversed.
_BIDI_CONTROLS: Final = dict.fromkeys(
    [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C]
)
_COLORS: Final = {"alert": "attention", "error": "attention", "recovered": "good"}


@dataclass(frozen=True)
class TeamsMessage:
    """One webhook request body and the notification IDs wholly in it."""

    body: dict[str, Any]
    ids: frozenset[str]

    def encoded(self) -> bytes:
        """The exact bytes posted."""
        return encode(self.body)


def encode(body: dict[str, Any]) -> bytes:
    """A message as compact UTF-8 JSON, as it is sent and measured."""
    # A lone surrogate (valid in Datafold's JSON, not in UTF-8) becomes "?" rather than an error.
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(errors="replace")


def envelope(card: dict[str, Any]) -> dict[str, Any]:
    """The Workflows message around one card."""
    attachment = {"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": card}
    return {"type": "message", "attachments": [attachment]}


def teams_message(n: Notification, *, error_max: int = ERROR_TEXT_MAX) -> TeamsMessage:
    """One notification (alert, error, other run state, recovery or reminder) as one message
    under `MESSAGE_BYTES_MAX`: the error is shortened until it fits, then the other values."""
    attempts = [(error_max, VALUE_MAX)]
    while attempts[-1][0] > 100:
        attempts.append((attempts[-1][0] // 2, VALUE_MAX))
    attempts += [(0, 80), (0, 20)]
    for errors, values in attempts:
        body = envelope(_card(n, errors, values))
        if len(encode(body)) <= MESSAGE_BYTES_MAX:
            break
    return TeamsMessage(body, frozenset({n.id}))


def teams_digest(notifications: Sequence[Notification]) -> list[TeamsMessage]:
    """Many notifications as digest cards, grouped by monitor, most severe group first (as the
    Slack digest orders them); a new card starts only where one would pass the size limit."""
    by_monitor: dict[int, list[Notification]] = {}
    for n in notifications:
        by_monitor.setdefault(n.monitor.id, []).append(n)
    ordered = sorted(by_monitor.values(), key=_group_order)
    if not ordered:
        return []
    count, monitors = len(notifications), len(ordered)
    worst = max(notifications, key=severity)
    headline = (
        f"{kind_style(worst).symbol} {count} notification{'s' * (count != 1)}"
        f" from {monitors} monitor{'s' * (monitors != 1)}"
    )
    items = [
        (_digest_line(n, group[0] is n), n.id)
        for group in ordered
        for n in sorted(group, key=lambda x: (x.event.started_at is None, x.event.started_at or 0))
    ]
    messages: list[TeamsMessage] = []
    body: list[dict[str, Any]] = []
    ids: set[str] = set()
    # Compact JSON: each element adds its own bytes and one comma to the card's.
    size = len(encode(envelope(_digest_card(headline, []))))
    for element, nid in items:
        cost = len(encode(element)) + 1
        if body and size + cost > MESSAGE_BYTES_MAX:
            messages.append(_digest_message(headline, body, ids, continued=bool(messages)))
            body, ids = [], set()
            size = len(encode(envelope(_digest_card(headline + _CONTINUED, []))))
        body.append(element)
        ids.add(nid)
        size += cost
    messages.append(_digest_message(headline, body, ids, continued=bool(messages)))
    return messages


def _digest_message(
    headline: str, body: list[dict[str, Any]], ids: set[str], *, continued: bool
) -> TeamsMessage:
    title = headline + _CONTINUED if continued else headline
    return TeamsMessage(envelope(_digest_card(title, body)), frozenset(ids))


def _group_order(group: list[Notification]) -> tuple[int, int, str]:
    """The Slack digest's order: most severe event first, then the larger group, then title."""
    return (-max(map(severity, group)), -len(group), one_line(group[0].monitor.title))


def _card(n: Notification, error_max: int, value_max: int) -> dict[str, Any]:
    style = kind_style(n)
    color = _COLORS.get(n.event_kind, "warning")
    title = one_line(n.monitor.title, value_max)
    body: list[dict[str, Any]] = [
        _rich([_run(f"{style.symbol} {style.label}: {title}", size="Large", color=color)])
    ]
    if n.kind != "run":
        body.append(_rich([_run(incident_summary(n))]))
    for label, value in facts(n, style):
        body.append(_rich([_run(f"{label}: ", weight="Bolder"), _run(one_line(value, value_max))]))
    if n.kind != "recovered" and (n.event.state == "error" or n.error_message):
        body += _error_elements(n.error_message, error_max)
    card = _card_shell(body, _fallback(n, title))
    actions = _actions(n)
    if actions:
        card["actions"] = actions
    return card


def _card_shell(body: list[dict[str, Any]], fallback: str) -> dict[str, Any]:
    return {
        "type": "AdaptiveCard",
        "$schema": CARD_SCHEMA,
        "version": CARD_VERSION,
        "fallbackText": fallback,
        "body": body,
    }


def _fallback(n: Notification, title: str) -> str:
    style = kind_style(n)
    return f"{style.label}: {title} — run {n.event.run_id}"


def _error_elements(message: str | None, error_max: int) -> list[dict[str, Any]]:
    heading = _rich([_run("Error", weight="Bolder")])
    if not message:
        return [heading, _rich([_run("Datafold gave no error message.", italic=True)])]
    shown = message[:error_max]
    elements = [heading, _rich([_run(shown, monospace=True)])]
    if len(message) > error_max:
        note = f"{ELLIPSIS} (truncated: {len(message) - error_max:,} more characters, see Datafold)"
        elements.append(_rich([_run(note, italic=True)]))
    return elements


def _actions(n: Notification) -> list[dict[str, Any]]:
    return [
        {"type": "Action.OpenUrl", "title": title, "url": url}
        for title, url in (("Open data diff", n.links.diff), ("Open monitor", n.links.monitor))
        if url and len(url) <= URL_MAX and url.startswith(("https://", "http://"))
    ]


def _digest_card(headline: str, elements: list[dict[str, Any]]) -> dict[str, Any]:
    body = [_rich([_run(headline, size="Large")]), *elements]
    return _card_shell(body, headline)


def _digest_line(n: Notification, first_of_monitor: bool) -> dict[str, Any]:
    """One event of a digest, the first of its monitor naming the monitor; tapping it opens the
    diff (or the monitor). Outside text in TextRuns only, the error cut to one short line."""
    style = kind_style(n)
    label = style.label if n.kind != "run" else one_line(n.event.state, 40) or "failing"
    inlines: list[dict[str, Any]] = []
    if first_of_monitor:
        kind = f" ({one_line(n.monitor.monitor_type, 60)})" if n.monitor.monitor_type else ""
        inlines.append(_run(one_line(n.monitor.title, VALUE_MAX) + kind + "\n", weight="Bolder"))
    text = (
        f"{style.symbol} {label} — run {n.event.run_id} · started {human_time(n.event.started_at)}"
    )
    if n.kind == "reminder" and n.incident is not None:
        text += f" · failing since {human_time(n.incident.opened_at)}"
    inlines.append(_run(text, color=_COLORS.get(n.event_kind, "warning")))
    if n.error_message and n.kind != "recovered":
        inlines.append(_run(" · " + one_line(n.error_message, DIGEST_ERROR_MAX), monospace=True))
    element = _rich(inlines)
    url = n.links.diff or n.links.monitor
    if url and len(url) <= URL_MAX and url.startswith(("https://", "http://")):
        element = {
            "type": "Container",
            "items": [element],
            "selectAction": {"type": "Action.OpenUrl", "title": "Open", "url": url},
        }
    return element


def _rich(inlines: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "RichTextBlock", "inlines": inlines}


def _run(
    text: str,
    *,
    size: str | None = None,
    weight: str | None = None,
    color: str | None = None,
    italic: bool = False,
    monospace: bool = False,
) -> dict[str, Any]:
    """A TextRun: shown as written, never read as Markdown."""
    run: dict[str, Any] = {"type": "TextRun", "text": text.translate(_BIDI_CONTROLS)}
    if size:
        run["size"] = size
        run["weight"] = "Bolder"
    if weight:
        run["weight"] = weight
    if color:
        run["color"] = color
    if italic:
        run["italic"] = True
    if monospace:
        run["fontType"] = "Monospace"
    return run
