"""When Datafold requests go out: the optional rate cap, and the retries of one request (capped
exponential backoff with jitter, or the wait the server asked for), each reported before its wait.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from notifier.fetch.answers import Transient

_T = TypeVar("_T")
#: Told before each wait: the failure (a `Transient`, or what tenacity caught), the wait in
#: seconds and the number of the attempt that failed.
OnRetry = Callable[[BaseException | None, float, int], None]


def rate_limiter(per_second: float | None) -> AsyncLimiter | None:
    """A leaky bucket of `per_second` requests; below one a second, one per 1/rate seconds."""
    if not per_second:
        return None
    if per_second < 1:
        return AsyncLimiter(1, 1 / per_second)
    return AsyncLimiter(per_second, 1)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a request that failed in a way worth retrying."""

    max_attempts: int
    backoff_initial: float
    backoff_max: float
    max_retry_after: float

    def wait_for(self, error: BaseException | None, failed_attempt: int) -> float:
        """Retry-After when the answer gives one (capped), else capped exponential with jitter."""
        if isinstance(error, Transient) and error.retry_after is not None:
            return min(error.retry_after, self.max_retry_after)
        ceiling = min(self.backoff_initial * 2.0 ** (failed_attempt - 1), self.backoff_max)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def _error(state: RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome is not None else None


async def with_retries(
    attempt: Callable[[int], Awaitable[_T]], policy: RetryPolicy, on_retry: OnRetry
) -> _T:
    """`attempt(1)`, then `attempt(2)`, … while it raises `Transient`, at most
    `policy.max_attempts` times; the last `Transient` is raised when every attempt failed.

    The first attempt runs on its own: most requests succeed, and tenacity's machinery is only
    set up once one has failed (`retry_after_first`, which a hot caller may call itself).
    """
    try:
        return await attempt(1)
    except Transient as first:
        return await retry_after_first(first, attempt, policy, on_retry)


async def retry_after_first(
    first: Transient,
    attempt: Callable[[int], Awaitable[_T]],
    policy: RetryPolicy,
    on_retry: OnRetry,
) -> _T:
    """What follows a first attempt that failed with `first`: wait, then `attempt(2)`, … as
    `with_retries` says."""
    if policy.max_attempts == 1:
        raise first
    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.max_attempts - 1),
        # Tenacity numbers from the second attempt on: its attempt n is our n + 1.
        wait=lambda state: policy.wait_for(_error(state), state.attempt_number + 1),
        retry=retry_if_exception_type(Transient),
        before_sleep=lambda state: on_retry(
            _error(state),
            state.next_action.sleep if state.next_action is not None else 0.0,
            state.attempt_number + 1,
        ),
        reraise=True,
    )
    wait = policy.wait_for(first, 1)
    on_retry(first, wait, 1)
    await asyncio.sleep(wait)
    async for trial in retrying:
        with trial:
            return await attempt(trial.retry_state.attempt_number + 1)
    raise AssertionError("unreachable: tenacity returns or raises")  # pragma: no cover
