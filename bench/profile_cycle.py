"""Profile one steady poll cycle of N monitors (pyinstrument), the simulator in another process.

python bench/profile_cycle.py --size 5000 [--mode poll] [--html profile.html]
python bench/profile_cycle.py --size 10000 --tracemalloc   # what is held at the cycle's peak
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_bench import API_KEY, build_simulator

from notifier.demo.server import serve
from notifier.run.config import load_settings
from notifier.run.logs import configure_logging
from notifier.run.wiring import make_notifier, open_runtime


def serve_simulator(size: int, latency: float, port: int) -> None:
    async def main() -> None:
        sim, _ = build_simulator(size, latency, seed=1)
        async with serve(sim, "127.0.0.1", port):
            await asyncio.Event().wait()

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def peak_snapshots(stop: asyncio.Event, best: list[tracemalloc.Snapshot]) -> None:
    """Every 0.2 s, a snapshot when traced memory is at a new high: what the peak is made of."""
    high = 0
    while not stop.is_set():
        current = tracemalloc.get_traced_memory()[0]
        if current > high:
            high = current
            best[:] = [tracemalloc.take_snapshot()]
        await asyncio.sleep(0.2)


def print_memory(best: list[tracemalloc.Snapshot]) -> None:
    current, peak = tracemalloc.get_traced_memory()
    print(f"traced: {current / 2**20:.1f} MB after the cycles, {peak / 2**20:.1f} MB peak")
    for name, shot in (("at the peak", best[0]), ("after the cycles", tracemalloc.take_snapshot())):
        total = sum(stat.size for stat in shot.statistics("filename"))
        print(f"-- {name}: {total / 2**20:.1f} MB traced; top lines:")
        for stat in shot.statistics("lineno")[:30]:
            print(f"  {stat.size / 2**20:7.2f} MB {stat.count:8d}  {stat.traceback[0]}")


async def cycles(
    size: int,
    mode: str,
    port: int,
    html: str | None,
    cprofile: bool,
    trace: bool = False,
    plain: int = 0,
) -> None:
    from pyinstrument import Profiler

    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            None,
            DATAFOLD_API_KEY=API_KEY,
            DATAFOLD_HOST=f"http://127.0.0.1:{port}",
            NOTIFIER_MONITOR_IDS=",".join(str(1000 + i) for i in range(size)),
            NOTIFIER_WEBHOOK_URLS="http://127.0.0.1:9/unused",
            NOTIFIER_STATE_FILE=str(Path(tmp) / "state.json"),
            NOTIFIER_POLL_MODE=mode,
        )
        configure_logging(level="info", fmt="json", stream=open(os.devnull, "w"))
        async with open_runtime(settings) as runtime:
            notifier = make_notifier(runtime, spread=False)
            if trace:  # the baseline cycle and a steady one, snapshotted at their peak
                tracemalloc.start(1)
                stop, best = asyncio.Event(), [tracemalloc.take_snapshot()]
                watcher = asyncio.create_task(peak_snapshots(stop, best))
                await notifier.run_cycle()
                await notifier.run_cycle()
                stop.set()
                await watcher
                print_memory(best)
                return
            await notifier.run_cycle()  # baseline
            if plain:  # no profiler: CPU time split as the kernel counts it (py-spy may attach)
                for _ in range(plain):
                    before, started = os.times(), time.perf_counter()
                    await notifier.run_cycle()
                    after = os.times()
                    user, system = after.user - before.user, after.system - before.system
                    print(
                        f"steady cycle: {time.perf_counter() - started:.2f} s wall, CPU "
                        f"{user:.2f} s user + {system:.2f} s sys "
                        f"({(user + system) / size * 1000:.3f} ms/monitor)",
                        flush=True,
                    )
                return
            profiler = Profiler(async_mode="enabled") if not cprofile else None
            import cProfile
            import pstats

            cprof = cProfile.Profile() if cprofile else None
            cpu = time.process_time()
            started = time.perf_counter()
            if cprof is not None:
                cprof.enable()
                await notifier.run_cycle()
                cprof.disable()
            else:
                assert profiler is not None
                with profiler:
                    await notifier.run_cycle()
            used = time.process_time() - cpu
            print(
                f"steady cycle: {time.perf_counter() - started:.2f} s wall, "
                f"{used:.2f} s CPU ({used / size * 1000:.3f} ms/monitor)"
            )
            if cprof is not None:
                stats = pstats.Stats(cprof).sort_stats("tottime")
                stats.print_stats(35)
                stats.print_callers("run_in_executor|_has_code_flag|log_fields")
            elif profiler is not None:
                profiler.print(show_all=False)
                if html:
                    Path(html).write_text(profiler.output_html())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=5000)
    parser.add_argument("--mode", default="poll")
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--html")
    parser.add_argument("--cprofile", action="store_true", help="CPU hot spots instead of wall")
    parser.add_argument("--tracemalloc", action="store_true", help="memory at the cycle's peak")
    parser.add_argument(
        "--plain", type=int, default=0, metavar="N", help="N steady cycles, no profiler"
    )
    args = parser.parse_args()
    port = free_port()
    server = multiprocessing.Process(
        target=serve_simulator, args=(args.size, args.latency, port), daemon=True
    )
    server.start()
    time.sleep(2 + args.size / 5000)
    try:
        asyncio.run(
            cycles(
                args.size,
                args.mode,
                port,
                args.html,
                args.cprofile,
                args.tracemalloc,
                args.plain,
            )
        )
    finally:
        server.terminate()
        os.sync()


if __name__ == "__main__":
    main()
