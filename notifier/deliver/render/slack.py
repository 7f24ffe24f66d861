"""Notifications rendered for Slack (Block Kit) and the console; webhooks: `webhook_payload`.

Pure: no I/O, no clock, no environment. Every output fits its destination's limits for any input:
what does not fit one block is split over several, and what does not fit one message over several
messages (`slack_messages`, `slack_digest`), so nothing is cut except past `ERROR_TEXT_MAX`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from notifier.domain.models import Notification, as_utc

#: Block Kit limits (docs.slack.dev "Block Kit" reference), counted in UTF-16 units to be safe.
HEADER_TEXT_MAX: Final = 150
SECTION_TEXT_MAX: Final = 3000
SECTION_FIELDS_MAX: Final = 10
FIELD_TEXT_MAX: Final = 2000
CONTEXT_ELEMENTS_MAX: Final = 10
CONTEXT_TEXT_MAX: Final = 3000
MESSAGE_BLOCKS_MAX: Final = 50
#: Text in all of a digest message's blocks. Slack refuses too much with `msg_blocks_too_long`, a
#: limit it does not document (reports: refused from 11,341 characters, accepted up to 13,297;
#: 12,000 by Slack's SDK team), so a digest message keeps well below it.
BLOCKS_TEXT_MAX: Final = 10_000
#: Slack truncates a message's top-level `text` beyond this.
FALLBACK_TEXT_MAX: Final = 4000
#: The console shows only the start of a long error message.
CONSOLE_ERROR_MAX: Final = 500
#: Slack shows at most this much of an error (in characters); the rest is in Datafold. Enough for
#: any useful stack trace, small enough that a 1 MB error makes one message, not hundreds.
ERROR_TEXT_MAX: Final = 12_000
#: Mentions take at most this much of a message; a mention is never cut in half.
MENTIONS_TEXT_MAX: Final = 1000
#: A digest shows this much of each event's error message.
DIGEST_ERROR_MAX: Final = 150

ELLIPSIS: Final = "…"

_MRKDWN_ESCAPES: Final = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_USER_ID: Final = re.compile(r"[UW][A-Z0-9]{2,20}")
_GROUP_ID: Final = re.compile(r"S[A-Z0-9]{2,20}")
_SPECIAL_MENTIONS: Final = {"@here": "<!here>", "@channel": "<!channel>"}


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
_RECOVERED: Final = StateStyle("Recovered", ":white_check_mark:", "✅")
_REMINDER: Final = StateStyle("Reminder", ":alarm_clock:", "⏰")


def state_style(state: str) -> StateStyle:
    """Known states get their own look; any other state string a neutral one, never an error."""
    known = _STATE_STYLES.get(state)
    if known is not None:
        return known
    label = _one_line(state) or "unknown"
    return StateStyle(
        _fit(label[:1].upper() + label[1:], 40), ":information_source:", "\N{INFORMATION SOURCE}"
    )


def kind_style(n: Notification) -> StateStyle:
    """The look of a notification: its run state's, or that of a recovery or reminder."""
    if n.kind == "recovered":
        return _RECOVERED
    if n.kind == "reminder":
        return _REMINDER
    return state_style(n.event.state)


@dataclass(frozen=True)
class SlackMessage:
    """What `chat.postMessage` and incoming webhooks take: fallback `text` and Block Kit.

    `completes`: IDs of the notifications whose last part is in this message, so a digest that
    fails part-way knows which notifications went out whole.
    """

    text: str
    blocks: list[dict[str, Any]]
    completes: frozenset[str] = frozenset()


def mention_markup(mention: str) -> str:
    """Slack's markup for a user (U…/W…), a user group (S…), "@here" or "@channel".

    Raises ValueError for anything else, so a typo is caught when the sink is built.
    """
    if mention in _SPECIAL_MENTIONS:
        return _SPECIAL_MENTIONS[mention]
    if _USER_ID.fullmatch(mention):
        return f"<@{mention}>"
    if _GROUP_ID.fullmatch(mention):
        return f"<!subteam^{mention}>"
    raise ValueError(
        "a mention is a Slack user ID (U…, W…), a user-group ID (S…), @here or @channel"
    )


