"""The run source port: what the cycle asks of Datafold, and the one error family it may raise.

The cycle depends on this module only, so it never loads aiohttp; `notifier.fetch.datafold` is the
adapter that implements the port against Datafold's REST API.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from notifier.domain.models import MonitorInfo, MonitorRun, MonitorSummary, RunDetail


class RunSource(Protocol):
    """Where runs and monitor details come from (Datafold's API in production).

    An implementation answers for what it returns: `list_runs` gives only runs of the monitor
    asked about (a run of another monitor in the listing is dropped there, not by the caller),
    each run once; `get_run` and `get_monitor` the object asked for, or an error of this family.
    """

    async def list_runs(
        self, monitor_id: int, since: datetime, until: datetime | None = None
    ) -> list[MonitorRun]:
        """Runs of `monitor_id` (and of no other monitor) started in [since, until], one per
        run_id; `DatafoldError` when the listing cannot be had."""
        ...

    async def get_run(self, monitor_id: int, run_id: int) -> RunDetail: ...

    async def get_monitor(self, monitor_id: int) -> MonitorInfo: ...

    async def list_monitors(self, tags: Sequence[str] = ()) -> list[MonitorSummary]: ...


@dataclass(frozen=True)
class Subject:
    """What a request is about, for messages and log fields."""

    monitor_id: int | None = None
    run_id: int | None = None

    @property
    def label(self) -> str:
        if self.monitor_id is None:
            return "monitor list"
        if self.run_id is None:
            return f"monitor {self.monitor_id}"
        return f"run {self.run_id} of monitor {self.monitor_id}"

    @property
    def log_fields(self) -> dict[str, int]:
        fields = {"monitor_id": self.monitor_id, "run_id": self.run_id}
        return {key: value for key, value in fields.items() if value is not None}


class DatafoldError(Exception):
    """Base of every failure the client reports; `kind` labels it for metrics and logs."""

    kind: str = "datafold"


class ApiKeyRefused(DatafoldError):
    """401/403: the key is wrong, revoked or lacks "View monitors"; retrying cannot help."""

    kind = "refused"

    def __init__(self, status: int) -> None:
        super().__init__(f"Datafold refused the API key (HTTP {status})")
        self.status = status


class NotFound(DatafoldError):
    """404 for a monitor or one of its runs: it was deleted, or the key cannot see it."""

    kind = "not_found"

    def __init__(self, monitor_id: int, run_id: int | None = None) -> None:
        super().__init__(f"{Subject(monitor_id, run_id).label} not found (HTTP 404)")
        self.monitor_id = monitor_id
        self.run_id = run_id


class MalformedAnswer(DatafoldError):
    """A 2xx answer we cannot use: not JSON, not the documented schema, or pages without end."""

    kind = "malformed"


class AnswerTooLarge(DatafoldError):
    """A 2xx answer larger than NOTIFIER_MAX_RESPONSE_BYTES (decompressed); reading stopped."""

    kind = "too_large"


class ApiUnavailable(DatafoldError):
    """Datafold could not be reached or kept failing (429/5xx, timeouts) after every attempt."""

    kind = "unavailable"


class RequestRejected(DatafoldError):
    """Datafold refused the request itself (422 and other 4xx); a bug or a setting, not a blip."""

    kind = "rejected"
