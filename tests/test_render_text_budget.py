"""A digest message keeps the text of its blocks below what Slack refuses as `msg_blocks_too_long`.

Slack does not document that limit (reports put it between 11,341 and 13,297 characters; Slack's
SDK team speaks of 12,000); fifty sections of 3,000 characters each pass every documented limit
and are far past it. A storm's digest is exactly when that would bite.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.deliver.render import blockkit, digest
from notifier.domain.models import Notification
from tests.test_slack_render import (
    assert_all_within_limits,
    digest_events,
    make,
    mention_lists,
    notifications,
)


def blocks_text(blocks: list[dict[str, Any]]) -> int:
    """Characters of text in all the blocks (every text object's), counted as the test sees them."""
    total = 0
    for block in blocks:
        stack: list[Any] = [block]
        while stack:
            value = stack.pop()
            if isinstance(value, dict):
                if isinstance(value.get("text"), str):
                    total += len(value["text"])
                stack += value.values()
            elif isinstance(value, list):
                stack += value
    return total


def storm(count: int) -> list[Notification]:
    """`count` error notifications of as many monitors, with long names and errors."""
    batch = [
        make(
            m,
            1000 + m,
            state="error",
            error="relation analytics.orders_staging does not exist " * 10,
            name=f"monitor {m} " + "n" * 120,
        )
        for m in range(1, count + 1)
    ]
    return [n.model_copy(update={"id": f"n{i}"}) for i, n in enumerate(batch)]


def test_a_storms_digest_is_split_by_text_and_loses_nothing() -> None:
    batch = storm(80)
    messages = digest.slack_digest(batch, mentions=["@here"])
    sizes = [blocks_text(m.blocks) for m in messages]
    assert all(size <= blockkit.BLOCKS_TEXT_MAX for size in sizes), sizes
    assert sum(sizes) > 2 * blockkit.BLOCKS_TEXT_MAX  # it took three messages or more
    assert_all_within_limits(messages)
    events = digest_events(messages)
    assert sorted(run for _, run in events) == sorted(n.event.run_id for n in batch)
    assert set().union(*(m.completes for m in messages)) == {n.id for n in batch}
    assert messages[0].text.startswith("<!here> ")
    assert messages[1].blocks[0]["elements"][0]["text"] == f"(continued, part 2 of {len(messages)})"


def test_a_small_digest_stays_one_message() -> None:
    [message] = digest.slack_digest(storm(5))
    assert blocks_text(message.blocks) <= blockkit.BLOCKS_TEXT_MAX


@settings(max_examples=60, deadline=None)
@given(
    st.lists(notifications(), min_size=1, max_size=120),
    mention_lists(300),
)
def test_any_digest_message_keeps_its_text_within_the_budget(
    batch: list[Notification], mentions: list[str]
) -> None:
    messages = digest.slack_digest(batch, mentions=mentions)
    assert all(blocks_text(m.blocks) <= blockkit.BLOCKS_TEXT_MAX for m in messages)
    assert_all_within_limits(messages)
