"""Benchmark: the real `datafold-notifier run` against the simulator with N monitors.

The simulator (with an injected API latency) and a webhook receiver run in this process; the
notifier runs as its own process, so its CPU time and memory are measured alone. For each size and
mode it prints steady-cycle time next to its ideal, API requests per cycle next to their lower
bound, CPU seconds per cycle, peak RSS, state-file size and detection latency p50/p99, then how
each figure grows with N; `--json` keeps the figures for `bench/plot.py`.

    python bench/run_bench.py --sizes 1000,5000,10000 --modes poll,feed
    python bench/run_bench.py --sizes 5000,10000,20000,50000 --modes feed --json bench/growth.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from notifier.demo.server import serve
from notifier.demo.simulator import Simulator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from growth import growth_lines

API_KEY = "dfk-bench-key-0000000001"
CLI = str(Path(sys.executable).parent / "datafold-notifier")
CLK_TCK = os.sysconf("SC_CLK_TCK")
DEFAULT_CONCURRENCY = 16
FEED_PAGE_SIZE = 500


@dataclass
class Receiver:
    """Records when each run's notification was accepted."""

    arrivals: dict[int, float] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        run_id = json.loads(body)["data"]["run"]["id"]
        self.arrivals.setdefault(run_id, time.time())
        return web.Response(status=204)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        return app


@dataclass
class Result:
    size: int
    mode: str
    spread: float | None
    cycles: list[float]
    requests: list[int]
    runs_requests: list[int]
    cpu: list[float]
    rss_mb: float
    state_kb: float
    latencies: list[float]
    lower_bound: float
    ideal: float
    #: The machine's 1-minute load average at the start and the end of the run (noise).
    load: tuple[float, float] = (math.nan, math.nan)
    #: Wall seconds from one measured cycle's end to the next's (the interval, or more).
    walls: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The figures of one row, as `--json` writes them and `bench/plot.py` reads them."""
        cpu_ms = [c / self.size * 1000 for c in self.cpu]
        return {
            "monitors": self.size,
            "mode": self.mode,
            "spread": self.spread,
            "cycle_s": median(self.cycles),
            "ideal_s": self.ideal,
            "requests_per_cycle": median(self.requests),
            "runs_listings_per_cycle": median(self.runs_requests),
            "lower_bound": self.lower_bound,
            "cpu_s_per_cycle": median(self.cpu),
            "cpu_ms_per_monitor": median(cpu_ms),
            "cpu_ms_per_monitor_min": min(cpu_ms, default=math.nan),
            "cpu_ms_per_monitor_max": max(cpu_ms, default=math.nan),
            # Robust to uneven cycles: CPU per Datafold request, and the share of one core used.
            "cpu_ms_per_request": 1000 * sum(self.cpu) / sum(self.requests)
            if sum(self.requests)
            else math.nan,
            "cpu_cores": sum(self.cpu) / sum(self.walls) if sum(self.walls) else math.nan,
            "peak_rss_mb": self.rss_mb,
            "state_kb": self.state_kb,
            "state_b_per_monitor": self.state_kb * 1024 / self.size,
            "latency_p50_s": percentile(self.latencies, 0.5),
            "latency_p99_s": percentile(self.latencies, 0.99),
            "alerts_timed": len(self.latencies),
            "load_1min": list(self.load),
            "raw": {
                "cycles_s": self.cycles,
                "requests": self.requests,
                "runs_listings": self.runs_requests,
                "cpu_s": self.cpu,
                "walls_s": self.walls,
            },
        }


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


def load_average() -> float:
    """The machine's 1-minute load average: other work on a shared machine skews CPU figures."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def write_env_file(path: Path, settings: dict[str, str]) -> Path:
    """Settings as a .env file: 50,000 monitor IDs pass Linux's 128 KiB limit on one variable."""
    path.write_text("".join(f"{name}={value}\n" for name, value in settings.items()))
    return path


def build_simulator(size: int, latency: float, seed: int) -> tuple[Simulator, dict[int, float]]:
    """N monitors that run every 4 to 6 minutes for 30 s; about 1 run in 10 alerts or errors.

    First runs are spread over each monitor's own period, so the load is the same in every minute
    however long a run takes to measure (at 50,000 monitors, over ten minutes): a burst of first
    runs followed by a lull would measure large N in the lull.
    """
    sim = Simulator(API_KEY, seed=seed, latency=latency, record_requests=False)
    durations: dict[int, float] = {}
    outcomes = ["ok"] * 17 + ["alert", "error", "ok"]
    for index in range(size):
        monitor_id = 1000 + index
        every = 240.0 + (index * 7) % 121
        sim.add_monitor(
            monitor_id,
            name=f"bench monitor {index}",
            monitor_type=("diff", "metric", "schema", "test")[index % 4],
            every=every,
            first_after=5.0 + (index * 7919) % int(every),
            duration=30.0,
            outcomes=outcomes[index % 20 :] + outcomes[: index % 20],
        )
        durations[monitor_id] = 30.0
    # Every monitor also has a run history: the first poll baselines it.
    now = datetime.now(UTC)
    for index in range(size):
        sim.add_run(1000 + index, state="ok", started_at=now - timedelta(minutes=5))
    return sim, durations


