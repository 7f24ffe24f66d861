"""Slack's Block Kit: its limits, the message type, and the pieces every Slack message is made of.

Pure. Texts are measured in UTF-16 units (what Slack's JavaScript-side limits count) and cut only
between characters, so no entity, emoji or mention is ever split. `pack` fits blocks into as many
messages as Slack's limits force.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from notifier.domain.text import ELLIPSIS, one_line

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
#: Mentions take at most this much of a message; a mention is never cut in half.
MENTIONS_TEXT_MAX: Final = 1000

MRKDWN_ESCAPES: Final = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_USER_ID: Final = re.compile(r"[UW][A-Z0-9]{2,20}")
_GROUP_ID: Final = re.compile(r"S[A-Z0-9]{2,20}")
_SPECIAL_MENTIONS: Final = {"@here": "<!here>", "@channel": "<!channel>"}

#: Blocks that belong together, and the IDs of the notifications they complete.
Unit = tuple[list[dict[str, Any]], frozenset[str]]


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


def mentions_text(mentions: Sequence[str]) -> str:
    """The mentions, each once and whole, as many as fit `MENTIONS_TEXT_MAX`."""
    kept: list[str] = []
    used = 0
    for markup in dict.fromkeys(mention_markup(m) for m in mentions):
        cost = units(markup) + (1 if kept else 0)
        if used + cost > MENTIONS_TEXT_MAX:
            break
        kept.append(markup)
        used += cost
    return " ".join(kept)


def pack(
    blocks_of: list[Unit],
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

    for unit, unit_ids in blocks_of:
        costs = [text_units(block) for block in unit]
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
            head = [section(mention)] if mention else []
            room_left = FALLBACK_TEXT_MAX - (units(mention) + 1 if mention else 0)
            body = fit(text, room_left, escape=True)
            body = f"{mention} {body}" if mention else body
        else:
            note = f"(continued, part {index + 1} of {len(batches)})"
            head = [context([note])]
            body = fit(f"{continued} {note}", FALLBACK_TEXT_MAX, escape=True)
        messages.append(SlackMessage(body, head + batch, frozenset(ids)))
    return messages


def text_units(value: object) -> int:
    """The text in a block: every text object's, in UTF-16 units."""
    if isinstance(value, dict):
        own = value.get("text")
        nested = sum(text_units(item) for item in value.values())
        return nested + (units(own) if isinstance(own, str) else 0)
    if isinstance(value, list):
        return sum(text_units(item) for item in value)
    return 0


def header(text: str) -> dict[str, Any]:
    """A header block; the text is cut to fit."""
    return {
        "type": "header",
        "text": {"type": "plain_text", "text": fit(text, HEADER_TEXT_MAX), "emoji": True},
    }


def section(text: str) -> dict[str, Any]:
    """A section block of mrkdwn `text` (already escaped and within `SECTION_TEXT_MAX`)."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def context(texts: Iterable[str]) -> dict[str, Any]:
    """A context block of mrkdwn texts (at most `CONTEXT_ELEMENTS_MAX`, already escaped)."""
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": t} for t in texts]}


def fields(pairs: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """A section's fields: a bold label over its value, the value on one line, escaped and cut."""
    out = []
    for label, value in pairs:
        prefix = f"*{label}*\n"
        body = fit(one_line(value), FIELD_TEXT_MAX - units(prefix), escape=True)
        out.append({"type": "mrkdwn", "text": prefix + body})
    return out


def link(url: str | None, label: str, *, budget: int = CONTEXT_TEXT_MAX) -> str | None:
    """Slack's `<url|label>`, or None when there is no URL or the link would exceed `budget`."""
    if not url:
        return None
    # Slack wants &, <, > escaped inside links too; a | would end the URL early.
    target = "".join(MRKDWN_ESCAPES.get(ch, ch) for ch in url).replace("|", "%7C")
    text = f"<{target}|{label}>"
    return text if units(text) <= budget else None  # a URL cut short is worse than none


def escape_mrkdwn(text: str) -> str:
    """Slack's three control characters as entities, so user text cannot make links or mentions."""
    return "".join(MRKDWN_ESCAPES.get(ch, ch) for ch in text)


def fit(text: str, limit: int, *, escape: bool = False) -> str:
    """`text` (escaped for mrkdwn if asked) in at most `limit` UTF-16 units, "…" marking a cut.

    Cuts between characters of the original, so an entity such as `&amp;` is never split.
    """
    whole = escape_mrkdwn(text) if escape else text
    if units(whole) <= limit:
        return whole
    kept: list[str] = []
    used = 0
    budget = limit - units(ELLIPSIS)
    for ch in text[:limit]:  # every character costs at least one unit
        piece = MRKDWN_ESCAPES.get(ch, ch) if escape else ch
        cost = units(piece)
        if used + cost > budget:
            break
        kept.append(piece)
        used += cost
    return "".join(kept) + ELLIPSIS


def units(text: str) -> int:
    """Length in UTF-16 code units: never less than `len`, and what JavaScript-side limits count."""
    return len(text.encode("utf-16-le")) // 2
