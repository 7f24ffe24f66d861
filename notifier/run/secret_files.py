"""Secrets read from files, as Docker and Kubernetes mount them: every secret setting NAME may be
given as NAME_FILE instead, the path of a file holding the value (the convention of the official
images, such as postgres's POSTGRES_PASSWORD_FILE); and the reader behind the routes file's
`file:PATH`.

A file's value is its text with one trailing newline ("\\n" or "\\r\\n") removed, nothing else; an
empty file is an empty variable (as if unset). NAME and NAME_FILE both set in one place (the
environment, or the env file) is refused; across places the environment wins over the env file
as for any setting, so NAME_FILE in the environment overrides NAME in `.env`. A relative path is
relative to the working directory, like every path setting. Errors name the setting and the
path, never the content. The secret settings are found on the model (every field typed
`SecretStr`, optional or in a list), not listed by hand.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, SecretStr
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource

#: What a secret file may hold at most: a token, a URL or a few of them, never a log file.
MAX_SECRET_FILE_BYTES = 64 * 1024
#: NAME + this suffix: the variable that names NAME's file.
FILE_SUFFIX = "_FILE"


class SecretFileError(ValueError):
    """A secret file that cannot be used, in one line naming the path (never the content);
    `missing` when nothing is there at all (`check --routes` stands in for those)."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


def read_secret_file(path: Path) -> str:
    """The secret in the regular file at `path`: UTF-8 text of at most `MAX_SECRET_FILE_BYTES`,
    one trailing newline removed. Raises `SecretFileError`: `cannot read PATH (reason)`.

    Opened without blocking and refused unless a regular file (a symlink to one, as Kubernetes
    mounts secrets, is followed), so a FIFO or a device cannot hang or flood the start-up."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        missing = exc.errno in (errno.ENOENT, errno.ENOTDIR)
        raise SecretFileError(_cannot(path, _reason(exc)), missing=missing) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise SecretFileError(_cannot(path, "it is a directory"))
        if not stat.S_ISREG(mode):
            raise SecretFileError(_cannot(path, "not a regular file"))
        data = _read_at_most(fd, MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise SecretFileError(_cannot(path, _reason(exc))) from None
    finally:
        os.close(fd)
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise SecretFileError(_cannot(path, f"larger than {MAX_SECRET_FILE_BYTES} bytes"))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretFileError(_cannot(path, "not UTF-8 text")) from None
    return without_trailing_newline(text)


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def without_trailing_newline(text: str) -> str:
    """`text` less one trailing "\\r\\n" or "\\n" (editors and `echo` add one); nothing else."""
    return text.removesuffix("\r\n") if text.endswith("\r\n") else text.removesuffix("\n")


def _cannot(path: Path, reason: str) -> str:
    return f"cannot read {path} ({reason})"


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def holds_secret(annotation: Any) -> bool:
    """Whether a field typed `annotation` holds a secret: `SecretStr`, optional or in a list."""
    return annotation is SecretStr or any(holds_secret(arg) for arg in get_args(annotation))


def secret_fields(model: type[BaseModel]) -> dict[str, str]:
    """Each secret field of `model` by the variable that sets it: {variable: field name}."""
    return {
        str(info.validation_alias or name).upper(): name
        for name, info in model.model_fields.items()
        if holds_secret(info.annotation)
    }


def read_secret_variables(
    variables: Mapping[str, str | None], names: Collection[str], given: Collection[str] = ()
) -> dict[str, str]:
    """The secrets of one place (the environment or the env file; `variables` keyed in lower
    case, empty ones left out) that come as NAME_FILE, read as {name in lower case: value}.

    `names` are the secret settings; those in `given` (lower case) are set by a place that wins
    over this one, so their files are not read. An empty file is left out, as an empty variable
    is. Raises `SecretFileError` naming the variable: NAME and NAME_FILE both set, or the file
    unusable."""
    found: dict[str, str] = {}
    for name in names:
        key, file_variable = name.lower(), f"{name}{FILE_SUFFIX}"
        path = variables.get(file_variable.lower())
        if not path or key in given:
            continue
        if variables.get(key):
            raise SecretFileError(f"{name} and {file_variable} are both set: give one of them")
        try:
            value = read_secret_file(Path(path))
        except SecretFileError as exc:
            raise SecretFileError(f"{file_variable}: {exc}", missing=exc.missing) from None
        if value:
            found[key] = value
    return found


class SecretFilesSource(EnvSettingsSource):
    """The secret settings one place gives as NAME_FILE, read from their files as NAME; ranked
    just below that place's own variables (which cannot clash: both set is refused)."""

    def __init__(
        self, settings_cls: type[BaseSettings], place: EnvSettingsSource, given: Collection[str]
    ) -> None:
        self._place = place
        self._given = given
        super().__init__(settings_cls, case_sensitive=False, env_ignore_empty=True)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        names = secret_fields(self.settings_cls)
        return read_secret_variables(self._place.env_vars, names, self._given)


def with_secret_files(
    settings_cls: type[BaseSettings],
    arguments: PydanticBaseSettingsSource,
    places: Sequence[PydanticBaseSettingsSource],
    last: PydanticBaseSettingsSource,
) -> tuple[PydanticBaseSettingsSource, ...]:
    """pydantic-settings' sources, first to last (`arguments`, `places` such as the environment
    and the env file, `last`), with each place's NAME_FILE read right after its own variables.
    Raises `SecretFileError`."""
    given = {str(key).lower() for key in getattr(arguments, "init_kwargs", {})}
    sources: list[PydanticBaseSettingsSource] = [arguments]
    for place in places:
        sources.append(place)
        if isinstance(place, EnvSettingsSource):
            sources.append(SecretFilesSource(settings_cls, place, frozenset(given)))
            # What this place sets, NAME or NAME_FILE, wins over the places after it.
            given |= {key.lower().removesuffix(FILE_SUFFIX.lower()) for key in place.env_vars}
    return (*sources, last)
