"""The sink port: a destination as the cycle sees it (`Sink`, `DigestSink`), how it fails
(`DeliveryError`) and what `check` reports (`CheckResult`). `deliver.sinks.registry` builds them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

from notifier.domain.models import MessageRef, Notification


@dataclass(frozen=True)
class CheckResult:
    """One line of `check` output: what was checked, whether it passed, what was seen. `ok` is
    None when it could not be known (`check` prints it as `??`, never as passed)."""

    name: str
    ok: bool | None
    detail: str


class DeliveryError(Exception):
    """A destination did not accept a notification; the outbox keeps it for a later attempt.

    The message names the destination and the reason and never contains a secret.
    """

    def __init__(
        self,
        destination: str,
        reason: str,
        *,
        retry_after: float | None = None,
        whole_destination: bool = True,
        delivered: frozenset[str] = frozenset(),
        permanent: bool = False,
    ) -> None:
        super().__init__(f"{destination}: {reason}")
        self.destination = destination
        self.reason = reason
        self.retry_after = retry_after
        #: True when the destination itself is failing (down, refusing the credentials, rate
        #: limiting): later notifications would fail too, so the cycle stops sending there.
        #: False when only this notification was refused: the next ones are still tried.
        self.whole_destination = whole_destination
        #: A digest split over several messages failed part-way: these notification IDs went out.
        self.delivered = delivered
        #: The destination refused this notification on its merits and would refuse it again
        #: (PagerDuty's 400): it is dropped for this destination, not retried.
        self.permanent = permanent and not whole_destination


class Sink(Protocol):
    """A place notifications go. `name` is stable across restarts and free of secrets."""

    name: str

    async def send(
        self, notification: Notification, thread: MessageRef | None = None
    ) -> MessageRef | None:
        """Deliver or raise `DeliveryError`; return where the message went if it can be updated
        or threaded later (Slack with a bot token), else None.

        `thread` is where the first message of the notification's incident went in this
        destination, when known: a sink that can, replies there (alerts, reminders: if its
        `thread` option is on) or updates it (recoveries); the others ignore it.
        """
        ...

    async def check(self) -> list[CheckResult]:
        """Probe the destination without delivering (`check`); never raises for a destination
        problem, reports it instead."""
        ...


@runtime_checkable
class DigestSink(Protocol):
    """A sink that can put many notifications in one digest (Slack). More than
    `digest_threshold` waiting for it after a cycle's polls are sent as a digest instead."""

    name: str
    digest_threshold: int | None

    async def send_digest(self, notifications: Sequence[Notification]) -> None:
        """Send them as one digest (split over several messages if need be), or raise
        `DeliveryError` with `delivered` naming those that went out before the failure."""
        ...


@runtime_checkable
class HoldingSink(Protocol):
    """A sink whose destination forgets a firing alert unless told again (Alertmanager). Once a
    cycle's deliveries are done, `hold` gets the latest firing notification it accepted of each
    incident still open, to post again."""

    name: str

    async def hold(self, notifications: Sequence[Notification]) -> None:
        """Tell the destination they still fire, or raise `DeliveryError` (tried next cycle)."""
        ...


_Part = TypeVar("_Part")


async def send_in_parts(
    parts: Iterable[_Part],
    send: Callable[[_Part], Awaitable[object]],
    completes: Callable[[_Part], Iterable[str]],
) -> None:
    """Send a digest's parts in order. When one fails, its `DeliveryError` is raised again with
    `delivered` naming the notifications the parts already sent completed, so only the rest is
    retried."""
    delivered: set[str] = set()
    for part in parts:
        try:
            await send(part)
        except DeliveryError as error:
            raise DeliveryError(
                error.destination,
                error.reason,
                retry_after=error.retry_after,
                whole_destination=error.whole_destination,
                delivered=frozenset(delivered),
            ) from None
        delivered.update(completes(part))
