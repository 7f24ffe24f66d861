"""Notifications rendered as Prometheus Alertmanager's webhook payload (version "4").

Pure: no I/O, no clock, no environment. Sources followed (prometheus/alertmanager):
`<webhook_config>` in `docs/configuration.md` (prometheus.io/docs/alerting/latest/configuration),
`notify/webhook/webhook.go` (`Message`: `version`, `groupKey`, `truncatedAlerts` beside an embedded
`template.Data`), `template/template.go` (`Data`, `Alert`; the receiver name goes through
`regexp.QuoteMeta`) and `dispatch/dispatch.go` (`aggrGroup.GroupKey`: route key, `:`, labels).
The fingerprint is prometheus/common's `model.LabelSet.Fingerprint` (`model/signature.go`
`labelSetToFingerprint`, `model/fnv.go`, `model/fingerprinting.go`): FNV-1a 64 over the labels
sorted by name, each as name, 0xFF, value, 0xFF; printed as 16 hex digits. The mapping from our
notifications is in docs/alertmanager-payload.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, TypedDict, Unpack

from notifier.deliver.render.style import state_style
from notifier.deliver.render.webhook import json_body
from notifier.domain.models import (
    DEFAULT_NOTIFY_STATES,
    Incident,
    Notification,
    as_utc,
    cut_text,
)
from notifier.domain.text import escape_controls, one_line

ALERTMANAGER_PAYLOAD_VERSION: Final = "4"
#: How Go prints the zero `time.Time`: Alertmanager's `endsAt` of an alert that has not ended.
ZERO_TIME: Final = "0001-01-01T00:00:00Z"
SOURCE: Final = "datafold"
TAG_LABEL_PREFIX: Final = "tag_"
#: Alertmanager's route key of the root route, the first half of every `groupKey` we send.
ROOT_ROUTE_KEY: Final = "{}"

#: The alert name and severity label of each alert state; any other state gets `_OTHER`.
_ALERTS: Final = {
    "alert": ("DatafoldMonitorAlert", "warning"),
    "error": ("DatafoldMonitorError", "critical"),
}
_OTHER: Final = ("DatafoldMonitorRun", "info")
#: The `error` annotation: Datafold's error message, its lines kept, cut (saying how much) past
#: this many characters, so 500 alerts in one post stay a few megabytes at most.
ERROR_ANNOTATION_MAX: Final = 4_000
#: The description quotes the error on one line, this long at most: the `error` annotation has it
#: whole.
DESCRIPTION_ERROR_MAX: Final = 300

_FNV64_OFFSET: Final = 0xCBF29CE484222325
_FNV64_PRIME: Final = 0x100000001B3
_U64: Final = 0xFFFFFFFFFFFFFFFF
_SEPARATOR: Final = b"\xff"  # prometheus/common model.SeparatorByte: never valid in UTF-8
_LABEL_NAME_UNSAFE: Final = re.compile(r"[^a-zA-Z0-9_]")
_GO_QUOTEMETA: Final = re.compile(r"([\\.+*?()|\[\]{}^$])")


class AlertOptions(TypedDict, total=False):
    """How `alertmanager_payload` shapes its one alert (see there)."""

    resolved: bool
    alert_state: str | None
    starts_at: datetime | None
    ends_at: datetime | None


def alertmanager_payload(
    n: Notification,
    *,
    receiver: str,
    external_url: str,
    **options: Unpack[AlertOptions],
) -> dict[str, Any]:
    """One notification as an Alertmanager webhook message holding one alert; same input, same dict.

    For a resolution, pass `resolved=True` with the `alert_state` and `starts_at` of the alert it
    resolves: labels (so the fingerprint) derive from `alert_state`, not from the recovering run.
    """
    resolved = options.get("resolved", False)
    ends_at = options.get("ends_at")
    if ends_at is not None and not resolved:
        raise ValueError("ends_at is only meaningful for a resolved alert")
    alert_state = options.get("alert_state")
    state = n.event.state if alert_state is None else alert_state
    starts_at = options.get("starts_at")
    alert = _alert(n, alert_state=state, resolved=resolved, starts_at=starts_at, ends_at=ends_at)
    return _message(n, [alert], receiver=receiver, external_url=external_url)


def notification_payload(n: Notification, *, receiver: str, external_url: str) -> dict[str, Any]:
    """The message for a notification of any kind (docs/alertmanager-payload.md); same input,
    same dict.

    "run": the run's state fires. "reminder": the incident's latest alert fires again with the
    same labels, as Alertmanager's `repeat_interval` re-sends it. "recovered": every alert the
    incident is known to have fired (its first and its latest run's state) resolves, one
    `alerts[]` entry each, with the labels it fired with.
    """
    incident = n.incident
    if n.kind == "recovered":
        alerts = [
            _alert(
                n,
                alert_state=state,
                resolved=True,
                starts_at=fired_at(incident, state),
                ends_at=None,
            )
            for state in resolved_states(incident)
        ]
        return _message(n, alerts, receiver=receiver, external_url=external_url)
    state = incident.last.state if n.kind == "reminder" and incident else n.event.state
    firing = _alert(
        n, alert_state=state, resolved=False, starts_at=fired_at(incident, state), ends_at=None
    )
    return _message(n, [firing], receiver=receiver, external_url=external_url)


def notification_body(n: Notification, *, receiver: str, external_url: str) -> str:
    """`notification_payload` as the exact bytes (ASCII, sorted keys) to send and sign."""
    return json_body(notification_payload(n, receiver=receiver, external_url=external_url))


def resolved_states(incident: Incident | None) -> list[str]:
    """The alert states a recovery resolves: the incident's first run's, then its latest run's
    if that differs. Without an incident, the default notify-states (alert, error): resolving an
    alert that never fired changes nothing for a receiver that keys on the fingerprint."""
    if incident is None:
        return sorted(DEFAULT_NOTIFY_STATES)
    return list(dict.fromkeys([incident.first.state, incident.last.state]))


def fired_at(incident: Incident | None, state: str) -> datetime | None:
    """When the incident's alert with this state began firing, as far as the incident knows.

    The first run's state has fired since the incident opened; a state that only appeared later
    (alert, then error) since the latest run, the only later run the incident remembers.
    """
    if incident is None:
        return None
    if state == incident.first.state:
        return incident.first.started_at or incident.opened_at
    if state == incident.last.state:
        return incident.last.started_at or incident.opened_at
    return None


def _alert(
    n: Notification,
    *,
    alert_state: str,
    resolved: bool,
    starts_at: datetime | None,
    ends_at: datetime | None,
) -> dict[str, Any]:
    labels = alert_labels(n, alert_state=alert_state)
    status = "resolved" if resolved else "firing"
    start = starts_at or n.event.started_at or n.detected_at
    end = (ends_at or n.event.started_at or n.detected_at) if resolved else None
    return {
        "status": status,
        "labels": labels,
        "annotations": alert_annotations(n, alert_state=alert_state, resolved=resolved),
        "startsAt": go_time(start),
        "endsAt": ZERO_TIME if end is None else go_time(end),
        "generatorURL": n.links.monitor or "",
        "fingerprint": fingerprint(labels),
    }


def _message(
    n: Notification, alerts: list[dict[str, Any]], *, receiver: str, external_url: str
) -> dict[str, Any]:
    """Alerts of one monitor in one message, with what Alertmanager computes for their group."""
    group_labels = {"monitor_id": str(n.monitor.id)}
    firing = any(alert["status"] == "firing" for alert in alerts)
    return {
        "receiver": go_quote_meta(receiver),
        "status": "firing" if firing else "resolved",
        "alerts": alerts,
        "groupLabels": group_labels,
        "commonLabels": _common([alert["labels"] for alert in alerts]),
        "commonAnnotations": _common([alert["annotations"] for alert in alerts]),
        "externalURL": external_url,
        "version": ALERTMANAGER_PAYLOAD_VERSION,
        "groupKey": group_key(group_labels),
        "truncatedAlerts": 0,
    }


def _common(pairs: list[dict[str, str]]) -> dict[str, str]:
    """The pairs every alert has with the same value (template.Data's commonLabels); with one
    alert, its own."""
    first, *others = pairs
    return {
        name: value for name, value in first.items() if all(o.get(name) == value for o in others)
    }


def alertmanager_body(
    n: Notification, *, receiver: str, external_url: str, **options: Unpack[AlertOptions]
) -> str:
    """The exact bytes (ASCII, sorted keys) to send and sign; a retry sends the same."""
    return json_body(
        alertmanager_payload(n, receiver=receiver, external_url=external_url, **options)
    )


def alert_labels(n: Notification, *, alert_state: str) -> dict[str, str]:
    """The alert's identity: monitor and alert state only, never the run, sorted by name.

    Labels with no value are left out (Prometheus treats an empty label as an absent one).
    """
    alertname, severity = _ALERTS.get(alert_state, _OTHER)
    labels = {
        "alertname": alertname,
        "monitor": n.monitor.title,
        "monitor_id": str(n.monitor.id),
        "severity": severity,
        "source": SOURCE,
        "state": alert_state,
    }
    if n.monitor.monitor_type:
        labels["monitor_type"] = n.monitor.monitor_type
    tags = sorted({tag for tag in n.monitor.tags if tag})
    if tags:
        # Prometheus' service discovery convention (`__meta_consul_tags`): commas at both ends,
        # so `tags=~".*,finance,.*"` matches one whole tag.
        labels["tags"] = "," + ",".join(tags) + ","
    for tag in tags:
        labels[tag_label_name(tag)] = "true"
    return {name: labels[name] for name in sorted(labels, key=_go_order) if labels[name]}


def alert_annotations(n: Notification, *, alert_state: str, resolved: bool) -> dict[str, str]:
    """What a person reads: summary, description, the run, the links and (while firing) the
    error message; absent values left out."""
    error = None if resolved else error_annotation(n.error_message)
    title = one_line(n.monitor.title)
    kind = f" ({n.monitor.monitor_type})" if n.monitor.monitor_type else ""
    run = f"Run {n.event.run_id} of Datafold monitor {n.monitor.id}{kind}"
    reported = n.event.state or "no state"
    if resolved:
        summary = f"Resolved: {title}"
        description = f"{run} reported {reported}: the {alert_state or 'alert'} is resolved."
    else:
        summary = f"{state_style(alert_state).label}: {title}"
        description = f"{run} reported {reported}."
        if error:
            description += f"\nError: {one_line(error, DESCRIPTION_ERROR_MAX)}"
        elif n.event.state == "error" and n.kind == "run":
            description += "\nDatafold gave no error message."
        if n.kind == "reminder" and n.incident is not None:
            description += (
                f"\nStill failing since {go_time(n.incident.opened_at)}: "
                f"reminder {n.incident.reminders}."
            )
    annotations: dict[str, str | None] = {
        "summary": summary,
        "description": description,
        "error": error,
        "notification_id": n.id,
        "incident_id": n.incident.id if n.incident else None,
        "reminder": str(n.incident.reminders) if n.kind == "reminder" and n.incident else None,
        "run_id": str(n.event.run_id),
        "run_state": n.event.state,
        "diff_url": n.links.diff,
        "monitor_url": n.links.monitor,
        "owner": n.monitor.owner,
    }
    return {name: value for name, value in sorted(annotations.items()) if value}


def error_annotation(message: str | None) -> str | None:
    """Datafold's error message as the `error` annotation: its lines kept (CR LF and CR read as
    newlines), trimmed, other control characters written as escapes (`\\x1b`), cut past
    `ERROR_ANNOTATION_MAX` characters saying how much; None when there is none."""
    if message is None:
        return None
    lines = message.replace("\r\n", "\n").replace("\r", "\n").strip().split("\n")
    text = "\n".join(
        "\t".join(escape_controls(part) for part in line.rstrip().split("\t")) for line in lines
    )
    return cut_text(text, ERROR_ANNOTATION_MAX) if text else None


def tag_label_name(tag: str) -> str:
    """`tag_` and the tag, each character outside `[a-zA-Z0-9_]` replaced by `_`: a valid name."""
    return TAG_LABEL_PREFIX + _LABEL_NAME_UNSAFE.sub("_", tag)


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's alert fingerprint: prometheus/common `LabelSet.Fingerprint`, as `%016x`."""
    value = _FNV64_OFFSET
    for name in sorted(labels, key=_go_order):
        for byte in _utf8(name) + _SEPARATOR + _utf8(labels[name]) + _SEPARATOR:
            value = ((value ^ byte) * _FNV64_PRIME) & _U64
    return f"{value:016x}"


def group_key(group_labels: Mapping[str, str]) -> str:
    """`{}:{name="value", ...}` as the root route's aggregation group prints it.

    Values are quoted as JSON strings, which is what Go's `%q` gives for printable text.
    """
    pairs = ", ".join(
        f"{name}={json.dumps(group_labels[name], ensure_ascii=False)}"
        for name in sorted(group_labels, key=_go_order)
    )
    return f"{ROOT_ROUTE_KEY}:{{{pairs}}}"


def go_time(value: datetime) -> str:
    """Go's `time.Time` JSON (RFC 3339, nanosecond layout) in UTC: `Z`, no trailing zero digits."""
    utc = as_utc(value)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


def go_quote_meta(text: str) -> str:
    """Go's `regexp.QuoteMeta`, which Alertmanager applies to the receiver name it sends."""
    return _GO_QUOTEMETA.sub(r"\\\1", text)


def _utf8(text: str) -> bytes:
    # A lone surrogate (possible from JSON escapes) must not crash rendering.
    return text.encode("utf-8", "surrogatepass")


def _go_order(text: str) -> bytes:
    """Go compares strings bytewise; for UTF-8 that is code point order, but say so exactly."""
    return _utf8(text)
