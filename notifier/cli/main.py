"""The `datafold-notifier` command: run, once, check, demo, simulate.

Exit codes: 0 success; 1 the work failed (no monitor could be polled, a check failed); 2 the
configuration, an argument or the state file cannot be used (invalid, locked by another daemon,
unwritable); 141 the output went to a closed pipe (`| head`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import secrets
import signal
import stat
import sys
import tempfile
import unicodedata
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NoReturn

import structlog
from dotenv import dotenv_values

from notifier import __version__
from notifier.deliver.sink import Sink
from notifier.deliver.sinks.console import ConsoleSink
from notifier.demo.server import serve
from notifier.demo.simulator import demo_simulator
from notifier.domain.models import TAG_MAX, Mute, NotifierState
from notifier.route.routes_file import RoutesError, load_routes
from notifier.route.rules import Routes
from notifier.run.config import ConfigError, load_settings
from notifier.run.daemon import (
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
from notifier.run.health import ClusterView
from notifier.run.logs import REDACTOR, configure_logging
from notifier.run.preflight import run_checks
from notifier.run.routes import routes_from_settings
from notifier.run.settings import Settings
from notifier.run.systemd import SystemdNotify
from notifier.store.file import StateError, StateFile, read_state_file, write_state_file

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
#: What a shell reports for a process killed by SIGPIPE: `datafold-notifier check | head -1`.
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE

log = structlog.get_logger("notifier.cli")


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line; the usage is one `--help` away."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"{self.prog}: error: {_clip(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """Every command and option; each value is checked here, before any command acts on it."""
    parser = _Parser(
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
        type=_env_file,
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
        "--interval",
        type=_seconds(*_setting_range("poll_interval_seconds")),
        default=5.0,
        help="poll interval in seconds (default 5, from 1 to 86400)",
    )
    demo.add_argument(
        "--duration",
        type=_seconds(0.0, DEMO_MAX, above=True),
        default=None,
        help="stop after this many seconds (default: run until Ctrl-C)",
    )
    mute = commands.add_parser(
        "mute",
        help="silence a monitor, or every monitor with a tag, for a while; kept in the state, "
        "a running daemon applies it from its next cycle",
    )
    target = mute.add_mutually_exclusive_group(required=True)
    target.add_argument("--monitor", type=_monitor_id, metavar="ID", help="the monitor's ID")
    target.add_argument("--tag", type=_tag, help="every monitor with this tag (case ignored)")
    mute.add_argument(
        "--for",
        dest="duration",
        type=parse_duration,
        required=True,
        metavar="DURATION",
        help="how long: 90s, 30m, 2h, 1d, 1h30m (at most 90d)",
    )
    mute.add_argument(
        "--reason",
        type=_reason,
        help=f"shown by `check` and in the log of each muted event (at most {TEXT_MAX} characters)",
    )
    unmute = commands.add_parser("unmute", help="lift the mutes of a monitor, a tag, or one mute")
    which = unmute.add_mutually_exclusive_group(required=True)
    which.add_argument("--monitor", type=_monitor_id, metavar="ID")
    which.add_argument("--tag", type=_tag)
    which.add_argument(
        "--id", dest="mute_id", type=_mute_id, metavar="MUTE_ID", help="as `check` shows it"
    )
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
    simulate.add_argument(
        "--host", type=_host, default="127.0.0.1", help="address to bind (default 127.0.0.1)"
    )
    simulate.add_argument("--port", type=_port, default=8300, help="port (default 8300)")
    simulate.add_argument(
        "--api-key",
        type=_api_key,
        default="demo-key",
        help="the API key it accepts (default demo-key)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The `datafold-notifier` command; its exit code.

    Output into a closed pipe (`check | head -1`) ends quietly with 141, as a process killed by
    SIGPIPE would, instead of a traceback (Python ignores SIGPIPE; see its "Note on SIGPIPE").
    """
    try:
        try:
            return _command(argv)
        finally:
            sys.stdout.flush()  # where the pipe's closing shows when the output was buffered
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _command(argv: Sequence[str] | None) -> int:
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
    except BrokenPipeError:
        raise  # stdout's reader went away: `main` ends quietly
    except Exception:
        # A bug: report it as one structured event, not loose traceback lines.
        log.exception("crashed", command=args.command)
        return EXIT_FAILED