def _mentions_text(mentions: Sequence[str]) -> str:
    """The mentions, each once and whole, as many as fit `MENTIONS_TEXT_MAX`."""
    kept: list[str] = []
    used = 0
    for markup in dict.fromkeys(mention_markup(m) for m in mentions):
        cost = _units(markup) + (1 if kept else 0)
        if used + cost > MENTIONS_TEXT_MAX:
            break
        kept.append(markup)
        used += cost
    return " ".join(kept)


def slack_messages(
    n: Notification, *, mentions: Sequence[str] = (), error_max: int = ERROR_TEXT_MAX
) -> list[SlackMessage]:
    """A notification as one or more top-level messages (more only for a huge error message).

    Mentions (see `mention_markup`) start the first message's text and blocks; a recovery takes
    none. The error message is split over as many sections as it needs, up to `error_max`
    characters; more is cut with a note saying so.
    """
    style = kind_style(n)
    title = _one_line(n.monitor.title)
    blocks: list[dict[str, Any]] = [_header(f"{style.slack_emoji} {style.label}: {title}")]
    if n.kind != "run":
        blocks.append(_section(_incident_summary(n)))
    blocks.append({"type": "section", "fields": _slack_fields(n, style)[:SECTION_FIELDS_MAX]})
    if n.kind != "recovered" and (n.event.state == "error" or n.error_message):
        blocks += _error_blocks(n.error_message, error_max)
    links = _slack_links(n)
    if links:
        blocks.append({"type": "context", "elements": links[:CONTEXT_ELEMENTS_MAX]})
    mention = "" if n.kind == "recovered" else _mentions_text(mentions)
    text = _fallback_text(n, style, title)
    return _pack([(blocks, frozenset({n.id}))], text=text, mention=mention, continued=text)


def slack_message(n: Notification, *, mentions: Sequence[str] = ()) -> SlackMessage:
    """The first (almost always the only) message of `slack_messages`."""
    return slack_messages(n, mentions=mentions)[0]


def _fallback_text(n: Notification, style: StateStyle, title: str) -> str:
    kind = f" ({_one_line(n.monitor.monitor_type)})" if n.monitor.monitor_type else ""
    if n.kind == "reminder":
        since = _human_time(n.incident.opened_at) if n.incident else "unknown"
        count = f", reminder {n.incident.reminders}" if n.incident and n.incident.reminders else ""
        about = f" still failing since {since}{count}"
    elif n.kind == "recovered":
        about = " is passing again"
    else:
        about = ""
    return f"{style.slack_emoji} {style.label}: {title}{kind}{about} — run {n.event.run_id}"


def _incident_summary(n: Notification) -> str:
    """What a reminder or recovery says about the incident behind it."""
    incident = n.incident
    since = _human_time(incident.opened_at) if incident else "unknown"
    failing = _state_word(incident.last.state) if incident else "failing"
    if n.kind == "reminder":
        count = (
            f" This is reminder {incident.reminders}." if incident and incident.reminders else ""
        )
        return _fit(
            f"*Still failing* ({failing}) since {since}; latest failing run "
            f"{n.event.run_id}, started {_human_time(n.event.started_at)}.{count}",
            SECTION_TEXT_MAX,
        )
    last = f" (last failing run {incident.last.run_id})" if incident else ""
    return _fit(
        f"*Passing again.* Was {failing} since {since}{last}; recovered by run "
        f"{n.event.run_id}, started {_human_time(n.event.started_at)}.",
        SECTION_TEXT_MAX,
    )


def _state_word(state: str) -> str:
    return _fit(_one_line(state), 40, escape=True) or "failing"


