"""deploy/: the fields that couple the manifests to `releasegate serve` line up (tests/test_deploy_files.py parses them).

The routes and status codes are the server's (releasegate.serve); the conditions of Argo's Web
provider are evaluated the way utils/evaluate does it (both set, neither true: Inconclusive),
and Flagger's webhook fields as its CRD types them (timeout a Go duration, metadata strings).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from releasegate.config import load_gates, load_target
from releasegate.results import STAGES
from releasegate.serve import FLAGGER_STATUS
from test_deploy_files import DEPLOY, kubernetes_objects  # tests/ is on sys.path, as for loopback and real


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in kubernetes_objects() if doc.get("kind") == kind]


def one(kind: str, name: str) -> dict[str, Any]:
    matches = [doc for doc in of_kind(kind) if doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}"
    return matches[0]


def go_duration_s(text: str) -> float:
    """A Go time.ParseDuration string (what Flagger's webhook timeout is) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a Go duration: {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


def argo_phase(result: str, success: str, failure: str) -> str:
    """utils/evaluate.EvaluateResult for conditions of the form `result == "x"` joined by ||."""

    def holds(condition: str) -> bool:
        options = re.findall(r'result\s*==\s*"([^"]+)"', condition)
        assert options and condition.count("==") == len(options), f"unsupported condition {condition!r}"
        return result in options

    if holds(failure):
        return "Failed"
    return "Successful" if holds(success) else "Inconclusive"


def serve_container() -> dict[str, Any]:
    deployment = one("Deployment", "releasegate")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def serve_flag(name: str) -> str:
    args = serve_container()["args"]
    return str(args[args.index(name) + 1])


def server_budget_s() -> float:
    """How long the server may take to answer: --max-run-s plus the lock wait (default 10 s)."""
    args = serve_container()["args"]
    lock_wait = float(serve_flag("--lock-wait-s")) if "--lock-wait-s" in args else 10.0
    return float(serve_flag("--max-run-s")) + lock_wait


def test_the_serve_deployment_runs_serve_on_the_port_its_service_and_probes_use() -> None:
    container = serve_container()
    assert container["args"][0] == "serve"
    host, _, port = serve_flag("--listen").rpartition(":")
    assert host == "0.0.0.0"
    (declared,) = container["ports"]
    assert declared["containerPort"] == int(port)
    service = one("Service", "releasegate")
    assert service["spec"]["ports"][0]["targetPort"] == declared["name"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
    # Secrets only by reference: no literal value in the environment
    for variable in container["env"]:
        assert "value" not in variable and "secretKeyRef" in variable["valueFrom"], variable["name"]
    names = {variable["name"] for variable in container["env"]}
    assert serve_flag("--token-env") in names


def test_the_shipped_target_and_gates_are_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = one("ConfigMap", "releasegate-config")["data"]
    target_path, gates_path = tmp_path / "target.yaml", tmp_path / "gates.yaml"
    target_path.write_text(config["target.yaml"], encoding="utf-8")
    gates_path.write_text(config["gates.yaml"], encoding="utf-8")
    monkeypatch.setenv("RELEASEGATE_TOKEN", "a-token-for-validation-only")

    target = load_target(target_path).target
    gates = load_gates(gates_path).gates

    assert target.canary is not None and target.auth.token_env == "RELEASEGATE_TOKEN"
    # The run fits its deadline, and the server stops nothing that could still finish
    assert gates.canary.interval_s * gates.canary.max_intervals < gates.deadline_s < float(serve_flag("--max-run-s"))


def test_the_web_template_maps_promote_rollback_hold_to_argo_phases() -> None:
    template = one("AnalysisTemplate", "releasegate-canary-web")
    (metric,) = template["spec"]["metrics"]
    web = metric["provider"]["web"]

    path = urlsplit(web["url"].replace("{{args.releasegate-url}}", "http://x")).path
    assert re.fullmatch(r"/argo/([a-z-]+)", path) and path.split("/")[2] in STAGES
    assert web["jsonPath"] == "{$.decision}"
    assert web.get("method", "GET") in ("GET", "POST", "PUT")
    assert [h["key"] for h in web["headers"]] == ["Authorization"] and web["headers"][0]["value"].startswith("Bearer {{args.")
    # The answer comes before Argo gives up on the request
    assert web["timeoutSeconds"] > server_budget_s()
    phases = {d: argo_phase(d, metric["successCondition"], metric["failureCondition"]) for d in ("promote", "rollback", "hold")}
    assert phases == {"promote": "Successful", "rollback": "Failed", "hold": "Inconclusive"}
    assert metric["inconclusiveLimit"] == 0 and metric["failureLimit"] == 0


def test_the_job_template_runs_the_canary_stage_once() -> None:
    template = one("AnalysisTemplate", "releasegate-canary-job")
    (metric,) = template["spec"]["metrics"]
    job = metric["provider"]["job"]["spec"]
    pod = job["template"]["spec"]
    (container,) = pod["containers"]

    assert container["args"][:7] == ["run", "--stage", "canary", "--target", "/config/target.yaml", "--gates", "/config/gates.yaml"]
    assert job["backoffLimit"] == 0 and pod["restartPolicy"] == "Never"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/config"]]["configMap"]["name"] == "releasegate-config"
    config = yaml.safe_load(one("ConfigMap", "releasegate-config")["data"]["gates.yaml"])
    assert job["activeDeadlineSeconds"] > config["deadline_s"]
    text = (DEPLOY / "argo" / "analysis-template-job.yaml").read_text(encoding="utf-8")
    assert "cannot express hold" in text and "exit 2" in text


def test_the_rollout_uses_the_templates_and_the_services_of_the_target() -> None:
    rollout = one("Rollout", "assistant")
    canary = rollout["spec"]["strategy"]["canary"]
    used = {t["templateName"] for step in canary["steps"] if "analysis" in step for t in step["analysis"]["templates"]}
    assert used == {t["metadata"]["name"] for t in of_kind("AnalysisTemplate")}
    target = yaml.safe_load(one("ConfigMap", "releasegate-config")["data"]["target.yaml"])
    assert urlsplit(target["canary"]["baseline_url"]).hostname.startswith(canary["stableService"] + ".")  # type: ignore[union-attr]
    assert urlsplit(target["canary"]["canary_url"]).hostname.startswith(canary["canaryService"] + ".")  # type: ignore[union-attr]


def test_the_flagger_canary_calls_the_servers_routes_with_sized_timeouts() -> None:
    canary = one("Canary", "assistant")
    service = one("Service", "releasegate")
    hooks = {hook["type"]: hook for hook in canary["spec"]["analysis"]["webhooks"]}
    assert set(hooks) == {"pre-rollout", "confirm-promotion", "rollback"}

    for hook in hooks.values():
        url = urlsplit(hook["url"])
        assert url.hostname is not None and url.hostname.split(".")[0] == service["metadata"]["name"]
        assert url.port == service["spec"]["ports"][0]["port"]
        kind, _, route = url.path.strip("/").partition("/")
        assert kind == "flagger" and (route in STAGES or route == "rollback"), url.path
        # Flagger's metadata is map[string]string
        assert all(isinstance(v, str) for v in (hook.get("metadata") or {}).values())
        go_duration_s(hook["timeout"])

    assert urlsplit(hooks["confirm-promotion"]["url"]).path == "/flagger/canary"
    assert urlsplit(hooks["rollback"]["url"]).path == "/flagger/rollback"
    # The long canary run answers before Flagger's timeout
    assert go_duration_s(hooks["confirm-promotion"]["timeout"]) > server_budget_s()
    # Only 200 is a success for Flagger (it accepts 200-202); every other verdict is a 4xx
    assert FLAGGER_STATUS["promote"] == FLAGGER_STATUS["pass"] == 200
    assert all(400 <= FLAGGER_STATUS[d] < 500 for d in ("rollback", "hold"))