_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
MUTE_MAX = timedelta(days=90)
#: IDs fit PostgreSQL's bigint, where the mutes of the high-availability store are kept.
ID_MAX = 2**63 - 1
#: The longest tag, reason, mute ID, host or API key an option takes.
TEXT_MAX = 200
#: The longest `demo --duration`: a year.
DEMO_MAX = 365 * 86400.0
#: The longest error line: its start says what failed, its end why.
FAIL_MAX = 500
#: The largest env file read: settings take a few kilobytes.
ENV_FILE_MAX = 1024 * 1024
_MUTE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def parse_duration(text: str) -> timedelta:
    """`90s`, `30m`, `2h`, `1d`, `1h30m`: a positive duration of at most 90 days."""
    found = _DURATION.fullmatch(text.strip().lower())
    if not found or not any(found.groups()):
        raise _invalid(text, "is not a duration (use e.g. 90s, 30m, 2h, 1d)")
    # A number of more digits than 90 days has seconds is too long whatever its unit, and would
    # overflow timedelta (OverflowError, which argparse does not turn into a usage error).
    if any(len(g) > 8 for g in found.groups() if g):
        raise _invalid(text, "is out of range: give more than 0 and at most 90d")
    days, hours, minutes, seconds = (int(g or 0) for g in found.groups())
    duration = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if not timedelta(0) < duration <= MUTE_MAX:
        raise _invalid(text, "is out of range: give more than 0 and at most 90d")
    return duration


def _invalid(text: str, problem: str) -> argparse.ArgumentTypeError:
    """The error for a bad option value: the value (clipped, escaped) and what is wrong."""
    return argparse.ArgumentTypeError(f"{_clip(repr(text), 60)} {problem}")


def _monitor_id(text: str) -> int:
    """A monitor ID: a whole number from 1 to 2**63-1."""
    try:
        value = int(text) if len(text) <= 30 else None
    except ValueError:
        value = None
    if value is None or not 1 <= value <= ID_MAX:
        raise _invalid(text, f"is not a monitor ID (a whole number from 1 to {ID_MAX})")
    return value


def _printable(text: str, what: str, *, collapse: bool = False, limit: int = TEXT_MAX) -> str:
    """`text` stripped (its runs of spaces collapsed too with `collapse`): not empty, at most
    `limit` characters, and nothing a terminal or a log line would misread (control
    characters, undecodable bytes)."""
    cleaned = " ".join(text.split()) if collapse else text.strip()
    if not cleaned:
        raise _invalid(text, f"is no {what}: give one")
    if len(cleaned) > limit:
        raise _invalid(text, f"is too long for a {what}: at most {limit} characters")
    if any(unicodedata.category(char).startswith("C") for char in cleaned):
        raise _invalid(text, f"is no {what}: it has control characters or undecodable bytes")
    return cleaned


def _tag(text: str) -> str:
    return _printable(text, "tag", limit=TAG_MAX)  # a longer tag is cut when read: never matched


def _reason(text: str) -> str:
    return _printable(text, "reason", collapse=True)


def _mute_id(text: str) -> str:
    if not _MUTE_ID.fullmatch(text):
        raise _invalid(text, "is not a mute ID (letters and digits, as `check` shows them)")
    return text


def _api_key(text: str) -> str:
    return _printable(text, "API key")


def _host(text: str) -> str:
    if len(text) > 253 or not text or any(char.isspace() or ord(char) < 32 for char in text):
        raise _invalid(text, "is not a host name or address")
    return text


