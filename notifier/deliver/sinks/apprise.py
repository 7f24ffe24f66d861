"""The Apprise sink: the long tail of fire-and-forget services (Discord, Telegram, Pushover, ...)
through one Apprise URL, with the message as Markdown (`render.markdown`).

Apprise is an optional extra, imported when an `apprise` destination is built: without it, that
build fails with one line naming the destination and the pip command. Apprise returns no message
IDs (nothing is updated or threaded: `send` returns None) and reports only success or failure,
so every failure stops the destination for the cycle and the outbox keeps the notification.

The URL holds the service's credentials: it is in no name, error or repr. The log pipeline
redacts the URL; Apprise and its HTTP client rebuild other URLs from its parts (Telegram's bot
token in `…/bot<token>/sendMessage`), so a filter on their loggers blanks those parts out of
every line they log, at any level.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Iterable
from typing import Any, Final

from notifier.deliver.render.markdown import MarkdownMessage, markdown_message
from notifier.deliver.sink import CheckResult, DeliveryError
from notifier.deliver.sinks.context import SinkContext
from notifier.domain.models import MessageRef, Notification
from notifier.route.destinations import AppriseDestination
from notifier.route.destinations.apprise import url_secret_parts
from notifier.route.routes_file import RoutesError

INSTALL_HINT = "pip install 'datafold-notifier[apprise]'"
#: The logger families that may show an Apprise URL's parts: Apprise's own and its HTTP
#: client's (a filter on a logger does not apply to its children, so each logger gets it).
THIRD_PARTY_LOGGERS: Final = ("apprise", "requests", "urllib3")
REDACTED: Final = "[REDACTED]"


class PartsRedactor(logging.Filter):
    """Rewrites each record of the loggers it is on with every known secret part blanked out
    (a traceback included, as text), before any handler sees it."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: list[str] = []

    def add(self, secrets: Iterable[str]) -> None:
        """Blank these too (longest first, so a part inside another is not matched first)."""
        self._secrets = sorted({*self._secrets, *secrets}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        try:
            text = record.getMessage()
        except Exception:  # a library's bad format string: its raw message will do
            text = str(record.msg)
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            record.exc_info, record.exc_text = None, None
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        record.msg, record.args = text, ()
        return True


#: One filter for the process: every Apprise destination's parts, on every logger above.
LOG_REDACTOR: Final = PartsRedactor()


def redact_third_party_logs(url: str) -> None:
    """Blank the URL and its credential-like parts out of what Apprise and requests log: the
    filter goes on each logger of theirs that exists by now. Their loggers appear as their
    modules are imported (requests with Apprise's plugins), so the sink calls this again after
    loading them and before each send."""
    LOG_REDACTOR.add(part for part in (url, *url_secret_parts(url)) if len(part) >= 6)
    # A copy: a plugin thread importing a module may add a logger meanwhile.
    names = {*THIRD_PARTY_LOGGERS, *logging.root.manager.loggerDict.copy()}
    for name in names:
        if name.split(".", 1)[0] in THIRD_PARTY_LOGGERS:
            logging.getLogger(name).addFilter(LOG_REDACTOR)  # no-op when already there


def load_apprise(destination: str) -> Any:
    """The `apprise` module, or a `RoutesError` naming the destination and the pip command."""
    try:
        import apprise
    except ImportError:
        raise RoutesError(
            f'destination {destination!r} is type = "apprise", which needs the apprise extra: '
            f"{INSTALL_HINT}"
        ) from None
    return apprise


class AppriseSink:
    """Sends each notification through one Apprise service (`async_notify`, Markdown).

    Apprise runs its (synchronous) plugins in threads: the wait is bounded by `timeout`, but a
    thread cannot be cancelled, so a request past the timeout may still arrive, and its retry next
    cycle be a second copy. Apprise's own socket timeouts (4 s connect, 4 s read by default; its
    `cto`/`rto` URL options) end the thread. It uses its own HTTP client: the process's proxy
    variables apply, NOTIFIER_CA_BUNDLE does not.
    """

    def __init__(self, url: str, *, name: str, timeout: float = 30) -> None:
        self.name = name
        self._timeout = timeout
        self._apprise = load_apprise(name)
        redact_third_party_logs(url)  # before Apprise first parses (and logs) the URL
        # In memory only: some plugins cache what they learn (Telegram's chat ID) on disk.
        asset = self._apprise.AppriseAsset(storage_mode="memory", secure_logging=True)
        plugin = self._apprise.Apprise.instantiate(url, asset=asset)
        redact_third_party_logs(url)  # again: Apprise imports requests as it loads its plugins
        if plugin is None:
            raise RoutesError(
                f"destination {name!r}: Apprise does not recognise its URL (an unknown service, "
                "a malformed URL, or a service this system cannot run); see "
                "https://github.com/caronc/apprise/wiki"
            )
        self.service = str(plugin.service_name)
        self._scheme = url.split("://", 1)[0].lower()
        self._url = url
        self._notifier = self._apprise.Apprise(asset=asset)
        self._notifier.add(plugin)

    @classmethod
    def from_destination(
        cls, name: str, destination: AppriseDestination, context: SinkContext
    ) -> AppriseSink:
        """The sink for an `apprise` destination of the routes."""
        return cls(destination.url.get_secret_value(), name=name, timeout=context.timeout)

    def __repr__(self) -> str:
        return f"AppriseSink(name={self.name!r}, service={self.service!r}, url=<redacted>)"

    async def send(self, notification: Notification, thread: MessageRef | None = None) -> None:
        """Send the notification; `thread` is ignored (Apprise has no message IDs). Raises
        `DeliveryError` (the whole destination) when Apprise reports a failure or times out."""
        await self._notify(markdown_message(notification))

    async def _notify(self, message: MarkdownMessage) -> None:
        apprise = self._apprise
        redact_third_party_logs(self._url)  # a logger a plugin's late import made since
        call = self._notifier.async_notify(
            body=message.body,
            title=message.title,
            notify_type=apprise.NotifyType(message.notify_type),
            body_format=apprise.NotifyFormat.MARKDOWN,
        )
        try:
            result = await asyncio.wait_for(call, self._timeout)
        except TimeoutError:
            reason = f"{self.service} did not answer within {self._timeout:g} s (through Apprise)"
            raise DeliveryError(self.name, reason) from None
        except Exception as error:  # a plugin's bug must not end the cycle; no text: it may
            reason = f"Apprise failed sending to {self.service}: {type(error).__name__}"
            raise DeliveryError(self.name, reason) from None
        delivered = bool(result)
        close = getattr(result, "close", None)
        if callable(close):
            close()
        if not delivered:
            # Apprise tells why only in its log lines (redacted, at warning level).
            reason = f"Apprise could not deliver to {self.service} (its log lines say why)"
            raise DeliveryError(self.name, reason)

    async def check(self) -> list[CheckResult]:
        """What can be known without sending: the URL parses to a service Apprise knows (the
        sink would not have been built otherwise). Apprise has no dry run or probe, so neither
        the credentials nor the service's reachability are tested."""
        detail = (
            f"Apprise URL ({self._scheme}://) parses as {self.service}; nothing sent: Apprise "
            "has no dry run, so credentials and reachability are not tested"
        )
        return [CheckResult(self.name, True, detail)]
