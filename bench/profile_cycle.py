"""Profile one steady poll cycle of N monitors (pyinstrument), the simulator in another process.

python bench/profile_cycle.py --size 5000 [--mode poll] [--html profile.html]
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


async def cycles(size: int, mode: str, port: int, html: str | None, cprofile: bool) -> None:
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
            await notifier.run_cycle()  # baseline
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
    args = parser.parse_args()
    port = free_port()
    server = multiprocessing.Process(
        target=serve_simulator, args=(args.size, args.latency, port), daemon=True
    )
    server.start()
    time.sleep(2 + args.size / 5000)
    try:
        asyncio.run(cycles(args.size, args.mode, port, args.html, args.cprofile))
    finally:
        server.terminate()
        os.sync()


if __name__ == "__main__":
    main()
