"""The deploy files speak the daemon's language: every setting they name exists, and the high
availability variants keep the state in PostgreSQL with a standby ready to take over.

No YAML parser is a dependency, so the files are read by indentation: a key's block is its line
and the deeper-indented lines after it, comments left out.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from notifier.run.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD = "deploy/systemd/datafold-notifier.service"
COMPOSE = "deploy/compose.yaml"
COMPOSE_HA = "deploy/compose.ha.yaml"
KUBE = "deploy/kubernetes/datafold-notifier.yaml"
KUBE_HA = "deploy/kubernetes/datafold-notifier-ha.yaml"
FILES = ["Dockerfile", COMPOSE, COMPOSE_HA, KUBE, KUBE_HA, SYSTEMD]
KNOWN = {str(field.validation_alias) for field in Settings.model_fields.values()}
GRACE = Settings.model_fields["shutdown_grace_seconds"].default


def _read(name: str) -> str:
    return (ROOT / name).read_text()


def _lines(text: str) -> list[str]:
    return [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]


def _blocks(text: str, head: str) -> list[str]:
    """Every block whose first line, after its indentation, starts with `head`."""
    lines = _lines(text)
    found = []
    for i, line in enumerate(lines):
        indent = len(line) - len(line.lstrip())
        if not re.match(rf"{re.escape(head)}(\s|$)", line[indent:]):
            continue
        block = [line]
        for following in lines[i + 1 :]:
            if len(following) - len(following.lstrip()) <= indent:
                break
            block.append(following)
        found.append("\n".join(block))
    return found


def _kube_documents(name: str) -> dict[str, str]:
    """The manifest's documents by kind (each kind appears once in these files), but for the
    routes file's ConfigMap, which is under "ConfigMap/datafold-notifier-routes"."""
    documents = {}
    for document in re.split(r"^---$", _read(name), flags=re.MULTILINE):
        kind = re.search(r"^kind:\s*(\w+)$", document, re.MULTILINE)
        if kind:
            key = kind[1]
            if re.search(r"^  name:\s*datafold-notifier-routes$", document, re.MULTILINE):
                key = f"{kind[1]}/datafold-notifier-routes"
            assert key not in documents, key
            documents[key] = document
    return documents


def _compose_service(name: str, service: str) -> str:
    [block] = [b for b in _blocks(_read(name), f"{service}:") if b.startswith(f"  {service}:")]
    return block


@pytest.mark.parametrize("name", FILES)
def test_every_setting_named_exists(name: str) -> None:
    text = _read(name)
    named = set(re.findall(r"\b((?:NOTIFIER|DATAFOLD|SLACK)_[A-Z_]+)\b", text))
    assert named, name
    assert named <= KNOWN, named - KNOWN


def test_systemd_unit_essentials() -> None:
    unit = _read(SYSTEMD)
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


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        (SYSTEMD, r"^TimeoutStopSec=(\d+)$"),
        (COMPOSE, r"^\s*stop_grace_period:\s*(\d+)s$"),
        (COMPOSE_HA, r"^\s*stop_grace_period:\s*(\d+)s$"),
        (KUBE, r"^\s*terminationGracePeriodSeconds:\s*(\d+)$"),
        (KUBE_HA, r"^\s*terminationGracePeriodSeconds:\s*(\d+)$"),
    ],
)
def test_stop_timeouts_exceed_the_default_grace_period(name: str, pattern: str) -> None:
    [stop] = re.findall(pattern, _read(name), re.MULTILINE)
    assert int(stop) > GRACE


def test_single_replica_kubernetes_recreates_its_one_pod() -> None:
    deployment = _kube_documents(KUBE)["Deployment"]
    assert "type: Recreate" in deployment and re.search(r"replicas:\s*1\b", deployment)


def test_ha_kubernetes_rolls_two_replicas_over_without_losing_the_standby() -> None:
    deployment = _kube_documents(KUBE_HA)["Deployment"]
    [replicas] = re.findall(r"^  replicas:\s*(\d+)$", deployment, re.MULTILINE)
    assert int(replicas) >= 2
    [strategy] = _blocks(deployment, "strategy:")
    assert re.search(r"type:\s*RollingUpdate$", strategy, re.MULTILINE)
    assert re.search(r"maxSurge:\s*1$", strategy, re.MULTILINE)
    assert re.search(r"maxUnavailable:\s*0$", strategy, re.MULTILINE)
    assert _blocks(deployment, "podAntiAffinity:")


