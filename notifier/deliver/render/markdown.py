"""A notification as a title and a Markdown body, for services that take Markdown (Apprise's
Discord, Telegram, Pushover, ...; Apprise converts it to HTML or text where a service needs that).

Pure. The same labels as every other message (`style`). Text from outside (monitor names, tags,
owners, states) is escaped, so `**[click](https://evil)**`, `<b>` or `@everyone` shows as written;
controls and bidi overrides are dropped and newlines flattened, so it stays on its line. The error
goes in a fenced block longer than any backtick run in it, which it cannot close.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from notifier.deliver.render.style import facts, incident_summary, kind_style
from notifier.domain.models import Notification
from notifier.domain.text import ELLIPSIS, clip, one_line

#: Outside one-line values (title, tags, owner) are cut to this many characters.
VALUE_MAX: Final = 300
#: How much of a run's error a message shows (characters); Datafold has the rest.
ERROR_MAX: Final = 1_500
#: The title before escaping, as most services cap it (Apprise cuts it where a service needs).
TITLE_MAX: Final = 250
#: A link longer than this is left out (no real Datafold URL comes near it).
URL_MAX: Final = 2_000

#: Characters Markdown (CommonMark, and Discord's and Telegram's dialects) reads as markup
#: inside a line: emphasis, code, links, images, raw HTML, entities, tables, strikethrough,
#: mentions. Each gets a backslash, which CommonMark allows before any ASCII punctuation.
_MARKUP: Final = re.compile(r"([\\`*_{}\[\]()<>#!|~&@])")
#: Bidirectional overrides and isolates: dropped, so a name cannot show its text reversed.
_BIDI_CONTROLS: Final = frozenset(
    [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C]
)
_BACKTICKS: Final = re.compile(r"`+")
#: Apprise's notification types: a service may colour or badge the message by it.
_NOTIFY_TYPES: Final = {"alert": "failure", "error": "failure", "recovered": "success"}


@dataclass(frozen=True)
class MarkdownMessage:
    """One message: a title, a Markdown body, and Apprise's type for it (info, success,
    warning, failure)."""

    title: str
    body: str
    notify_type: str


def escape(text: str) -> str:
    """Outside text as literal Markdown on one line: controls dropped, markup escaped."""
    return _MARKUP.sub(r"\\\1", _printable(one_line(text)))


def markdown_message(n: Notification) -> MarkdownMessage:
    """One notification (alert, error, other run state, recovery or reminder) as one message."""
    style = kind_style(n)
    name = clip(_printable(one_line(n.monitor.title)), VALUE_MAX)
    prefix = f"{style.symbol} {style.label}: "
    title = prefix + escape(clip(name, TITLE_MAX - len(prefix)))
    lines: list[str] = []
    if n.kind != "run":
        lines += [incident_summary(n, quote=escape), ""]
    lines.append(f"- **Monitor:** {escape(name)} (\\#{n.monitor.id})")
    for label, value in facts(n, style):
        lines.append(f"- **{label}:** {escape(clip(one_line(value), VALUE_MAX))}")
    if n.kind != "recovered" and (n.event.state == "error" or n.error_message):
        lines += ["", "**Error**", *_error_block(n.error_message)]
    links = _links(n)
    if links:
        lines += ["", " · ".join(links)]
    notify_type = _NOTIFY_TYPES.get(n.event_kind, "warning" if n.kind == "reminder" else "info")
    return MarkdownMessage(title, "\n".join(lines) + "\n", notify_type)


def _error_block(message: str | None) -> list[str]:
    if not message:
        return ["_Datafold gave no error message._"]
    shown = _printable(message[:ERROR_MAX], keep="\n\t")
    longest = max((len(run) for run in _BACKTICKS.findall(shown)), default=0)
    fence = "`" * max(3, longest + 1)
    block = [f"{fence}text", *shown.splitlines(), fence]
    if len(message) > ERROR_MAX:
        more = len(message) - ERROR_MAX
        block.append(f"_{ELLIPSIS} (truncated: {more:,} more characters, see Datafold)_")
    return block


def _links(n: Notification) -> list[str]:
    pairs = (("Open data diff", n.links.diff), ("Open monitor", n.links.monitor))
    return [
        f"[{label}]({_link_target(url)})"
        for label, url in pairs
        if url and len(url) <= URL_MAX and url.startswith(("https://", "http://"))
    ]


def _link_target(url: str) -> str:
    """A URL that cannot end the link early: spaces, controls, `<>()[]` and backslashes
    percent-encoded; what a URL may hold otherwise is kept."""
    return quote(url, safe="!#$%&'*+,-./:;=?@_~")


def _printable(text: str, keep: str = "") -> str:
    """`text` without control characters (bar `keep`), bidi overrides or lone surrogates."""
    return "".join(
        char
        for char in text
        if char in keep
        or (unicodedata.category(char) not in ("Cc", "Cs") and ord(char) not in _BIDI_CONTROLS)
    )
