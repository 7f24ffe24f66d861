"""Name conditions of a route: a glob or an RE2 regular expression, compiled when the routes
load and matched against untrusted monitor names in bounded time and memory.

Pure: stdlib, pydantic and RE2.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from typing import Any, Protocol, cast

import re2  # type: ignore[import-untyped]  # no type hints: `_Regexp` types the part used
from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

#: Longest `name` glob or `name_regex` a routes file may give, in characters.
PATTERN_MAX = 1000
#: Longest monitor name matched against them; a longer one meets no name condition. With
#: `PATTERN_MAX` and `_RE2_MAX_MEM` this bounds the time one match takes, whatever Datafold sends.
NAME_MATCH_MAX = 1000
#: Memory RE2 may use for one pattern (its program and DFA cache): a pattern that needs more is
#: refused at load. The program size also bounds the time per character of a match.
_RE2_MAX_MEM = 1 << 20


class _Regexp(Protocol):
    """The part of a compiled `re2` pattern used here (google-re2 ships no type hints)."""

    def search(self, text: bytes, /) -> object | None: ...


def _re2_compile(pattern: str) -> _Regexp:
    """`pattern` compiled by RE2 within `_RE2_MAX_MEM`; `ValueError` with RE2's reason if not."""
    options = re2.Options()
    options.max_mem = _RE2_MAX_MEM
    options.log_errors = False  # RE2 would print to stderr; the reason is raised instead
    try:
        return cast(_Regexp, re2.compile(pattern, options))
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "rejected"
        if isinstance(reason, bytes):
            reason = reason.decode(errors="replace")
        raise ValueError(str(reason)[:80]) from None
    except UnicodeError:
        raise ValueError("not valid Unicode text") from None


def _check_length(pattern: str) -> None:
    if len(pattern) > PATTERN_MAX:
        raise ValueError(f"{len(pattern)} characters long: at most {PATTERN_MAX} are accepted")


class NamePattern:
    """A `name` glob or `name_regex`, compiled when the routes load. Names come from Datafold,
    untrusted: a regex runs on RE2 (linear time); a glob on `fnmatch`'s translation, which has no
    nested repetition, so its time grows at most with name length times glob length."""

    __slots__ = ("_folded", "_search", "source")

    def __init__(self, source: str, search: Callable[[str], object], *, folded: bool) -> None:
        self.source = source
        self._search = search
        self._folded = folded

    @classmethod
    def glob(cls, source: str) -> NamePattern:
        """A glob (`*`, `?`, `[abc]`, `[!abc]`) on the whole name, ignoring case (both sides
        casefolded). Raises `ValueError` in words for the routes file."""
        _check_length(source)
        if not source:
            raise ValueError("an empty glob matches no name: give at least one character")
        # `*` becomes an atomic `(?>.*?…)`: nothing to backtrack into (CPython 3.11+).
        return cls(source, re.compile(fnmatch.translate(source.casefold())).match, folded=True)

    @classmethod
    def regex(cls, source: str) -> NamePattern:
        """A regular expression in RE2 syntax, searched in the name; `(?i)` ignores case.
        Raises `ValueError` in words for the routes file."""
        _check_length(source)
        try:
            regexp = _re2_compile(source)
        except ValueError as exc:
            raise ValueError(
                f"not a valid regular expression: {exc} (RE2 syntax: no backreferences or "
                "lookaround; \\z, not \\Z, for the end)"
            ) from None

        def search(text: str) -> object:
            # Bytes: no offsets to decode. A lone surrogate (JSON allows it) becomes "?".
            return regexp.search(text.encode(errors="replace"))

        return cls(source, search, folded=False)

    def matches(self, name: str) -> bool:
        """Whether `name` matches; never when it is longer than `NAME_MATCH_MAX` characters."""
        if len(name) > NAME_MATCH_MAX:
            return False
        return self._search(name.casefold() if self._folded else name) is not None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NamePattern):
            return NotImplemented
        return (self.source, self._folded) == (other.source, other._folded)

    def __hash__(self) -> int:
        return hash((self.source, self._folded))

    def __repr__(self) -> str:
        return f"NamePattern.{'glob' if self._folded else 'regex'}({self.source!r})"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source_type: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        # Built by the `Match` validators from the text; dumped back as that text.
        return core_schema.is_instance_schema(
            cls,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda pattern: pattern.source, return_schema=core_schema.str_schema()
            ),
        )