def test_ha_kubernetes_takes_the_postgres_url_from_a_secret() -> None:
    manifest = _read(KUBE_HA)
    [entry] = _blocks(manifest, "- name: NOTIFIER_STATE_URL")
    assert "secretKeyRef:" in entry
    assert not re.search(r"^\s*value:", entry, re.MULTILINE)
    # Nowhere else, so no ConfigMap or Secret in the file can hold a literal URL.
    assert len(re.findall("NOTIFIER_STATE_URL", "\n".join(_lines(manifest)))) == 1
    assert "postgresql://" not in "\n".join(_lines(manifest))
    [name] = _blocks(manifest, "- name: NOTIFIER_REPLICA_NAME")
    assert "fieldPath: metadata.name" in name


def test_ha_kubernetes_has_no_volume_for_a_state_file() -> None:
    documents = _kube_documents(KUBE_HA)
    assert "PersistentVolumeClaim" not in documents
    deployment = documents["Deployment"]
    assert "persistentVolumeClaim" not in deployment
    assert "NOTIFIER_STATE_FILE" not in deployment
    assert "/var/lib/datafold-notifier" not in deployment
    single = _kube_documents(KUBE)["Deployment"]
    scratch = set(re.findall(r"mountPath:\s*(\S+)", single)) - {"/var/lib/datafold-notifier"}
    assert set(re.findall(r"mountPath:\s*(\S+)", deployment)) == scratch


def test_ha_kubernetes_keeps_one_replica_through_voluntary_disruptions() -> None:
    budget = _kube_documents(KUBE_HA)["PodDisruptionBudget"]
    assert re.search(r"^  minAvailable:\s*1$", budget, re.MULTILINE)
    assert "app.kubernetes.io/name: datafold-notifier" in budget


@pytest.mark.parametrize(
    "head",
    ["securityContext:", "startupProbe:", "livenessProbe:", "readinessProbe:", "resources:"],
)
def test_ha_kubernetes_pods_are_confined_and_probed_like_the_single_one(head: str) -> None:
    single = _blocks(_kube_documents(KUBE)["Deployment"], head)
    ha = _blocks(_kube_documents(KUBE_HA)["Deployment"], head)
    assert single and ha == single


def test_ha_compose_runs_a_healthy_postgres_before_the_replicas() -> None:
    postgres = _compose_service(COMPOSE_HA, "postgres")
    assert re.search(r"image:\s*postgres:\d+", postgres)
    [healthcheck] = _blocks(postgres, "healthcheck:")
    assert "pg_isready" in healthcheck
    assert re.search(r"- pgdata:/var/lib/postgresql/data$", postgres, re.MULTILINE)

    notifier = _compose_service(COMPOSE_HA, "notifier")
    [depends] = _blocks(notifier, "depends_on:")
    [on_postgres] = _blocks(depends, "postgres:")
    assert re.search(r"condition:\s*service_healthy$", on_postgres, re.MULTILINE)
    [replicas] = re.findall(r"replicas:\s*(\d+)$", notifier, re.MULTILINE)
    assert int(replicas) >= 2


def test_ha_compose_interpolates_the_password_and_mounts_no_state() -> None:
    compose = _read(COMPOSE_HA)
    passwords = re.findall(r"^\s*POSTGRES_PASSWORD:\s*(\S+)", compose, re.MULTILINE)
    assert passwords and all(p.startswith("${POSTGRES_PASSWORD:?") for p in passwords)
    [url] = re.findall(r"NOTIFIER_STATE_URL:\s*(.+)$", compose, re.MULTILINE)
    password = r"\$\{POSTGRES_PASSWORD(:\?[^}]*)?\}"
    assert re.fullmatch(rf"postgresql://notifier:{password}@postgres:5432/notifier", url)
    notifier = _compose_service(COMPOSE_HA, "notifier")
    assert "NOTIFIER_STATE_FILE" not in notifier
    assert not _blocks(notifier, "volumes:")
