"""The README's Slack picture and webhook payload (tools/notification_pictures.py) are the
project's own output: the payload file is what the renderer gives now, and the card draws valid
Block Kit with every text of the blocks and no text of its own. No browser: the PNG is only
checked to be there.
"""

from __future__ import annotations

import importlib.util
import json
import re
import struct
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from slack_sdk.models.blocks import Block

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REGENERATE = ".venv/bin/python tools/notification_pictures.py"


@pytest.fixture(scope="module")
def pictures() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "notification_pictures", ROOT / "tools" / "notification_pictures.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Text(HTMLParser):
    """The text nodes a browser would draw (not those of <style>, <script> or <title>)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.nodes: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._hidden += tag in ("style", "script", "title")

    def handle_endtag(self, tag: str) -> None:
        self._hidden -= tag in ("style", "script", "title")

    def handle_data(self, data: str) -> None:
        if not self._hidden and data.strip():
            self.nodes.append(data)


def _texts(value: Any) -> list[tuple[str, str]]:
    """Every text object in the blocks: (type, text)."""
    if isinstance(value, list):
        return [t for item in value for t in _texts(item)]
    if not isinstance(value, dict):
        return []
    own = [(value["type"], value["text"])] if isinstance(value.get("text"), str) else []
    return own + [t for item in value.values() for t in _texts(item)]


def _visible(kind: str, text: str, emoji: dict[str, str]) -> str:
    """What Slack shows of a text object, markup characters left out."""
    if kind == "mrkdwn":
        text = re.sub(r"<[^|>]+\|([^>]+)>", r"\1", text)
        text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    for code in re.findall(r":[a-z][a-z0-9_+-]*:", text):
        assert code in emoji, f"{code} is drawn as written: add it to EMOJI"
        text = text.replace(code, emoji[code])
    return _bare(text)


def _bare(text: str) -> str:
    return re.sub(r"[*_~`]", "", text)


def test_webhook_payload_example_is_what_the_renderer_gives_now(pictures: ModuleType) -> None:
    committed = (DOCS / "webhook-payload.example.json").read_text(encoding="utf-8")
    assert committed == pictures.sample_payload_json(), (
        f"docs/webhook-payload.example.json is stale: run {REGENERATE}"
    )
    assert json.loads(committed)["type"] == "monitor.run.alert"


def test_slack_card_draws_valid_block_kit_and_only_its_texts(pictures: ModuleType) -> None:
    blocks = pictures.sample_blocks()
    assert {b["type"] for b in blocks} >= {"header", "section", "context"}
    for block in blocks:
        parsed = Block.parse(block)
        assert parsed is not None, block
        parsed.validate_json()

    page = _Text()
    page.feed(pictures.card_html(blocks))
    drawn = [_bare(node) for node in page.nodes]
    visible = [_visible(kind, text, pictures.EMOJI) for kind, text in _texts(blocks)]
    lines = [line.strip() for text in visible for line in text.split("\n") if line.strip()]
    assert lines, "the blocks hold no text"
    assert any("Alert: orders: prod vs staging" in line for line in lines)
    for line in lines:  # every text of the blocks is on the card...
        assert line in "".join(drawn), f"{line!r} is not drawn"
    for node in drawn:  # ...and every text on the card is from the blocks
        assert node.strip() in "\n".join(visible), f"{node!r} is not in the blocks"


def test_card_escapes_what_the_blocks_hold(pictures: ModuleType) -> None:
    html = pictures.card_html(
        [
            {"type": "header", "text": {"type": "plain_text", "text": "<b>not bold</b>"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "a &lt;i&gt; &amp; *b*"}},
        ]
    )
    assert "&lt;b&gt;not bold&lt;/b&gt;" in html
    assert "a &lt;i&gt; &amp; <b>b</b>" in html


def test_slack_message_png_is_there() -> None:
    picture = DOCS / "slack-message.png"
    assert picture.exists(), f"no {picture.name}: run {REGENERATE}"
    data = picture.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert 600 <= width <= 2000 and 100 <= height <= 1500, (width, height)
    assert 5_000 < len(data) < 1_000_000
