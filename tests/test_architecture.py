"""The architecture's rules, checked on the source (issue 13, point 5).

Each rule reads every module of `notifier/` with `ast` (nothing is imported, except in the one
dynamic check) and fails with the list of offenders. Imports are counted wherever they stand: at
module level, inside functions and under `if TYPE_CHECKING:` (an annotation that names the run
layer is still an arrow pointing up). Only the import-circle rule leaves `TYPE_CHECKING` imports
out, since they never run.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "notifier"

PURE = (
    "notifier.domain",
    "notifier.detect",
    "notifier.route",
    "notifier.deliver.render",
    "notifier.deliver.plan",
    "notifier.deliver.sink",
)
"""Packages (or modules) of decisions and vocabulary: no I/O, no clock, no wiring."""

PURE_MAY_IMPORT_THIRD_PARTY = ("pydantic", "pydantic_core", "re2")
"""Besides the standard library: pydantic for the models, and re2 (a regex engine with bounded
matching time) for user-written patterns. Both compute; neither talks to anything."""

NOT_IN_PURE = (
    "aiohttp",
    "slack_sdk",
    "psycopg",
    "psycopg_pool",
    "aiosmtplib",
    "apprise",
    "tenacity",
    "aiolimiter",
    "notifier.run",
    "notifier.cli",
    "notifier.fetch.datafold",
    "notifier.store",
    "notifier.deliver.sinks",
    "notifier.bounded_http",
)

HTTP_ADAPTERS = ("notifier.fetch", "notifier.deliver.sinks", "notifier.bounded_http")
WIRING = ("notifier.run", "notifier.cli", "notifier.__main__")

NETWORK_LIBRARIES = {
    "aiohttp": (*HTTP_ADAPTERS, "notifier.run", "notifier.demo"),
    "slack_sdk": ("notifier.deliver.sinks",),
    "psycopg": ("notifier.store.postgres",),
    "psycopg_pool": ("notifier.store.postgres",),
    "aiosmtplib": ("notifier.deliver.sinks",),
    "apprise": ("notifier.deliver.sinks",),
}
"""Which library each module family may import: the adapters that speak the protocol, plus the
run layer (the status server, the wiring) and the demo's simulated Datafold server."""

MAX_LINES = 400
DUPLICATE_WINDOW = 6


@dataclass(frozen=True)
class Import:
    """One import statement's target as Python resolves it."""

    target: str
    line: int
    type_checking_only: bool


@dataclass(frozen=True)
class Module:
    """One source file of `notifier/`, parsed."""

    name: str
    path: Path
    text: str
    tree: ast.Module

    @property
    def is_package(self) -> bool:
        """Whether this is a package's `__init__.py` (relative imports resolve from itself)."""
        return self.path.name == "__init__.py"

    @property
    def where(self) -> str:
        """The path as a person types it, relative to the repository."""
        return str(self.path.relative_to(ROOT))


def _module_name(path: Path) -> str:
    """The dotted name: `notifier/run/cycle.py` is `notifier.run.cycle`, a package its folder."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Module]:
    """Every module of `notifier/`, by dotted name."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        name = _module_name(path)
        found[name] = Module(name, path, text, ast.parse(text, filename=str(path)))
    return found


