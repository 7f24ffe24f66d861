"""The `datafold-notifier` command: run, once, check, demo, simulate.

Exit codes: 0 success; 1 the work failed (no monitor could be polled, a check failed); 2 the
configuration or the state file cannot be used (invalid, locked by another daemon, unwritable).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import signal
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog
from dotenv import dotenv_values

from notifier import __version__
from notifier.daemon import (
    CycleRunner,
    Daemon,
    Runtime,
    StatusError,
    StatusListener,
    make_leased,
    make_notifier,
    open_runtime,
    open_store,
)
from notifier.logs import REDACTOR, configure_logging
from notifier.models import Mute, NotifierState
from notifier.preflight import run_checks
from notifier.routing import Routes, RoutesError, load_routes, routes_from_settings
from notifier.settings import ConfigError, Settings, load_settings
from notifier.simulator import demo_simulator, serve
from notifier.sinks import Sink
from notifier.sinks.console import ConsoleSink
from notifier.state import StateError, StateFile
from notifier.systemd import SystemdNotify

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2

log = structlog.get_logger("notifier.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="datafold-notifier",
        description=(
            "Polls Datafold monitor runs and sends each new alert and error run to Slack and "
            "signed webhooks, exactly once. Configured by environment variables (and a .env "
            "file): see settings.example.env."
        ),
        epilog="Exit codes: 0 success, 1 the work failed, 2 configuration or state file unusable.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--env-file",
        type=Path,
        default=None,
        help="read settings from this file instead of ./.env (environment variables still win)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "run", help="the daemon: poll every interval until SIGTERM/SIGINT, then drain and exit 0"
    )
    commands.add_parser(
        "once",
        help="one poll cycle with delivery, then exit (1 if no monitor could be polled)",
    )
    commands.add_parser(
        "check",
        help="check the configuration, API key, monitors, routes, Slack, webhooks and state; "
        "one line each",
    )
    demo = commands.add_parser(
        "demo",
        help="run the daemon against the built-in Datafold simulator, printing notifications",
    )
    demo.add_argument(
        "--interval", type=float, default=5.0, help="poll interval in seconds (default 5)"
    )
    demo.add_argument(
        "--duration",
        type=float,
        default=None,
        help="stop after this many seconds (default: run until Ctrl-C)",
    )
    mute = commands.add_parser(
        "mute",
        help="silence a monitor, or every monitor with a tag, for a while; kept in the state, "
        "a running daemon applies it from its next cycle",
    )
    target = mute.add_mutually_exclusive_group(required=True)
    target.add_argument("--monitor", type=int, metavar="ID", help="the monitor's ID")
    target.add_argument("--tag", help="every monitor with this tag (case ignored)")
    mute.add_argument(
        "--for",
        dest="duration",
        type=parse_duration,
        required=True,
        metavar="DURATION",
        help="how long: 90s, 30m, 2h, 1d, 1h30m (at most 90d)",
    )
    mute.add_argument("--reason", help="shown by `check` and in the log of each muted event")
    unmute = commands.add_parser("unmute", help="lift the mutes of a monitor, a tag, or one mute")
    which = unmute.add_mutually_exclusive_group(required=True)
    which.add_argument("--monitor", type=int, metavar="ID")
    which.add_argument("--tag")
    which.add_argument("--id", dest="mute_id", metavar="MUTE_ID", help="as `check` shows it")
    state = commands.add_parser(
        "state",
        help="move the state between the file and PostgreSQL (NOTIFIER_STATE_URL) without "
        "re-notifying anything",
    )
    state_commands = state.add_subparsers(dest="state_command", required=True, metavar="ACTION")
    export = state_commands.add_parser(
        "export", help="write the configured store's state (file or PostgreSQL) to a JSON file"
    )
    export.add_argument("file", type=Path, help="where to write it ('-' for stdout)")
    import_ = state_commands.add_parser(
        "import",
        help="replace the configured store's state (file or PostgreSQL) with a JSON state file",
    )
    import_.add_argument("file", type=Path, help="a state file, e.g. datafold-notifier.state.json")
    import_.add_argument(
        "--force",
        action="store_true",
        help="import although a replica holds the PostgreSQL lease (it may overwrite the import)",
    )
    simulate = commands.add_parser(
        "simulate", help="serve the built-in Datafold simulator only, for trying things out"
    )
    simulate.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    simulate.add_argument("--port", type=int, default=8300, help="port (default 8300)")
    simulate.add_argument(
        "--api-key", default="demo-key", help="the API key it accepts (default demo-key)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "simulate":
            return asyncio.run(_simulate(args.host, args.port, args.api_key))
        if args.command == "demo":
            return asyncio.run(_demo(args.env_file, args.interval, args.duration))
        settings = load_settings(args.env_file)
        if args.command in ("mute", "unmute", "state"):
            configure_logging(
                level=settings.log_level, fmt=settings.log_format, secrets=settings.secrets()
            )
            if args.command == "state":
                return asyncio.run(_state(settings, args))
            return asyncio.run(
                _mute(settings, args) if args.command == "mute" else _unmute(settings, args)
            )
        _require_work(settings, args.command)
        routes = _load_routes(settings, args.env_file)
        configure_logging(
            level=settings.log_level,
            fmt=settings.log_format,
            secrets=[*settings.secrets(), *routes.secrets()],
        )
        if settings.routes_file is not None and (
            settings.slack_bot_token or settings.slack_webhook_url or settings.webhook_urls
        ):
            log.warning(
                "environment_destinations_ignored",
                reason="NOTIFIER_ROUTES_FILE names the destinations; SLACK_BOT_TOKEN, "
                "SLACK_WEBHOOK_URL and NOTIFIER_WEBHOOK_URLS are used only through env: in it",
            )
        if args.command == "check":
            return asyncio.run(
                run_checks(settings, routes, sys.stdout, trust_env=_proxy_configured())
            )
        if args.command == "once":
            return asyncio.run(_once(settings, routes))
        return asyncio.run(_run(settings, routes))
    except ConfigError as exc:
        return _fail(f"configuration: {exc}")
    except RoutesError as exc:
        return _fail(f"routes: {exc}")
    except (StateError, StatusError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except Exception:
        # A bug: report it as one structured event, not loose traceback lines.
        log.exception("crashed", command=args.command)
        return EXIT_FAILED


_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
MUTE_MAX = timedelta(days=90)


def parse_duration(text: str) -> timedelta:
    """`90s`, `30m`, `2h`, `1d`, `1h30m`: a positive duration of at most 90 days."""
    found = _DURATION.fullmatch(text.strip().lower())
    if not found or not any(found.groups()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (use e.g. 90s, 30m, 2h, 1d)")
    days, hours, minutes, seconds = (int(g or 0) for g in found.groups())
    duration = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if not timedelta(0) < duration <= MUTE_MAX:
        raise argparse.ArgumentTypeError(f"{text!r}: give more than 0 and at most 90d")
    return duration


async def _mute(settings: Settings, args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    mute = Mute(
        id=secrets.token_hex(4),
        monitor_id=args.monitor,
        tag=args.tag.strip() if args.tag else None,
        until=now + args.duration,
        reason=" ".join(args.reason.split())[:200] if args.reason else None,
        created_at=now,
    )
    if mute.tag == "":
        raise ConfigError("--tag: give a tag")

    def add(mutes: list[Mute]) -> list[Mute]:
        return [m for m in mutes if m.until > now] + [mute]

    async with open_store(settings) as store:
        if not isinstance(store, StateFile):
            await store.add_mute(mute)
        else:
            store.update_mutes(add)
    log.info("mute_set", mute=mute.id, muted=mute.target, until=mute.until.isoformat())
    reason = f": {mute.reason}" if mute.reason else ""
    print(f"muted {mute.target} until {_when(mute.until)} (mute {mute.id}){reason}")
    return EXIT_OK


async def _unmute(settings: Settings, args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    lifted: list[Mute] = []

    def remove(mutes: list[Mute]) -> list[Mute]:
        kept = []
        for m in mutes:
            chosen = (
                (args.monitor is not None and m.monitor_id == args.monitor)
                or (args.tag is not None and (m.tag or "").casefold() == args.tag.casefold())
                or (args.mute_id is not None and m.id == args.mute_id)
            )
            if chosen and m.until > now:
                lifted.append(m)
            elif m.until > now:
                kept.append(m)
        return kept

    async with open_store(settings) as store:
        if not isinstance(store, StateFile):
            removed = await store.remove_mutes(
                monitor_id=args.monitor, tag=args.tag, mute_id=args.mute_id
            )
            lifted += [m for m in removed if m.until > now]
        else:
            store.update_mutes(remove)
    if not lifted:
        print("no active mute matched", file=sys.stderr)
        return EXIT_FAILED
    for m in lifted:
        log.info("mute_lifted", mute=m.id, muted=m.target)
        print(f"unmuted {m.target} (mute {m.id}, was until {_when(m.until)})")
    return EXIT_OK


async def _state(settings: Settings, args: argparse.Namespace) -> int:
    """`state export FILE` / `state import FILE`: the whole state, mutes included, as JSON."""
    async with open_store(settings) as store:
        where = str(store.path) if isinstance(store, StateFile) else f"PostgreSQL {store.where}"
        if args.state_command == "export":
            if not isinstance(store, StateFile):
                state: NotifierState | None = await store.export_state()
            else:
                state = store.peek()
            if state is None:
                raise StateError(f"{where}: no state to export yet")
            data = state.model_dump_json(indent=None)
            if str(args.file) == "-":
                print(data)
            else:
                target = StateFile(args.file)
                with target.locked():
                    target.save(state)
            print(_state_summary("exported", state, where), file=sys.stderr)
            return EXIT_OK
        source = StateFile(args.file)
        imported = source.peek()
        if imported is None:
            raise StateError(f"state file {args.file} does not exist")
        if not isinstance(store, StateFile):
            await store.import_state(imported, force=args.force)
        else:
            if store.path.resolve() == args.file.resolve():
                raise StateError(f"{args.file} is already the state file")
            with store.locked():  # refuses while a daemon holds it
                store.save(imported)
        print(_state_summary("imported", imported, where), file=sys.stderr)
        return EXIT_OK


def _state_summary(verb: str, state: NotifierState, where: str) -> str:
    return (
        f"{verb} {len(state.monitors)} monitor(s), {len(state.outbox)} waiting notification(s) "
        f"and {len(state.mutes)} mute(s) ({where})"
    )


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _fail(message: str) -> int:
    print(f"datafold-notifier: error: {REDACTOR.redact(message)}", file=sys.stderr)
    return EXIT_CONFIG


def _load_routes(settings: Settings, env_file: Path | None) -> Routes:
    """The routes file's rules, or one default route to the destinations of the environment.

    `env:NAME` references in the file resolve against the environment and the env file.
    """
    if settings.routes_file is None:
        return routes_from_settings(settings)
    dotenv = env_file or Path(".env")
    file_values = dotenv_values(dotenv) if dotenv.is_file() else {}
    environ = {k: v for k, v in file_values.items() if v is not None} | dict(os.environ)
    return load_routes(settings.routes_file, environ, allow_http=settings.allow_http)


def _proxy_configured() -> bool:
    """Whether aiohttp should read proxy settings from the environment (costly per request)."""
    names = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")
    return any(os.environ.get(n) or os.environ.get(n.lower()) for n in names)


def _require_work(settings: Settings, command: str) -> None:
    if not settings.monitor_ids and not settings.monitor_tags:
        raise ConfigError(
            "NOTIFIER_MONITOR_IDS: is empty: name at least one monitor ID "
            "(or tags in NOTIFIER_MONITOR_TAGS)"
        )
    if command in ("run", "once") and not settings.has_destination():
        raise ConfigError(
            "no destination: set SLACK_BOT_TOKEN and SLACK_CHANNEL, SLACK_WEBHOOK_URL, "
            "or NOTIFIER_WEBHOOK_URLS"
        )


async def _once(settings: Settings, routes: Routes) -> int:
    async with open_runtime(settings, routes, trust_env=_proxy_configured()) as runtime:
        store = runtime.store
        if not isinstance(store, StateFile):
            if not await store.try_acquire():
                log.error("once_failed", reason="another replica holds the lease")
                return EXIT_FAILED
            leased = make_leased(runtime, spread=False)
            keeper = asyncio.create_task(leased.keep_lease(lambda: None))
            try:
                report = await leased.run_cycle()
            finally:
                keeper.cancel()
                await asyncio.gather(keeper, return_exceptions=True)
                await leased.release()
            if report.standby:
                log.error("once_failed", reason="the lease lapsed during the cycle")
                return EXIT_FAILED
        else:
            with store.locked():
                report = await make_notifier(runtime, spread=False).run_cycle()
    if report.key_refused and report.all_failed:
        log.error("once_failed", reason="Datafold refused the API key")
        return EXIT_FAILED
    if report.all_failed:
        log.error("once_failed", reason="no monitor could be polled")
        return EXIT_FAILED
    return EXIT_OK


async def _run(settings: Settings, routes: Routes) -> int:
    async with open_runtime(settings, routes, trust_env=_proxy_configured()) as runtime:
        store = runtime.store
        if not isinstance(store, StateFile):
            return await _daemon(settings, runtime, make_leased(runtime)).run()
        with store.locked():
            return await _daemon(settings, runtime, make_notifier(runtime)).run()


def _daemon(settings: Settings, runtime: Runtime, notifier: CycleRunner) -> Daemon:
    listener = None
    if settings.health_port is not None:
        listener = StatusListener(settings.health_host, settings.health_port)
    return Daemon(
        notifier,
        interval=settings.poll_interval_seconds,
        grace=settings.shutdown_grace_seconds,
        listener=listener,
        systemd=SystemdNotify.from_environ(os.environ, os.getpid()),
    )


async def _demo(env_file: Path | None, interval: float, duration: float | None) -> int:
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
            routes = _load_routes(settings, env_file)
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
            console = ConsoleSink()
            extra: dict[str, Sink] = {console.name: console}
            async with open_runtime(
                settings, routes, extra_sinks=extra, trust_env=_proxy_configured()
            ) as runtime:
                store = runtime.store
                if not isinstance(store, StateFile):
                    raise StateError("the demo keeps its own state file")
                with store.locked():
                    daemon = _daemon(settings, runtime, make_notifier(runtime))
                    if duration is not None:
                        asyncio.get_running_loop().call_later(duration, daemon.request_stop)
                    return await daemon.run()


async def _simulate(host: str, port: int, api_key: str) -> int:
    sim = demo_simulator(api_key)
    async with serve(sim, host, port) as url:
        print(
            f"Datafold simulator at {url} (API key {api_key!r}); monitors "
            f"{', '.join(str(m) for m in sim.monitor_ids)}. Ctrl-C to stop.",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    return EXIT_OK
