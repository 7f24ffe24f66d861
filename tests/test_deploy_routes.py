"""Every deployment ships the routes file (issue 16, point 3): the systemd unit, both Compose
files and both Kubernetes manifests set NOTIFIER_ROUTES_FILE to a file they make readable to the
daemon's unprivileged user, the starter file validates, and deploy/README.md names every path and
mode they use, with modes a non-root user can read.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from notifier.run.routes import load_routes

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
STARTER = DEPLOY / "routes.toml"
DOCS = (DEPLOY / "README.md").read_text(encoding="utf-8")
SCHEMA = json.loads((ROOT / "docs" / "routes.schema.json").read_text(encoding="utf-8"))
UNIT = (DEPLOY / "systemd" / "datafold-notifier.service").read_text(encoding="utf-8")
COMPOSES = ["compose.yaml", "compose.ha.yaml"]
KUBES = ["kubernetes/datafold-notifier.yaml", "kubernetes/datafold-notifier-ha.yaml"]
ROUTES_PATH = "/etc/datafold-notifier/routes.toml"


def _fake_env(text: str) -> dict[str, str]:
    names = set(re.findall(r'"env:([A-Za-z_][A-Za-z0-9_]*)"', text))
    return {name: "xoxb-TOPSECRET-token" for name in names}


def _valid(text: str, tmp_path: Path) -> None:
    """The file loads as the daemon loads it, and the JSON Schema accepts it."""
    path = tmp_path / "routes.toml"
    path.write_text(text, encoding="utf-8")
    routes = load_routes(path, _fake_env(text))
    assert routes.destinations and routes.default is not None
    errors = [e.message for e in Draft202012Validator(SCHEMA).iter_errors(tomllib.loads(text))]
    assert errors == []


def _compose(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / name).read_text(encoding="utf-8"))
    return loaded


def _kube(name: str) -> list[dict[str, Any]]:
    text = (DEPLOY / name).read_text(encoding="utf-8")
    return [document for document in yaml.safe_load_all(text) if document]


def _container(documents: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    [deployment] = [d for d in documents if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    return pod, container


def _unit_values(key: str) -> list[str]:
    return re.findall(rf"^{key}=(.+)$", UNIT, re.MULTILINE)


def _covers(paths: list[str], target: str) -> bool:
    file = PurePosixPath(target)
    return any(PurePosixPath(p.lstrip("-+")) in (file, *file.parents) for p in paths)


def _readable_by_others(mode: int) -> bool:
    return bool(mode & 0o004)


def test_the_starter_routes_file_validates(tmp_path: Path) -> None:
    _valid(STARTER.read_text(encoding="utf-8"), tmp_path)


def test_the_systemd_unit_names_a_routes_file_its_sandbox_leaves_readable() -> None:
    [setting] = [v for v in _unit_values("Environment") if v.startswith("NOTIFIER_ROUTES_FILE=")]
    path = setting.removeprefix("NOTIFIER_ROUTES_FILE=")
    assert path == ROUTES_PATH
    read_only = " ".join(_unit_values("ReadOnlyPaths")).split()
    assert _covers(read_only, path)
    assert "DynamicUser=yes" in UNIT.splitlines()
    assert not _covers(" ".join(_unit_values("InaccessiblePaths")).split(), path)
    for named in [path, *read_only]:
        assert f"`{named.rstrip('/')}" in DOCS, named


@pytest.mark.parametrize("name", COMPOSES)
def test_compose_mounts_the_routes_file_where_it_points(name: str) -> None:
    compose = _compose(name)
    notifier = compose["services"]["notifier"]
    path = notifier["environment"]["NOTIFIER_ROUTES_FILE"]
    assert path == ROUTES_PATH
    [mount] = [c for c in notifier["configs"] if c["target"] == path]
    source = (DEPLOY / compose["configs"][mount["source"]]["file"]).resolve()
    assert source == STARTER
    assert f"`{source.relative_to(ROOT)}`" in DOCS and f"`{path}`" in DOCS


@pytest.mark.parametrize("name", KUBES)
def test_kubernetes_mounts_a_configmap_routes_file_where_it_points(
    name: str, tmp_path: Path
) -> None:
    documents = _kube(name)
    pod, container = _container(documents)
    [path] = [e["value"] for e in container["env"] if e["name"] == "NOTIFIER_ROUTES_FILE"]
    assert path == ROUTES_PATH
    file = PurePosixPath(path)
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == str(file.parent)]
    assert mount.get("readOnly") is True and "subPath" not in mount  # a subPath misses edits
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    configmap = volume["configMap"]
    assert _readable_by_others(configmap["defaultMode"])
    [routes] = [
        d
        for d in documents
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == configmap["name"]
    ]
    assert file.name in routes["data"]
    # envFrom would turn its key into an environment variable.
    env_from = [source.get("configMapRef", {}).get("name") for source in container["envFrom"]]
    assert configmap["name"] not in env_from
    text = routes["data"][file.name]
    _valid(text, tmp_path)
    assert tomllib.loads(text) == tomllib.loads(STARTER.read_text(encoding="utf-8"))
    assert f"`{configmap['name']}`" in DOCS and f"`{file.parent}`" in DOCS
    assert f"`{oct(configmap['defaultMode']).replace('0o', '0')}`" in DOCS


def test_the_documented_uid_is_the_image_and_pod_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    [user] = re.findall(r"^USER (\d+):(\d+)$", dockerfile, re.MULTILINE)
    assert f"`USER {user[0]}:{user[1]}`" in DOCS and f"UID {user[0]}" in DOCS
    for name in KUBES:
        pod, _ = _container(_kube(name))
        assert str(pod["securityContext"]["runAsUser"]) == user[0]


def test_every_documented_routes_file_mode_is_readable_by_a_non_root_user() -> None:
    rows = [line for line in DOCS.splitlines() if "routes.toml" in line and line.startswith("|")]
    assert len(rows) >= 3  # systemd, Compose, Kubernetes
    for row in rows:
        modes = re.findall(r"`(0[0-7]{3})`", row)
        assert modes, row
        assert all(_readable_by_others(int(mode, 8)) for mode in modes), row
    # And the install command copies it with such a mode.
    [install] = re.findall(rf"install -m (0[0-7]{{3}}) \S+ {re.escape(ROUTES_PATH)}", DOCS)
    assert _readable_by_others(int(install, 8))