def slack_resolved_message(n: Notification) -> SlackMessage:
    """What the incident's first message becomes once it recovers (`chat.update`): one message."""
    title = _one_line(n.monitor.title)
    blocks: list[dict[str, Any]] = [
        _header(f"{_RECOVERED.slack_emoji} Resolved: {title}"),
        _section(_incident_summary(n).replace("*Passing again.*", "*Resolved.*", 1)),
    ]
    pairs = [("Monitor type", n.monitor.monitor_type or "unknown"), ("State", "Resolved")]
    if n.incident is not None:
        pairs.append(("First failing run", str(n.incident.first.run_id)))
    pairs.append(("Recovered by run", str(n.event.run_id)))
    blocks.append({"type": "section", "fields": _fields(pairs)})
    links = _slack_links(n)
    if links:
        blocks.append({"type": "context", "elements": links[:CONTEXT_ELEMENTS_MAX]})
    text = f"{_RECOVERED.slack_emoji} Resolved: {title} — recovered by run {n.event.run_id}"
    return SlackMessage(_fit(text, FALLBACK_TEXT_MAX, escape=True), blocks, frozenset({n.id}))


def slack_recovery_reply(n: Notification) -> SlackMessage:
    """The short reply in the incident's thread once it recovers."""
    text = (
        f"{_RECOVERED.slack_emoji} Recovered: run {n.event.run_id} passed"
        f" (started {_human_time(n.event.started_at)})."
    )
    blocks: list[dict[str, Any]] = [_section(text)]
    links = _slack_links(n)
    if links:
        blocks.append({"type": "context", "elements": links[:CONTEXT_ELEMENTS_MAX]})
    return SlackMessage(text, blocks, frozenset({n.id}))


#: Digest order: most severe first. Unknown run states rank between error and reminder.
SEVERITY: Final = {"alert": 4, "error": 3, "reminder": 1, "recovered": 0}
_OTHER_STATE_SEVERITY: Final = 2


def severity(n: Notification) -> int:
    """How urgent a notification is: alert > error > other run states > reminder > recovered."""
    return SEVERITY.get(n.event_kind, _OTHER_STATE_SEVERITY)


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
        key=lambda g: (-max(severity(n) for n in g), -len(g), _one_line(g[0].monitor.title)),
    )
    worst = max(notifications, key=severity)
    emoji = kind_style(worst).slack_emoji
    count, monitors = len(notifications), len(ordered)
    headline = (
        f"{emoji} {count} notification{'s' * (count != 1)}"
        f" from {monitors} monitor{'s' * (monitors != 1)}"
    )
    names = ", ".join(_one_line(g[0].monitor.title) for g in ordered)
    units: list[tuple[list[dict[str, Any]], frozenset[str]]] = [([_header(headline)], frozenset())]
    for group in ordered:
        units += _digest_group(group)
    wants_mentions = any(n.kind != "recovered" for n in notifications)
    return _pack(
        units,
        text=f"{headline}: {names}",
        mention=_mentions_text(mentions) if wants_mentions else "",
        continued=f"{headline} (continued)",
        text_max=BLOCKS_TEXT_MAX,
    )


