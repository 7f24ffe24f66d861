"""Finding a monitor owner's Slack user (`users.lookupByEmail`) to mention them, with a cache.

Any failure costs only the mention: the alert still goes out, and one warning per cache period
says why.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from notifier.deliver.sinks.slack_transport import (
    TRANSPORT_ERRORS,
    api_failure,
    error_code,
    transport_failure,
)

#: A user ID as `users.lookupByEmail` gives it.
_USER_ID: Final = re.compile(r"[UW][A-Z0-9]{2,20}")
#: How long an owner lookup is trusted: Slack's answer (found or not), and a failure to get one.
OWNER_CACHE_SECONDS = 3600.0
OWNER_RETRY_SECONDS = 300.0

#: The lookup logs as the sink it serves, so its log lines keep their logger name.
log = structlog.get_logger("notifier.deliver.sinks.slack")


@dataclass
class _Lookup:
    user_id: str | None
    expires: float


class OwnerDirectory:
    """Owners' Slack user IDs by email, as one bot sink's client finds them; `clock` is
    monotonic seconds. Needs the `users:read.email` scope."""

    def __init__(
        self, client: AsyncWebClient, destination: str, clock: Callable[[], float]
    ) -> None:
        self._client = client
        self.name = destination
        self._clock = clock
        self._owners: dict[str, _Lookup] = {}

    async def user_id(self, email: str) -> str | None:
        """The owner's Slack user ID, if found (cached per email).

        Any failure to look it up costs only the mention, with one warning per cache period.
        """
        now = self._clock()
        cached = self._owners.get(email)
        if cached is not None and cached.expires > now:
            return cached.user_id
        user_id, reason, trusted = None, None, True
        try:
            answer = await self._client.users_lookupByEmail(email=email)
            user = answer.get("user")
            found = user.get("id") if isinstance(user, dict) else None
            if isinstance(found, str) and _USER_ID.fullmatch(found):
                user_id = found
            else:
                reason = "Slack gave no usable user ID"
        except SlackApiError as error:
            reason = api_failure(error)[0]
            trusted = error_code(error) is not None and error.response.status_code == 200
        except TRANSPORT_ERRORS as error:
            reason, trusted = transport_failure(error), False
        ttl = OWNER_CACHE_SECONDS if trusted else OWNER_RETRY_SECONDS
        self._owners[email] = _Lookup(user_id, now + ttl)
        if reason is not None:
            log.warning(
                "slack_owner_lookup_failed",
                destination=self.name,
                owner=email,
                reason=reason,
                retry_in_seconds=ttl,
            )
        return user_id