def _port(text: str) -> int:
    try:
        value = int(text) if len(text) <= 10 else None
    except ValueError:
        value = None
    if value is None or not 0 <= value <= 65535:
        raise _invalid(text, "is not a port (a whole number from 0 to 65535; 0 picks a free one)")
    return value


def _setting_range(name: str) -> tuple[float, float]:
    """The bounds (ge, le) `Settings` puts on a numeric setting, so an option keeps to them."""
    low, high = -math.inf, math.inf
    for bound in Settings.model_fields[name].metadata:  # annotated_types.Ge, Le
        low = float(getattr(bound, "ge", low))
        high = float(getattr(bound, "le", high))
    return low, high


def _seconds(low: float, high: float, *, above: bool = False) -> Callable[[str], float]:
    """A type for a number of seconds from `low` (exclusive when `above`) to `high`."""

    def seconds(text: str) -> float:
        try:
            value = float(text) if len(text) <= 30 else math.nan
        except ValueError:
            value = math.nan
        within = (low < value if above else low <= value) and value <= high
        if not within:  # NaN fails both comparisons
            first = f"more than {low:g}" if above else f"from {low:g}"
            raise _invalid(text, f"is not a number of seconds {first} to {high:g}")
        return value

    return seconds


def _env_file(text: str) -> Path:
    """An env file: a regular file of at most `ENV_FILE_MAX` bytes."""
    path = Path(text)
    try:
        info = path.stat()
    except OSError as exc:
        raise _invalid(text, f"cannot be read: {exc.strerror or type(exc).__name__}") from None
    if stat.S_ISDIR(info.st_mode):
        raise _invalid(text, "is a directory, not an env file")
    if not stat.S_ISREG(info.st_mode):
        raise _invalid(text, "is not a regular file")
    if info.st_size > ENV_FILE_MAX:
        raise _invalid(text, f"is larger than an env file can be ({ENV_FILE_MAX} bytes)")
    return path


