"""Benchmark: detection latency with push triggers beside polling, and trigger floods.

The real `datafold-notifier run` watches N monitors of the simulator (50 ms API latency). The
bench makes runs turn `alert` at random times (each run is created 30 s before it finishes, as a
Datafold run is) and, in trigger mode, posts `/trigger/{token}/{monitor_id}` for each at once, as
a Datafold webhook would. Detection latency is the time from the run turning `alert` to its
notification reaching the bench's webhook receiver. In poll mode the same alerts are found by the
regular cycles only (interval 60 s). Then, in trigger mode, it floods the trigger endpoint (1,000
a second for 10 s, to one monitor and then to many) and counts the simulator's run listings: the
trigger's bucket (NOTIFIER_TRIGGER_MAX_POLLS_PER_MINUTE, a burst of the cap then the cap a minute)
allows at most cap x (1 + T/60) triggered listings in any T seconds. Last, one more run turns
alert and is triggered, to show how long a real alert waits behind a flood's backlog.

    python bench/trigger_bench.py --monitors 5000 --modes trigger,poll
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_bench import (
    API_KEY,
    CLI,
    Receiver,
    load_average,
    percentile,
    proc_cpu_seconds,
    write_env_file,
)

from notifier.demo.server import serve
from notifier.demo.simulator import Simulator

FIRST_MONITOR = 1000
RUN_DURATION = 30.0
DEFAULT_CAP = 60


@dataclass
class WaitingReceiver(Receiver):
    """A receiver that also says when a notification arrived."""

    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        answer = await super().handle(request)
        self.arrived.set()
        return answer


@dataclass
class Daemon:
    """The notifier under test and the log events it printed, with when they arrived."""

    proc: asyncio.subprocess.Process
    trigger_url: str | None
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    baselined: asyncio.Event = field(default_factory=asyncio.Event)

    async def read_log(self) -> None:
        """Keep the stderr pipe drained (a full pipe would stall the daemon) and note events."""
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            self.events.append((time.time(), event))
            if event.get("event") == "cycle_finished":
                self.baselined.set()

    def cycles_finished_between(self, start: float, end: float) -> int:
        """Regular cycles that finished in [start, end] (cycle_finished events)."""
        return sum(
            1
            for at, event in self.events
            if start <= at <= end and event.get("event") == "cycle_finished"
        )


class RequestSampler:
    """The simulator's request counts every 0.1 s, so requests can be counted per time window."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.samples: list[tuple[float, Counter[str]]] = []

    async def run(self) -> None:
        while True:
            self.samples.append((time.time(), Counter(self.sim.request_counts)))
            await asyncio.sleep(0.1)

    def _at(self, when: float) -> Counter[str]:
        before = [counts for at, counts in self.samples if at <= when]
        return before[-1] if before else Counter()

    def count(self, endpoint: str, start: float, end: float) -> int:
        """Requests to `endpoint` between `start` and `end` (to the sampling's 0.1 s)."""
        return self._at(end)[endpoint] - self._at(start)[endpoint]

    def most_in_window(self, endpoint: str, start: float, end: float, width: float) -> int:
        """The most requests to `endpoint` in any `width`-second window within [start, end]."""
        times = [start, *(at for at, _ in self.samples if start < at <= end)]
        return max(
            (self.count(endpoint, at, min(at + width, end)) for at in times),
            default=0,
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def build_simulator(size: int, latency: float) -> Simulator:
    """N unscheduled monitors, each with an `ok` run 5 minutes old (the first poll baselines it);
    the bench adds the alerting runs itself."""
    sim = Simulator(API_KEY, latency=latency, record_requests=False)
    started = datetime.now(UTC) - timedelta(minutes=5)
    for index in range(size):
        sim.add_monitor(FIRST_MONITOR + index, name=f"bench monitor {index}", duration=RUN_DURATION)
        sim.add_run(FIRST_MONITOR + index, state="ok", started_at=started)
    return sim


@contextlib.asynccontextmanager
async def running_daemon(
    tmp: Path,
    datafold: str,
    hook: str,
    size: int,
    *,
    trigger: bool,
    interval: float,
    cap: int,
    poll_mode: str,
) -> AsyncIterator[Daemon]:
    """The notifier, started and baselined (its first cycle finished); stopped on exit."""
    ids = ",".join(str(FIRST_MONITOR + i) for i in range(size))
    env_file = write_env_file(tmp / "bench.env", {"NOTIFIER_MONITOR_IDS": ids})
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATAFOLD_API_KEY": API_KEY,
        "DATAFOLD_HOST": datafold,
        "NOTIFIER_WEBHOOK_URLS": hook,
        "NOTIFIER_STATE_FILE": str(tmp / "state.json"),
        "NOTIFIER_POLL_INTERVAL_SECONDS": str(interval),
        "NOTIFIER_POLL_MODE": poll_mode,
        "NOTIFIER_HEALTH_PORT": str(port),
        "NOTIFIER_LOG_FORMAT": "json",
        "NOTIFIER_LOG_LEVEL": "info",
    }
    trigger_url = None
    if trigger:
        token = secrets.token_urlsafe(24)
        env |= {
            "NOTIFIER_TRIGGER_TOKEN": token,
            "NOTIFIER_TRIGGER_MAX_POLLS_PER_MINUTE": str(cap),
        }
        trigger_url = f"http://127.0.0.1:{port}/trigger/{token}"
    proc = await asyncio.create_subprocess_exec(
        CLI,
        "run",
        "--env-file",
        str(env_file),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    daemon = Daemon(proc, trigger_url)
    reader = asyncio.create_task(daemon.read_log())
    try:
        waiting = asyncio.create_task(daemon.baselined.wait())
        await asyncio.wait({waiting, reader}, timeout=300, return_when=asyncio.FIRST_COMPLETED)
        if not daemon.baselined.is_set():
            waiting.cancel()
            said = [e for _, e in daemon.events[-5:]]
            raise SystemExit(f"the notifier did not finish its first cycle; it said: {said}")
        yield daemon
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
        reader.cancel()


async def alert_phase(
    sim: Simulator,
    daemon: Daemon,
    receiver: WaitingReceiver,
    http: aiohttp.ClientSession,
    *,
    monitors: list[int],
    window: float,
    patience: float,
    rng: random.Random,
) -> tuple[list[float], int]:
    """Turn a run of each of `monitors` to `alert` at random times within `window` seconds,
    triggering each when there is a trigger URL; return the detection latencies and how many
    alerts were not notified within `patience` seconds of the last one."""
    start = time.time()
    turned: dict[int, float] = {}
    refused = Counter[int]()

    async def one(monitor_id: int, at: float) -> None:
        created = max(start, start + at - RUN_DURATION)
        await asyncio.sleep(created - time.time())
        began = datetime.fromtimestamp(created, UTC)
        run_id = sim.add_run(monitor_id, state="checking", started_at=began)
        await asyncio.sleep(start + at - time.time())
        sim.set_run_state(monitor_id, run_id, "alert")
        turned[run_id] = time.time()
        if daemon.trigger_url is not None:
            async with http.post(f"{daemon.trigger_url}/{monitor_id}") as answer:
                if answer.status != 202:
                    refused[answer.status] += 1

    await asyncio.gather(*(one(m, rng.uniform(0, window)) for m in monitors))
    deadline = time.time() + patience
    while time.time() < deadline and not turned.keys() <= receiver.arrivals.keys():
        receiver.arrived.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(receiver.arrived.wait(), deadline - time.time())
    if refused:
        print(f"  trigger answers other than 202: {dict(refused)}", file=sys.stderr)
    latencies = [receiver.arrivals[r] - t for r, t in turned.items() if r in receiver.arrivals]
    return latencies, len(turned) - len(latencies)


@dataclass
class Flood:
    """What one flood sent and how the trigger endpoint answered (status 0: no answer)."""

    name: str
    sent: int
    seconds: float
    answers: Counter[int]
    answer_times: list[float]


async def flood(
    http: aiohttp.ClientSession,
    daemon: Daemon,
    monitors: list[int],
    *,
    name: str,
    rate: float,
    seconds: float,
    rng: random.Random,
) -> Flood:
    """Post `rate` triggers a second for `seconds`, each for a monitor drawn from `monitors`."""
    assert daemon.trigger_url is not None
    answers: Counter[int] = Counter()
    answer_times: list[float] = []
    in_flight = asyncio.Semaphore(256)
    tasks: set[asyncio.Task[None]] = set()

    async def one(monitor_id: int) -> None:
        async with in_flight:
            sent = time.perf_counter()
            try:
                async with http.post(f"{daemon.trigger_url}/{monitor_id}") as answer:
                    await answer.read()
                    answers[answer.status] += 1
            except aiohttp.ClientError:
                answers[0] += 1
            answer_times.append(time.perf_counter() - sent)

    start = time.perf_counter()
    total = int(rate * seconds)
    for number in range(total):
        delay = start + number / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(rng.choice(monitors)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    return Flood(name, total, time.perf_counter() - start, answers, answer_times)


async def bench_mode(args: argparse.Namespace, trigger: bool) -> dict[str, Any]:
    rng = random.Random(args.seed)
    sim = build_simulator(args.monitors, args.latency)
    receiver = WaitingReceiver()
    runner = web.AppRunner(receiver.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    hook = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    sampler = RequestSampler(sim)
    sampling = asyncio.create_task(sampler.run())
    interval = args.trigger_interval if trigger else args.interval
    result: dict[str, Any] = {
        "mode": f"trigger ({args.poll_mode} every {interval:g} s)" if trigger else "poll",
        "interval_s": interval,
    }
    load_start = load_average()
    try:
        with tempfile.TemporaryDirectory(prefix="notifier-trigger-bench-") as tmp:
            async with (
                serve(sim) as url,
                running_daemon(
                    Path(tmp),
                    url,
                    hook,
                    args.monitors,
                    trigger=trigger,
                    interval=interval,
                    cap=args.cap,
                    poll_mode=args.poll_mode if trigger else "poll",
                ) as daemon,
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as http,
            ):
                result["baseline_requests"] = sum(sim.request_counts.values())
                # Distinct monitors: the alert phase's, then the probe after the floods.
                chosen = rng.sample(sorted(sim.monitor_ids), args.alerts + 1)
                print(f"  {result['mode']}: baselined, turning {args.alerts} runs", file=sys.stderr)
                latencies, missed = await alert_phase(
                    sim,
                    daemon,
                    receiver,
                    http,
                    monitors=chosen[: args.alerts],
                    window=args.window,
                    patience=10.0 if trigger else interval + 15.0,
                    rng=rng,
                )
                result |= {
                    "latencies": latencies,
                    "missed": missed,
                    "p50_s": percentile(latencies, 0.5),
                    "p99_s": percentile(latencies, 0.99),
                }
                if trigger and args.flood_seconds > 0:
                    floods = await flood_phase(args, sim, daemon, sampler, http, rng)
                    probe, unseen = await alert_phase(
                        sim,
                        daemon,
                        receiver,
                        http,
                        monitors=chosen[args.alerts :],
                        window=0.0,
                        patience=args.drain,
                        rng=rng,
                    )
                    floods.append(
                        {
                            "name": "alert after the floods",
                            "latency_s": probe[0] if probe else None,
                            "waited_s": args.drain,
                            "pending_behind": unseen,
                        }
                    )
                    result["floods"] = floods
                result["daemon_cpu_s"] = proc_cpu_seconds(daemon.proc.pid)
    finally:
        sampling.cancel()
        await runner.cleanup()
    result["load_1min"] = [load_start, load_average()]
    return result


async def flood_phase(
    args: argparse.Namespace,
    sim: Simulator,
    daemon: Daemon,
    sampler: RequestSampler,
    http: aiohttp.ClientSession,
    rng: random.Random,
) -> list[dict[str, Any]]:
    """Flood with triggers for one monitor, then for many; count the run listings from each
    flood's start to `--drain` seconds after its end, and over both against the bucket."""
    await asyncio.sleep(args.drain)  # the alert phase's triggers are done and counted apart
    everyone = sorted(sim.monitor_ids)
    results: list[dict[str, Any]] = []
    begin = time.time()
    for name, monitors in (("one monitor", everyone[:1]), ("many monitors", everyone)):
        start = time.time()
        print(
            f"  flood: {name}, {args.flood_rate:g}/s for {args.flood_seconds:g} s",
            file=sys.stderr,
        )
        done = await flood(
            http,
            daemon,
            monitors,
            name=name,
            rate=args.flood_rate,
            seconds=args.flood_seconds,
            rng=rng,
        )
        await asyncio.sleep(args.drain)
        end = time.time()
        results.append(
            {
                "name": done.name,
                "sent": done.sent,
                "rate_per_s": done.sent / done.seconds,
                "answers": {str(k): v for k, v in sorted(done.answers.items())},
                "answer_p50_ms": percentile(done.answer_times, 0.5) * 1000,
                "answer_p99_ms": percentile(done.answer_times, 0.99) * 1000,
                "window_s": end - start,
                "runs_listings": sampler.count("runs", start, end),
                "other_requests": sum(
                    sampler.count(e, start, end) for e in ("monitors", "monitor", "run")
                ),
                "regular_cycles": daemon.cycles_finished_between(start, end),
            }
        )
    end = time.time()
    span = end - begin
    results.append(
        {
            "name": "both floods",
            "window_s": span,
            "runs_listings": sampler.count("runs", begin, end),
            "allowed": args.cap * (1 + span / 60),
            "most_listings_in_60s": sampler.most_in_window("runs", begin, end, 60.0),
            "regular_cycles": daemon.cycles_finished_between(begin, end),
        }
    )
    return results


def report(args: argparse.Namespace, results: list[dict[str, Any]]) -> bool:
    """Print the figures; False when a target was missed."""
    print()
    print(
        f"datafold-notifier trigger benchmark: {args.monitors} monitors, API latency "
        f"{args.latency * 1000:.0f} ms, {args.alerts} runs turning alert at random times over "
        f"{args.window:g} s"
    )
    print(
        "| mode | poll interval (s) | latency p50 (s) | latency p99 (s) | timed | missed | load |"
    )
    print("|---|---|---|---|---|---|---|")
    ok = True
    for r in results:
        load = r["load_1min"]
        print(
            f"| {r['mode']} | {r['interval_s']:g} | {r['p50_s']:.2f} | {r['p99_s']:.2f} "
            f"| {len(r['latencies'])} | {r['missed']} | {load[0]:.1f}-{load[1]:.1f} |"
        )
        if r["mode"].startswith("trigger"):
            held = r["p99_s"] <= args.target_p99 and r["missed"] == 0
            ok &= held
            print(
                f"target: trigger p99 <= {args.target_p99:g} s at {args.monitors} monitors: "
                f"{'held' if held else 'MISSED'}"
            )
    for r in results:
        if "floods" not in r:
            continue
        print(
            f"\nTrigger floods ({r['mode']}; cap {args.cap} triggered listings a minute: a "
            f"burst of {args.cap}, then one every {60 / args.cap:g} s; each window runs to "
            f"{args.drain:g} s after its flood)"
        )
        print(
            "| flood | sent | rate (/s) | answers | answer p50/p99 (ms) | window (s) "
            "| runs listings | other requests | regular cycles |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for f in r["floods"][:-2]:
            print(
                f"| {f['name']} | {f['sent']} | {f['rate_per_s']:.0f} | {f['answers']} "
                f"| {f['answer_p50_ms']:.1f}/{f['answer_p99_ms']:.1f} | {f['window_s']:.0f} "
                f"| {f['runs_listings']} | {f['other_requests']} | {f['regular_cycles']} |"
            )
        both, probe = r["floods"][-2], r["floods"][-1]
        held = both["runs_listings"] <= both["allowed"] and both["most_listings_in_60s"] <= (
            2 * args.cap
        )
        ok &= held
        print(
            f"both floods: {both['runs_listings']} runs listings in {both['window_s']:.0f} s "
            f"(the bucket allows {both['allowed']:.0f}), at most {both['most_listings_in_60s']} "
            f"in any 60 s (allows {2 * args.cap}); regular cycles meanwhile: "
            f"{both['regular_cycles']} (the baseline cycle sent {r['baseline_requests']} "
            f"requests): {'held' if held else 'MISSED'}"
        )
        if probe["latency_s"] is not None:
            print(f"an alert triggered after the floods: notified in {probe['latency_s']:.2f} s")
        else:
            print(
                f"an alert triggered after the floods: not notified within "
                f"{probe['waited_s']:g} s (it waits behind the flood's pending monitors, polled "
                f"at the cap; the regular cycle finds it at the latest)"
            )
    print(
        "Latency is from the run turning alert (simulator) to the webhook receiver accepting it; "
        "load is the 1-minute load average at start-end (2 shared cores: a high load means noise)."
    )
    return ok


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--monitors", type=int, default=5000)
    parser.add_argument("--modes", default="trigger,poll", help="trigger, poll or both")
    parser.add_argument("--latency", type=float, default=0.05, help="API latency in seconds")
    parser.add_argument("--alerts", type=int, default=60, help="runs turned alert, one a monitor")
    parser.add_argument("--window", type=float, default=90.0, help="seconds they turn within")
    parser.add_argument("--interval", type=float, default=60.0, help="poll mode's interval")
    parser.add_argument(
        "--trigger-interval", type=float, default=3600.0, help="trigger mode's poll interval"
    )
    parser.add_argument(
        "--poll-mode", default="poll", choices=("poll", "feed"), help="trigger mode's cycles"
    )
    parser.add_argument("--cap", type=int, default=DEFAULT_CAP, help="triggered listings/minute")
    parser.add_argument("--flood-rate", type=float, default=1000.0, help="triggers a second")
    parser.add_argument("--flood-seconds", type=float, default=10.0, help="0: no flood")
    parser.add_argument("--drain", type=float, default=20.0, help="seconds counted after a flood")
    parser.add_argument("--target-p99", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or set(modes) - {"trigger", "poll"}:
        parser.error("--modes takes trigger, poll or trigger,poll")
    if args.alerts >= args.monitors:
        parser.error("--alerts must be below --monitors (one alert a monitor, and a probe)")
    results = [await bench_mode(args, mode == "trigger") for mode in modes]
    ok = report(args, results)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    asyncio.run(main())
