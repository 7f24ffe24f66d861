"""The Apprise sink through Apprise's generic `json://` scheme against a real local HTTP server:
what arrives, failures, the time bound, `check`, and the URL in no repr, error or log line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from notifier.deliver.sink import DeliveryError
from notifier.deliver.sinks.apprise import LOG_REDACTOR, AppriseSink, PartsRedactor
from notifier.deliver.sinks.context import SinkContext
from notifier.deliver.sinks.registry import SINK_FACTORIES
from notifier.deliver.sinks.slack_transport import ChannelPacer
from notifier.route.destinations import AppriseDestination
from notifier.route.routes_file import RoutesError
from notifier.run.logs import configure_logging
from tests.test_slack_render import make

TOKEN = "s3cr3tAppriseT0ken"
QUERY_TOKEN = "q7u3ryT0k3n99"
PASSWORD = "pa55w0rdApprise"

#: Apprise's email plugin imports `imghdr` (deprecated in Python 3.11) when it loads its plugins.
pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")


@dataclass
class JsonReceiver:
    """Takes Apprise's json:// posts: records each body and answers the scripted statuses
    (then 200). With `hold` set, a request waits for it before answering."""

    posts: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    hold: asyncio.Event | None = None

    async def _post(self, request: web.Request) -> web.Response:
        self.paths.append(request.path_qs)
        self.posts.append(await request.json())
        if self.hold is not None:
            await self.hold.wait()
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        """Yields the json:// URL to it, with a token in the path, a query and a password."""
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._post)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            yield f"json://notifier:{PASSWORD}@127.0.0.1:{port}/hooks/{TOKEN}?-key={QUERY_TOKEN}"
        finally:
            await runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[JsonReceiver, str]]:
    fake = JsonReceiver()
    async with fake.serve() as url:
        yield fake, url


async def test_an_alert_arrives_as_a_title_and_a_markdown_body(
    receiver: tuple[JsonReceiver, str],
) -> None:
    fake, url = receiver
    sink = AppriseSink(url, name="chat", timeout=5)
    assert await sink.send(make(name="orders prod vs staging", state="error", error="boom")) is None
    [post] = fake.posts
    assert post["title"] == "❌ Error: orders prod vs staging"
    assert post["type"] == "failure"
    body = post["message"]
    assert "- **Monitor:** orders prod vs staging (\\#4521)" in body
    assert "- **State:** Error" in body and "```text\nboom\n```" in body
    assert "[Open data diff](https://app.datafold.com/datadiffs/98123/overview)" in body
    assert fake.paths == [f"/hooks/{TOKEN}?key={QUERY_TOKEN}"]


async def test_a_recovery_and_a_reminder_are_messages_of_their_own(
    receiver: tuple[JsonReceiver, str],
) -> None:
    fake, url = receiver
    sink = AppriseSink(url, name="chat", timeout=5)
    await sink.send(make(kind="recovered"))
    await sink.send(make(kind="reminder", reminders=3))
    recovery, reminder = fake.posts
    assert (recovery["title"], recovery["type"]) == ("✅ Recovered: monitor 4521", "success")
    assert recovery["message"].startswith("Passing again. Was alert since")
    assert (reminder["title"], reminder["type"]) == ("⏰ Reminder: monitor 4521", "warning")
    assert "This is reminder 3." in reminder["message"]


async def test_a_refusal_is_a_delivery_error_for_the_whole_destination(
    receiver: tuple[JsonReceiver, str],
) -> None:
    fake, url = receiver
    fake.statuses = [500]
    sink = AppriseSink(url, name="chat", timeout=5)
    with pytest.raises(DeliveryError) as error:
        await sink.send(make())
    assert error.value.whole_destination and not error.value.permanent
    assert error.value.destination == "chat" and "JSON" in error.value.reason
    await sink.send(make())  # the next attempt goes through
    assert len(fake.posts) == 2


async def test_an_unreachable_service_is_a_delivery_error() -> None:
    async with JsonReceiver().serve() as url:
        pass  # closed: nothing listens there any more
    with pytest.raises(DeliveryError) as error:
        await AppriseSink(url, name="chat", timeout=5).send(make())
    assert error.value.whole_destination


async def test_the_wait_is_bounded_by_the_timeout(receiver: tuple[JsonReceiver, str]) -> None:
    fake, url = receiver
    fake.hold = asyncio.Event()
    sink = AppriseSink(url, name="chat", timeout=0.3)
    try:
        with pytest.raises(DeliveryError) as error:
            await sink.send(make())
        assert "did not answer within 0.3 s" in error.value.reason
        assert error.value.whole_destination
    finally:
        fake.hold.set()  # the request Apprise's thread still waits on ends