def within(name: str, prefixes: Iterable[str]) -> bool:
    """Whether `name` is one of `prefixes` or inside one of them."""
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _is_type_checking(test: ast.expr) -> bool:
    """`if TYPE_CHECKING:` or `if typing.TYPE_CHECKING:`."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(node: ast.AST, guarded: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every node below `node`, with whether an `if TYPE_CHECKING:` body holds it."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for inner in child.body:
                yield inner, True
                yield from _statements(inner, True)
            for inner in child.orelse:
                yield inner, guarded
                yield from _statements(inner, guarded)
            continue
        yield child, guarded
        yield from _statements(child, guarded)


def imports(module: Module) -> list[Import]:
    """What `module` imports, anywhere in it; `from a import b` is `a.b` when that is a module."""
    known = modules()
    found = []
    for node, guarded in _statements(module.tree):
        if isinstance(node, ast.Import):
            found += [Import(alias.name, node.lineno, guarded) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.name.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if module.is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            if base == "__future__":
                continue
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.append(Import(target if target in known else base, node.lineno, guarded))
    return list(dict.fromkeys(found))


def offenders(rule: str, lines: list[str]) -> str:
    """A failure message: the rule, then one offender a line."""
    return f"{rule}:\n  " + "\n  ".join(sorted(lines))


def test_the_rules_see_the_whole_package() -> None:
    """Guards the guard: a wrong root would make every rule below pass on nothing."""
    assert {"notifier.domain.models", "notifier.run.cycle", "notifier.cli.main"} <= set(modules())


def test_pure_packages_import_no_io_libraries_and_no_outer_layer() -> None:
    """Domain, detect, route and the renderers decide; network, storage and wiring stay out."""
    bad = [
        f"{module.where}:{found.line} imports {found.target}"
        for module in modules().values()
        if within(module.name, PURE)
        for found in imports(module)
        if within(found.target, NOT_IN_PURE)
    ]
    assert not bad, offenders("a pure module imports I/O or an outer layer", bad)


def test_pure_packages_import_only_the_standard_library_pydantic_and_pure_modules() -> None:
    """The allow-list form of the rule above: anything new a pure module reaches for is named."""
    allowed_third_party = (*PURE_MAY_IMPORT_THIRD_PARTY,)
    bad = []
    for module in modules().values():
        if not within(module.name, PURE):
            continue
        for found in imports(module):
            top = found.target.split(".")[0]
            if top in sys.stdlib_module_names or within(found.target, allowed_third_party):
                continue
            if top == "notifier" and within(found.target, PURE):
                continue
            bad.append(f"{module.where}:{found.line} imports {found.target}")
    assert not bad, offenders("a pure module imports beyond stdlib, pydantic and pure", bad)


def test_importing_every_pure_module_loads_no_network_library() -> None:
    """The dynamic form: a fresh interpreter imports each pure module; nothing drags I/O in."""
    pure = sorted(name for name in modules() if within(name, PURE))
    loaded = ("aiohttp", "slack_sdk", "psycopg", "psycopg_pool", "aiosmtplib")
    loaded += ("notifier.run", "notifier.cli")
    script = "\n".join(
        [
            "import importlib, sys",
            f"for name in {pure!r}:",
            "    importlib.import_module(name)",
            f"print(' '.join(m for m in {loaded!r} if m in sys.modules))",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert not result.stdout.split(), (
        f"importing the pure modules {pure} loaded: {result.stdout.strip()}"
    )


def test_only_adapters_import_network_libraries() -> None:
    """aiohttp in the HTTP adapters, run and demo; slack_sdk and aiosmtplib in the sinks;
    psycopg in its store."""
    bad = [
        f"{module.where}:{found.line} imports {found.target} "
        f"(allowed only in {', '.join(NETWORK_LIBRARIES[library])})"
        for module in modules().values()
        for found in imports(module)
        for library in NETWORK_LIBRARIES
        if within(found.target, (library,)) and not within(module.name, NETWORK_LIBRARIES[library])
    ]
    assert not bad, offenders("a network library imported outside its adapters", bad)


def test_only_the_command_line_imports_the_run_layer() -> None:
    """`run/` and `cli/` sit on top: only they (and `python -m notifier`) import them."""
    bad = [
        f"{module.where}:{found.line} imports {found.target}"
        for module in modules().values()
        if not within(module.name, WIRING)
        for found in imports(module)
        if within(found.target, ("notifier.run", "notifier.cli"))
    ]
    assert not bad, offenders("a module below the wiring imports notifier.run or notifier.cli", bad)


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module, or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circles() -> None:
    """Arrows between `notifier` modules (module- and function-level imports; `TYPE_CHECKING`
    ones are left out, as they never run) form no circle."""
    known = modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for module in known.values():
        graph[module.name] |= {
            found.target
            for found in imports(module)
            if found.target in known and not found.type_checking_only
        }
    circles = _circles(graph)
    assert not circles, offenders(
        "modules that import each other", [" -> ".join(c) for c in circles]
    )


def test_no_module_over_400_lines() -> None:
    """A module past 400 lines holds more than one job; split it along them."""
    bad = [
        f"{module.where}: {lines} lines"
        for module in modules().values()
        if (lines := len(module.text.splitlines())) > MAX_LINES
    ]
    assert not bad, offenders(f"modules over {MAX_LINES} lines", bad)


def _skipped_lines(tree: ast.Module) -> set[int]:
    """Line numbers of imports and docstrings (a bare string statement, attribute docstrings
    too): repeats there are not code worth merging."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        docstring = (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        )
        if docstring or isinstance(node, ast.Import | ast.ImportFrom):
            assert isinstance(node, ast.stmt)
            skipped |= set(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return skipped


def _kept_lines(module: Module) -> list[tuple[int, str]]:
    """(line number, stripped text) of the lines that count towards a repeat."""
    skipped = _skipped_lines(module.tree)
    kept = []
    for number, raw in enumerate(module.text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#") or number in skipped:
            continue
        if not any(ch.isalnum() for ch in line):
            continue
        kept.append((number, line))
    return kept


def test_no_block_of_six_lines_repeats() -> None:
    """Six consecutive kept lines (blank lines, comments, docstrings, imports and lone punctuation
    left out; whitespace stripped) that stand twice, in one module or two, want one home.
    Exact repeats only; overlapping windows are reported as one block with its first twin."""
    kept = {module.where: _kept_lines(module) for module in modules().values()}
    windows: dict[tuple[str, ...], list[tuple[str, int]]] = defaultdict(list)
    for where, lines in kept.items():
        for start in range(len(lines) - DUPLICATE_WINDOW + 1):
            key = tuple(line for _, line in lines[start : start + DUPLICATE_WINDOW])
            windows[key].append((where, start))
    twins: dict[tuple[str, int], str] = {}
    for places in windows.values():
        for where, start in places[1:] if len(places) > 1 else ():
            first_where, first_start = places[0]
            twins.setdefault((where, start), f"{first_where}:{kept[first_where][first_start][0]}")
            twins.setdefault((first_where, first_start), f"{where}:{kept[where][start][0]}")
    bad = []
    for where, start in sorted(twins):
        if (where, start - 1) in twins:
            continue
        end = start
        while (where, end + 1) in twins:
            end += 1
        first = kept[where][start][0]
        last = kept[where][end + DUPLICATE_WINDOW - 1][0]
        bad.append(f"{where}:{first}-{last} repeats {twins[(where, start)]}")
    assert not bad, offenders(f"blocks of {DUPLICATE_WINDOW}+ identical lines", bad)
