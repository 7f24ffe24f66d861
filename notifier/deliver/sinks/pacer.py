"""The pace of messages to one Slack channel, shared by every Slack sink; apart from the Slack
transport so that building sinks (and a process with no Slack destination) loads no slack_sdk."""

from __future__ import annotations

from aiolimiter import AsyncLimiter


class ChannelPacer:
    """Slack takes about one message per second per channel: one `AsyncLimiter` per key
    (a channel ID, or a webhook destination's name). Share one instance among all sinks."""

    def __init__(self, max_rate: float = 1.0, time_period: float = 1.0) -> None:
        self._max_rate = max_rate
        self._time_period = time_period
        self._limiters: dict[str, AsyncLimiter] = {}

    async def wait(self, key: str) -> None:
        """Return once a message to `key` may go out."""
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = self._limiters[key] = AsyncLimiter(self._max_rate, self._time_period)
        await limiter.acquire()
