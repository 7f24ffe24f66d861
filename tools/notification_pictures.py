"""Regenerate docs/slack-message.png and docs/webhook-payload.example.json from one sample alert.

    .venv/bin/python tools/notification_pictures.py [--docs DIR]

The sample is the alert `make demo` prints in the README (monitor 101, run 4), with Datafold's
own URLs in place of the simulator's. It goes through the project's renderers: the Slack
message's Block Kit (`slack_messages`, as the Slack sink posts it) is drawn as a Slack-like card
and screenshotted with headless Chromium (tools/ensure-chromium.sh installs it); the webhook
payload (`webhook_payload`, what a webhook signs and sends) is written pretty-printed. The card
shows only text the blocks hold, so the picture is the project's output, not a mock-up.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from notifier.deliver.render.slack import slack_messages  # noqa: E402
from notifier.deliver.render.webhook import webhook_payload  # noqa: E402
from notifier.domain.models import Links, MonitorInfo, Notification, RunEvent  # noqa: E402

WIDTH: Final = 700
#: The shortcodes the renderers use (notifier/deliver/render/style.py), as Slack draws them.
EMOJI: Final = {
    ":rotating_light:": "\N{POLICE CARS REVOLVING LIGHT}",
    ":x:": "\N{CROSS MARK}",
    ":white_check_mark:": "\N{WHITE HEAVY CHECK MARK}",
    ":alarm_clock:": "\N{ALARM CLOCK}",
    ":information_source:": "\N{INFORMATION SOURCE}\N{VARIATION SELECTOR-16}",
}
_SHORTCODE: Final = re.compile(r":[a-z][a-z0-9_+-]*:")
#: Slack's mrkdwn, outside code blocks: a link, inline code, bold, italic, strike.
_MRKDWN: Final = re.compile(
    r"<(?P<url>[^|>]+)\|(?P<label>[^>]+)>"
    r"|`(?P<code>[^`]+)`"
    r"|\*(?P<bold>[^*\n]+)\*"
    r"|(?<!\w)_(?P<italic>[^_\n]+)_(?!\w)"
    r"|~(?P<strike>[^~\n]+)~"
)
_CODE_BLOCK: Final = re.compile(r"```\n?(.*?)\n?```", re.S)
_SLACK_ENTITIES: Final = {"&amp;": "&", "&lt;": "<", "&gt;": ">"}


def sample_notification() -> Notification:
    """The README's demo alert: diff monitor 101 "orders: prod vs staging", run 4, alerting."""
    event = RunEvent(
        monitor_id=101,
        run_id=4,
        state="alert",
        started_at=datetime(2026, 11, 26, 6, 35, 17, tzinfo=UTC),
        diff_id=50004,
    )
    return Notification(
        id=event.key,
        event=event,
        monitor=MonitorInfo(
            id=101,
            name="orders: prod vs staging",
            monitor_type="diff",
            tags=["prod", "orders"],
            owner="data-eng@example.com",
        ),
        links=Links(
            monitor="https://app.datafold.com/monitors/101",
            diff="https://app.datafold.com/datadiffs/50004/overview",
        ),
        detected_at=datetime(2026, 11, 26, 6, 36, 2, tzinfo=UTC),
    )


def sample_blocks() -> list[dict[str, Any]]:
    """The Block Kit of the sample's Slack message, as the Slack sink posts it."""
    return slack_messages(sample_notification())[0].blocks


def sample_payload_json() -> str:
    """The sample's webhook payload, pretty-printed (keys sorted, as the signed body has them)."""
    return json.dumps(webhook_payload(sample_notification()), indent=2, sort_keys=True) + "\n"


def emoji(escaped: str) -> str:
    """Slack's shortcodes in HTML-escaped text as the emoji it draws; an unknown one stays."""

    def draw(m: re.Match[str]) -> str:
        known = EMOJI.get(m.group(0))
        return f'<span class="emoji">{known}</span>' if known else m.group(0)

    return _SHORTCODE.sub(draw, escaped)


