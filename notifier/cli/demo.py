"""`demo` and `simulate`: the notifier against the built-in Datafold simulator, or the
simulator alone."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from notifier.cli.config import proxy_configured, read_routes
from notifier.cli.exits import EXIT_BROKEN_PIPE, EXIT_OK, fail, silence_stdout
from notifier.cli.service import make_daemon
from notifier.deliver.sink import Sink
from notifier.deliver.sinks.console import ConsoleSink
from notifier.demo.recipe import received_line, start_text
from notifier.demo.server import serve
from notifier.demo.simulator import demo_simulator
from notifier.domain.text import escape_controls
from notifier.run.config import load_settings
from notifier.run.logs import configure_logging
from notifier.run.wiring import cycle_runner, open_runtime


async def demo(env_file: Path | None, interval: float, duration: float | None) -> int:
    """The daemon on a state file of its own, printing each notification, until Ctrl-C."""
    sim = demo_simulator()
    with tempfile.TemporaryDirectory(prefix="datafold-notifier-demo-") as tmp:
        async with serve(sim) as url:
            settings = load_settings(
                env_file,
                DATAFOLD_API_KEY="demo-key",
                DATAFOLD_HOST=url,
                NOTIFIER_MONITOR_IDS=",".join(str(m) for m in sim.monitor_ids),
                NOTIFIER_POLL_INTERVAL_SECONDS=str(interval),
                NOTIFIER_LOOKBACK_SECONDS="600",
                NOTIFIER_STATE_FILE=str(Path(tmp) / "demo.state.json"),
            ).model_copy(update={"state_url": None})
            routes = read_routes(settings, env_file)
            configure_logging(
                level=settings.log_level,
                fmt=settings.log_format,
                secrets=[*settings.secrets(), *routes.secrets()],
            )
            print(
                f"datafold-notifier demo: simulated Datafold at {url}, monitors "
                f"{', '.join(str(m) for m in sim.monitor_ids)}, polled every {interval:g} s.\n"
                "The first poll records history silently; the first alert should appear "
                "within about a minute. Ctrl-C to stop.",
                flush=True,
            )
            writer = PipeWriter()
            console = ConsoleSink(writer)
            extra: dict[str, Sink] = {console.name: console}
            async with (
                open_runtime(
                    settings, routes, extra_sinks=extra, trust_env=proxy_configured()
                ) as runtime,
                cycle_runner(runtime) as runner,
            ):
                # The demo runs in a terminal: when it closes (SIGHUP), the demo ends.
                daemon = make_daemon(settings, runtime, runner, stop_on_hangup=True)
                writer.stop = daemon.request_stop
                if duration is not None:
                    asyncio.get_running_loop().call_later(duration, daemon.request_stop)
                code = await daemon.run()
    return EXIT_BROKEN_PIPE if writer.closed else code


class PipeWriter:
    """The demo's console output: when stdout's reader goes away (`demo | head`), the demo
    stops, as a program writing into a closed pipe would."""

    def __init__(self) -> None:
        self.stop: Callable[[], None] = lambda: None
        self.closed = False

    def __call__(self, text: str) -> None:
        if self.closed:
            return
        try:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            self.closed = True
            silence_stdout()
            self.stop()


async def simulate(host: str, port: int, api_key: str) -> int:
    """Serve the simulator (and its webhook inbox) until SIGTERM/SIGINT, having printed how to
    point a notifier at it, its monitors and when they fail."""
    sim = demo_simulator(api_key)
    writer = PipeWriter()
    async with contextlib.AsyncExitStack() as stack:
        try:
            inbox = partial(_print_received, writer)
            url = await stack.enter_async_context(serve(sim, host, port, inbox=inbox))
        except (OSError, UnicodeError) as exc:  # in use, no such address, a malformed name
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return fail(f"simulate: cannot listen on {host}:{port}: {reason}")
        stop = asyncio.Event()
        writer.stop = stop.set
        writer("\n".join(start_text(sim, url, api_key)))
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    return EXIT_BROKEN_PIPE if writer.closed else EXIT_OK


def _print_received(writer: PipeWriter, payload: dict[str, Any]) -> None:
    writer(escape_controls(received_line(payload)))