async def _mute(settings: Settings, args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    mute = Mute(
        id=secrets.token_hex(4),
        monitor_id=args.monitor,
        tag=args.tag,
        until=now + args.duration,
        reason=args.reason,
        created_at=now,
    )

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
    """`state export FILE` / `state import FILE`: the whole state, mutes included, as JSON.

    An import reads and validates the whole file before the store is opened: a file that is no
    state of this version leaves the store as it was.
    """
    imported = read_state_file(args.file) if args.state_command == "import" else None
    async with open_store(settings) as store:
        where = str(store.path) if isinstance(store, StateFile) else f"PostgreSQL {store.where}"
        if imported is None:
            if not isinstance(store, StateFile):
                state: NotifierState | None = await store.export_state()
            else:
                state = store.peek()
            if state is None:
                raise StateError(f"{where}: no state to export yet")
            if str(args.file) == "-":
                print(state.model_dump_json(indent=None))
            elif _same_file(args.file, settings.state_file):
                # Back to the file store: respect a daemon that may be using that file.
                target = StateFile(args.file)
                with target.locked():
                    target.replace(state)
            else:
                write_state_file(args.file, state)
            print(_state_summary("exported", state, where), file=sys.stderr)
            return EXIT_OK
        if not isinstance(store, StateFile):
            fenced = await store.import_state(imported, force=args.force)
            if fenced is not None:
                print(
                    f"fenced out the leader {fenced}: its next save is refused and it reloads "
                    "the imported state",
                    file=sys.stderr,
                )
        else:
            if _same_file(args.file, store.path):
                raise StateError(f"{args.file} is already the state file")
            with store.locked():  # refuses while a daemon holds it
                store.replace(imported)
        print(_state_summary("imported", imported, where), file=sys.stderr)
        return EXIT_OK


def _same_file(one: Path, other: Path) -> bool:
    try:
        return one.resolve() == other.resolve()
    except (OSError, RuntimeError):  # a symlink loop, a name too long
        return False


def _state_summary(verb: str, state: NotifierState, where: str) -> str:
    return (
        f"{verb} {len(state.monitors)} monitor(s), {len(state.outbox)} waiting notification(s) "
        f"and {len(state.mutes)} mute(s) ({where})"
    )


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _fail(message: str) -> int:
    line = _one_line(REDACTOR.redact(message))
    if len(line) > FAIL_MAX:  # a path of thousands of characters: keep both ends
        half = FAIL_MAX // 2
        line = f"{line[:half]}…{line[-half:]}"
    print(f"datafold-notifier: error: {line}", file=sys.stderr)
    return EXIT_CONFIG


def _one_line(text: str) -> str:
    """`text` with control characters escaped (a file name may hold a newline)."""
    return "".join(
        repr(char)[1:-1] if unicodedata.category(char) in ("Cc", "Cs") else char for char in text
    )


def _clip(text: str, limit: int = 300) -> str:
    """One line of at most `limit` characters (argparse echoes values, which may be huge)."""
    text = _one_line(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


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
                notifier = make_notifier(runtime, spread=False)
                await notifier.load()
                report = await notifier.run_cycle()
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
            notifier = make_notifier(runtime)
            await notifier.load()
            return await _daemon(settings, runtime, notifier).run()


def _daemon(
    settings: Settings, runtime: Runtime, notifier: CycleRunner, *, stop_on_hangup: bool = False
) -> Daemon:
    listener = None
    if settings.health_port is not None:
        listener = StatusListener(settings.health_host, settings.health_port)
    daemon = Daemon(
        notifier,
        interval=settings.poll_interval_seconds,
        grace=settings.shutdown_grace_seconds,
        listener=listener,
        systemd=SystemdNotify.from_environ(os.environ, os.getpid()),
        stop_on_hangup=stop_on_hangup,
    )
    daemon.metrics.watch_clock("datafold", lambda: runtime.client.clock_offset)
    store = runtime.store
    if not isinstance(store, StateFile):
        daemon.metrics.watch_clock("database", lambda: store.clock_offset)
        daemon.metrics.watch_name_clashes(lambda: store.name_clashes)
        daemon.health.cluster = lambda: ClusterView(
            database_answered_at=store.last_reachable_at,
            last_cycle_at=store.last_cycle_at,
            last_cycle_by=store.last_cycle_by,
            lease=store.lease_ttl,
            patience=timedelta(seconds=store.connect_timeout),
        )
    return daemon


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
            writer = _PipeWriter()
            console = ConsoleSink(writer)
            extra: dict[str, Sink] = {console.name: console}
            async with open_runtime(
                settings, routes, extra_sinks=extra, trust_env=_proxy_configured()
            ) as runtime:
                store = runtime.store
                if not isinstance(store, StateFile):
                    raise StateError("the demo keeps its own state file")
                with store.locked():
                    # The demo runs in a terminal: when it closes (SIGHUP), the demo ends.
                    notifier = make_notifier(runtime)
                    await notifier.load()
                    daemon = _daemon(settings, runtime, notifier, stop_on_hangup=True)
                    writer.stop = daemon.request_stop
                    if duration is not None:
                        asyncio.get_running_loop().call_later(duration, daemon.request_stop)
                    code = await daemon.run()
    return EXIT_BROKEN_PIPE if writer.closed else code


class _PipeWriter:
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
            _silence_stdout()
            self.stop()


async def _simulate(host: str, port: int, api_key: str) -> int:
    sim = demo_simulator(api_key)
    async with contextlib.AsyncExitStack() as stack:
        try:
            url = await stack.enter_async_context(serve(sim, host, port))
        except (OSError, UnicodeError) as exc:  # in use, no such address, a malformed name
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return _fail(f"simulate: cannot listen on {host}:{port}: {reason}")
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