def plain(text: str) -> str:
    """Literal text from a block as HTML: Slack's entities undone, shortcodes drawn, escaped."""
    for entity, char in _SLACK_ENTITIES.items():
        text = text.replace(entity, char)
    return emoji(html.escape(text)).replace("\n", "<br>")


def mrkdwn(text: str) -> str:
    """A mrkdwn text as HTML: code blocks, links, inline code, bold, italic, strike."""
    out: list[str] = []
    last = 0
    for block in _CODE_BLOCK.finditer(text):
        out.append(_inline(text[last : block.start()]))
        out.append(f"<pre>{plain(block.group(1))}</pre>")
        last = block.end()
    out.append(_inline(text[last:]))
    return "".join(out)


def _inline(text: str) -> str:
    out: list[str] = []
    last = 0
    for m in _MRKDWN.finditer(text):
        out.append(plain(text[last : m.start()]))
        if m.group("url"):
            url = html.escape(m.group("url"), quote=True)
            out.append(f'<a href="{url}">{plain(m.group("label"))}</a>')
        elif m.group("code"):
            out.append(f"<code>{plain(m.group('code'))}</code>")
        elif m.group("bold"):
            out.append(f"<b>{plain(m.group('bold'))}</b>")
        elif m.group("italic"):
            out.append(f"<i>{plain(m.group('italic'))}</i>")
        else:
            out.append(f"<s>{plain(m.group('strike'))}</s>")
        last = m.end()
    out.append(plain(text[last:]))
    return "".join(out)


def text_object(obj: dict[str, Any]) -> str:
    """A Block Kit text object (plain_text or mrkdwn) as HTML."""
    return mrkdwn(obj["text"]) if obj.get("type") == "mrkdwn" else plain(obj["text"])


def block_html(block: dict[str, Any]) -> str:
    """One block as HTML; a block type the card does not know is a one-line error."""
    kind = block.get("type")
    if kind == "header":
        return f'<div class="header">{text_object(block["text"])}</div>'
    if kind == "section":
        parts = []
        if "text" in block:
            parts.append(f'<div class="text">{text_object(block["text"])}</div>')
        if "fields" in block:
            cells = "".join(f'<div class="field">{text_object(f)}</div>' for f in block["fields"])
            parts.append(f'<div class="fields">{cells}</div>')
        return f'<div class="section">{"".join(parts)}</div>'
    if kind == "context":
        items = "".join(
            f'<span class="item">{text_object(e)}</span>' for e in block["elements"] if "text" in e
        )
        return f'<div class="context">{items}</div>'
    if kind == "actions":
        buttons = "".join(
            f'<span class="button">{text_object(e["text"])}</span>'
            for e in block["elements"]
            if e.get("type") == "button"
        )
        return f'<div class="actions">{buttons}</div>'
    if kind == "divider":
        return '<hr class="divider">'
    raise SystemExit(f"block type {kind!r} is not drawn by tools/notification_pictures.py")


