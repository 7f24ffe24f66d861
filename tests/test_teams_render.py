"""Teams rendering: every card validates against the vendored Adaptive Card 1.4 schema, says what
the Slack message says, shows outside text as written (never as Markdown) and stays under 28 KB."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from notifier.deliver.render import teams
from notifier.domain.models import Links, Notification
from tests.fakes.teams import ACTION_TYPES, SIZE_LIMIT, card_problem, card_validator
from tests.test_slack_render import Kind, make

VALIDATOR = card_validator()
HOSTILE = "**[click me](https://evil.example)** _x_ <at>all</at> &amp; \u202e\n- item"


def checked(message: teams.TeamsMessage) -> dict[str, Any]:
    """The card, after asserting everything Teams needs of the message."""
    encoded = message.encoded()
    assert len(encoded) <= teams.MESSAGE_BYTES_MAX < SIZE_LIMIT
    assert card_problem(message.body, VALIDATOR) is None
    [attachment] = message.body["attachments"]
    assert attachment["contentUrl"] is None
    card: dict[str, Any] = attachment["content"]
    assert card["version"] == "1.4"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    for action in card.get("actions", []):
        assert action["type"] in ACTION_TYPES
    return card


def texts(card: dict[str, Any]) -> list[str]:
    """Each block's text, its runs joined."""
    out = []
    for element in card["body"]:
        block = element["items"][0] if element["type"] == "Container" else element
        out.append("".join(run["text"] for run in block["inlines"]))
    return out


def with_monitor(n: Notification, **changes: Any) -> Notification:
    return n.model_copy(update={"monitor": n.monitor.model_copy(update=changes)})


def with_links(n: Notification) -> Notification:
    links = Links(
        monitor="https://app.datafold.com/monitors/4521",
        diff="https://app.datafold.com/datadiffs/9",
    )
    return n.model_copy(update={"links": links})


@pytest.mark.parametrize(
    ("kind", "state", "error", "headline", "says"),
    [
        ("run", "alert", None, "🚨 Alert: ", ["State: Alert", "Run ID: 98123"]),
        ("run", "error", "division by zero", "❌ Error: ", ["Error", "division by zero"]),
        ("run", "error", None, "❌ Error: ", ["Datafold gave no error message."]),
        ("run", "flaky", None, "\N{INFORMATION SOURCE} Flaky: ", ["State: Flaky"]),
        ("recovered", "alert", "gone", "✅ Recovered: ", ["Passing again. Was alert since"]),
        ("reminder", "alert", None, "⏰ Reminder: ", ["Still failing (alert)", "reminder 2."]),
    ],
)
def test_each_kind_is_a_card_saying_what_slack_says(
    kind: Kind, state: str, error: str | None, headline: str, says: list[str]
) -> None:
    n = with_links(make(kind=kind, state=state, error=error, reminders=2, name="orders"))
    card = checked(teams.teams_message(n))
    lines = texts(card)
    assert lines[0].startswith(headline) and "orders" in lines[0]
    joined = "\n".join(lines)
    for text in says:
        assert text in joined
    assert ("gone" in joined) is False  # a recovery shows no error
    assert [(a["title"], a["url"]) for a in card["actions"]] == [
        ("Open data diff", "https://app.datafold.com/datadiffs/9"),
        ("Open monitor", "https://app.datafold.com/monitors/4521"),
    ]


def test_no_links_no_buttons_and_other_schemes_dropped() -> None:
    n = make().model_copy(update={"links": Links(monitor="javascript:alert(1)", diff=None)})
    assert "actions" not in checked(teams.teams_message(n))


@pytest.mark.parametrize("field", ["name", "owner", "monitor_type"])
def test_a_hostile_value_is_only_ever_in_a_plain_text_run(field: str) -> None:
    n = with_monitor(make(error=HOSTILE), **{field: HOSTILE}, tags=[HOSTILE])
    card = checked(teams.teams_message(n))
    shown = [
        run for element in card["body"] for run in element["inlines"] if "click me" in run["text"]
    ]
    assert len(shown) >= 3  # the field, the tags and the error
    for run in shown:
        assert run["type"] == "TextRun"  # TextRuns are never read as Markdown
    # No TextBlock (the Markdown-reading element) anywhere in the card.
    assert '"TextBlock"' not in teams.encode(card).decode()


