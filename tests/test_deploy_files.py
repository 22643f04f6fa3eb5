"""deploy/: every manifest parses, names the harness the same way, and configures it with files the gate accepts.

The manifests cannot be applied here (no cluster, no image registry), so this is what can be
proven: YAML that parses, Kubernetes objects that say what they are, one image and one entry
point for the harness, and — the part that drifts — the target and gates.yaml embedded in the
ConfigMap load without a configuration error.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml

from releasegate.config import load_gates, load_target

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
YAML_FILES = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
PIPELINES = DEPLOY / "ci"  # CI pipeline examples; every other YAML file in deploy/ is Kubernetes manifests


def documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def kubernetes_objects() -> list[tuple[Path, Any]]:
    """Every document of every manifest (deploy/ outside deploy/ci/): each must be a Kubernetes object."""
    return [(path, doc) for path in YAML_FILES if not path.is_relative_to(PIPELINES) for doc in documents(path)]


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """Every container spec anywhere in the object (pods, jobs, deployments, Argo templates)."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("containers", "initContainers") and isinstance(value, list):
                    found.extend(c for c in value if isinstance(c, dict))
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(obj)
    return found


def test_deploy_holds_the_files_the_guides_name() -> None:
    names = {p.relative_to(DEPLOY).as_posix() for p in DEPLOY.rglob("*") if p.is_file()}
    assert {
        "Dockerfile",
        "k8s/job.yaml",
        "serve-deployment.yaml",
        "argo/analysis-template-job.yaml",
        "argo/analysis-template-web.yaml",
        "argo/rollout-example.yaml",
        "flagger/canary.yaml",
        "ci/github-actions.yml",
        "ci/gitlab-ci.yml",
    } <= names, names


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path: Path) -> None:
    assert documents(path), f"{path} holds no YAML document"


@pytest.mark.parametrize(("path", "obj"), kubernetes_objects(), ids=lambda v: v.name if isinstance(v, Path) else v.get("kind", "?"))
def test_every_kubernetes_object_says_what_it_is(path: Path, obj: Any) -> None:
    assert isinstance(obj, dict) and obj.get("apiVersion"), f"{path}: a document without apiVersion"
    assert isinstance(obj.get("kind"), str) and obj["kind"], f"{path}: no kind"
    assert isinstance(obj.get("metadata", {}).get("name"), str), f"{path}: {obj['kind']} without metadata.name"


def test_every_harness_container_runs_the_releasegate_entry_point() -> None:
    harness = [
        (path, c)
        for path, obj in kubernetes_objects()
        for c in containers(obj)
        if "releasegate" in str(c.get("image", "")) + str(c.get("name", ""))
    ]
    assert harness, "no releasegate container in deploy/"
    for path, container in harness:
        assert container.get("command") in (["releasegate"], None), f"{path}: {container.get('command')}"
        args = [str(a) for a in container.get("args", [])]
        assert args and args[0] in ("run", "serve", "validate"), f"{path}: args {args}"


def test_the_job_is_one_measurement_with_a_backstop() -> None:
    (job,) = [obj for path, obj in kubernetes_objects() if obj["kind"] == "Job" and path.name == "job.yaml"]
    assert job["spec"]["backoffLimit"] == 0  # a retried gate only picks the lucky run
    assert job["spec"]["activeDeadlineSeconds"] > 0
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    args = container["args"]
    assert args[:3] == ["run", "--stage", "post-deploy"]
    # Tokens come from a Secret as environment variables, never written into the manifest
    assert all("valueFrom" in env for env in container.get("env", []) if re.search("TOKEN|PASSWORD", env["name"]))


def test_the_dockerfile_installs_the_repository_and_enters_releasegate_as_non_root() -> None:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11", text, re.M)
    assert re.search(r"pip install .*\s\.(\s|$)", text)
    assert 'ENTRYPOINT ["releasegate"]' in text
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1] not in ("root", "0")
    # Every folder the wheel bundles (pyproject force-include) is copied into the build
    bundled = re.findall(
        r'^"(\w+(?:\.yaml)?)" = "releasegate/_suite/', (DEPLOY.parent / "pyproject.toml").read_text(encoding="utf-8"), re.M
    )
    assert {"checks", "gates.yaml", "scenarios", "loadtests"} <= set(bundled), bundled
    for name in bundled:
        assert re.search(rf"^COPY {re.escape(name)}\b", text, re.M), f"the Dockerfile does not copy {name}"


def test_the_embedded_target_and_policy_load_without_a_configuration_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_maps = [obj for _, obj in kubernetes_objects() if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == "releasegate-config"]
    assert config_maps, "no releasegate-config ConfigMap in deploy/"
    monkeypatch.setenv("RELEASEGATE_TOKEN", secrets.token_urlsafe(24))
    for config_map in config_maps:
        data = config_map["data"]
        (tmp_path / "target.yaml").write_text(data["target.yaml"], encoding="utf-8")
        (tmp_path / "gates.yaml").write_text(data["gates.yaml"], encoding="utf-8")
        # Then both load (a ConfigError, exit 3, would fail here with file, line, key and fix)
        assert load_target(tmp_path / "target.yaml").target.name
        load_gates(tmp_path / "gates.yaml")


def test_the_docker_build_context_keeps_what_the_dockerfile_copies() -> None:
    ignored = {line.strip() for line in (DEPLOY.parent / ".dockerignore").read_text(encoding="utf-8").splitlines()}
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    copied = [name for sources in re.findall(r"^COPY (.+?) \S+$", dockerfile, re.M) for name in sources.split()]
    assert copied and not set(copied) & ignored, set(copied) & ignored
    assert {".venv", "node_modules", "reports"} <= ignored  # hundreds of MB nobody's image needs
