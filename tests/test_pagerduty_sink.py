"""The PagerDuty sink against the spec-enforcing fake (tests/fakes/pagerduty.py), and the fake
shown strict: it refuses what PagerDuty's OpenAPI and documented limits refuse."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest

from notifier.deliver.render.pagerduty import event_body, pagerduty_event
from notifier.deliver.sink import DeliveryError
from notifier.deliver.sinks.pagerduty import PagerDutySink
from notifier.route.destinations import PAGERDUTY_SEVERITY
from tests.fakes.pagerduty import ENQUEUE_PATH, SPEC, FakePagerDuty, Reply
from tests.test_pagerduty_render import KEY, note

NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakePagerDuty, str]]:
    pagerduty = FakePagerDuty()
    async with pagerduty.serve() as url:
        yield pagerduty, url


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def make_sink(
    url: str, session: aiohttp.ClientSession, *, key: str = KEY, timeout: float = 5
) -> PagerDutySink:
    return PagerDutySink(
        key, session=session, name="pd", url=url + ENQUEUE_PATH, timeout=timeout, clock=lambda: NOW
    )


async def test_an_incident_triggers_retriggers_and_resolves_one_alert(
    fake: tuple[FakePagerDuty, str], session: aiohttp.ClientSession
) -> None:
    pagerduty, url = fake
    sink = make_sink(url, session)
    for kind in ("alert", "error", "reminder", "recovered"):
        assert await sink.send(note(kind)) is None  # type: ignore[arg-type]
    actions = [(e["event_action"], e["dedup_key"]) for e in pagerduty.events]
    assert actions == [
        ("trigger", "7-100-alert"),
        ("trigger", "7-100-alert"),
        ("trigger", "7-100-alert"),
        ("resolve", "7-100-alert"),
    ]
    assert pagerduty.refused == []
    assert pagerduty.events[1]["payload"]["severity"] == "critical"


async def test_a_400_refuses_this_event_only_and_names_no_secret(
    fake: tuple[FakePagerDuty, str], session: aiohttp.ClientSession
) -> None:
    pagerduty, url = fake
    sink = make_sink(url, session, key="short-but-secret-key")  # PagerDuty wants 32 characters
    with pytest.raises(DeliveryError) as raised:
        await sink.send(note("alert"))
    error = raised.value
    assert not error.whole_destination and error.retry_after is None
    assert error.permanent  # PagerDuty: a 400 is not to be retried
    assert "HTTP 400" in str(error) and "routing_key must be 32 characters" in str(error)
    assert "short-but-secret-key" not in str(error) and "\n" not in str(error)
    assert len(pagerduty.refused) == 1 and pagerduty.events == []


@pytest.mark.parametrize(
    ("reply", "retry_after"),
    [
        (Reply(429, {"Retry-After": "30"}), 30.0),
        (Reply(500), None),
        (Reply(503, {"Retry-After": "Sun, 29 Nov 2026 09:02:00 GMT"}), 120.0),
    ],
)
async def test_rate_limits_and_server_errors_hold_the_whole_destination(
    fake: tuple[FakePagerDuty, str],
    session: aiohttp.ClientSession,
    reply: Reply,
    retry_after: float | None,
) -> None:
    pagerduty, url = fake
    pagerduty.reply(reply)
    sink = make_sink(url, session)
    with pytest.raises(DeliveryError) as raised:
        await sink.send(note("alert"))
    assert raised.value.whole_destination and not raised.value.permanent
    assert raised.value.retry_after == retry_after
    assert str(raised.value) == f"pd: HTTP {reply.status}"
    await sink.send(note("alert"))  # the retry: same key, one alert
    assert [e["dedup_key"] for e in pagerduty.events] == ["7-100-alert"]


async def test_a_timeout_is_a_whole_destination_failure_naming_no_url(
    fake: tuple[FakePagerDuty, str], session: aiohttp.ClientSession
) -> None:
    pagerduty, url = fake
    pagerduty.reply(Reply(202, delay=2))
    sink = make_sink(url, session, timeout=0.2)
    with pytest.raises(DeliveryError) as raised:
        await sink.send(note("alert"))
    assert raised.value.whole_destination
    assert str(raised.value) == "pd: could not reach PagerDuty: TimeoutError"


async def test_an_unreachable_host_fails_the_destination(session: aiohttp.ClientSession) -> None:
    sink = make_sink("http://127.0.0.1:1", session)
    with pytest.raises(DeliveryError, match="could not reach PagerDuty") as raised:
        await sink.send(note("alert"))
    assert raised.value.whole_destination and "127.0.0.1" not in str(raised.value)


async def test_check_probes_the_host_and_sends_no_event(
    fake: tuple[FakePagerDuty, str], session: aiohttp.ClientSession
) -> None:
    pagerduty, url = fake
    [result] = await make_sink(url, session).check()
    assert result.ok and "no event was sent" in result.detail and KEY not in result.detail
    assert pagerduty.requests == [("GET", "/")] and pagerduty.events == []

    [bad_key] = await make_sink(url, session, key="not-a-key").check()
    assert not bad_key.ok and "32" in bad_key.detail and "not-a-key" not in bad_key.detail
    [down] = await make_sink("http://127.0.0.1:1", session).check()
    assert not down.ok and "unreachable" in down.detail


async def test_the_repr_shows_no_routing_key(session: aiohttp.ClientSession) -> None:
    sink = PagerDutySink(KEY, session=session, name="pd")
    assert KEY not in repr(sink) and "pd" in repr(sink)


def _body(**changes: object) -> bytes:
    event = pagerduty_event(note("alert"), routing_key=KEY, severities=PAGERDUTY_SEVERITY)
    event.update(changes)
    return event_body(event)


def _without_summary() -> bytes:
    event = pagerduty_event(note("alert"), routing_key=KEY, severities=PAGERDUTY_SEVERITY)
    del event["payload"]["summary"]
    return event_body(event)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (_body(event_action="escalate"), "event_action: 'escalate' is not one of"),
        (_without_summary(), "payload: 'summary' is a required property"),
        (_body(payload={"summary": "s", "source": "x", "severity": "high"}), "severity"),
        (_body(dedup_key="k" * 256), "dedup_key is longer than 255"),
        (_body(event_action="resolve", dedup_key=""), "dedup_key is required for resolve"),
        (_body(payload=None), "payload: None is not of type 'object'"),
        (b"{not json", "JSON parse error"),
        (_body(client="x" * 600_000), "over 524288"),
    ],
)
async def test_the_fake_refuses_what_pagerduty_refuses(
    fake: tuple[FakePagerDuty, str], session: aiohttp.ClientSession, body: bytes, problem: str
) -> None:
    pagerduty, url = fake
    async with session.post(url + ENQUEUE_PATH, data=body) as response:
        answer = await response.json()
        assert response.status == 400
    assert answer["status"] == "invalid event" and answer["message"]
    assert any(problem in line for line in answer["errors"]), answer["errors"]
    assert pagerduty.events == []


async def test_the_fake_accepts_pagerdutys_own_example(
    fake: tuple[FakePagerDuty, str], session: aiohttp.ClientSession
) -> None:
    _, url = fake
    spec = json.loads(SPEC.read_text())
    examples = spec["paths"]["/enqueue"]["post"]["requestBody"]["content"]["application/json"]
    assert examples["examples"]
    for example in examples["examples"].values():
        event = {**example["value"], "routing_key": KEY}
        async with session.post(url + ENQUEUE_PATH, json=event) as response:
            assert response.status == 202, await response.text()
            assert (await response.json())["status"] == "success"
