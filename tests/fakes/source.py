"""An in-memory run source and sinks: fakes of the service's seams for pure-ish cycle tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from notifier.deliver.sink import DeliveryError
from notifier.domain.models import MessageRef, MonitorInfo, MonitorRun, Notification, RunDetail
from notifier.fetch.source import DatafoldError, NotFound


@dataclass
class FakeSource:
    """Monitors and runs held in memory; `failures` makes a monitor's listing raise. Like the
    Datafold adapter, it keeps the `RunSource` promise: a listing holds the monitor's own runs."""

    runs: dict[int, dict[int, RunDetail]] = field(default_factory=dict)
    infos: dict[int, MonitorInfo] = field(default_factory=dict)
    failures: dict[int, DatafoldError] = field(default_factory=dict)
    #: Runs missing from listings although they exist (they "left the window").
    hidden: set[int] = field(default_factory=set)
    calls: list[tuple[str, int]] = field(default_factory=list)

    def put(
        self,
        monitor_id: int,
        run_id: int,
        state: str | None,
        started_at: datetime | None,
        *,
        error: str | None = None,
        diff_id: int | None = None,
    ) -> None:
        self.runs.setdefault(monitor_id, {})[run_id] = RunDetail(
            run_id=run_id,
            monitor_id=monitor_id,
            state=state,
            started_at=started_at,
            error=error,
            diff_id=diff_id,
        )

    async def list_runs(
        self, monitor_id: int, since: datetime, until: datetime | None = None
    ) -> list[MonitorRun]:
        self.calls.append(("list_runs", monitor_id))
        if monitor_id in self.failures:
            raise self.failures[monitor_id]
        return [
            MonitorRun.model_validate(r.model_dump())
            for r in self.runs.get(monitor_id, {}).values()
            if r.monitor_id == monitor_id
            and r.run_id not in self.hidden
            and (r.started_at is None or r.started_at >= since)
        ]

    async def get_run(self, monitor_id: int, run_id: int) -> RunDetail:
        self.calls.append(("get_run", monitor_id))
        try:
            return self.runs[monitor_id][run_id]
        except KeyError:
            raise NotFound(monitor_id, run_id) from None

    async def get_monitor(self, monitor_id: int) -> MonitorInfo:
        self.calls.append(("get_monitor", monitor_id))
        if monitor_id in self.failures:
            raise self.failures[monitor_id]
        return self.infos.get(monitor_id, MonitorInfo(id=monitor_id, name=f"m{monitor_id}"))


@dataclass
class FakeSink:
    """Records what it accepted and the thread anchor it was given; `down` makes every send
    fail. With `anchors`, it answers like Slack: where each message went."""

    name: str
    down: bool = False
    anchors: bool = False
    sent: list[Notification] = field(default_factory=list)
    threads: list[MessageRef | None] = field(default_factory=list)
    attempts: int = 0

    async def send(
        self, notification: Notification, thread: MessageRef | None = None
    ) -> MessageRef | None:
        self.attempts += 1
        if self.down:
            raise DeliveryError(self.name, "HTTP 503")
        self.sent.append(notification)
        self.threads.append(thread)
        return MessageRef(channel="C1", ts=f"{len(self.sent)}.000") if self.anchors else None

    @property
    def sent_keys(self) -> list[str]:
        return [n.id for n in self.sent]


@dataclass
class FakeDigestSink(FakeSink):
    """A FakeSink that also takes digests; `digest_fails_after` sends that many, then fails."""

    digest_threshold: int | None = 3
    digests: list[list[Notification]] = field(default_factory=list)
    digest_fails_after: int | None = None

    async def send_digest(self, notifications: Sequence[Notification]) -> None:
        self.attempts += 1
        if self.down:
            raise DeliveryError(self.name, "HTTP 503")
        if self.digest_fails_after is not None:
            part = list(notifications[: self.digest_fails_after])
            self.digests.append(part)
            raise DeliveryError(
                self.name, "HTTP 503 on part 2", delivered=frozenset(n.id for n in part)
            )
        self.digests.append(list(notifications))