_STYLE: Final = """
body { margin: 0; background: #fff; font: 15px/1.46668 Lato, "Helvetica Neue", "DejaVu Sans",
  sans-serif; color: #1d1c1d; }
.emoji { font-family: "Noto Color Emoji", "Apple Color Emoji", "Segoe UI Emoji"; }
.message { display: flex; gap: 10px; padding: 16px 20px; }
.avatar { flex: none; width: 36px; height: 36px; border-radius: 6px;
  background: linear-gradient(135deg, #6c47ff, #3a1f9e); }
.blocks { flex: 1; min-width: 0; }
.header { font-size: 18px; font-weight: 900; line-height: 1.33; margin: 4px 0 8px; }
.section { margin: 4px 0 8px; }
.fields { display: grid; grid-template-columns: 1fr 1fr; gap: 8px 16px; margin-top: 4px; }
.context { display: flex; flex-wrap: wrap; gap: 4px 12px; font-size: 13px; color: #616061;
  margin: 4px 0; }
.actions { display: flex; gap: 8px; margin: 8px 0; }
.button { border: 1px solid #bbbabb; border-radius: 4px; padding: 3px 12px; font-weight: 700;
  font-size: 13px; }
.divider { border: 0; border-top: 1px solid #dddddd; margin: 8px 0; }
a { color: #1264a3; text-decoration: none; }
code { font: 12px Monaco, Menlo, "DejaVu Sans Mono", monospace; color: #c01343; background: #f8f8f8;
  border: 1px solid #e8e8e8; border-radius: 3px; padding: 1px 3px; }
pre { font: 12px/1.5 Monaco, Menlo, "DejaVu Sans Mono", monospace; background: #f8f8f8;
  border: 1px solid #e8e8e8; border-radius: 4px; padding: 8px; margin: 4px 0;
  white-space: pre-wrap; }
"""


def card_html(blocks: list[dict[str, Any]]) -> str:
    """The blocks as a Slack-like message card: every text on it comes from the blocks."""
    body = "".join(block_html(b) for b in blocks)
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<style>{_STYLE}</style></head><body>"
        f'<div class="message"><div class="avatar"></div><div class="blocks">{body}</div></div>'
        "</body></html>"
    )


def chromium() -> str:
    """The headless browser's command, or a one-line exit naming the installer."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit("chromium not found: run tools/ensure-chromium.sh")


def check_emoji_font() -> None:
    """Exit with one line when fontconfig knows no colour emoji font (the header would show a
    blank box where Slack shows the emoji)."""
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return
    fonts = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [fc_list, ":charset=1f6a8"], capture_output=True, text=True, check=False
    )
    if not fonts.stdout.strip():
        raise SystemExit("no emoji font: apt-get install fonts-noto-color-emoji")


def _chromium(args: list[str], profile: str) -> subprocess.CompletedProcess[str]:
    command = [
        chromium(),
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(  # noqa: S603 - fixed argv, no shell
        command, capture_output=True, text=True, timeout=60, check=False
    )


def page_height(page: Path, profile: str) -> int:
    """The card's height in CSS pixels, measured by Chromium on a copy of the page."""
    probe = page.with_name("probe.html")
    measure = (
        "<script>document.body.setAttribute('data-height',"
        " Math.ceil(document.querySelector('.message').getBoundingClientRect().height))</script>"
    )
    probe.write_text(page.read_text().replace("</body>", measure + "</body>"))
    result = _chromium([f"--window-size={WIDTH},2000", "--dump-dom", probe.as_uri()], profile)
    found = re.search(r'data-height="(\d+)"', result.stdout)
    if not found:
        raise SystemExit(f"chromium could not measure the card (exit {result.returncode})")
    return int(found.group(1))


def screenshot(page_source: str, output: Path) -> None:
    """The page as a PNG just as tall as the card, at twice the pixel density."""
    check_emoji_font()
    output.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as work:
        page = Path(work) / "slack-message.html"
        page.write_text(page_source, encoding="utf-8")
        height = page_height(page, str(Path(work) / "profile"))
        result = _chromium(
            [
                "--force-device-scale-factor=2",
                f"--screenshot={output}",
                f"--window-size={WIDTH},{height}",
                page.as_uri(),
            ],
            str(Path(work) / "profile"),
        )
    if result.returncode != 0 or not output.exists():
        raise SystemExit(f"chromium failed (exit {result.returncode}); no screenshot at {output}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--docs", type=Path, default=ROOT / "docs", help="where to write")
    docs = parser.parse_args().docs.resolve()
    payload = docs / "webhook-payload.example.json"
    payload.write_text(sample_payload_json(), encoding="utf-8")
    picture = docs / "slack-message.png"
    screenshot(card_html(sample_blocks()), picture)
    print(payload)
    print(picture)


if __name__ == "__main__":
    main()