async def bench_one(
    size: int,
    mode: str,
    *,
    latency: float,
    interval: float,
    cycles: int,
    seed: int,
    spread: float | None = None,
    warmup: int = 1,
) -> Result:
    load_start = load_average()
    sim, _ = build_simulator(size, latency, seed)
    receiver = Receiver()
    runner = web.AppRunner(receiver.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    hook = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    with tempfile.TemporaryDirectory(prefix="notifier-bench-") as tmp:
        state_file = Path(tmp) / "state.json"
        async with serve(sim) as url:
            ids = ",".join(str(1000 + i) for i in range(size))
            env_file = write_env_file(Path(tmp) / "bench.env", {"NOTIFIER_MONITOR_IDS": ids})
            env = {
                "PATH": os.environ.get("PATH", ""),
                "DATAFOLD_API_KEY": API_KEY,
                "DATAFOLD_HOST": url,
                "NOTIFIER_WEBHOOK_URLS": hook,
                "NOTIFIER_STATE_FILE": str(state_file),
                "NOTIFIER_POLL_INTERVAL_SECONDS": str(interval),
                "NOTIFIER_POLL_MODE": mode,
                "NOTIFIER_LOG_FORMAT": "json",
                "NOTIFIER_LOG_LEVEL": "info",
            }
            if spread is not None:
                env["NOTIFIER_POLL_SPREAD_SECONDS"] = str(spread)
            proc = await asyncio.create_subprocess_exec(
                CLI,
                "run",
                "--env-file",
                str(env_file),
                env=env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            assert proc.stderr is not None
            durations: list[float] = []
            requests: list[int] = []
            cpu: list[float] = []
            walls: list[float] = []
            last_finish = time.time()
            last_requests = sum(sim.request_counts.values())
            last_runs = sim.request_counts["runs"]
            runs_requests: list[int] = []
            snapshot = feed_snapshot(sim)
            changed: list[int] = []
            last_cpu = proc_cpu_seconds(proc.pid)
            measure_from = 0.0
            seen = 0
            try:
                async for raw in proc.stderr:
                    event = json.loads(raw)
                    if event.get("event") != "cycle_finished":
                        continue
                    seen += 1
                    total = sum(sim.request_counts.values())
                    now_cpu = proc_cpu_seconds(proc.pid)
                    current = feed_snapshot(sim)
                    moved = sum(current[m] != snapshot.get(m) for m in current)
                    snapshot = current
                    finished = time.time()
                    if seen > warmup:  # the first cycle baselines every monitor
                        walls.append(finished - last_finish)
                        durations.append(float(event["duration_seconds"]))
                        requests.append(total - last_requests)
                        cpu.append(now_cpu - last_cpu)
                        changed.append(moved)
                        runs_requests.append(sim.request_counts["runs"] - last_runs)
                    else:
                        measure_from = finished
                    last_requests, last_cpu, last_finish = total, now_cpu, finished
                    last_runs = sim.request_counts["runs"]
                    print(
                        f"  {mode} n={size}: cycle {seen} {event['duration_seconds']:.2f} s, "
                        f"{event['events']} events",
                        file=sys.stderr,
                        flush=True,
                    )
                    if seen >= warmup + cycles:
                        break
                rss = proc_peak_rss_mb(proc.pid)
            finally:
                proc.terminate()
                await proc.wait()
            state_kb = state_file.stat().st_size / 1024
            latencies = detection_latencies(sim, receiver, measure_from)
    await runner.cleanup()
    ideal = size * latency / DEFAULT_CONCURRENCY
    # Plain polling: one runs request per monitor. Feed: the listing pages, plus one runs request
    # for each monitor whose (last_run, state) changed since the previous cycle.
    pages = math.ceil(size / FEED_PAGE_SIZE)
    lower = size if mode == "poll" else pages + (statistics.median(changed) if changed else 0)
    return Result(
        size,
        mode,
        spread,
        durations,
        requests,
        runs_requests,
        cpu,
        rss,
        state_kb,
        latencies,
        lower,
        ideal,
        (load_start, load_average()),
        walls,
    )


def feed_snapshot(sim: Simulator) -> dict[int, tuple[Any, Any]]:
    """Each monitor's (last_run, state) as the monitors listing would show them now."""
    sim.advance()
    snapshot = {}
    for monitor in sim._monitors.values():
        latest = monitor.latest_run()
        snapshot[monitor.id] = (latest.timestamp, latest.state) if latest else (None, None)
    return snapshot


def detection_latencies(sim: Simulator, receiver: Receiver, since: float) -> list[float]:
    """Seconds from a run turning alert/error (its scheduled finish) to the webhook accepting it."""
    latencies = []
    for monitor in sim._monitors.values():  # the bench's own simulator; no public view needed
        for run in monitor.runs.values():
            if run.state not in ("alert", "error") or run.run_id not in receiver.arrivals:
                continue
            assert run.started_at is not None
            finished = run.started_at.timestamp() + monitor.duration
            if finished >= since:
                latencies.append(receiver.arrivals[run.run_id] - finished)
    return latencies


def median(values: list[int] | list[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def report(results: list[Result], args: argparse.Namespace) -> None:
    print()
    print(
        f"datafold-notifier benchmark: API latency {args.latency * 1000:.0f} ms, interval "
        f"{args.interval:g} s, concurrency {DEFAULT_CONCURRENCY} (default), {args.cycles} steady "
        f"cycles after {args.warmup} unmeasured; {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    header = (
        "| monitors | mode | steady cycle (s) | ideal (s) | ratio | requests/cycle | runs listings "
        "| lower bound "
        "| CPU/cycle (s) | CPU/monitor (ms) | CPU/monitor min-max (ms) | CPU/request (ms) "
        "| cores busy | load | peak RSS (MB) "
        "| state (KB) | state/monitor (B) | latency p50 (s) | latency p99 (s) | alerts timed |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for r in results:
        row = r.summary()
        cycle = statistics.median(r.cycles) if r.cycles else math.nan
        reqs = statistics.median(r.requests) if r.requests else math.nan
        cpu = statistics.median(r.cpu) if r.cpu else math.nan
        print(
            f"| {r.size} | {r.mode if r.spread is None else f'{r.mode}, spread {r.spread:g} s'} "
            f"| {cycle:.2f} | {r.ideal:.2f} | {cycle / r.ideal:.2f} "
            f"| {reqs:.0f} | {median(r.runs_requests):.0f} "
            f"| {r.lower_bound:.0f} | {cpu:.2f} | {cpu / r.size * 1000:.3f} "
            f"| {row['cpu_ms_per_monitor_min']:.3f}-{row['cpu_ms_per_monitor_max']:.3f} "
            f"| {row['cpu_ms_per_request']:.3f} | {row['cpu_cores']:.2f} "
            f"| {r.load[0]:.1f}-{r.load[1]:.1f} "
            f"| {r.rss_mb:.0f} | {r.state_kb:.0f} | {r.state_kb * 1024 / r.size:.0f} "
            f"| {percentile(r.latencies, 0.5):.1f} | {percentile(r.latencies, 0.99):.1f} "
            f"| {len(r.latencies)} |"
        )
    print(
        "CPU is the daemon's own user+sys time (/proc/PID/stat) per steady cycle; min-max spans "
        "the steady cycles and load is the machine's 1-minute load average at start-end: on a "
        "shared machine a wide span or a load near the core count means a noisy figure."
    )
    growth = growth_lines([r.summary() for r in results])
    if growth:
        print("\nGrowth with N (least-squares line through the rows):")
        for line in growth:
            print(f"  {line}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000,10000")
    parser.add_argument("--modes", default="poll,feed")
    parser.add_argument("--latency", type=float, default=0.05, help="API latency in seconds")
    parser.add_argument("--interval", type=float, default=60.0, help="poll interval in seconds")
    parser.add_argument("--cycles", type=int, default=3, help="steady cycles to measure")
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="cycles not measured: the first baselines; past ~20,000 monitors the second catches "
        "up on what the first took longer than the interval to do",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--spread", type=float, default=None, help="NOTIFIER_POLL_SPREAD_SECONDS (default: auto)"
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="also write the figures here (for bench/plot.py)"
    )
    args = parser.parse_args()
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        for mode in args.modes.split(","):
            results.append(
                await bench_one(
                    size,
                    mode,
                    latency=args.latency,
                    interval=args.interval,
                    cycles=args.cycles,
                    seed=args.seed,
                    spread=args.spread,
                    warmup=args.warmup,
                )
            )
    report(results, args)
    if args.json is not None:
        document = {
            "measured": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}",
            "api_latency_s": args.latency,
            "interval_s": args.interval,
            "steady_cycles": args.cycles,
            "warmup_cycles": args.warmup,
            "rows": [r.summary() for r in results],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    asyncio.run(main())