def _digest_group(group: list[Notification]) -> list[tuple[list[dict[str, Any]], frozenset[str]]]:
    """One monitor's events as sections of whole lines, each with the IDs of its events."""
    first = group[0]
    kind = f" ({_one_line(first.monitor.monitor_type)})" if first.monitor.monitor_type else ""
    title = _fit(_one_line(first.monitor.title) + kind, HEADER_TEXT_MAX, escape=True)
    heading = f"*{title}* — {len(group)} event{'s' * (len(group) != 1)}"
    link = _link(first.links.monitor, "Open monitor", budget=SECTION_TEXT_MAX // 3)
    if link:
        heading += f" · {link}"
    ordered = sorted(group, key=lambda n: (n.event.started_at is None, n.event.started_at or 0))
    units: list[tuple[list[dict[str, Any]], frozenset[str]]] = []
    text, members = heading, set[str]()
    for n in ordered:
        line = _digest_line(n)
        if _units(text) + 1 + _units(line) > SECTION_TEXT_MAX:
            units.append(([_section(text)], frozenset(members)))
            text, members = f"*{title}* (continued)", set()
        text += "\n" + line
        members.add(n.id)
    units.append(([_section(text)], frozenset(members)))
    return units


def _digest_line(n: Notification) -> str:
    style = kind_style(n)
    label = style.label if n.kind != "run" else _state_word(n.event.state)
    parts = [
        f"• {style.slack_emoji} {label} — run {n.event.run_id}",
        f"started {_human_time(n.event.started_at)}",
    ]
    if n.kind == "reminder" and n.incident is not None:
        parts.append(f"failing since {_human_time(n.incident.opened_at)}")
    diff = _link(n.links.diff, "diff", budget=1000)
    if diff:
        parts.append(diff)
    line = " · ".join(parts)
    if n.error_message and n.kind != "recovered":
        error = _one_line(n.error_message).replace("`", "'")
        line += " · `" + _fit(error, DIGEST_ERROR_MAX, escape=True) + "`"
    return line


def _pack(
    units: list[tuple[list[dict[str, Any]], frozenset[str]]],
    *,
    text: str,
    mention: str,
    continued: str,
    text_max: int | None = None,
) -> list[SlackMessage]:
    """Units of blocks into messages of at most `MESSAGE_BLOCKS_MAX` blocks (and, if given,
    `text_max` units of text in them all), a unit split only when it alone is too big. A unit's
    IDs count as complete in the message with its last block.

    The first message starts with the mentions (fallback text and a section); each later one
    with a note that it continues the previous. Texts are given unescaped.
    """
    batches: list[tuple[list[dict[str, Any]], set[str]]] = []
    room = MESSAGE_BLOCKS_MAX - 1  # the mentions block or the continuation note
    # Ditto: the mentions' most. A digest's blocks hold at most SECTION_TEXT_MAX, so each fits.
    text_room = None if text_max is None else text_max - MENTIONS_TEXT_MAX
    blocks: list[dict[str, Any]] = []
    used = 0
    done: set[str] = set()

    def too_much(more_blocks: int, more_text: int) -> bool:
        over_text = text_room is not None and used + more_text > text_room
        return len(blocks) + more_blocks > room or over_text

    for unit, unit_ids in units:
        costs = [_text_units(block) for block in unit]
        if blocks and too_much(len(unit), sum(costs)):
            batches.append((blocks, done))
            blocks, used, done = [], 0, set()
        for block, cost in zip(unit, costs, strict=True):
            if blocks and too_much(1, cost):
                batches.append((blocks, done))
                blocks, used, done = [], 0, set()
            blocks.append(block)
            used += cost
        done |= unit_ids
    batches.append((blocks, done))
    messages = []
    for index, (batch, ids) in enumerate(batches):
        if index == 0:
            head = [_section(mention)] if mention else []
            room_left = FALLBACK_TEXT_MAX - (_units(mention) + 1 if mention else 0)
            body = _fit(text, room_left, escape=True)
            body = f"{mention} {body}" if mention else body
        else:
            note = f"(continued, part {index + 1} of {len(batches)})"
            head = [{"type": "context", "elements": [{"type": "mrkdwn", "text": note}]}]
            body = _fit(f"{continued} {note}", FALLBACK_TEXT_MAX, escape=True)
        messages.append(SlackMessage(body, head + batch, frozenset(ids)))
    return messages


def _text_units(value: object) -> int:
    """The text in a block: every text object's, in UTF-16 units."""
    if isinstance(value, dict):
        own = value.get("text")
        nested = sum(_text_units(item) for item in value.values())
        return nested + (_units(own) if isinstance(own, str) else 0)
    if isinstance(value, list):
        return sum(_text_units(item) for item in value)
    return 0


def _header(text: str) -> dict[str, Any]:
    return {
        "type": "header",
        "text": {"type": "plain_text", "text": _fit(text, HEADER_TEXT_MAX), "emoji": True},
    }


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _slack_fields(n: Notification, style: StateStyle) -> list[dict[str, Any]]:
    pairs = [
        ("Monitor type", n.monitor.monitor_type or "unknown"),
        ("State", style.label if n.kind == "run" else state_style(n.event.state).label),
        ("Run ID", str(n.event.run_id)),
        ("Started", _human_time(n.event.started_at)),
    ]
    if n.monitor.tags:
        pairs.append(("Tags", ", ".join(n.monitor.tags)))
    if n.monitor.owner:
        pairs.append(("Owner", n.monitor.owner))
    return _fields(pairs)


def _fields(pairs: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    fields = []
    for label, value in pairs:
        prefix = f"*{label}*\n"
        body = _fit(_one_line(value), FIELD_TEXT_MAX - _units(prefix), escape=True)
        fields.append({"type": "mrkdwn", "text": prefix + body})
    return fields


def _error_blocks(message: str | None, error_max: int) -> list[dict[str, Any]]:
    """The error in code-block sections of at most `SECTION_TEXT_MAX`, split between lines where
    possible; past `error_max` characters a note says how much more Datafold has."""
    if not message:
        return [_section("*Error*\n_Datafold gave no error message._")]
    shown = message[:error_max]
    # A ``` inside the message would close the code block early; zero-width spaces defuse it.
    chunks = error_chunks(shown.replace("```", "`\u200b`\u200b`"))
    blocks = []
    for index, chunk in enumerate(chunks):
        label = "*Error*" if len(chunks) == 1 else f"*Error* ({index + 1}/{len(chunks)})"
        blocks.append(_section(f"{label}\n```\n{chunk}\n```"))
    if len(message) > error_max:
        note = f"{ELLIPSIS} (truncated: {len(message) - error_max:,} more characters, see Datafold)"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note}]})
    return blocks


