"""One notification as Slack messages (Block Kit): the alert, its recovery reply and the update
that marks the incident's first message resolved. Digests: `digest`; the console: `console`.

Pure: no I/O, no clock, no environment. Every output fits Slack's limits for any input: what does
not fit one block is split over several, and what does not fit one message over several messages,
so nothing is cut except past `ERROR_TEXT_MAX`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from notifier.deliver.render.blockkit import (
    CONTEXT_ELEMENTS_MAX,
    FALLBACK_TEXT_MAX,
    MRKDWN_ESCAPES,
    SECTION_FIELDS_MAX,
    SECTION_TEXT_MAX,
    SlackMessage,
    context,
    fields,
    fit,
    header,
    link,
    mentions_text,
    pack,
    section,
    units,
)
from notifier.deliver.render.style import (
    RECOVERED,
    StateStyle,
    facts,
    human_time,
    kind_style,
)
from notifier.domain.models import Notification
from notifier.domain.text import ELLIPSIS, one_line

#: Slack shows at most this much of an error (in characters); the rest is in Datafold. Enough for
#: any useful stack trace, small enough that a 1 MB error makes one message, not hundreds.
ERROR_TEXT_MAX: Final = 12_000
#: Room for the error text in one section: the limit less "*Error* (NN/NN)\n```\n" and "\n```".
_ERROR_CHUNK_MAX: Final = SECTION_TEXT_MAX - 40


def slack_messages(
    n: Notification, *, mentions: Sequence[str] = (), error_max: int = ERROR_TEXT_MAX
) -> list[SlackMessage]:
    """A notification as one or more top-level messages (more only for a huge error message).

    Mentions (see `blockkit.mention_markup`) start the first message's text and blocks; a
    recovery takes none. The error message is split over as many sections as it needs, up to
    `error_max` characters; more is cut with a note saying so.
    """
    style = kind_style(n)
    title = one_line(n.monitor.title)
    blocks: list[dict[str, Any]] = [header(f"{style.slack_emoji} {style.label}: {title}")]
    if n.kind != "run":
        blocks.append(section(_incident_summary(n)))
    blocks.append({"type": "section", "fields": _slack_fields(n, style)[:SECTION_FIELDS_MAX]})
    if n.kind != "recovered" and (n.event.state == "error" or n.error_message):
        blocks += _error_blocks(n.error_message, error_max)
    blocks += _links_block(n)
    mention = "" if n.kind == "recovered" else mentions_text(mentions)
    text = _fallback_text(n, style, title)
    return pack([(blocks, frozenset({n.id}))], text=text, mention=mention, continued=text)


def slack_message(n: Notification, *, mentions: Sequence[str] = ()) -> SlackMessage:
    """The first (almost always the only) message of `slack_messages`."""
    return slack_messages(n, mentions=mentions)[0]


def slack_resolved_message(n: Notification) -> SlackMessage:
    """What the incident's first message becomes once it recovers (`chat.update`): one message."""
    title = one_line(n.monitor.title)
    blocks: list[dict[str, Any]] = [
        header(f"{RECOVERED.slack_emoji} Resolved: {title}"),
        section(_incident_summary(n).replace("*Passing again.*", "*Resolved.*", 1)),
    ]
    pairs = [("Monitor type", n.monitor.monitor_type or "unknown"), ("State", "Resolved")]
    if n.incident is not None:
        pairs.append(("First failing run", str(n.incident.first.run_id)))
    pairs.append(("Recovered by run", str(n.event.run_id)))
    blocks.append({"type": "section", "fields": fields(pairs)})
    blocks += _links_block(n)
    text = f"{RECOVERED.slack_emoji} Resolved: {title} — recovered by run {n.event.run_id}"
    return SlackMessage(fit(text, FALLBACK_TEXT_MAX, escape=True), blocks, frozenset({n.id}))


def slack_recovery_reply(n: Notification) -> SlackMessage:
    """The short reply in the incident's thread once it recovers."""
    text = (
        f"{RECOVERED.slack_emoji} Recovered: run {n.event.run_id} passed"
        f" (started {human_time(n.event.started_at)})."
    )
    return SlackMessage(text, [section(text), *_links_block(n)], frozenset({n.id}))


def state_word(state: str) -> str:
    """A run state as one short escaped word for running text ("failing" if it has none)."""
    return fit(one_line(state), 40, escape=True) or "failing"


def error_chunks(text: str, limit: int = _ERROR_CHUNK_MAX) -> list[str]:
    """`text` escaped for mrkdwn in pieces of at most `limit` units, nothing dropped, no entity or
    character cut; a piece ends after a newline when that leaves it at least half full."""
    chunks: list[str] = []
    piece: list[str] = []
    used = 0
    last_newline = -1
    for ch in text:
        escaped = MRKDWN_ESCAPES.get(ch, ch)
        cost = units(escaped)
        if used + cost > limit:
            rest = piece[last_newline + 1 :] if last_newline >= 0 else []
            rest_units = sum(units(p) for p in rest)
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


def _fallback_text(n: Notification, style: StateStyle, title: str) -> str:
    kind = f" ({one_line(n.monitor.monitor_type)})" if n.monitor.monitor_type else ""
    if n.kind == "reminder":
        since = human_time(n.incident.opened_at) if n.incident else "unknown"
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
    since = human_time(incident.opened_at) if incident else "unknown"
    failing = state_word(incident.last.state) if incident else "failing"
    if n.kind == "reminder":
        count = (
            f" This is reminder {incident.reminders}." if incident and incident.reminders else ""
        )
        return fit(
            f"*Still failing* ({failing}) since {since}; latest failing run "
            f"{n.event.run_id}, started {human_time(n.event.started_at)}.{count}",
            SECTION_TEXT_MAX,
        )
    last = f" (last failing run {incident.last.run_id})" if incident else ""
    return fit(
        f"*Passing again.* Was {failing} since {since}{last}; recovered by run "
        f"{n.event.run_id}, started {human_time(n.event.started_at)}.",
        SECTION_TEXT_MAX,
    )


def _slack_fields(n: Notification, style: StateStyle) -> list[dict[str, Any]]:
    return fields(facts(n, style))


def _error_blocks(message: str | None, error_max: int) -> list[dict[str, Any]]:
    """The error in code-block sections of at most `SECTION_TEXT_MAX`, split between lines where
    possible; past `error_max` characters a note says how much more Datafold has."""
    if not message:
        return [section("*Error*\n_Datafold gave no error message._")]
    shown = message[:error_max]
    # A ``` inside the message would close the code block early; zero-width spaces defuse it.
    chunks = error_chunks(shown.replace("```", "`\u200b`\u200b`"))
    blocks = []
    for index, chunk in enumerate(chunks):
        label = "*Error*" if len(chunks) == 1 else f"*Error* ({index + 1}/{len(chunks)})"
        blocks.append(section(f"{label}\n```\n{chunk}\n```"))
    if len(message) > error_max:
        note = f"{ELLIPSIS} (truncated: {len(message) - error_max:,} more characters, see Datafold)"
        blocks.append(context([note]))
    return blocks


def _links_block(n: Notification) -> list[dict[str, Any]]:
    """A context block with the diff and monitor links, or nothing when there are none."""
    texts = [
        text
        for label, url in (("Open data diff", n.links.diff), ("Open monitor", n.links.monitor))
        if (text := link(url, label))
    ]
    return [context(texts[:CONTEXT_ELEMENTS_MAX])] if texts else []
