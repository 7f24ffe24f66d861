"""What every destination model shares: the routes file's validation context, `env:NAME` and
`file:PATH` secrets, checked URLs, Slack mentions and the strict table model.

Pure: stdlib, pydantic and `notifier.domain`. In a routes file a secret is `env:NAME`, resolved
from the environment passed in, or `file:PATH`, read by the reader passed in (`FileContext`: the
run layer reads, relative to the routes file's directory); built in code it is the value itself.
Secrets are `SecretStr`, and no repr or error message shows them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
)

from notifier.domain.values import (
    PLAIN_HTTP_REFUSED,
    http_url,
    is_remote_plain_http,
)

_ENV_PREFIX = "env:"
_FILE_PREFIX = "file:"
#: How a routes file spells a secret it does not hold.
SECRET_PREFIXES = (_ENV_PREFIX, _FILE_PREFIX)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Destination names end up in logs, the outbox and `check`: keep them one plain word.
DESTINATION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
#: Slack user (U…, W…) and user-group (S…) IDs, or a channel-wide mention.
_MENTION = re.compile(r"[UWS][A-Z0-9]{2,}|@here|@channel")


@dataclass(frozen=True)
class FileContext:
    """Validation context of a routes file: where `env:NAME` resolves, how `file:PATH` is read
    (the path as written to the text, one trailing newline removed; `ValueError` naming the path,
    never the content; None: `file:` is refused), and the plain-http policy."""

    environ: Mapping[str, str]
    allow_http: bool
    read_file: Callable[[str], str] | None = None


def file_context(info: ValidationInfo) -> FileContext | None:
    """The routes file being validated, or None for models built in code."""
    return info.context if isinstance(info.context, FileContext) else None


def resolve_env(value: Any, info: ValidationInfo) -> Any:
    """In a routes file a secret is `env:NAME` or `file:PATH`; built in code (no file context)
    it is the value."""
    context = file_context(info)
    if context is None:
        return value
    if isinstance(value, str) and value.startswith(_FILE_PREFIX):
        return _read_secret_file(value.removeprefix(_FILE_PREFIX).strip(), context)
    if not isinstance(value, str) or not value.startswith(_ENV_PREFIX):
        # Not echoed: it may be the secret itself, written where it must not be.
        raise ValueError(
            'write "env:NAME" or "file:PATH" to read this secret from an environment variable '
            "or a file (secrets are not written in the routes file)"
        )
    name = value.removeprefix(_ENV_PREFIX).strip()
    if not _ENV_NAME.fullmatch(name):
        raise ValueError('after "env:" give an environment variable name (letters, digits, _)')
    if name not in context.environ:
        raise ValueError(f"environment variable {name} is not set")
    resolved = context.environ[name].strip()
    if not resolved:
        raise ValueError(f"environment variable {name} is empty")
    return resolved


def _read_secret_file(path: str, context: FileContext) -> str:
    """The secret `file:PATH` names, read by the run layer; an empty file is refused, as an
    empty variable is (the content is never shown)."""
    if not path:
        raise ValueError('after "file:" give the path of the file holding the secret')
    if context.read_file is None:
        raise ValueError('"file:" secrets are not read here; use "env:NAME"')
    content = context.read_file(path)
    if not content.strip():
        raise ValueError(f"file {path} is empty")
    return content


def env_or_plain_url(value: Any, info: ValidationInfo) -> Any:
    """A URL that need not be secret: `env:NAME`, `file:PATH`, or written out in the file."""
    if (
        file_context(info) is None
        or not isinstance(value, str)
        or value.startswith(SECRET_PREFIXES)
    ):
        return resolve_env(value, info)
    return value


def check_url(url: SecretStr, info: ValidationInfo) -> SecretStr:
    """An http(s) URL as settings require; plain http only to this machine unless allowed."""
    text = http_url(url.get_secret_value())
    context = file_context(info)
    if context is not None and not context.allow_http and is_remote_plain_http(text):
        raise ValueError(f"{PLAIN_HTTP_REFUSED}: use https:// or set NOTIFIER_ALLOW_HTTP=true")
    return SecretStr(text)


def checked_mentions(value: list[str]) -> list[str]:
    for mention in value:
        if not _MENTION.fullmatch(mention):
            raise ValueError(
                f"{mention[:40]!r} is not a Slack user (U…/W…) or user-group (S…) ID, "
                "@here or @channel"
            )
    return value


#: A secret, `env:NAME` or `file:PATH` in a routes file.
EnvSecret = Annotated[SecretStr, BeforeValidator(resolve_env)]
#: A secret http(s) URL (it may carry a token), `env:NAME` or `file:PATH` in a routes file.
SecretUrl = Annotated[SecretStr, BeforeValidator(resolve_env), AfterValidator(check_url)]
#: An http(s) URL written out, `env:NAME` or `file:PATH` (masked either way: a query may carry
#: a token).
PlainOrSecretUrl = Annotated[
    SecretStr, BeforeValidator(env_or_plain_url), AfterValidator(check_url)
]
#: Slack mentions: user or user-group IDs, @here or @channel.
Mentions = Annotated[list[str], AfterValidator(checked_mentions)]


def webhook_destination_name(url: str) -> str:
    """The stable name of a webhook configured by URL alone (no secret in it); `WebhookSink`
    uses it too, so outbox entries stay deliverable."""
    return "webhook-" + hashlib.sha256(url.encode()).hexdigest()[:8]


class StrictModel(BaseModel):
    """A routes-file table: unknown keys are refused (a typo must not pass silently); frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


#: The event kinds a failing run makes (the others: recovered, reminder).
_FAILING = ("alert", "error")


class NoticeSwitches(StrictModel):
    """Datafold-like switches on which of an incident's notifications pass, for a route or a
    destination: `min_consecutive_failures` (nothing until the incident's Nth failing run, so a
    recovery or reminder only follows an incident that got that far) and `notify = "first"`
    (only the first failing run that passes; recoveries and reminders still do)."""

    notify: Literal["all", "first"] = "all"
    min_consecutive_failures: int = Field(1, ge=1, le=1000)

    def lets_through(self, kind: str, failures: int | None) -> bool:
        """Whether an event of `kind` passes, `failures` being its incident's count of failing
        runs so far (this one included); None (unknown, as `check` explains routes): it does."""
        if failures is None:
            return True
        least = self.min_consecutive_failures
        if failures < least:
            return False
        return kind not in _FAILING or self.notify == "all" or failures == least


class DestinationModel(NoticeSwitches):
    """What every destination kind accepts besides its own options."""

    #: Whether a recovery (the monitor passing again) is sent there.
    recovery: bool = True