#: Room for the error text in one section: the limit less "*Error* (NN/NN)\n```\n" and "\n```".
_ERROR_CHUNK_MAX: Final = SECTION_TEXT_MAX - 40


def error_chunks(text: str, limit: int = _ERROR_CHUNK_MAX) -> list[str]:
    """`text` escaped for mrkdwn in pieces of at most `limit` units, nothing dropped, no entity or
    character cut; a piece ends after a newline when that leaves it at least half full."""
    chunks: list[str] = []
    piece: list[str] = []
    used = 0
    last_newline = -1
    for ch in text:
        escaped = _MRKDWN_ESCAPES.get(ch, ch)
        cost = _units(escaped)
        if used + cost > limit:
            rest = piece[last_newline + 1 :] if last_newline >= 0 else []
            rest_units = sum(_units(p) for p in rest)
            if not rest or rest_units > limit // 2:  # no newline, or too early: cut here
                rest, rest_units = [], 0
            chunks.append("".join(piece[: len(piece) - len(rest)]))
            piece, used = rest, rest_units
            last_newline = -1
        piece.append(escaped)
        used += cost
        if ch == "\n":
            last_newline = len(piece) - 1
    if piece or not chunks:
        chunks.append("".join(piece))
    return chunks


def _link(url: str | None, label: str, *, budget: int = CONTEXT_TEXT_MAX) -> str | None:
    if not url:
        return None
    # Slack wants &, <, > escaped inside links too; a | would end the URL early.
    target = "".join(_MRKDWN_ESCAPES.get(ch, ch) for ch in url).replace("|", "%7C")
    text = f"<{target}|{label}>"
    return text if _units(text) <= budget else None  # a URL cut short is worse than none


def _slack_links(n: Notification) -> list[dict[str, Any]]:
    elements = []
    for label, url in (("Open data diff", n.links.diff), ("Open monitor", n.links.monitor)):
        text = _link(url, label)
        if text:
            elements.append({"type": "mrkdwn", "text": text})
    return elements


def console_text(n: Notification) -> str:
    """A few plain lines for a terminal (the `demo` command)."""
    style = kind_style(n)
    kind = f" ({_one_line(n.monitor.monitor_type)})" if n.monitor.monitor_type else ""
    title = f"{style.symbol} {style.label}: {_one_line(n.monitor.title)}{kind}"
    incident = n.incident
    since = _human_time(incident.opened_at) if incident else "unknown"
    if n.kind == "reminder":
        count = f" (reminder {incident.reminders})" if incident and incident.reminders else ""
        title += f" still failing since {since}{count}"
    elif n.kind == "recovered":
        title += f" passing again, failing since {since}"
    lines = [
        title,
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
    if n.error_message and n.kind != "recovered":
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
