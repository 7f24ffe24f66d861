"""Mail over SMTP."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, SecretStr, ValidationInfo, field_validator

from notifier.domain.values import is_loopback
from notifier.route.destinations.fields import DestinationModel, EnvSecret, file_context

#: An email address as the routes file gives it: `local@domain`, one line, no display name.
_EMAIL_ADDRESS = re.compile(
    r"[^@\s<>,;\"()\[\]\\]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?"
)


def _checked_address(value: str) -> str:
    address = value.strip()
    if not _EMAIL_ADDRESS.fullmatch(address):
        raise ValueError(f"{address[:60]!r} is not an email address (local@domain)")
    return address


#: An email address (no display name, no list).
EmailAddress = Annotated[str, AfterValidator(_checked_address)]


class EmailDestination(DestinationModel):
    """Mail over SMTP: STARTTLS (default), implicit TLS, or none (to this machine unless plain
    traffic is allowed). `username` and `password` are `env:` secrets, both or neither."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

    type: Literal["email"] = "email"
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: EnvSecret | None = None
    password: EnvSecret | None = Field(None, validate_default=True)
    sender: EmailAddress = Field(alias="from")
    to: list[EmailAddress] = Field(min_length=1, max_length=100)
    digest_threshold: int | None = Field(None, ge=1)

    @field_validator("host")
    @classmethod
    def _check_host(cls, value: str) -> str:
        host = value.strip()
        if not re.fullmatch(r"[A-Za-z0-9.:_-]+", host):
            raise ValueError("must be a host name or an IP address")
        return host

    @field_validator("password")
    @classmethod
    def _both_or_neither(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if (value is None) != (info.data.get("username") is None):
            raise ValueError("give both username and password, or neither")
        return value

    @field_validator("to")
    @classmethod
    def _plain_only_to_this_machine(cls, value: list[str], info: ValidationInfo) -> list[str]:
        context = file_context(info)
        host = info.data.get("host")
        plain = info.data.get("security") == "none"
        if plain and context is not None and not context.allow_http and not is_loopback(host):
            raise ValueError(
                'security = "none" to a host other than this machine is refused (the mail and '
                'the password would cross the network in clear): use "starttls" or "tls", or set '
                "NOTIFIER_ALLOW_HTTP=true"
            )
        return value

    def secret_values(self) -> list[SecretStr]:
        """What the log pipeline must redact."""
        return [secret for secret in (self.username, self.password) if secret is not None]
