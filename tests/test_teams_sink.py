"""The Teams sink against the strict fake Workflows webhook (tests/fakes/teams.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest

from notifier.deliver.render.teams import teams_digest, teams_message
from notifier.deliver.sink import DeliveryError, DigestSink
from notifier.deliver.sinks.teams import TeamsSink
from notifier.domain.models import MessageRef
from tests.fakes.teams import SIGNATURE, FakeTeams, Reply
from tests.test_slack_render import make

NOW = datetime(2025, 3, 14, 10, 0, tzinfo=UTC)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeTeams, str]]:
    teams = FakeTeams()
    async with teams.serve() as url:
        yield teams, url


def sink_for(url: str, session: aiohttp.ClientSession, **options: object) -> TeamsSink:
    return TeamsSink(url, session=session, name="teams-ops", clock=lambda: NOW, **options)  # type: ignore[arg-type]


async def test_a_card_is_posted_and_202_is_success(
    fake: tuple[FakeTeams, str], session: aiohttp.ClientSession
) -> None:
    teams, url = fake
    sink = sink_for(url, session)
    thread = MessageRef(channel="c", ts="1")
    assert await sink.send(make(kind="reminder", reminders=1), thread) is None
    [card] = teams.cards
    assert card["version"] == "1.4" and teams.refused == []
    assert SIGNATURE not in repr(sink)


@pytest.mark.parametrize(
    ("reply", "whole", "retry_after"),
    [
        (Reply(429, {"Retry-After": "30"}), True, 30.0),
        (Reply(429, {"Retry-After": "Fri, 14 Mar 2025 10:02:00 GMT"}), True, 120.0),
        (Reply(500), True, None),
        (Reply(502, {"Retry-After": "5"}), True, 5.0),
        (Reply(404), True, None),  # the flow is gone: every later card would fail too
        (Reply(401), True, None),
        (Reply(400), False, None),  # this card refused: the next ones are still tried
        (Reply(413), False, None),
    ],
)
async def test_a_refusal_is_a_delivery_error_shaped_by_its_status(
    fake: tuple[FakeTeams, str],
    session: aiohttp.ClientSession,
    reply: Reply,
    whole: bool,
    retry_after: float | None,
) -> None:
    teams, url = fake
    teams.reply(reply)
    with pytest.raises(DeliveryError) as caught:
        await sink_for(url, session).send(make())
    error = caught.value
    assert (error.whole_destination, error.retry_after) == (whole, retry_after)
    assert str(error) == f"teams-ops: Teams webhook answered HTTP {reply.status}"
    assert teams.cards == []


async def test_a_timeout_is_a_one_line_error_without_the_url(
    fake: tuple[FakeTeams, str], session: aiohttp.ClientSession
) -> None:
    teams, url = fake
    teams.reply(Reply(202, delay=2))
    with pytest.raises(DeliveryError) as caught:
        await sink_for(url, session, timeout=0.2).send(make())
    assert caught.value.whole_destination
    assert str(caught.value) == "teams-ops: could not reach the Teams webhook: TimeoutError"


async def test_an_unreachable_host_names_no_url(session: aiohttp.ClientSession) -> None:
    url = f"http://127.0.0.1:9/workflows/x?sig={SIGNATURE}"
    with pytest.raises(DeliveryError) as caught:
        await sink_for(url, session).send(make())
    assert SIGNATURE not in str(caught.value) and "127.0.0.1" not in str(caught.value)
    [result] = await sink_for(url, session).check()
    assert not result.ok and SIGNATURE not in result.detail


async def test_a_digest_posts_its_cards_and_reports_what_went_out(
    fake: tuple[FakeTeams, str], session: aiohttp.ClientSession
) -> None:
    teams, url = fake
    sink = sink_for(url, session, digest_threshold=3)
    assert isinstance(sink, DigestSink) and sink.digest_threshold == 3
    small = [make(m, 100 + m) for m in range(4)]
    await sink.send_digest(small)
    [card] = teams.cards
    assert "4 notifications from 4 monitors" in card["fallbackText"]

    teams.cards.clear()
    storm = [make(m, 200 + m, error="e" * 140, name="n" * 250) for m in range(200)]
    cards = teams_digest(storm)
    assert len(cards) > 2
    teams.reply(Reply(202), Reply(503))
    with pytest.raises(DeliveryError) as caught:
        await sink.send_digest(storm)
    assert caught.value.whole_destination and len(teams.cards) == 1
    assert caught.value.delivered == cards[0].ids


async def test_check_touches_the_host_and_posts_nothing(
    fake: tuple[FakeTeams, str], session: aiohttp.ClientSession
) -> None:
    teams, url = fake
    [result] = await sink_for(url, session).check()
    assert result.ok and "reachable" in result.detail and "not tested" in result.detail
    assert teams.heads == 1 and teams.cards == [] and teams.refused == []
    assert SIGNATURE not in result.detail


async def test_the_fake_refuses_a_message_of_28_kb_with_413(
    fake: tuple[FakeTeams, str], session: aiohttp.ClientSession
) -> None:
    teams, url = fake
    body = teams_message(make()).body
    body["attachments"][0]["content"]["body"][0]["inlines"][0]["text"] = "x" * 28 * 1024
    async with session.post(url, json=body) as response:
        assert response.status == 413
    assert teams.cards == [] and teams.refused[0][0] == 413