def test_a_huge_error_is_cut_to_fit_and_says_so() -> None:
    n = with_links(make(state="error", error="x" * 2_000_000))
    card = checked(teams.teams_message(n))
    joined = "\n".join(texts(card))
    assert "truncated: 1,99" in joined and "more characters, see Datafold" in joined


def test_the_worst_case_still_fits() -> None:
    wide = "\U0001f525" * 5000  # four UTF-8 bytes each
    url = "https://app.datafold.com/" + "a" * (teams.URL_MAX - 30)
    n = make(state="error", error=wide * 100, name=wide, owner=wide)
    n = with_monitor(n, monitor_type=wide, tags=[wide] * 50)
    n = n.model_copy(update={"links": Links(monitor=url, diff=url)})
    card = checked(teams.teams_message(n))
    assert len(card["actions"]) == 2


def test_a_digest_is_one_card_listing_each_event_most_severe_first() -> None:
    batch = [
        make(1, 10, kind="recovered", name="alpha"),
        make(2, 20, state="alert", name="beta", error="boom"),
        make(2, 21, kind="reminder", name="beta"),
    ]
    [message] = teams.teams_digest(batch)
    assert message.ids == {n.id for n in batch}
    lines = texts(checked(message))
    assert lines[0] == "🚨 3 notifications from 2 monitors"
    assert lines[1].startswith("beta") and "run 20" in lines[1] and "boom" in lines[1]
    assert "Reminder — run 21" in lines[2]
    assert lines[3].startswith("alpha") and "Recovered — run 10" in lines[3]


def test_a_storm_digest_splits_into_cards_that_each_fit_and_lose_nothing() -> None:
    batch = [
        with_monitor(make(m, 100 + m, error="e" * 5000), name=HOSTILE * 20) for m in range(400)
    ]
    messages = teams.teams_digest(batch)
    assert len(messages) > 1
    for message in messages:
        checked(message)
    for message, following in itertools.pairwise(messages):
        card = message.body["attachments"][0]["content"]
        first = following.body["attachments"][0]["content"]["body"][1]
        fuller = {**card, "body": [*card["body"], first]}
        assert len(teams.encode(teams.envelope(fuller))) > teams.MESSAGE_BYTES_MAX  # no early split
    seen = [nid for message in messages for nid in message.ids]
    assert sorted(seen) == sorted(n.id for n in batch)
    assert texts(messages[1].body["attachments"][0]["content"])[0].endswith("(continued)")


def test_no_digest_for_nothing() -> None:
    assert teams.teams_digest([]) == []


def test_the_fake_refuses_a_card_above_1_4_or_with_an_unknown_type() -> None:
    message = teams.teams_message(make()).body
    card = message["attachments"][0]["content"]
    assert card_problem(message, VALIDATOR) is None
    for change in (
        {"version": "1.5"},
        {"body": [*card["body"], {"type": "Carousel", "pages": []}]},
        {"actions": [{"type": "Action.Launch", "url": "https://x.example"}]},
    ):
        bad = {
            **message,
            "attachments": [{**message["attachments"][0], "content": {**card, **change}}],
        }
        assert card_problem(bad, VALIDATOR) is not None, change
    assert card_problem({"text": "hi"}, VALIDATOR) is not None
    assert card_problem({**message, "type": "card"}, VALIDATOR) is not None


def test_direction_overrides_are_dropped_and_a_lone_surrogate_still_encodes() -> None:
    n = with_monitor(make(error="\ud800 bad"), name="abc\u202edcba\u2066x")
    message = teams.teams_message(n)
    card = checked(message)
    assert texts(card)[0].endswith("abcdcbax")
    assert "? bad" in message.encoded().decode()
