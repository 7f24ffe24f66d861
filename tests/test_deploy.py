"""The deploy files speak the daemon's language: every setting they name exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from notifier.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
FILES = [
    "Dockerfile",
    "deploy/compose.yaml",
    "deploy/kubernetes/datafold-notifier.yaml",
    "deploy/systemd/datafold-notifier.service",
]
KNOWN = {str(field.validation_alias) for field in Settings.model_fields.values()}


@pytest.mark.parametrize("name", FILES)
def test_every_setting_named_exists(name: str) -> None:
    text = (ROOT / name).read_text()
    named = set(re.findall(r"\b((?:NOTIFIER|DATAFOLD|SLACK)_[A-Z_]+)\b", text))
    assert named, name
    assert named <= KNOWN, named - KNOWN


def test_systemd_unit_essentials() -> None:
    unit = (ROOT / "deploy/systemd/datafold-notifier.service").read_text()
    for line in (
        "Type=notify",
        "ExecStart=/opt/datafold-notifier/bin/datafold-notifier run",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",
        "StateDirectory=datafold-notifier",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
    ):
        assert re.search(rf"^{re.escape(line)}$", unit, re.MULTILINE), line


def test_stop_timeouts_exceed_the_default_grace_period() -> None:
    grace = Settings.model_fields["shutdown_grace_seconds"].default
    unit = (ROOT / "deploy/systemd/datafold-notifier.service").read_text()
    compose = (ROOT / "deploy/compose.yaml").read_text()
    kube = (ROOT / "deploy/kubernetes/datafold-notifier.yaml").read_text()
    [stop] = re.findall(r"^TimeoutStopSec=(\d+)$", unit, re.MULTILINE)
    [compose_grace] = re.findall(r"stop_grace_period:\s*(\d+)s", compose)
    [kube_grace] = re.findall(r"terminationGracePeriodSeconds:\s*(\d+)", kube)
    for value in (stop, compose_grace, kube_grace):
        assert int(value) > grace
    assert "type: Recreate" in kube and re.search(r"replicas:\s*1\b", kube)
