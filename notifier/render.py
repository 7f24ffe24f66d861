"""Notifications rendered for Slack (Block Kit) and the console; webhooks: `webhook_payload`.

Pure: no I/O, no clock, no environment. Every output fits its destination's limits for any input.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from notifier.models import Notification, as_utc

#: Block Kit limits (docs.slack.dev "Block Kit" reference), counted in UTF-16 units to be safe.
HEADER_TEXT_MAX: Final = 150
SECTION_TEXT_MAX: Final = 3000
SECTION_FIELDS_MAX: Final = 10
FIELD_TEXT_MAX: Final = 2000
CONTEXT_ELEMENTS_MAX: Final = 10
CONTEXT_TEXT_MAX: Final = 3000
MESSAGE_BLOCKS_MAX: Final = 50
#: Slack truncates a message's top-level `text` beyond this.
FALLBACK_TEXT_MAX: Final = 4000
#: The console shows only the start of a long error message.
CONSOLE_ERROR_MAX: Final = 500

ELLIPSIS: Final = "…"

_MRKDWN_ESCAPES: Final = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


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


def state_style(state: str) -> StateStyle:
    """Known states get their own look; any other state string a neutral one, never an error."""
    known = _STATE_STYLES.get(state)
    if known is not None:
        return known
    label = _one_line(state) or "unknown"
    return StateStyle(
        _fit(label[:1].upper() + label[1:], 40), ":information_source:", "\N{INFORMATION SOURCE}"
    )


@dataclass(frozen=True)
class SlackMessage:
    """What `chat.postMessage` and incoming webhooks take: fallback `text` and Block Kit."""

    text: str
    blocks: list[dict[str, Any]]


def slack_message(n: Notification) -> SlackMessage:
    """Render a notification as Block Kit within Slack's limits, user text escaped for mrkdwn."""
    style = state_style(n.event.state)
    title = _one_line(n.monitor.title)
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": _fit(f"{style.slack_emoji} {style.label}: {title}", HEADER_TEXT_MAX),
                "emoji": True,
            },
        },
        {"type": "section", "fields": _slack_fields(n, style)[:SECTION_FIELDS_MAX]},
    ]
    if n.event.state == "error" or n.error_message:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _error_text(n)}})
    links = _slack_links(n)
    if links:
        blocks.append({"type": "context", "elements": links[:CONTEXT_ELEMENTS_MAX]})
    kind = f" ({_one_line(n.monitor.monitor_type)})" if n.monitor.monitor_type else ""
    text = f"{style.slack_emoji} {style.label}: {title}{kind} — run {n.event.run_id}"
    return SlackMessage(
        text=_fit(text, FALLBACK_TEXT_MAX, escape=True), blocks=blocks[:MESSAGE_BLOCKS_MAX]
    )


def _slack_fields(n: Notification, style: StateStyle) -> list[dict[str, Any]]:
    pairs = [
        ("Monitor type", n.monitor.monitor_type or "unknown"),
        ("State", style.label),
        ("Run ID", str(n.event.run_id)),
        ("Started", _human_time(n.event.started_at)),
    ]
    if n.monitor.tags:
        pairs.append(("Tags", ", ".join(n.monitor.tags)))
    if n.monitor.owner:
        pairs.append(("Owner", n.monitor.owner))
    fields = []
    for label, value in pairs:
        prefix = f"*{label}*\n"
        body = _fit(_one_line(value), FIELD_TEXT_MAX - _units(prefix), escape=True)
        fields.append({"type": "mrkdwn", "text": prefix + body})
    return fields


def _error_text(n: Notification) -> str:
    prefix, suffix = "*Error*\n```\n", "\n```"
    if not n.error_message:
        return "*Error*\n_Datafold gave no error message._"
    # A ``` inside the message would close the code block early; zero-width spaces defuse it.
    message = n.error_message.replace("```", "`\u200b`\u200b`")
    budget = SECTION_TEXT_MAX - _units(prefix) - _units(suffix)
    return prefix + _fit(message, budget, escape=True) + suffix


def _slack_links(n: Notification) -> list[dict[str, Any]]:
    elements = []
    for label, url in (("Open data diff", n.links.diff), ("Open monitor", n.links.monitor)):
        if not url:
            continue
        # Slack wants &, <, > escaped inside links too; a | would end the URL early.
        target = "".join(_MRKDWN_ESCAPES.get(ch, ch) for ch in url).replace("|", "%7C")
        text = f"<{target}|{label}>"
        if _units(text) <= CONTEXT_TEXT_MAX:  # a URL cut short is worse than none
            elements.append({"type": "mrkdwn", "text": text})
    return elements


def console_text(n: Notification) -> str:
    """A few plain lines for a terminal (the `demo` command)."""
    style = state_style(n.event.state)
    kind = f" ({_one_line(n.monitor.monitor_type)})" if n.monitor.monitor_type else ""
    lines = [
        f"{style.symbol} {style.label}: {_one_line(n.monitor.title)}{kind}",
        f"   run {n.event.run_id} of monitor {n.monitor.id}"
        f" · started {_human_time(n.event.started_at)}",
    ]
    about = []
    if n.monitor.tags:
        about.append("tags: " + ", ".join(_one_line(t) for t in n.monitor.tags))
    if n.monitor.owner:
        about.append("owner: " + _one_line(n.monitor.owner))
    if about:
        lines.append("   " + " · ".join(about))
    if n.error_message:
        lines.append("   error: " + _fit(_one_line(n.error_message), CONSOLE_ERROR_MAX))
    if n.links.diff:
        lines.append(f"   diff: {n.links.diff}")
    if n.links.monitor:
        lines.append(f"   monitor: {n.links.monitor}")
    return "\n".join(lines)


def escape_mrkdwn(text: str) -> str:
    """Slack's three control characters as entities, so user text cannot make links or mentions."""
    return "".join(_MRKDWN_ESCAPES.get(ch, ch) for ch in text)


def _fit(text: str, limit: int, *, escape: bool = False) -> str:
    """`text` (escaped for mrkdwn if asked) in at most `limit` UTF-16 units, "…" marking a cut.

    Cuts between characters of the original, so an entity such as `&amp;` is never split.
    """
    whole = escape_mrkdwn(text) if escape else text
    if _units(whole) <= limit:
        return whole
    kept: list[str] = []
    used = 0
    budget = limit - _units(ELLIPSIS)
    for ch in text[:limit]:  # every character costs at least one unit
        piece = _MRKDWN_ESCAPES.get(ch, ch) if escape else ch
        cost = _units(piece)
        if used + cost > budget:
            break
        kept.append(piece)
        used += cost
    return "".join(kept) + ELLIPSIS


def _units(text: str) -> int:
    """Length in UTF-16 code units: never less than `len`, and what JavaScript-side limits count."""
    return len(text.encode("utf-16-le")) // 2


def _one_line(text: str) -> str:
    return " ".join(text.split())


def iso(value: datetime) -> str:
    """An ISO 8601 UTC stamp with a `Z`, as payloads write times."""
    return as_utc(value).isoformat().replace("+00:00", "Z")


def _human_time(value: datetime | None) -> str:
    return as_utc(value).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "unknown"
