"""Notifications as a title and a Markdown body (render/markdown.py): what each kind says, and
outside text that stays text, checked on the Markdown and on the HTML Apprise makes of it."""

from __future__ import annotations

import pytest
from apprise.conversion.format import convert_between

from notifier.deliver.render.markdown import ERROR_MAX, escape, markdown_message
from tests.test_slack_render import make

HOSTILE_NAMES = [
    "**[click](https://evil.example)**",
    "![x](https://evil.example/pixel.png)",
    "<img src=x onerror=alert(1)>",
    "<b>bold</b> &lt;entity&gt;",
    "@everyone and @here",
    "`code` ~~gone~~ | a | b |",
    "line one\n# heading\n- item\n\n> quote",
    "bell\x07 escape\x1b[31m nul\x00 del\x7f",
    "reversed \u202eevil\u202c text",
    "back\\slash \\*",
]


def test_an_alert_names_the_monitor_the_state_and_the_links() -> None:
    message = markdown_message(make(name="orders prod vs staging", owner="ana"))
    assert message.title == "🚨 Alert: orders prod vs staging"
    assert message.notify_type == "failure"
    body = message.body
    assert "- **Monitor:** orders prod vs staging (\\#4521)" in body
    assert "- **State:** Alert" in body and "- **Run ID:** 98123" in body
    assert "- **Owner:** ana" in body
    assert "[Open data diff](https://app.datafold.com/datadiffs/98123/overview)" in body
    assert "[Open monitor](https://app.datafold.com/monitors/4521)" in body
    assert "**Error**" not in body


def test_an_error_shows_its_message_in_a_code_block() -> None:
    body = markdown_message(make(state="error", error="division by zero")).body
    assert "**Error**\n```text\ndivision by zero\n```" in body
    no_message = markdown_message(make(state="error")).body
    assert "_Datafold gave no error message._" in no_message


def test_a_recovery_says_what_failed_and_since_when() -> None:
    message = markdown_message(make(kind="recovered", error="stale error"))
    assert message.title == "✅ Recovered: monitor 4521"
    assert message.notify_type == "success"
    assert message.body.startswith("Passing again. Was alert since 2025-03-14 09:30:00 UTC")
    assert "stale error" not in message.body


def test_a_reminder_counts_itself() -> None:
    message = markdown_message(make(kind="reminder", reminders=2))
    assert message.title == "⏰ Reminder: monitor 4521"
    assert message.notify_type == "warning"
    assert message.body.startswith("Still failing (alert) since 2025-03-14 09:30:00 UTC")
    assert "This is reminder 2." in message.body


def test_a_long_error_is_cut_and_says_so() -> None:
    body = markdown_message(make(state="error", error="x" * (ERROR_MAX + 500))).body
    assert "x" * ERROR_MAX in body and "x" * (ERROR_MAX + 1) not in body
    assert "truncated: 500 more characters" in body


def test_an_error_cannot_close_its_code_block() -> None:
    error = "before\n```\n**bold** <b>x</b>\n````\nafter"
    html = convert_between("markdown", "html", markdown_message(make(error=error)).body)
    assert "<strong>bold</strong>" not in html and "<b>" not in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_stay_text_on_one_line(name: str) -> None:
    message = markdown_message(make(name=name))
    first = message.body.splitlines()[0]
    assert first.startswith("- **Monitor:** ") and first.endswith("(\\#4521)")
    for text in (message.title, message.body):
        assert not any(c in text for c in "\x00\x07\x1b\x7f\u202e\u202c")
    for text in (message.title, first):
        html = convert_between("markdown", "html", text)
        # Only the label's own emphasis becomes markup: no link, image, tag, heading or code.
        for markup in ("<a ", "<img", "<b>", "<h1", "<code", "<del", "<table", "<blockquote"):
            assert markup not in html
        assert html.count("<strong>") == (1 if text is first else 0)


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("orders_prod", "orders\\_prod"),
        ("[a](b)", "\\[a\\]\\(b\\)"),
        ("<@123>", "\\<\\@123\\>"),
        ("a\nb\tc", "a b c"),
        ("plain words, 1.5 - ok", "plain words, 1.5 - ok"),
    ],
)
def test_escape(text: str, escaped: str) -> None:
    assert escape(text) == escaped


def test_links_cannot_break_out_of_their_target() -> None:
    n = make()
    hostile = n.links.model_copy(update={"diff": "https://app.example/x) [evil](https://evil"})
    body = markdown_message(n.model_copy(update={"links": hostile})).body
    html = convert_between("markdown", "html", body)
    assert "(https://app.example/x%29%20%5Bevil%5D%28https://evil)" in body
    assert html.count("<a ") == 2 and 'href="https://evil' not in html


def test_escaped_text_reads_as_written_once_apprise_makes_html_of_it() -> None:
    """Apprise 2.1+ takes a backslash before any punctuation (CommonMark); 2.0 showed some."""
    html = convert_between("markdown", "html", escape("<b>x</b> @everyone [a](b) *c* a_b #1"))
    assert html == "<p>&lt;b&gt;x&lt;/b&gt; @everyone [a](b) *c* a_b #1</p>"
