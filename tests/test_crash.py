"""Crash safety (issue 4, point 3): SIGKILL anywhere in a cycle; no alert lost, none sent thrice.

`datafold-notifier run` is killed after the fetch, during delivery, during and right after the
state write, while Slack and the webhook succeed, fail or hang; then restarted. Every alert/error
run reaches each destination at least once and at most twice, the state file parses after every
kill, history and `ok` runs are never sent. (A full or read-only state directory:
test_unwritable_state.py.)
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from notifier.domain.models import IN_PROGRESS_STATES, NotifierState
from tests.fakes.cli import World
from tests.fakes.crash_receiver import CrashReceiver
from tests.fakes.delivery_audit import (
    DESTINATIONS,
    NOTIFY_STATES,
    deliveries_per_run,
    delivery_problems,
    log_problems,
    recorded,
)
from tests.fakes.subprocess_daemon import Daemon, Event
from tests.fakes.webhook import Reply

#: On PYTHONPATH of every daemon: a `sitecustomize` that can hold a state write before its rename.
PAUSE_HOOK = Path(__file__).parent / "fakes" / "crash_sitecustomize"
#: Events that must never appear, whatever is killed when.
BROKEN = {"cycle_failed", "crashed", "state_file_corrupt", "state_save_failed", "daemon_killed"}


@dataclass
class CrashTrial:
    """One world, the runs the test made in it, and what each destination accepted.

    `exposures[(run, destination)]` counts kills after which the state file did not record a
    delivery the destination had already accepted: each one allows one repeat, no more.
    """

    world: World
    receiver: CrashReceiver
    env: dict[str, str]
    pause_flag: Path
    daemons: list[Daemon]
    notify: dict[int, tuple[int, str]] = field(default_factory=dict)
    quiet: set[int] = field(default_factory=set)
    waiting: dict[int, int] = field(default_factory=dict)
    exposures: Counter[tuple[int, str]] = field(default_factory=Counter)
    kills: list[str] = field(default_factory=list)

    @property
    def state_file(self) -> Path:
        return self.world.state_file

    async def start(self) -> Daemon:
        daemon = await Daemon.start(self.env)
        self.daemons.append(daemon)
        return daemon

    def add(self, monitor_id: int, state: str, *, ago: float = 0.0) -> int:
        """A run started `ago` seconds before now; `ago` > 0 makes it history at baseline."""
        started = self.world.now() - timedelta(seconds=ago)
        error = "Query failed: relation does not exist" if state == "error" else None
        run_id = self.world.sim.add_run(monitor_id, state=state, started_at=started, error=error)
        self._file(run_id, monitor_id, state, history=ago > 0)
        return run_id

    def finish(self, run_id: int, state: str) -> None:
        """An in-progress run reaches `state` (news if it is alert/error, even if it is old)."""
        monitor_id = self.waiting.pop(run_id)
        error = "Connection timed out" if state == "error" else None
        self.world.sim.set_run_state(monitor_id, run_id, state, error=error)
        self._file(run_id, monitor_id, state, history=False)

    def _file(self, run_id: int, monitor_id: int, state: str, *, history: bool) -> None:
        if state in IN_PROGRESS_STATES:
            self.waiting[run_id] = monitor_id
        elif state in NOTIFY_STATES and not history:
            self.notify[run_id] = (monitor_id, state)
        else:
            self.quiet.add(run_id)

    def pause_write_recording(self, runs: set[int]) -> None:
        """The next state write that records one of `runs` stops before its rename."""
        self.pause_flag.write_text(json.dumps(sorted(runs)))

    def received(self) -> dict[str, Counter[int]]:
        return deliveries_per_run(self.receiver.accepted, self.world.slack)

    def saved_state(self) -> NotifierState:
        """The state file as a restart would read it; it must always parse."""
        raw = self.state_file.read_bytes()
        json.loads(raw)
        return NotifierState.model_validate_json(raw)

    def all_accepted_recorded(self) -> bool:
        """Every delivery a destination accepted so far is in the state file."""
        state = self.saved_state()
        received = self.received()
        return all(
            recorded(state, self.notify, run_id, dest)
            for dest in DESTINATIONS
            for run_id in received[dest]
            if run_id in self.notify
        )

    def delivered_everywhere(self) -> bool:
        received = self.received()
        return all(received[dest][run] for dest in DESTINATIONS for run in self.notify)

    async def kill(self, daemon: Daemon) -> None:
        """SIGKILL, then check what a restart would find: a state file that parses, no loss."""
        self.kills.append(await daemon.kill())
        await asyncio.sleep(0.05)  # a request the dead daemon had already sent lands now
        self.pause_flag.unlink(missing_ok=True)
        state = self.saved_state()
        queued = {
            entry.notification.event.run_id
            for entry in state.outbox
            if entry.notification.kind == "run"
        }
        assert not queued & self.quiet, "a history or ok run was queued as an alert"
        received = self.received()
        for run_id in self.notify:
            for dest in DESTINATIONS:
                if received[dest][run_id] and not recorded(state, self.notify, run_id, dest):
                    self.exposures[(run_id, dest)] += 1

    async def until_quiet(self, daemon: Daemon, within: float = 20) -> None:
        """Every run delivered everywhere and recorded in the state file."""
        try:
            await daemon.wait_for(
                lambda: self.delivered_everywhere() and self.all_accepted_recorded(), within
            )
        except AssertionError as exc:
            lines = [*self.unfinished(), *self.problems(), str(exc)[:1500]]
            raise AssertionError("\n".join(lines)) from None

    def unfinished(self) -> list[str]:
        state, received = self.saved_state(), self.received()
        return [
            f"{dest}: run {run_id} " + ("not recorded" if received[dest][run_id] else "missing")
            for run_id in sorted(self.notify)
            for dest in DESTINATIONS
            if not (received[dest][run_id] and recorded(state, self.notify, run_id, dest))
        ]

    async def stop(self, daemon: Daemon) -> None:
        await daemon.wait_event("daemon_started")  # SIGTERM before that is not handled yet
        code = await daemon.stop()
        assert code == 0, daemon.events[-6:]
        assert daemon.events[-1]["event"] == "daemon_stopped"

    def problems(self) -> list[str]:
        """Everything wrong with the outcome, as readable lines."""
        return delivery_problems(
            self.received(), self.notify, self.exposures, self.quiet
        ) + log_problems(self.daemons, BROKEN)

    def stray_temp_files(self) -> list[str]:
        pattern = f".{self.state_file.name}.*.tmp"
        return sorted(p.name for p in self.state_file.parent.glob(pattern))


#: Runs there before the first start: quiet history, and two still in progress (news later).
HISTORY = ((1, "alert"), (2, "error"), (1, "ok"), (2, "checking"), (1, "created"))


def trial(
    world: World, receiver: CrashReceiver, hook_url: str, tmp: Path, reaper: list[Daemon]
) -> CrashTrial:
    """A trial with history on both monitors: two quiet finished runs and two in progress."""
    env = {
        **world.env,
        "NOTIFIER_WEBHOOK_URLS": hook_url,
        "NOTIFIER_POLL_INTERVAL_SECONDS": "1",
        # Every run its own Slack message, so that each is accounted for (no digest).
        "SLACK_DIGEST_THRESHOLD": "0",
        "PYTHONPATH": str(PAUSE_HOOK),
        "CRASH_PAUSE_FLAG": str(tmp / "pause-flag.json"),
    }
    crash = CrashTrial(world, receiver, env, tmp / "pause-flag.json", reaper)
    for monitor_id, state in HISTORY:
        crash.add(monitor_id, state, ago=300)
    return crash


async def baseline(crash: CrashTrial) -> Daemon:
    daemon = await crash.start()
    await daemon.wait_event("monitor_baselined", where=lambda e: e.get("monitor_id") == 2)
    await daemon.wait_event("state_saved")
    return daemon


def misbehave(crash: CrashTrial, behaviour: str, delay: float = 1.0) -> None:
    """Destinations fail or hang for the next requests, across restarts: Slack answers 500 to
    one send (and slack_sdk's retry of it), the webhook 503 to two; or each hangs once."""
    if behaviour == "failing":
        crash.world.slack.server_error(times=2)
        crash.receiver.reply(Reply(503), Reply(503))
    elif behaviour == "slow":
        crash.world.slack.slow(delay)
        crash.receiver.reply(Reply(delay=delay))


async def reach(kill_at: str, daemon: Daemon, crash: CrashTrial, news: set[int]) -> None:
    """Wait until the daemon is at `kill_at` in the cycle that handles `news`."""

    def about_news(event: Event) -> bool:
        return event.get("run_id") in news

    if kill_at == "detected":  # fetched, detected, nothing delivered yet
        await daemon.wait_event("run_detected", where=about_news)
    elif kill_at == "sent":  # one destination accepted one notification
        await daemon.wait_event("notification_sent", where=about_news)
    elif kill_at == "stuck":  # a delivery hangs in a slow receiver
        await daemon.wait_for(lambda: crash.receiver.in_flight > 0)
    elif kill_at == "mid_write":  # temp file written and fsynced, not renamed yet
        await daemon.wait_event("crash_paused_before_replace")
    else:  # "saving": just before the atomic write; "saved": just after it
        detected = await daemon.wait_event("run_detected", where=about_news)
        await daemon.wait_event(f"state_{kill_at}", detected)


KILL_POINTS = ("detected", "sent", "saving", "mid_write", "saved")
BEHAVIOURS = ("ok", "failing", "slow")
#: A slow destination only matters while a delivery is in flight; elsewhere it is "ok" again.
CASES = [(kill, behaviour) for kill in KILL_POINTS for behaviour in ("ok", "failing")]
CASES += [("sent", "slow"), ("stuck", "slow")]


@pytest.mark.parametrize(("kill_at", "behaviour"), CASES)
async def test_sigkill_at_a_point_of_the_cycle(
    world: World, tmp_path: Path, reaper: list[Daemon], kill_at: str, behaviour: str
) -> None:
    receiver = CrashReceiver()
    async with receiver.serve() as hook_url:
        crash = trial(world, receiver, hook_url, tmp_path, reaper)
        daemon = await baseline(crash)
        misbehave(crash, behaviour)
        news = {crash.add(1, "alert"), crash.add(2, "error"), crash.add(1, "ok")}
        in_progress = sorted(crash.waiting)
        crash.finish(in_progress[0], "alert")
        crash.finish(in_progress[1], "ok")
        news |= set(in_progress)
        if kill_at == "mid_write":
            crash.pause_write_recording(news)
        await reach(kill_at, daemon, crash, news)
        await crash.kill(daemon)
        crash.add(2, "alert")  # while it is down
        daemon = await crash.start()
        await crash.until_quiet(daemon)
        await crash.stop(daemon)
    assert crash.problems() == []
    assert len(crash.notify) == 4 and crash.kills
    if kill_at == "mid_write":
        assert crash.kills == ["crash_paused_before_replace"]
    if kill_at == "stuck" or (kill_at, behaviour) == ("mid_write", "ok"):
        assert crash.exposures, "the kill should have come between a delivery and its save"
    assert crash.stray_temp_files() == [], "a killed write left its temp file behind"


async def random_kills(
    world: World, tmp_path: Path, reaper: list[Daemon], *, seed: int, rounds: int
) -> CrashTrial:
    """Kill at a random moment of a round, restart, again; destinations misbehave at random.

    Before each kill the daemon is given time to record what destinations accepted after the
    previous kill, so no delivery is exposed to two kills and "at most twice" must hold.
    """
    rng = random.Random(seed)
    receiver = CrashReceiver()
    async with receiver.serve() as hook_url:
        crash = trial(world, receiver, hook_url, tmp_path, reaper)
        daemon = await baseline(crash)
        for _ in range(rounds):
            await daemon.wait_for(crash.all_accepted_recorded)
            misbehave(crash, rng.choice(BEHAVIOURS), delay=rng.uniform(0.2, 1.0))
            for run_id in list(crash.waiting):
                if rng.random() < 0.5:
                    crash.finish(run_id, rng.choice(("alert", "error", "ok")))
            for _ in range(rng.randint(0, 3)):
                crash.add(rng.choice((1, 2)), rng.choice(("alert", "error", "ok", "checking")))
            await daemon.wait_event("daemon_started")
            await asyncio.sleep(rng.uniform(0.0, 1.6))  # its first cycle runs at once
            await crash.kill(daemon)
            if rng.random() < 0.3:
                crash.add(rng.choice((1, 2)), rng.choice(NOTIFY_STATES))
            daemon = await crash.start()
        for run_id in list(crash.waiting):
            crash.finish(run_id, rng.choice(("alert", "ok")))
        await crash.until_quiet(daemon, within=60)
        await crash.stop(daemon)
    return crash


@pytest.mark.timeout(90)
async def test_sigkill_at_random_moments(
    world: World, tmp_path: Path, reaper: list[Daemon]
) -> None:
    crash = await random_kills(world, tmp_path, reaper, seed=20261126, rounds=10)
    assert crash.problems() == [], f"kills landed after: {Counter(crash.kills)}"
    assert len(crash.notify) >= 10
    assert crash.stray_temp_files() == [], "a killed write left its temp file behind"


@pytest.mark.skipif(
    not os.environ.get("NOTIFIER_SOAK"),
    reason="soak: set NOTIFIER_SOAK=1 (NOTIFIER_SOAK_ROUNDS, default 300: about 8 min; "
    "NOTIFIER_SOAK_SEED to replay)",
)
@pytest.mark.timeout(3600)
async def test_soak_sigkill_at_random_moments(
    world: World, tmp_path: Path, reaper: list[Daemon]
) -> None:
    seed = int(os.environ.get("NOTIFIER_SOAK_SEED", str(random.randrange(2**32))))
    rounds = int(os.environ.get("NOTIFIER_SOAK_ROUNDS", "300"))
    print(f"NOTIFIER_SOAK_SEED={seed} NOTIFIER_SOAK_ROUNDS={rounds}")  # shown when it fails
    crash = await random_kills(world, tmp_path, reaper, seed=seed, rounds=rounds)
    assert crash.problems() == [], f"seed {seed}; kills landed after: {Counter(crash.kills)}"
    assert crash.stray_temp_files() == [], f"seed {seed}"