async def test_check_sends_nothing_and_says_what_it_cannot_know(
    receiver: tuple[JsonReceiver, str],
) -> None:
    fake, url = receiver
    [result] = await AppriseSink(url, name="chat", timeout=5).check()
    assert result.ok and result.name == "chat"
    assert "parses as JSON" in result.detail and "not tested" in result.detail
    assert fake.posts == [] and TOKEN not in result.detail


@pytest.mark.parametrize(
    "url", [f"nosuchservice://{TOKEN}", f"discord://{TOKEN}", f"json://{TOKEN}:notaport/x"]
)
def test_a_url_apprise_cannot_use_is_one_line_naming_the_destination(url: str) -> None:
    with pytest.raises(RoutesError) as error:
        AppriseSink(url, name="chat")
    message = str(error.value)
    assert "'chat'" in message and "Apprise does not recognise" in message
    assert "\n" not in message and TOKEN not in message


async def test_the_registry_builds_it_from_the_destination(
    receiver: tuple[JsonReceiver, str],
) -> None:
    _, url = receiver
    async with aiohttp.ClientSession() as session:
        context = SinkContext(session=session, timeout=7.5, slack_pacer=ChannelPacer())
        destination = AppriseDestination(url=SecretStr(url))
        sink = SINK_FACTORIES["apprise"]("chat", destination, context)
    assert isinstance(sink, AppriseSink)
    assert (sink.name, sink.service, sink._timeout) == ("chat", "JSON", 7.5)
    assert TOKEN not in repr(sink) and PASSWORD not in repr(sink)


async def test_nothing_apprise_logs_shows_a_secret_even_at_debug(
    receiver: tuple[JsonReceiver, str],
) -> None:
    fake, url = receiver
    fake.statuses = [500]
    stream = io.StringIO()
    destination = AppriseDestination(url=SecretStr(url))
    secrets = [s.get_secret_value() for s in destination.secret_values()]
    configure_logging(level="debug", fmt="json", secrets=secrets, stream=stream)
    try:
        sink = AppriseSink(url, name="chat", timeout=5)
        with pytest.raises(DeliveryError):
            await sink.send(make())
        await sink.send(make())
        async with JsonReceiver().serve() as gone:
            pass
        with pytest.raises(DeliveryError):  # requests' exception text, at debug
            await AppriseSink(gone, name="gone", timeout=5).send(make())
    finally:
        configure_logging(level="info", fmt="json", stream=io.StringIO())
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    loggers = {line.get("logger") for line in lines}
    assert "apprise" in loggers and "urllib3.connectionpool" in loggers
    assert any(line["level"] == "debug" and "POST URL" in line["event"] for line in lines)
    assert any("[REDACTED]" in line["event"] for line in lines)
    for secret in (TOKEN, QUERY_TOKEN, PASSWORD, url):
        assert secret not in stream.getvalue()


def test_apprise_logs_reach_the_log_pipeline_through_the_filter(
    receiver: tuple[JsonReceiver, str],
) -> None:
    """Apprise logs through the standard `apprise` logger (propagating to the root), so the
    redacting pipeline sees every line; it adds only a NullHandler of its own. Each logger of
    Apprise, requests and urllib3 carries the filter that blanks the URL's parts."""
    AppriseSink(receiver[1], name="chat")
    apprise_logger = logging.getLogger("apprise")
    assert apprise_logger.propagate
    assert all(isinstance(h, logging.NullHandler) for h in apprise_logger.handlers)
    for name in ("apprise", "urllib3.connectionpool", "urllib3.poolmanager", "requests"):
        assert LOG_REDACTOR in logging.getLogger(name).filters


def test_the_filter_blanks_parts_in_messages_arguments_and_tracebacks() -> None:
    redactor = PartsRedactor()
    redactor.add([TOKEN, QUERY_TOKEN])
    try:
        raise ValueError(f"https://api.example/bot{TOKEN}/send")
    except ValueError:
        record = logging.LogRecord(
            "apprise", logging.DEBUG, __file__, 1, "POST %s?k=%s", ("/x", QUERY_TOKEN), None
        )
        record.exc_info = sys.exc_info()
    assert redactor.filter(record)
    text = record.getMessage()
    assert text.startswith("POST /x?k=[REDACTED]") and "bot[REDACTED]/send" in text
    assert TOKEN not in text and record.exc_info is None
