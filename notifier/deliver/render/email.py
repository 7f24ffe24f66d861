"""A notification (or a digest of many) as an email: one-line subject, plain-text and HTML parts,
and a Message-ID derived from the notification ID, so a retry after a restart carries the same one
and the incident's later mails thread under its first. Pure: stdlib and the domain only.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Final

from notifier.deliver.render.style import human_time, kind_style, severity
from notifier.domain.models import Notification, as_utc
from notifier.domain.text import one_line

#: The fixed right-hand side of every Message-ID this notifier writes.
MESSAGE_ID_DOMAIN: Final = "datafold-notifier"
SUBJECT_MAX: Final = 200
#: How much of a run's error message a mail shows.
ERROR_MAX: Final = 4000
_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")


def message_id(key: str) -> str:
    """`<readable.hash@datafold-notifier>`: the same key, the same Message-ID, on every attempt."""
    readable = _UNSAFE.sub("-", key).strip(".-")[:64] or "n"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"<{readable}.{digest}@{MESSAGE_ID_DOMAIN}>"


def subject(n: Notification) -> str:
    """`[Alert] orders prod vs staging (run 98123)`: state and monitor on one line."""
    label = kind_style(n).label
    return one_line(f"[{label}] {one_line(n.monitor.title)} (run {n.event.run_id})", SUBJECT_MAX)


def _facts(n: Notification) -> list[tuple[str, str]]:
    facts = [
        ("Monitor", f"{n.monitor.title} (#{n.monitor.id})"),
        ("State", kind_style(n).label),
        ("Run", str(n.event.run_id)),
        ("Started", human_time(n.event.started_at)),
    ]
    if n.incident is not None and n.kind != "run":
        facts.append(("Failing since", human_time(n.incident.opened_at)))
    if n.monitor.monitor_type:
        facts.append(("Type", n.monitor.monitor_type))
    if n.monitor.tags:
        facts.append(("Tags", ", ".join(n.monitor.tags)))
    if n.monitor.owner:
        facts.append(("Owner", n.monitor.owner))
    return [(key, one_line(value)) for key, value in facts]


def _links(n: Notification) -> list[tuple[str, str]]:
    pairs = [("View the diff", n.links.diff), ("Open the monitor", n.links.monitor)]
    return [(label, url) for label, url in pairs if url]


def text_body(n: Notification) -> str:
    """The plain-text part."""
    lines = [subject(n), ""]
    lines += [f"{key}: {value}" for key, value in _facts(n)]
    if n.error_message:
        lines += ["", "Error:", n.error_message[:ERROR_MAX]]
    if links := _links(n):
        lines += [""] + [f"{label}: {url}" for label, url in links]
    return "\n".join(lines) + "\n"


def html_body(n: Notification) -> str:
    """The HTML part; every text from Datafold is escaped."""
    e = html.escape
    rows = "".join(f"<tr><th align='left'>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _facts(n))
    parts = [f"<h2>{e(subject(n))}</h2>", f"<table>{rows}</table>"]
    if n.error_message:
        parts.append(f"<h3>Error</h3><pre>{e(n.error_message[:ERROR_MAX])}</pre>")
    if links := _links(n):
        items = "".join(f'<li><a href="{e(url)}">{e(label)}</a></li>' for label, url in links)
        parts.append(f"<ul>{items}</ul>")
    return "<html><body>" + "".join(parts) + "</body></html>\n"


def anchor_message_id(n: Notification, thread_id: str | None) -> str | None:
    """The Message-ID a later mail of an incident replies to: the anchor the worker handed back,
    else the one the incident's first notification was given (derived from its ID), else None."""
    if n.opens_incident or n.incident is None:
        return None
    return thread_id or message_id(n.incident.id)


def _envelope(
    msg: EmailMessage, *, title: str, sender: str, to: Sequence[str], key: str, when: str
) -> None:
    msg["Subject"] = title
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Date"] = when
    msg["Message-ID"] = message_id(key)
    msg["Auto-Submitted"] = "auto-generated"


def notification_mail(
    n: Notification, *, sender: str, to: Sequence[str], thread_id: str | None = None
) -> EmailMessage:
    """One notification as a mail, the same headers and parts on every attempt."""
    msg = EmailMessage()
    date = format_datetime(as_utc(n.detected_at))
    _envelope(msg, title=subject(n), sender=sender, to=to, key=n.id, when=date)
    anchor = anchor_message_id(n, thread_id)
    if anchor is not None:
        msg["In-Reply-To"] = anchor
        msg["References"] = anchor
    msg.set_content(text_body(n))
    msg.add_alternative(html_body(n), subtype="html")
    return msg


def digest_subject(notifications: Sequence[Notification]) -> str:
    """`[Digest] 12 notifications from 3 monitors`."""
    count = len(notifications)
    monitors = len({n.monitor.id for n in notifications})
    return (
        f"[Digest] {count} notification{'s' * (count != 1)}"
        f" from {monitors} monitor{'s' * (monitors != 1)}"
    )


def digest_mail(
    notifications: Sequence[Notification], *, sender: str, to: Sequence[str]
) -> EmailMessage:
    """Many notifications as one mail, most severe first; its Message-ID hangs off their IDs."""
    ordered = sorted(notifications, key=lambda n: (-severity(n), n.monitor.id, n.id))
    key = "digest-" + hashlib.sha256("\n".join(sorted(n.id for n in ordered)).encode()).hexdigest()
    msg = EmailMessage()
    when = format_datetime(max(as_utc(n.detected_at) for n in ordered))
    _envelope(msg, title=digest_subject(ordered), sender=sender, to=to, key=key, when=when)
    lines = [digest_subject(ordered), ""]
    items = []
    for n in ordered:
        link = n.links.diff or n.links.monitor
        lines.append(f"- {subject(n)}" + (f" {link}" if link else ""))
        label = html.escape(subject(n))
        items.append(
            f'<li><a href="{html.escape(link)}">{label}</a></li>' if link else f"<li>{label}</li>"
        )
    msg.set_content("\n".join(lines) + "\n")
    msg.add_alternative(
        f"<html><body><h2>{html.escape(digest_subject(ordered))}</h2><ul>{''.join(items)}</ul>"
        "</body></html>\n",
        subtype="html",
    )
    return msg
