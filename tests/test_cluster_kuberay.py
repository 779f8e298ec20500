"""cluster/kuberay/: strict KubeRay schemas generated from the CRDs, the operator's rules, core kinds with
Kubernetes' own schemas, and the project's invariants (versions, GPUs, secrets, references), all offline."""

from __future__ import annotations

import copy
import hashlib
import json
import shlex
import subprocess
import sys

import pytest
import yaml
from cluster_support import (
    KUBERAY,
    ROOT,
    SCHEMAS,
    core_errors,
    kuberay_errors,
    load_docs,
    locked_version,
    write_docs,
)

CRDS = SCHEMAS / "kuberay-crds"  # vendored, so a clean clone checks its schemas against them
MANIFESTS = sorted(p.name for p in KUBERAY.glob("*.yaml"))
RAY_VERSION = locked_version("ray")


def docs_of(name: str) -> list[dict]:
    return load_docs(KUBERAY / name)


def by_kind(kind: str) -> list[tuple[str, dict]]:
    return [(name, d) for name in MANIFESTS for d in docs_of(name) if d["kind"] == kind]


def one(kind: str, name: str | None = None) -> dict:
    found = [d for _, d in by_kind(kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_specs(doc: dict):
    """(where, pod spec) of every pod template in a manifest."""
    if doc["kind"] in ("RayCluster", "RayJob"):
        spec = doc["spec"].get("rayClusterSpec", doc["spec"]) if doc["kind"] == "RayJob" else doc["spec"]
        yield "headGroupSpec", spec["headGroupSpec"]["template"]["spec"]
        for group in spec.get("workerGroupSpecs", []):
            yield group["groupName"], group["template"]["spec"]
    elif doc["kind"] == "Deployment":
        yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def all_pod_specs():
    for name in MANIFESTS:
        for doc in docs_of(name):
            for where, spec in pod_specs(doc):
                yield f"{name}: {doc['kind']}/{doc['metadata']['name']}: {where}", spec


# --- the schemas ---------------------------------------------------------------------------------------
def test_committed_schemas_record_the_kuberay_tag_and_are_strict():
    for kind, file in (("RayCluster", "raycluster.v1.strict.json"), ("RayJob", "rayjob.v1.strict.json")):
        schema = json.loads((SCHEMAS / file).read_text())
        assert schema["x-kuberay"]["tag"] == "v1.7.0" and schema["x-kuberay"]["kind"] == kind
        assert schema["properties"]["kind"]["enum"] == [kind]
        assert "status" not in schema["properties"]
        container = (schema["properties"]["spec"]["properties"].get("rayClusterSpec", schema["properties"]["spec"])
                     ["properties"]["headGroupSpec"]["properties"]["template"]["properties"]["spec"]
                     ["properties"]["containers"]["items"])
        assert container["additionalProperties"] is False and "resources" in container["properties"]


def test_schemas_regenerate_identically_from_the_crds():
    """The committed schemas are exactly what the generator makes from the vendored v1.7.0 CRDs (its default)."""
    done = subprocess.run([sys.executable, str(SCHEMAS / "generate.py"), "--check"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for file, crd in (("raycluster.v1.strict.json", "ray.io_rayclusters.yaml"),
                      ("rayjob.v1.strict.json", "ray.io_rayjobs.yaml")):
        recorded = json.loads((SCHEMAS / file).read_text())["x-kuberay"]["crd_sha256"]
        assert recorded == hashlib.sha256((CRDS / crd).read_bytes()).hexdigest()


def test_generator_check_reports_a_stale_schema(tmp_path):
    for file in ("raycluster.v1.strict.json", "rayjob.v1.strict.json"):
        (tmp_path / file).write_text((SCHEMAS / file).read_text())
    (tmp_path / "rayjob.v1.strict.json").write_text("{}\n")
    done = subprocess.run([sys.executable, str(SCHEMAS / "generate.py"), "--crds", str(CRDS), "--out",
                           str(tmp_path), "--check"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "rayjob.v1.strict.json" in done.stderr
    assert "raycluster" not in done.stderr


# --- every manifest is valid ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_is_valid(name):
    assert kuberay_errors(KUBERAY / name) == []
    assert core_errors(KUBERAY / name) == []


def _mutate(name: str, index: int, path: list, change, tmp_path):
    """A copy of manifest ``name`` with ``change(parent, key)`` applied at ``path`` of document ``index``."""
    docs = copy.deepcopy(docs_of(name))
    node = docs[index]
    for key in path[:-1]:
        node = node[key]
    change(node, path[-1])
    return write_docs(tmp_path / name, docs)


def rename(new):
    def change(parent, key):
        parent[new] = parent.pop(key)
    return change


def set_to(value):
    def change(parent, key):
        parent[key] = value
    return change


HEAD = ["spec", "headGroupSpec"]
HEAD_CONTAINER = HEAD + ["template", "spec", "containers", 0]
JOB_CLUSTER = ["spec", "rayClusterSpec"]

TYPOS = [  # (file, document index, path to the key, mistyped key)
    ("raycluster.yaml", 0, ["spec", "enableInTreeAutoscaling"], "enableInTreeAutoscalng"),
    ("raycluster.yaml", 0, ["spec", "autoscalerOptions", "idleTimeoutSeconds"], "idleTimeoutSecond"),
    ("raycluster.yaml", 0, HEAD_CONTAINER + ["resources"], "resurces"),
    ("raycluster.yaml", 0, HEAD + ["template", "spec", "restartPolicy"], "restartPolicyy"),
    ("raycluster.yaml", 0, ["spec", "workerGroupSpecs", 1, "minReplicas"], "minReplica"),
    ("raycluster.yaml", 0, ["spec", "workerGroupSpecs", 2, "template", "spec", "tolerations"], "toleration"),
    ("raycluster.yaml", 0, HEAD + ["rayStartParams", "dashboard-host"], "dashbord-host"),
    ("rayjob-tune-dve.yaml", 0, ["spec", "shutdownAfterJobFinishes"], "shutdownAfterJobFinish"),
    ("rayjob-tune-dve.yaml", 0, ["spec", "ttlSecondsAfterFinished"], "ttlSecondAfterFinished"),
    ("rayjob-tune-dve.yaml", 0, JOB_CLUSTER + ["authOptions", "secretName"], "secretname"),
    ("rayjob-tune-dve.yaml", 0, ["metadata", "namespace"], "namespce"),
    ("base.yaml", 3, ["data"], "datas"),
    ("base.yaml", 1, ["metadata", "annotations"], "annotation"),
    ("base.yaml", 4, ["spec", "accessModes"], "accessMode"),
    ("mlflow.yaml", 1, ["spec", "template", "spec", "containers", 0, "readinessProbe"], "readinesProbe"),
    ("mlflow.yaml", 1, ["spec", "template", "spec", "serviceAccountName"], "serviceAcountName"),
    ("mlflow.yaml", 2, ["spec", "selector"], "selecter"),
    ("secrets.template.yaml", 0, ["stringData"], "stringdata"),
]


@pytest.mark.parametrize(("name", "index", "path", "typo"), TYPOS, ids=[f"{t[0]}:{t[3]}" for t in TYPOS])
def test_a_mistyped_field_fails_naming_the_file_and_the_field(name, index, path, typo, tmp_path):
    copy_ = _mutate(name, index, path, rename(typo), tmp_path)
    errors = kuberay_errors(copy_) + core_errors(copy_)
    assert errors, f"{name}: the typo {typo!r} passed validation"
    assert all(e.startswith(f"{name}: ") for e in errors)
    assert any(typo in e for e in errors), errors


RULES = [  # mistakes the schema lets through and the operator rejects (validation.go), or its CRD rules
    ("raycluster.yaml", ["spec", "workerGroupSpecs", 0, "minReplicas"], set_to(9), "minReplicas: 9 > maxReplicas"),
    ("raycluster.yaml", ["spec", "workerGroupSpecs", 0, "replicas"], set_to(12), "replicas: 12 outside"),
    ("raycluster.yaml", HEAD + ["template", "spec", "restartPolicy"], set_to("Always"), "restartPolicy: must be Never"),
    ("raycluster.yaml", ["spec", "rayVersion"], set_to("2.50.0"), "rayVersion: token auth needs Ray >= 2.52.0"),
    ("raycluster.yaml", HEAD + ["resources"], set_to({"CPU": "0"}), "headGroupSpec.resources: set either"),
    ("raycluster.yaml", HEAD + ["rayStartParams", "labels"], set_to("a=b"), "rayStartParams.labels: not supported"),
    ("raycluster.yaml", ["metadata", "name"], set_to("Reid_Cluster"), "metadata.name: 'Reid_Cluster' is not a DNS-1035"),
    ("raycluster.yaml", HEAD + ["template", "spec", "containers"], set_to([]), "needs at least one container"),
    ("rayjob-tune-dve.yaml", ["spec", "shutdownAfterJobFinishes"], set_to(False),
     "ttlSecondsAfterFinished: only with shutdownAfterJobFinishes"),
    ("rayjob-tune-dve.yaml", ["spec", "deletionStrategy"],
     set_to({"deletionRules": [{"condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 0}, "policy": "DeleteCluster"}]}),
     "deletionRules: mutually exclusive with shutdownAfterJobFinishes"),
    ("rayjob-tune-dve.yaml", ["spec", "runtimeEnvYAML"], set_to("env_vars: [unclosed"), "runtimeEnvYAML: not YAML"),
    ("rayjob-tune-dve.yaml", ["spec", "runtimeEnvYAML"], set_to("env_var:\n  A: b\n"),
     "runtimeEnvYAML.env_var: not a runtime_env field"),
    ("rayjob-tune-dve.yaml", ["metadata", "name"], set_to("reid-tune-dve-" + "x" * 40), "longer than 47"),
    ("rayjob-tune-dve.yaml", ["spec", "submissionMode"], set_to("K8sJob"), "submissionMode: 'K8sJob' is not one of"),
]


@pytest.mark.parametrize(("name", "path", "change", "expected"), RULES, ids=[r[3][:40] for r in RULES])
def test_operator_rules_are_enforced(name, path, change, expected, tmp_path):
    errors = kuberay_errors(_mutate(name, 0, path, change, tmp_path))
    assert any(expected in e and e.startswith(f"{name}: ") for e in errors), errors


def test_ray_start_params_are_strings(tmp_path):
    errors = kuberay_errors(_mutate("raycluster.yaml", 0, HEAD + ["rayStartParams", "num-cpus"], set_to(0), tmp_path))
    assert any("rayStartParams.num-cpus" in e for e in errors), errors


# --- the project's invariants -----------------------------------------------------------------------------------
def test_ray_version_and_image_tags_equal_the_locked_ray():
    cluster, job = one("RayCluster"), one("RayJob")
    assert cluster["spec"]["rayVersion"] == job["spec"]["rayClusterSpec"]["rayVersion"] == RAY_VERSION
    images = [(where, c["image"]) for where, spec in all_pod_specs() for c in spec["containers"]]
    assert len(images) >= 9
    for where, image in images:
        assert image.rsplit(":", 1)[-1] == RAY_VERSION, f"{where}: image {image} is not tagged {RAY_VERSION}"


def test_the_rayjob_runs_the_same_cluster_as_the_raycluster():
    assert one("RayJob")["spec"]["rayClusterSpec"] == one("RayCluster")["spec"]


def test_cluster_shape_head_without_work_groups_from_zero_gpus_tolerated():
    spec = one("RayCluster")["spec"]
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert spec["enableInTreeAutoscaling"] is True and spec["autoscalerOptions"]["version"] == "v2"
    assert spec["authOptions"] == {"mode": "token", "secretName": "reid-ray-token"}
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu-segment", "gpu-train"}
    for name, group in groups.items():
        assert group["replicas"] == group["minReplicas"] == 0 < group["maxReplicas"], name
        container = group["template"]["spec"]["containers"][0]
        gpus = container["resources"]["limits"].get("nvidia.com/gpu", 0)
        tolerations = group["template"]["spec"].get("tolerations", [])
        if name.startswith("gpu"):
            assert gpus >= 1 and container["resources"]["requests"]["nvidia.com/gpu"] == gpus, name
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations, name
        else:
            assert gpus == 0 and not tolerations
    assert groups["gpu-segment"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert groups["gpu-train"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] > 1


def test_the_rayjob_runs_tune_dve_from_the_image_and_shuts_down():
    from reid_core.cli.tune import build_parser
    from reid_core.settings import Settings

    spec = one("RayJob")["spec"]
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] > 0
    words = shlex.split(spec["entrypoint"])
    assert words[:2] == ["python", "/app/workflows/tune_dve.py"]
    assert (ROOT / "workflows" / "tune_dve.py").is_file()
    parser = build_parser("dve", Settings.from_env({"REID_HOME": "/tmp/reid"}))
    args = parser.parse_args(words[2:])
    # Whole option names only (argparse would also take an abbreviation, or a typo that is a prefix).
    options = {o for action in parser._actions for o in action.option_strings}
    assert {w for w in words[2:] if w.startswith("--")} <= options
    assert args.use_gpu and args.workers_per_trial >= 1
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    # A RayJob cannot upload a local directory: code comes from the image, or an s3:// zip.
    assert str(runtime_env.get("working_dir", "s3://")).startswith("s3://")


def test_a_mistyped_entrypoint_flag_is_named(tmp_path, capsys):
    from reid_core.cli.tune import build_parser
    from reid_core.settings import Settings

    entrypoint = one("RayJob")["spec"]["entrypoint"].replace("--num-samples", "--num-smaples")
    with pytest.raises(SystemExit) as exit_:
        build_parser("dve", Settings.from_env({"REID_HOME": "/tmp/reid"})).parse_args(shlex.split(entrypoint)[2:])
    assert exit_.value.code == 2 and "--num-smaples" in capsys.readouterr().err


def test_references_resolve_to_objects_and_keys_in_the_manifests():
    """Service accounts, ConfigMaps, Secrets (and their keys) and claims exist in cluster/kuberay/."""
    defined: dict[str, dict[str, set]] = {"ServiceAccount": {}, "ConfigMap": {}, "Secret": {},
                                          "PersistentVolumeClaim": {}}
    for _, doc in [(n, d) for n in MANIFESTS for d in docs_of(n)]:
        if doc["kind"] in defined:
            defined[doc["kind"]][doc["metadata"]["name"]] = set(doc.get("data") or doc.get("stringData") or {})
    refs = 0
    for where, spec in all_pod_specs():
        assert spec["serviceAccountName"] in defined["ServiceAccount"], where
        for volume in spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in defined["PersistentVolumeClaim"], where
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                kind, ref = ("ConfigMap", source["configMapRef"]) if "configMapRef" in source \
                    else ("Secret", source["secretRef"])
                assert ref["name"] in defined[kind], f"{where}: {kind} {ref['name']}"
                refs += 1
            for env in container.get("env", []):
                key_ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if key_ref:
                    assert key_ref["key"] in defined["Secret"].get(key_ref["name"], set()), f"{where}: {env['name']}"
                    refs += 1
    assert refs >= 10
    token_secret = one("RayCluster")["spec"]["authOptions"]["secretName"]
    assert "auth_token" in defined["Secret"][token_secret]


def test_no_secret_values_in_the_manifests():
    secret_words = ("PASSWORD", "SECRET", "TOKEN", "ACCESS_KEY")
    for where, spec in all_pod_specs():
        for container in spec["containers"]:
            for env in container.get("env", []):
                if any(w in env["name"].upper() for w in secret_words):
                    assert "value" not in env and "valueFrom" in env, f"{where}: {env['name']} has a literal value"
    for _, doc in by_kind("ConfigMap"):
        for key, value in doc["data"].items():
            assert not any(w in key.upper() for w in secret_words), f"ConfigMap {doc['metadata']['name']}: {key}"
            assert "@" not in str(value), f"ConfigMap {doc['metadata']['name']}: {key} looks like user:password@host"
    for _, doc in by_kind("Secret"):
        assert all(v == "" for v in doc["stringData"].values()), f"{doc['metadata']['name']}: the template has a value"
        assert "data" not in doc


def test_service_accounts_carry_the_roles_infra_creates():
    from infra.plan import Plan

    plan = Plan(prefix="reid", region="eu-west-1", partition="aws", account_id="123456789012")
    roles = {r.service_account: r.name for r in plan.roles if r.service_account}
    for _, doc in by_kind("ServiceAccount"):
        arn = doc["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        assert arn == plan.role_arn(roles[doc["metadata"]["name"]]), doc["metadata"]["name"]


def test_mlflow_server_runs_the_production_script_with_health_probes_and_allowed_hosts():
    deployment, service = one("Deployment", "mlflow"), one("Service", "mlflow")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["bash", "mlflow/serve_production.sh"] and container["workingDir"] == "/app"
    assert (ROOT / "mlflow" / "serve_production.sh").is_file()
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "reid-mlflow"
    config = one("ConfigMap", "reid-mlflow-config")["data"]
    port = service["spec"]["ports"][0]["port"]
    assert config["MLFLOW_PORT"] == str(port) and config["MLFLOW_HOST"] == "0.0.0.0"
    allowed = config["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    namespace, name = service["metadata"]["namespace"], service["metadata"]["name"]
    for host in (f"{name}.{namespace}.svc.cluster.local", f"{name}.{namespace}.svc", f"{name}.{namespace}", name):
        assert f"{host}:{port}" in allowed, host
    # Every Ray process is pointed at that Service.
    assert one("ConfigMap", "reid-env")["data"]["MLFLOW_TRACKING_URI"] == \
        f"http://{name}.{namespace}.svc.cluster.local:{port}"
    assert set(deployment["spec"]["selector"]["matchLabels"].items()) <= \
        set(deployment["spec"]["template"]["metadata"]["labels"].items())
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
