"""Destinations: one module per kind, each a `Sink`. The registry is built in `notifier.service`."""

from __future__ import annotations

from typing import Protocol

from notifier.models import Notification


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
    ) -> None:
        super().__init__(f"{destination}: {reason}")
        self.destination = destination
        self.reason = reason
        self.retry_after = retry_after
        #: True when the destination itself is failing (down, refusing the credentials, rate
        #: limiting): later notifications would fail too, so the cycle stops sending there.
        #: False when only this notification was refused: the next ones are still tried.
        self.whole_destination = whole_destination


class Sink(Protocol):
    """A place notifications go. `name` is stable across restarts and free of secrets."""

    name: str

    async def send(self, notification: Notification) -> None:
        """Deliver or raise `DeliveryError`."""
        ...
