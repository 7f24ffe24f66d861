"""The routes file's JSON Schema, generated from the models, so editors (Taplo, Even Better TOML)
check a file as it is typed; `docs/routes.schema.json` is its committed output
(`python tools/routes_schema.py` writes it; a test fails when it is stale).

Pure: builds a dict and its text. The schema describes the file, not the models: a secret is an
`env:NAME` or `file:PATH` string, a time of day `"HH:MM"`, a destination needs its `type`. It
accepts what the models accept as the docs spell it; it is stricter only against spellings the
models merely tolerate (their Python names `continue_`, `sender`, `secrets`; pydantic's lax
`"yes"` or `"587"` for a boolean or a number). It is looser where JSON Schema cannot say the
rule: a route's `to` naming a defined destination, names unique ignoring case, plain http
(NOTIFIER_ALLOW_HTTP decides), what an `env:` variable or a `file:` holds, a time zone's
existence, a regex RE2 cannot compile.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from notifier.route.destinations import DESTINATION_NAME, DESTINATION_TYPES
from notifier.route.destinations.alertmanager import RESERVED_LABELS
from notifier.route.destinations.fields import env_or_plain_url, resolve_env
from notifier.route.patterns import PATTERN_MAX, NamePattern
from notifier.route.rules import Routes

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
#: A secret in the file: `env:NAME` or `file:PATH` (spaces around the name or path are stripped,
#: as the models do).
SECRET_REFERENCE: dict[str, Any] = {
    "type": "string",
    "pattern": r"^(env:\s*[A-Za-z_][A-Za-z0-9_]*\s*|file:\s*\S.*)$",
    "description": 'A secret, never written here: "env:NAME" reads it from the environment '
    'variable NAME, "file:PATH" from a file (a relative PATH from this file\'s directory).',
}
#: An http(s) URL with a host and no `user:password@` (the scheme is case-insensitive).
HTTP_URL: dict[str, Any] = {
    "type": "string",
    "pattern": r"^\s*[Hh][Tt][Tt][Pp][Ss]?://[^/?#@\s]+([/?#].*)?$",
}
#: `"HH:MM"`; a TOML local time (`22:00:00`, unquoted) reaches a schema as `"22:00:00"`.
TIME_OF_DAY: dict[str, Any] = {
    "type": "string",
    "pattern": r"^\s*([01][0-9]|2[0-3]):[0-5][0-9](:00(\.0+)?)?\s*$",
    "description": 'A time of day, "HH:MM" from 00:00 to 23:59.',
}
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _any_case(word: str) -> str:
    """A JSON Schema regex (ECMA 262 has no `(?i)`) for `word` in any case."""
    return "".join(f"[{char.upper()}{char.lower()}]" for char in word)


def _string_items(pattern: str) -> dict[str, Any]:
    return {"items": {"type": "string", "pattern": pattern}}


#: What each field's generated schema gains, by model and key in the file: rules its validators
#: check in code, which pydantic cannot see.
_FIELD_RULES: dict[tuple[str, str], dict[str, Any]] = {
    ("QuietHours", "start"): TIME_OF_DAY,
    ("QuietHours", "end"): TIME_OF_DAY,
    ("QuietHours", "timezone"): {
        "minLength": 1,
        "description": "An IANA time zone such as Europe/Berlin, or UTC.",
    },
    ("QuietHours", "days"): _string_items(
        r"^\s*(" + "|".join(_any_case(day) for day in _DAYS) + r")\s*$"
    ),
    ("Match", "name"): {"minLength": 1, "description": "A glob on the whole name, any case."},
    ("Match", "name_regex"): {"description": "An RE2 regular expression searched in the name."},
    ("SlackDestination", "mentions"): _string_items(r"^([UWS][A-Z0-9]{2,}|@here|@channel)$"),
    ("SlackWebhookDestination", "mentions"): _string_items(r"^([UWS][A-Z0-9]{2,}|@here|@channel)$"),
    ("Route", "to"): _string_items(f"^{DESTINATION_NAME.pattern}$"),
    ("DefaultRoute", "to"): _string_items(f"^{DESTINATION_NAME.pattern}$"),
    ("PagerDutyDestination", "url"): HTTP_URL,
    ("EmailDestination", "host"): {"pattern": r"^\s*[A-Za-z0-9.:_-]+\s*$"},
    ("EmailDestination", "from"): {"pattern": r"^\s*[^@\s]+@[A-Za-z0-9][A-Za-z0-9.-]*\s*$"},
    ("EmailDestination", "to"): _string_items(r"^\s*[^@\s]+@[A-Za-z0-9][A-Za-z0-9.-]*\s*$"),
    ("AlertmanagerDestination", "labels"): {
        "propertyNames": {
            "pattern": r"^(?!__|tag_)[a-zA-Z_][a-zA-Z0-9_]*$",
            "not": {"enum": sorted(RESERVED_LABELS)},
        },
        "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 1024},
    },
}
#: Fields whose generated schema is replaced: the file spells them otherwise than the model.
_FIELD_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("WebhookDestination", "secret"): {
        "anyOf": [SECRET_REFERENCE, {"type": "array", "items": SECRET_REFERENCE}],
        "description": 'One "env:NAME" or "file:PATH", or a list; each variable or file may '
        "hold several comma-separated whsec_ secrets during a rotation.",
    },
}
#: Rules on a whole table, beyond its keys.
_MODEL_RULES: dict[str, dict[str, Any]] = {
    # `username` and `password` come both or neither.
    "EmailDestination": {"dependentRequired": {"username": ["password"], "password": ["username"]}},
}


class _FileSchema(GenerateJsonSchema):
    """pydantic's generator, taught the routes file's own spellings of a few types."""

    def is_instance_schema(self, schema: core_schema.IsInstanceSchema) -> JsonSchemaValue:
        if schema["cls"] is NamePattern:  # compiled by `Match` from the text
            return {"type": "string", "maxLength": PATTERN_MAX}
        return super().is_instance_schema(schema)

    def function_before_schema(
        self, schema: core_schema.BeforeValidatorFunctionSchema
    ) -> JsonSchemaValue:
        function = schema["function"]["function"]
        if function is resolve_env:
            return dict(SECRET_REFERENCE)
        if function is env_or_plain_url:
            return {"anyOf": [SECRET_REFERENCE, HTTP_URL]}
        return super().function_before_schema(schema)

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        return self.generate_inner(schema["schema"])  # TOML has no null: a key is left out

    def time_schema(self, schema: core_schema.TimeSchema) -> JsonSchemaValue:
        return dict(TIME_OF_DAY)


def routes_json_schema() -> dict[str, Any]:
    """The JSON Schema of a routes file (a TOML document read as JSON)."""
    schema = Routes.model_json_schema(
        by_alias=True, mode="validation", schema_generator=_FileSchema
    )
    definitions: dict[str, dict[str, Any]] = schema["$defs"]
    known = {(name, key) for name, table in definitions.items() for key in table["properties"]}
    stale = sorted({*_FIELD_RULES, *_FIELD_SCHEMAS} - known) + sorted(
        {*_MODEL_RULES} - {*definitions}
    )
    if stale:  # a model or field renamed: its rules would silently stop applying
        raise LookupError(f"schema rules for fields the models no longer have: {stale}")
    for name, definition in definitions.items():
        properties: dict[str, dict[str, Any]] = definition["properties"]
        for key, field in properties.items():
            field.pop("title", None)
            if field.get("default", 0) is None:
                del field["default"]
            field.update(_FIELD_RULES.get((name, key), {}))
            if (name, key) in _FIELD_SCHEMAS:
                properties[key] = dict(_FIELD_SCHEMAS[name, key])
        definition.update(_MODEL_RULES.get(name, {}))
    for model in DESTINATION_TYPES.values():
        # The models default `type`; the file must give it (it picks the model).
        definition = definitions[model.__name__]
        definition["required"] = ["type", *definition.get("required", [])]
    properties = schema["properties"]
    for field in properties.values():
        field.pop("title", None)
        field.pop("default", None)
    properties["destinations"].update(
        minProperties=1, propertyNames={"pattern": f"^{DESTINATION_NAME.pattern}$"}
    )
    schema["required"] = ["destinations"]
    # Something must be routed: a [[routes]] table or a [default] table.
    schema["anyOf"] = [
        {"required": ["routes"], "properties": {"routes": {"minItems": 1}}},
        {"required": ["default"]},
    ]
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "datafold-notifier routes file",
        **{key: value for key, value in schema.items() if key != "title"},
    }


def routes_schema_text() -> str:
    """`routes_json_schema` as the committed file's text: sorted keys, indented, one newline."""
    return json.dumps(routes_json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
