"""Real `datafold-notifier run` replicas of one world sharing one PostgreSQL database.

What the high-availability tests (tests/test_ha.py, tests/test_ha_promises.py) share: the
replicas' environment, the runs a test made, what each destination accepted, what the database
records as done, and the crashes that allow one repeat each.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import psycopg

from notifier.domain.models import NotifierState
from tests.fakes.cli import World, cli
from tests.fakes.crash_receiver import CrashReceiver
from tests.fakes.delivery_audit import (
    DESTINATIONS,
    deliveries_per_run,
    delivery_problems,
    log_problems,
    recorded,
)
from tests.fakes.postgres import PASSWORD
from tests.fakes.subprocess_daemon import Daemon

#: Poll interval and lease length of every replica, in seconds (the lease defaults to the interval).
INTERVAL = LEASE = 1.0
#: Events that must never appear in any replica's log.
BROKEN = frozenset({"cycle_failed", "crashed", "daemon_killed", "notification_expired"})


async def eventually(
    predicate: Callable[[], Awaitable[bool]], what: str, within: float = 20
) -> None:
    """Poll `predicate` until it holds; fail naming `what` after `within` seconds."""
    deadline = time.monotonic() + within
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@dataclass
class Replicas:
    """Replicas of one world sharing one database; the runs the test made and what arrived.

    `exposures[(run, destination)]` counts crashes after which the database did not record a
    delivery the destination had already accepted: each one allows one repeat, no more.
    `daemon_env` is added to each replica's environment (not to one-shot commands').
    """

    world: World
    receiver: CrashReceiver
    url: str
    env: dict[str, str]
    daemon_env: dict[str, str] = field(default_factory=dict)
    daemons: list[Daemon] = field(default_factory=list)
    notify: dict[int, tuple[int, str]] = field(default_factory=dict)
    exposures: Counter[tuple[int, str]] = field(default_factory=Counter)
    outputs: list[str] = field(default_factory=list)

    async def start(self, name: str, **extra: str) -> Daemon:
        """Start replica `name` (NOTIFIER_REPLICA_NAME), with `extra` in its environment."""
        env = {**self.env, **self.daemon_env, "NOTIFIER_REPLICA_NAME": name, **extra}
        daemon = await Daemon.start(env)
        self.daemons.append(daemon)
        return daemon

    async def command(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
        """A CLI command against this database; its exit code and stderr."""
        result = await cli(*args, env=env or self.env)
        self.outputs += [result.stdout, result.stderr]
        return result.code, result.stderr

    def add(self, monitor_id: int, state: str = "alert") -> int:
        """A new run in the simulated Datafold that every destination must hear of."""
        error = "Query failed: relation does not exist" if state == "error" else None
        run_id = self.world.sim.add_run(
            monitor_id, state=state, started_at=self.world.now(), error=error
        )
        self.notify[run_id] = (monitor_id, state)
        return run_id

    def received(self) -> dict[str, Counter[int]]:
        """Alert and error deliveries accepted so far, per destination and run."""
        return deliveries_per_run(self.receiver.accepted, self.world.slack)

    def delivered_everywhere(self) -> bool:
        """Every run the test made reached every destination."""
        received = self.received()
        return all(received[dest][run] for dest in DESTINATIONS for run in self.notify)

    async def saved_state(self) -> NotifierState:
        """The document in the database, as a replica taking over would load it."""
        async with await psycopg.AsyncConnection.connect(self.url, connect_timeout=5) as conn:
            cur = await conn.execute("SELECT document FROM notifier_state WHERE id = 1")
            row = await cur.fetchone()
        return NotifierState() if row is None else NotifierState.model_validate_json(row[0])

    async def unrecorded(self) -> list[tuple[int, str]]:
        """(run, destination) pairs not yet both delivered and recorded as done."""
        state, received = await self.saved_state(), self.received()
        return [
            (run_id, dest)
            for run_id in self.notify
            for dest in DESTINATIONS
            if not (received[dest][run_id] and recorded(state, self.notify, run_id, dest))
        ]

    async def until_quiet(self, within: float = 20) -> None:
        """Every run delivered everywhere and recorded in the database."""

        async def quiet() -> bool:
            return not await self.unrecorded()

        await eventually(quiet, f"every run delivered and saved: {self.received()}", within)

    async def crashed(self) -> None:
        """After a SIGKILL or SIGSTOP: count the deliveries accepted that the database does not
        record (each may be repeated once)."""
        await asyncio.sleep(0.05)  # a request the stopped replica had already sent lands now
        received = self.received()
        self.exposures.update(
            (run, dest) for run, dest in await self.unrecorded() if received[dest][run]
        )

    def problems(self, broken: Collection[str] = BROKEN) -> list[str]:
        """Everything wrong with the outcome, as readable lines: deliveries lost or repeated
        beyond the crashes, `broken` events or loose lines in a log, the password shown."""
        found = delivery_problems(self.received(), self.notify, self.exposures)
        found += log_problems(self.daemons, broken)
        found += [
            f"password shown: {text[:200]!r}"
            for text in [*self.outputs, *(d.output for d in self.daemons)]
            if PASSWORD in text
        ]
        return found


@asynccontextmanager
async def serve_replicas(world: World, url: str, **daemon_env: str) -> AsyncIterator[Replicas]:
    """A world whose webhook is a CrashReceiver, with the environment of a PostgreSQL replica;
    whatever replica is still alive at the end (a failed test) is woken and killed."""
    receiver = CrashReceiver()
    replicas: Replicas | None = None
    try:
        async with receiver.serve() as hook_url:
            env = {
                **world.env,
                "NOTIFIER_WEBHOOK_URLS": hook_url,
                "NOTIFIER_STATE_URL": url,
                "NOTIFIER_POLL_INTERVAL_SECONDS": f"{INTERVAL:g}",
                "NOTIFIER_LEASE_SECONDS": f"{LEASE:g}",
            }
            replicas = Replicas(world, receiver, url, env, daemon_env)
            yield replicas
    finally:
        for daemon in replicas.daemons if replicas else ():
            if daemon.proc.returncode is None:
                daemon.proc.send_signal(signal.SIGCONT)
                daemon.proc.kill()
                await daemon.proc.wait()


async def elect(replicas: Replicas, *names: str) -> tuple[Daemon, list[Daemon]]:
    """Start replicas in order; once the first leads and has saved a baseline, start the rest."""
    first = await replicas.start(names[0])
    await first.wait_event("leading")
    await first.wait_event("monitor_baselined", where=lambda e: e.get("monitor_id") == 2)
    await first.wait_event("cycle_finished")
    others = [await replicas.start(name) for name in names[1:]]
    for other in others:
        await other.wait_event("daemon_started")
    return first, others
