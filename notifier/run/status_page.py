"""The status page: a `StatusView` as one self-contained HTML document. Pure.

Server-rendered, no script at all: it refreshes itself with a meta refresh. On a wide screen
each table is a table; on a narrow one (a phone) CSS turns each row into a card of labelled
values (a cell's `data-label` is its column's heading, shown by `content: attr(data-label)`), so
nothing scrolls sideways. Every value from outside (monitor names and tags come from Datafold,
mute reasons from whoever set them) goes through `html.escape`; CSS classes and labels come from
fixed tables only.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from notifier.run.status_view import (
    CycleRow,
    DestinationRow,
    IncidentRow,
    MonitorRow,
    MuteRow,
    StatusView,
)

#: A state's badge colour; states not listed are neutral.
_STATE_CLASS = {
    "alert": "bad",
    "error": "bad",
    "unhealthy": "bad",
    "created": "busy",
    "queued": "busy",
    "checking": "busy",
    "learning": "busy",
    "starting": "busy",
    "ok": "good",
    "quiet": "good",
    "running": "good",
    "leader": "good",
}

_CSS = """
:root{--bg:#fff;--fg:#1b1f24;--mute:#5b636e;--line:#d8dde3;--head:#f3f5f7;
--good:#1a7f37;--bad:#c62828;--busy:#9a6700;--neutral:#57606a}
@media (prefers-color-scheme:dark){:root{--bg:#111418;--fg:#e6e9ed;--mute:#9aa4af;
--line:#2d333b;--head:#1b2027;--good:#3fb950;--bad:#f47067;--busy:#d4a72c;--neutral:#8b949e}}
*{box-sizing:border-box}
body{margin:0 auto;max-width:72rem;padding:.75rem;background:var(--bg);color:var(--fg);
font:15px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
h1{font-size:1.25rem;margin:.2rem 0}
h2{font-size:1.05rem;margin:1.2rem 0 .4rem}
p{margin:.3rem 0}
a{color:inherit}
.sub,.none,footer{color:var(--mute);font-size:.85rem}
.reason{color:var(--bad)}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(7.5rem,1fr));gap:.5rem;
margin:.75rem 0}
.tile{border:1px solid var(--line);border-radius:.5rem;padding:.4rem .6rem}
.tile b{display:block;font-size:1.4rem}
.tile span{color:var(--mute);font-size:.8rem}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch;border:1px solid var(--line);
border-radius:.5rem}
table{border-collapse:collapse;width:100%;font-size:.85rem}
th,td{padding:.35rem .5rem;text-align:left;vertical-align:top;
border-bottom:1px solid var(--line);white-space:nowrap}
tr:last-child td{border-bottom:0}
th{background:var(--head);font-weight:600}
th:first-child,td:first-child{position:sticky;left:0;background:var(--bg)}
th:first-child{background:var(--head)}
td.name{white-space:normal;min-width:8rem;max-width:16rem;overflow-wrap:anywhere}
td.text{white-space:normal;min-width:10rem;max-width:24rem;overflow-wrap:anywhere}
.id{color:var(--mute);font-size:.8rem}
.num{text-align:right}
.badge{display:inline-block;padding:0 .45rem;border-radius:1rem;font-size:.8rem;
border:1px solid currentColor;color:var(--neutral)}
.good{color:var(--good)}.bad{color:var(--bad)}.busy{color:var(--busy)}
@media (max-width:48rem){
.scroll{overflow:visible;border:0;border-radius:0}
table,tbody,tr,td{display:block}
thead{position:absolute;width:1px;height:1px;overflow:hidden;clip-path:inset(50%)}
tr{display:grid;grid-template-columns:repeat(auto-fill,minmax(9.5rem,1fr));gap:.3rem .75rem;
border:1px solid var(--line);border-radius:.5rem;padding:.45rem .6rem;margin:0 0 .5rem}
td,td.name,td.text{padding:0;border:0;white-space:normal;min-width:0;max-width:none;
overflow-wrap:anywhere}
td::before{content:attr(data-label);display:block;color:var(--mute);font-size:.75rem}
td:first-child{position:static;grid-column:1/-1;font-weight:600}
td:first-child::before,td.name::before{content:none}
td.text{grid-column:1/-1}
#cycles tr{grid-template-columns:repeat(auto-fill,minmax(6rem,1fr))}
}
"""


def render_status_page(view: StatusView, *, refresh_seconds: int) -> str:
    """The whole page; it reloads itself every `refresh_seconds`."""
    now = view.generated_at
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="refresh" content="{max(1, int(refresh_seconds))}">',
        f"<title>datafold-notifier: {_e(view.health)}</title>",
        f"<style>{_CSS}</style></head><body>",
        _header(view, refresh_seconds),
        _tiles(view),
        _section("incidents", "Open incidents", _incidents(view.incidents, now)),
        _section("monitors", "Monitors", _monitors(view, now)),
        _section("outbox", "Outbox by destination", _outbox(view.destinations, now)),
        _section("mutes", "Mutes", _mutes(view.mutes, now)),
        _section("cycles", "Recent cycles", _cycles(view.cycles, now)),
        "<footer><p>Last run “quiet”: no run of the monitor is failing or running as far as "
        "the notifier knows (the latest passed, or was skipped or cancelled). Times are UTC. "
        'The same data as JSON: <a href="api/status">/api/status</a>.</p></footer>',
        "</body></html>",
    ]
    return "\n".join(parts)


def _header(view: StatusView, refresh_seconds: int) -> str:
    reason = f'<p class="reason">{_e(view.health_reason)}</p>' if view.health_reason else ""
    stamp = view.generated_at.strftime("%Y-%m-%d %H:%M:%S")
    return (
        "<header><h1>datafold-notifier</h1>"
        f"<p>{_badge(view.health)} {_badge(view.role)}</p>{reason}"
        f'<p class="sub">As of <time datetime="{_iso(view.generated_at)}">{stamp} UTC</time>'
        f" · refreshes every {int(refresh_seconds)} s</p></header>"
    )


def _tiles(view: StatusView) -> str:
    tiles = [
        (view.monitors_total, "monitors"),
        (len(view.incidents), "open incidents"),
        (view.monitors_muted, "muted monitors"),
        (view.outbox_total, "waiting to send"),
    ]
    cells = "".join(
        f'<div class="tile"><b>{n}</b><span>{_e(label)}</span></div>' for n, label in tiles
    )
    note = ""
    if not view.state_loaded and view.role == "standby":
        note = '<p class="none">This replica stands by: the leader\'s page shows the state.</p>'
    elif not view.state_loaded:
        note = '<p class="none">No state loaded yet.</p>'
    return f'<section class="tiles">{cells}</section>{note}'


def _incidents(rows: Sequence[IncidentRow], now: datetime) -> str:
    body: list[list[str | _Cell]] = [
        [
            _monitor_cell(row.monitor_id, row.name),
            _badge(row.state),
            _when(row.opened_at, now),
            f"#{row.first_run_id} → #{row.last_run_id}",
            _when(row.notified_at, now),
            _num(row.reminders),
        ]
        for row in rows
    ]
    headings = ["Monitor", "State", "Since", "Runs", "Last notified", "Reminders"]
    return _table(headings, body, "No open incident.")


def _monitors(view: StatusView, now: datetime) -> str:
    body = [_monitor_row(row, now) for row in view.monitors]
    headings = ["Monitor", "Last poll", "Last run", "Incident", "Muted until"]
    table = _table(headings, body, "No monitor polled yet.")
    hidden = view.monitors_total - len(view.monitors)
    if hidden > 0:
        table += f'<p class="sub">{hidden} more monitors not listed (the least eventful).</p>'
    return table


def _monitor_row(row: MonitorRow, now: datetime) -> list[str | _Cell]:
    poll = _when(row.last_polled_at, now)
    if row.poll_error:
        poll += f' <span class="badge bad">{_e(row.poll_error)}</span>'
    last_run = "—"
    if row.last_run_state is not None:
        last_run = _badge(row.last_run_state)
        if row.last_run_id is not None:
            last_run += f' <span class="id">#{row.last_run_id}</span>'
    incident = "—"
    if row.incident_state is not None:
        incident = f"{_badge(row.incident_state)} since {_when(row.incident_since, now)}"
    muted = "—"
    if row.muted_until is not None:
        muted = f'{_when(row.muted_until, now)} <span class="id">{_e(row.muted_by)}</span>'
    return [_monitor_cell(row.id, row.name), poll, last_run, incident, muted]


def _outbox(rows: Sequence[DestinationRow], now: datetime) -> str:
    body = []
    for row in rows:
        deferred = "—"
        if row.deferred_until is not None:
            deferred = f"{_when(row.deferred_until, now)} ({_e(row.deferred_reason)})"
        body.append(
            [
                f"<b>{_e(row.name)}</b>",
                _num(row.waiting),
                _when(row.oldest_since, now),
                _num(row.oldest_attempts),
                deferred,
                _text(row.last_error),
            ]
        )
    headings = [
        "Destination",
        "Waiting",
        "Oldest waiting",
        "Its attempts",
        "Deferred",
        "Last error",
    ]
    return _table(headings, body, "No destination has been used yet.")


def _mutes(rows: Sequence[MuteRow], now: datetime) -> str:
    body = [
        [
            _e(row.target),
            _when(row.until, now),
            _text(row.reason),
            f'<span class="id">{_e(row.id)}</span>',
        ]
        for row in rows
    ]
    return _table(["Muted", "Until", "Reason", "ID"], body, "Nothing is muted.")


def _cycles(rows: Sequence[CycleRow], now: datetime) -> str:
    body = []
    for row in rows:
        took = "—" if row.seconds is None else f"{row.seconds:.2f} s"
        if row.standby:
            what = _badge("standby")
        else:
            what = f"{_num(row.polled)} polled"
            if row.failed:
                what += f', <span class="bad">{_num(row.failed)} failed</span>'
        sent = _num(row.delivered)
        if row.delivery_failures:
            sent += f', <span class="bad">{_num(row.delivery_failures)} failed</span>'
        saved = "yes" if row.saved else "no"
        body.append(
            [
                _when(row.started_at, now),
                took,
                what,
                _num(row.events),
                sent,
                _num(row.outbox),
                saved,
            ]
        )
    headings = ["Started", "Took", "Monitors", "Events", "Sent", "Outbox", "Saved"]
    return _table(headings, body, "No cycle has finished yet.")


def _section(anchor: str, title: str, content: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>{content}</section>'


@dataclass(frozen=True)
class _Cell:
    """A cell's HTML (escaped by its maker) and its CSS class from this module's fixed set."""

    html: str
    css: str


def _table(headings: Sequence[str], rows: Sequence[Sequence[str | _Cell]], empty: str) -> str:
    """Cells are HTML already (escaped by their makers); headings are escaped here, and each
    cell carries its column's heading as `data-label`, the label it shows on a narrow screen."""
    if not rows:
        return f'<p class="none">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headings)
    body = "".join(
        "<tr>" + "".join(_cell(c, h) for c, h in zip(row, headings, strict=True)) + "</tr>"
        for row in rows
    )
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="scroll">{table}</div>'


def _cell(content: str | _Cell, heading: str) -> str:
    if isinstance(content, str):
        return f'<td data-label="{_e(heading)}">{content}</td>'
    return f'<td class="{content.css}" data-label="{_e(heading)}">{content.html}</td>'


def _monitor_cell(monitor_id: int, name: str | None) -> _Cell:
    if not name:
        return _Cell(f"Monitor {int(monitor_id)}", "name")
    return _Cell(f'{_e(name)} <span class="id">#{int(monitor_id)}</span>', "name")


def _text(value: str | None) -> str | _Cell:
    return _Cell(_e(value), "text") if value else "—"


def _badge(state: str) -> str:
    kind = _STATE_CLASS.get(state, "neutral")
    return f'<span class="badge {kind}">{_e(state)}</span>'


def _num(value: int) -> str:
    return f"{int(value)}"


def _when(moment: datetime | None, now: datetime) -> str:
    """A relative time ("5 min ago", "in 2 h"), its exact UTC time in the markup."""
    if moment is None:
        return "—"
    return (
        f'<time datetime="{_iso(moment)}" title="{_iso(moment)}">{_e(relative(moment, now))}</time>'
    )


def relative(moment: datetime, now: datetime) -> str:
    """How long before or after `now` `moment` is, in words a person reads at a glance."""
    seconds = int((moment - now).total_seconds())
    span = abs(seconds)
    if span < 5:
        return "just now"
    if span < 60:
        words = f"{span} s"
    elif span < 3600:
        words = f"{span // 60} min"
    elif span < 86400:
        words = f"{span // 3600} h {span % 3600 // 60} min"
    else:
        words = f"{span // 86400} d {span % 86400 // 3600} h"
    return f"in {words}" if seconds > 0 else f"{words} ago"


def _iso(moment: datetime) -> str:
    return _e(moment.isoformat().replace("+00:00", "Z"))


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)
