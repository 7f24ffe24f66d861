"""Rendering: Block Kit within Slack's limits, the webhook payload per its schema, the console."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from slack_sdk.models.blocks import Block

from notifier.deliver.render import blockkit, console
from notifier.deliver.render import slack as render
from notifier.deliver.render import webhook as webhook_payload
from notifier.deliver.render.style import state_style
from notifier.deliver.sinks.console import ConsoleSink
from notifier.domain.models import Links, Notification
from tests.fakes.samples import DIFF_URL, MONITOR_URL, notification, schema_validator

HUGE = 50_000
BARE_AMPERSAND = re.compile(r"&(?!amp;|lt;|gt;)")


def mrkdwn_texts(blocks: list[dict[str, Any]]) -> list[str]:
    """Every mrkdwn text in the blocks (the header is plain text)."""
    found: list[str] = []
    for block in blocks:
        if "text" in block and block["text"]["type"] == "mrkdwn":
            found.append(block["text"]["text"])
        found += [f["text"] for f in block.get("fields", [])]
        found += [e["text"] for e in block.get("elements", [])]
    return found


def field_map(message: blockkit.SlackMessage) -> dict[str, str]:
    section = next(b for b in message.blocks if "fields" in b)
    return dict(f["text"].removeprefix("*").split("*\n", 1) for f in section["fields"])


def assert_within_block_kit_limits(message: blockkit.SlackMessage) -> None:
    assert 1 <= len(message.blocks) <= blockkit.MESSAGE_BLOCKS_MAX
    assert 0 < len(message.text) <= blockkit.FALLBACK_TEXT_MAX
    for block in message.blocks:
        Block.parse(block).to_dict()  # type: ignore[union-attr]  # slack_sdk's own checks
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= blockkit.HEADER_TEXT_MAX
        if block["type"] == "section":
            assert len(block.get("fields", [])) <= blockkit.SECTION_FIELDS_MAX
            for f in block.get("fields", []):
                assert len(f["text"]) <= blockkit.FIELD_TEXT_MAX
            if "text" in block:
                assert len(block["text"]["text"]) <= blockkit.SECTION_TEXT_MAX
        if block["type"] == "context":
            assert len(block["elements"]) <= blockkit.CONTEXT_ELEMENTS_MAX
            for e in block["elements"]:
                assert len(e["text"]) <= blockkit.CONTEXT_TEXT_MAX


@pytest.mark.parametrize(
    ("state", "emoji", "label"),
    [
        ("alert", ":rotating_light:", "Alert"),
        ("error", ":x:", "Error"),
        ("ok", ":white_check_mark:", "OK"),
        ("queued", ":information_source:", "Queued"),
        ("", ":information_source:", "Unknown"),
        ("weird\nstate  " + "x" * 500, ":information_source:", None),
    ],
)
def test_state_styles_have_a_fallback_for_any_state(
    state: str, emoji: str, label: str | None
) -> None:
    style = state_style(state)
    assert style.slack_emoji == emoji
    assert "\n" not in style.label and len(style.label) <= 40
    if label is not None:
        assert style.label == label
    message = render.slack_message(notification(state=state))
    assert message.blocks[0]["text"]["text"].startswith(f"{emoji} {style.label}: ")
    assert_within_block_kit_limits(message)


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({}, ":rotating_light: Alert: orders prod vs staging (diff) — run 98123"),
        ({"state": "error"}, ":x: Error: orders prod vs staging (diff) — run 98123"),
        ({"name": None}, ":rotating_light: Alert: Monitor 4521 (diff) — run 98123"),
        ({"monitor_type": None}, ":rotating_light: Alert: orders prod vs staging — run 98123"),
        ({"name": "a<b> & c"}, ":rotating_light: Alert: a&lt;b&gt; &amp; c (diff) — run 98123"),
    ],
)
def test_fallback_text(kwargs: dict[str, Any], text: str) -> None:
    assert render.slack_message(notification(**kwargs)).text == text


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {},
            {
                "Monitor type": "diff",
                "State": "Alert",
                "Run ID": "98123",
                "Started": "2025-03-14 09:30:00 UTC",
                "Tags": "finance, tier-1",
                "Owner": "data-team@example.com",
            },
        ),
        (
            {"started_at": None, "tags": [], "owner": None, "monitor_type": None},
            {"Monitor type": "unknown", "State": "Alert", "Run ID": "98123", "Started": "unknown"},
        ),
        (
            {"started_at": datetime(2025, 3, 14, 11, 30, tzinfo=timezone(timedelta(hours=2)))},
            {"Started": "2025-03-14 09:30:00 UTC"},
        ),
        ({"owner": "<!channel> & co"}, {"Owner": "&lt;!channel&gt; &amp; co"}),
        ({"tags": ["<@U123>", "a&b"]}, {"Tags": "&lt;@U123&gt;, a&amp;b"}),
    ],
)
def test_fields(kwargs: dict[str, Any], expected: dict[str, str]) -> None:
    fields = field_map(render.slack_message(notification(**kwargs)))
    if "Tags" not in expected and not kwargs.get("tags", True):
        assert "Tags" not in fields and "Owner" not in fields
    for key, value in expected.items():
        assert fields[key] == value


def test_header_is_plain_text_and_not_escaped() -> None:
    header = render.slack_message(notification(name="a < b & c")).blocks[0]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": ":rotating_light: Alert: a < b & c", "emoji": True},
    }


@pytest.mark.parametrize(
    ("links", "expected"),
    [
        (
            Links(monitor=MONITOR_URL, diff=DIFF_URL),
            [f"<{DIFF_URL}|Open data diff>", f"<{MONITOR_URL}|Open monitor>"],
        ),
        (Links(monitor=MONITOR_URL), [f"<{MONITOR_URL}|Open monitor>"]),
        (Links(diff=DIFF_URL), [f"<{DIFF_URL}|Open data diff>"]),
        (Links(), None),
        (
            Links(monitor="https://x/m?a=1&b=<2>|3"),
            ["<https://x/m?a=1&amp;b=&lt;2&gt;%7C3|Open monitor>"],
        ),
        (Links(monitor="https://x/" + "m" * HUGE), None),
    ],
)
def test_links(links: Links, expected: list[str] | None) -> None:
    blocks = render.slack_message(notification(links=links)).blocks
    context = [b for b in blocks if b["type"] == "context"]
    if expected is None:
        assert context == []
    else:
        assert [e["text"] for e in context[0]["elements"]] == expected


@pytest.mark.parametrize(
    ("state", "error", "expected"),
    [
        ("alert", None, None),
        ("error", None, "*Error*\n_Datafold gave no error message._"),
        (
            "error",
            "relation <x> & y missing",
            "*Error*\n```\nrelation &lt;x&gt; &amp; y missing\n```",
        ),
        ("error", "a ``` b", "*Error*\n```\na `\u200b`\u200b` b\n```"),
        ("alert", "odd but shown", "*Error*\n```\nodd but shown\n```"),
    ],
)
def test_error_section(state: str, error: str | None, expected: str | None) -> None:
    blocks = render.slack_message(notification(state=state, error=error)).blocks
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b]
    assert sections == ([] if expected is None else [expected])


ABSURD = [
    {"name": "n" * HUGE},
    {"name": "&" * HUGE},
    {"name": "😀" * HUGE},
    {"state": "error", "error": "e" * HUGE},
    {"state": "error", "error": "<>&" * HUGE},
    {"state": "error", "error": "😀" * HUGE},
    {"state": "error", "error": "```" * HUGE},
    {"tags": [f"tag-{i}" for i in range(5_000)]},
    {"tags": ["&" * HUGE]},
    {"owner": "o" * HUGE, "monitor_type": "t" * HUGE},
    {"state": "s" * HUGE},
    {"links": Links(monitor="https://x/" + "&" * 2_000, diff="https://x/" + "d" * HUGE)},
]


@pytest.mark.parametrize("kwargs", ABSURD)
def test_absurd_inputs_stay_within_block_kit_limits(kwargs: dict[str, Any]) -> None:
    message = render.slack_message(notification(**kwargs))
    assert_within_block_kit_limits(message)
    for text in [*mrkdwn_texts(message.blocks), message.text]:
        assert not BARE_AMPERSAND.search(text)  # escaped, and no entity cut in half


def test_cut_text_ends_with_an_ellipsis_and_long_errors_are_split() -> None:
    message = render.slack_message(notification(name="n" * HUGE, state="error", error="e" * HUGE))
    assert message.blocks[0]["text"]["text"].endswith("n…")
    assert len(message.blocks[0]["text"]["text"]) == blockkit.HEADER_TEXT_MAX
    errors = [b["text"]["text"] for b in message.blocks if b["type"] == "section" and "text" in b]
    assert len(errors) > 1 and errors[0].startswith(f"*Error* (1/{len(errors)})\n```\n")
    shown = "".join(e.split("\n```\n", 1)[1].removesuffix("\n```") for e in errors)
    assert shown == "e" * render.ERROR_TEXT_MAX
    note = message.blocks[-2]["elements"][0]["text"]  # before the links
    assert note == f"… (truncated: {HUGE - render.ERROR_TEXT_MAX:,} more characters, see Datafold)"


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    return schema_validator("webhook-payload.v1.json")


PAYLOAD_VARIANTS = [
    {},
    {"state": "error", "error": "boom", "diff_id": None, "links": Links(monitor=MONITOR_URL)},
    {"state": "queued"},
    {"state": "Weird State!"},
    {"state": ""},
    {"name": None, "monitor_type": None, "owner": None, "tags": []},
    {"started_at": None, "links": Links()},
    {"started_at": datetime(2025, 3, 14, 9, 30, 0, 123456)},  # naive: read as UTC
    {"detected_at": datetime(2025, 3, 14, 11, 41, 7, 5, tzinfo=timezone(timedelta(hours=2)))},
    {"state": "error", "error": '<>&"\n😀' * 100},
    {"name": "😀 ünïcödé", "tags": ["ä", ""]},
]


@pytest.mark.parametrize("kwargs", PAYLOAD_VARIANTS)
def test_webhook_payload_matches_the_schema(
    validator: Draft202012Validator, kwargs: dict[str, Any]
) -> None:
    payload = webhook_payload.webhook_payload(notification(**kwargs))
    validator.validate(payload)
    assert set(payload) == {"type", "timestamp", "version", "data"}
    assert set(payload["data"]) == {"notification_id", "monitor", "run"}
    assert set(payload["data"]["monitor"]) == {"id", "name", "type", "tags", "owner", "url"}
    assert set(payload["data"]["run"]) == {
        "id",
        "state",
        "started_at",
        "diff_id",
        "diff_url",
        "error",
    }
    body = webhook_payload.webhook_body(notification(**kwargs))
    assert body.isascii() and json.loads(body) == payload


def test_webhook_payload_example() -> None:
    assert webhook_payload.webhook_payload(notification()) == {
        "type": "monitor.run.alert",
        "timestamp": "2025-03-14T09:41:07Z",
        "version": 1,
        "data": {
            "notification_id": "4521-98123-alert",
            "monitor": {
                "id": 4521,
                "name": "orders prod vs staging",
                "type": "diff",
                "tags": ["finance", "tier-1"],
                "owner": "data-team@example.com",
                "url": MONITOR_URL,
            },
            "run": {
                "id": 98123,
                "state": "alert",
                "started_at": "2025-03-14T09:30:00Z",
                "diff_id": 77001,
                "diff_url": DIFF_URL,
                "error": None,
            },
        },
    }


@pytest.mark.parametrize(
    ("state", "event_type"),
    [
        ("alert", "monitor.run.alert"),
        ("error", "monitor.run.error"),
        ("Weird State!", "monitor.run.weird_state"),
        ("", "monitor.run.unknown"),
        ("!!!", "monitor.run.unknown"),
        ("x" * 500, "monitor.run." + "x" * 64),
    ],
)
def test_webhook_event_type(state: str, event_type: str) -> None:
    assert webhook_payload.webhook_event_type(state) == event_type


@pytest.mark.parametrize("kwargs", PAYLOAD_VARIANTS + ABSURD)
def test_rendering_is_deterministic(kwargs: dict[str, Any]) -> None:
    first, again = notification(**kwargs), notification(**kwargs)
    assert webhook_payload.webhook_body(first) == webhook_payload.webhook_body(again)
    assert render.slack_message(first) == render.slack_message(again)
    assert console.console_text(first) == console.console_text(again)
    # A notification restored from the outbox renders the same bytes.
    restored = Notification.model_validate_json(first.model_dump_json())
    assert webhook_payload.webhook_body(restored) == webhook_payload.webhook_body(first)


@pytest.mark.parametrize(
    ("kwargs", "lines"),
    [
        (
            {},
            [
                "🚨 Alert: orders prod vs staging (diff)",
                "   run 98123 of monitor 4521 · started 2025-03-14 09:30:00 UTC",
                "   tags: finance, tier-1 · owner: data-team@example.com",
                f"   diff: {DIFF_URL}",
                f"   monitor: {MONITOR_URL}",
            ],
        ),
        (
            {
                "state": "error",
                "error": "line one\nline two",
                "name": None,
                "tags": [],
                "owner": None,
                "started_at": None,
                "links": Links(),
            },
            [
                "❌ Error: Monitor 4521 (diff)",
                "   run 98123 of monitor 4521 · started unknown",
                "   error: line one line two",
            ],
        ),
    ],
)
def test_console_text(kwargs: dict[str, Any], lines: list[str]) -> None:
    assert console.console_text(notification(**kwargs)).splitlines() == lines


def test_console_text_cuts_long_errors() -> None:
    text = console.console_text(notification(state="error", error="e" * HUGE))
    assert len(text) < 1_000


async def test_console_sink_writes_the_console_text() -> None:
    written: list[str] = []
    sink = ConsoleSink(written.append)
    await sink.send(notification())
    assert written == [console.console_text(notification())]
    assert sink.name == "console" and (await sink.check())[0].ok
