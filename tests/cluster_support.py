"""Offline validators for cluster/ and infra/ (used by tests/test_cluster_*.py and tests/test_infra_*.py).

Every validator takes a file (so a test can hand it a mutated copy) and returns error lines of the form
``<file name>: <where>: <what>``, so a typo fails with the file and the field named.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
import shlex
import sys
import tomllib
import types
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
KUBERAY = CLUSTER / "kuberay"
SCHEMAS = CLUSTER / "schemas"
RAY_KINDS = {"RayCluster": "raycluster.v1.strict.json", "RayJob": "rayjob.v1.strict.json"}
KUBERNETES_VERSION = "1.33"
MAX_NAME = {"RayCluster": 53, "RayJob": 47}  # KubeRay's MaxRayClusterNameLength / MaxRayJobNameLength
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(Path(path).read_text()) if d is not None]


def write_docs(path: Path, docs: Iterable[dict]) -> Path:
    Path(path).write_text(yaml.safe_dump_all(list(docs), sort_keys=False))
    return Path(path)


def locked_version(package: str) -> str:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return next(p["version"] for p in lock["package"] if p["name"] == package)


def _where(doc: dict) -> str:
    return f"{doc.get('kind', '?')}/{(doc.get('metadata') or {}).get('name', '?')}"


def _path(parts: Iterable) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


# --- KubeRay: strict schema + the operator's own rules ----------------------------------------------------
@cache
def ray_validator(kind: str):
    import jsonschema

    schema = json.loads((SCHEMAS / RAY_KINDS[kind]).read_text())
    return jsonschema.Draft7Validator(schema)


def _schema_errors(name: str, doc: dict) -> list[str]:
    errors = []
    for error in sorted(ray_validator(doc["kind"]).iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        errors.append(f"{name}: {_where(doc)}: {_path(error.absolute_path)}: {error.message}")
    return errors


@cache
def ray_start_options() -> frozenset[str]:
    from ray.scripts.scripts import start

    return frozenset(opt.lstrip("-") for param in start.params for opt in param.opts)


def _version_tuple(text: str) -> tuple[int, ...]:
    match = re.match(r"^v?(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    if not match:
        raise ValueError(text)
    return tuple(int(g or 0) for g in match.groups())


def _group_rules(name: str, where: str, spec: dict) -> list[str]:
    """ValidateRayClusterSpec of ray-operator/controllers/ray/utils/validation.go, and the CRD's
    replica rules, for one RayCluster spec (also a RayJob's rayClusterSpec)."""
    errors = []
    groups = [("headGroupSpec", spec.get("headGroupSpec") or {})]
    groups += [(f"workerGroupSpecs[{i}]", g) for i, g in enumerate(spec.get("workerGroupSpecs") or [])]
    autoscaling = bool(spec.get("enableInTreeAutoscaling"))
    v2 = autoscaling and (spec.get("autoscalerOptions") or {}).get("version") == "v2"
    for at, group in groups:
        pod = (group.get("template") or {}).get("spec") or {}
        if not pod.get("containers"):
            errors.append(f"{name}: {where}: {at}.template.spec.containers: needs at least one container")
        params = group.get("rayStartParams") or {}
        for key, value in params.items():
            if key not in ray_start_options():
                errors.append(f"{name}: {where}: {at}.rayStartParams.{key}: not an option of `ray start`")
            if not isinstance(value, str):
                errors.append(f"{name}: {where}: {at}.rayStartParams.{key}: must be a string, got {value!r}")
        if "labels" in params:
            errors.append(f"{name}: {where}: {at}.rayStartParams.labels: not supported, use the group's labels")
        if group.get("resources") and any(params.get(k) for k in ("num-cpus", "num-gpus", "memory", "resources")):
            errors.append(f"{name}: {where}: {at}.resources: set either resources or rayStartParams "
                          "num-cpus/num-gpus/memory/resources, not both")
        if v2 and pod.get("restartPolicy") not in (None, "", "Never"):
            errors.append(f"{name}: {where}: {at}.template.spec.restartPolicy: must be Never or unset with "
                          "the autoscaler v2")
        if at != "headGroupSpec":
            low, high = group.get("minReplicas", 0), group.get("maxReplicas", 2**31 - 1)
            replicas = group.get("replicas", low)
            if isinstance(low, int) and isinstance(high, int):
                if low < 0 or high < 0:
                    errors.append(f"{name}: {where}: {at}: minReplicas and maxReplicas must be >= 0")
                if low > high:
                    errors.append(f"{name}: {where}: {at}.minReplicas: {low} > maxReplicas {high}")
                if isinstance(replicas, int) and not low <= replicas <= high:
                    errors.append(f"{name}: {where}: {at}.replicas: {replicas} outside [{low}, {high}]")
            if autoscaling and group.get("suspend"):
                errors.append(f"{name}: {where}: {at}.suspend: a group cannot be suspended with autoscaling")
    head_env = [e.get("name") for c in ((spec.get("headGroupSpec") or {}).get("template") or {}).get("spec", {})
                .get("containers", [])[:1] for e in c.get("env") or []]
    if autoscaling and (spec.get("autoscalerOptions") or {}).get("version") and "RAY_enable_autoscaler_v2" in head_env:
        errors.append(f"{name}: {where}: headGroupSpec env RAY_enable_autoscaler_v2: use autoscalerOptions.version only")
    if (spec.get("authOptions") or {}).get("mode") == "token":
        try:
            if _version_tuple(spec.get("rayVersion")) < (2, 52, 0):
                errors.append(f"{name}: {where}: rayVersion: token auth needs Ray >= 2.52.0")
        except ValueError:
            errors.append(f"{name}: {where}: rayVersion: {spec.get('rayVersion')!r} is not a version (token auth "
                          "needs >= 2.52.0)")
    return errors


def _job_rules(name: str, doc: dict) -> list[str]:
    """ValidateRayJobSpec / validateDeletionConfiguration of validation.go."""
    where, spec = _where(doc), doc.get("spec") or {}
    errors = []
    shutdown = bool(spec.get("shutdownAfterJobFinishes"))
    if spec.get("suspend") and not shutdown:
        errors.append(f"{name}: {where}: spec.suspend: needs shutdownAfterJobFinishes: true")
    ttl = spec.get("ttlSecondsAfterFinished", 0)
    if isinstance(ttl, int) and ttl < 0:
        errors.append(f"{name}: {where}: spec.ttlSecondsAfterFinished: must be >= 0")
    if not shutdown and isinstance(ttl, int) and ttl > 0:
        errors.append(f"{name}: {where}: spec.ttlSecondsAfterFinished: only with shutdownAfterJobFinishes: true")
    rules = ((spec.get("deletionStrategy") or {}).get("deletionRules")) or []
    if rules and shutdown:
        errors.append(f"{name}: {where}: spec.deletionStrategy.deletionRules: mutually exclusive with "
                      "shutdownAfterJobFinishes")
    if spec.get("rayClusterSpec") is None and not spec.get("clusterSelector"):
        errors.append(f"{name}: {where}: spec: one of rayClusterSpec or clusterSelector is required")
    mode = spec.get("submissionMode", "K8sJobMode")
    if mode not in ("K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"):
        errors.append(f"{name}: {where}: spec.submissionMode: {mode!r} is not one of K8sJobMode, HTTPMode, "
                      "InteractiveMode, SidecarMode")
    if mode == "InteractiveMode" and (spec.get("backoffLimit") or 0) > 0:
        errors.append(f"{name}: {where}: spec.backoffLimit: incompatible with InteractiveMode")
    if mode == "SidecarMode" and (spec.get("submitterPodTemplate") or spec.get("submitterConfig")
                                  or spec.get("clusterSelector")):
        errors.append(f"{name}: {where}: spec: SidecarMode allows no submitterPodTemplate, submitterConfig or "
                      "clusterSelector")
    if "activeDeadlineSeconds" in spec and not spec["activeDeadlineSeconds"] > 0:
        errors.append(f"{name}: {where}: spec.activeDeadlineSeconds: must be > 0")
    if (spec.get("backoffLimit") or 0) < 0:
        errors.append(f"{name}: {where}: spec.backoffLimit: must be >= 0")
    if "runtimeEnvYAML" in spec:
        errors += runtime_env_errors(name, spec["runtimeEnvYAML"], at=f"{where}: spec.runtimeEnvYAML")
    if spec.get("rayClusterSpec") is not None:
        errors += _group_rules(name, f"{where}: spec.rayClusterSpec", spec["rayClusterSpec"])
    return errors


def _metadata_rules(name: str, doc: dict) -> list[str]:
    meta, kind = doc.get("metadata") or {}, doc.get("kind")
    value = meta.get("name", "")
    errors = []
    if kind in MAX_NAME and len(value) > MAX_NAME[kind]:
        errors.append(f"{name}: {_where(doc)}: metadata.name: longer than {MAX_NAME[kind]} characters")
    if not DNS_1035.match(value):
        errors.append(f"{name}: {_where(doc)}: metadata.name: {value!r} is not a DNS-1035 label")
    return errors


def kuberay_errors(path: Path) -> list[str]:
    """RayCluster / RayJob documents of a file: strict schema, then the operator's rules."""
    name, errors = Path(path).name, []
    for doc in load_docs(path):
        if doc.get("kind") not in RAY_KINDS:
            continue
        schema = _schema_errors(name, doc)
        errors += schema
        if schema and not isinstance(doc.get("spec"), dict):
            continue
        errors += _metadata_rules(name, doc)
        if doc["kind"] == "RayCluster":
            errors += _group_rules(name, f"{_where(doc)}: spec", doc.get("spec") or {})
        else:
            errors += _job_rules(name, doc)
    return errors


# --- core Kubernetes kinds --------------------------------------------------------------------------------
def core_errors(path: Path) -> list[str]:
    """Every non-Ray document against Kubernetes' own schemas (strict: unknown fields fail); Ray pod
    templates are checked the same way as PodTemplates."""
    import kubernetes_validate

    name, errors = Path(path).name, []

    def check(doc: dict, where: str):
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{name}: {where}: {_path(error.path)}: {error.message}")
        except kubernetes_validate.utils.SchemaNotFoundError as error:  # an unknown kind or apiVersion
            errors.append(f"{name}: {where}: kind/apiVersion: {error}")

    for doc in load_docs(path):
        if doc.get("kind") in RAY_KINDS:
            spec = doc.get("spec") or {}
            cluster = spec.get("rayClusterSpec", spec) if doc["kind"] == "RayJob" else spec
            groups = [("headGroupSpec", cluster.get("headGroupSpec") or {})]
            groups += [(f"workerGroupSpecs[{i}]", g) for i, g in enumerate(cluster.get("workerGroupSpecs") or [])]
            for at, group in groups:
                template = copy.deepcopy(group.get("template") or {})
                check({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template},
                      f"{_where(doc)}: {at}.template (as a PodTemplate)")
        else:
            check(doc, _where(doc))
    return errors


# --- runtime environments -----------------------------------------------------------------------------------
def runtime_env_errors(name: str, text_or_dict, at: str = "(document)") -> list[str]:
    """What Ray itself would reject (RuntimeEnv), plus unknown top-level fields (Ray accepts those
    silently as plugins) and unknown ``config`` keys (Ray only warns)."""
    from ray.runtime_env import RuntimeEnv

    if isinstance(text_or_dict, str):
        try:
            env = yaml.safe_load(text_or_dict)
        except yaml.YAMLError as error:
            return [f"{name}: {at}: not YAML: {error}"]
    else:
        env = text_or_dict
    if env is None:
        return []
    if not isinstance(env, dict):
        return [f"{name}: {at}: must be a mapping"]
    errors = [f"{name}: {at}.{key}: not a runtime_env field (known: {', '.join(sorted(RuntimeEnv.known_fields))})"
              for key in env if key not in RuntimeEnv.known_fields]
    for key in (env.get("config") or {}):
        if key not in ("setup_timeout_seconds", "eager_install", "log_files"):
            errors.append(f"{name}: {at}.config.{key}: not a runtime_env config key")
    for key, value in (env.get("env_vars") or {}).items():
        if not isinstance(value, str):
            errors.append(f"{name}: {at}.env_vars.{key}: must be a string, got {value!r}")
    if not errors:
        try:
            RuntimeEnv(**env)
        except Exception as error:  # noqa: BLE001 - Ray raises TypeError/ValueError/... with the reason
            errors.append(f"{name}: {at}: {type(error).__name__}: {error}")
    return errors


AWS_PROVIDER_KEYS = frozenset({
    "type", "region", "availability_zone", "cache_stopped_nodes", "use_internal_ips", "use_external_head_ip",
    "security_group", "key_pair", "aws_credentials", "cloudwatch", "disable_node_updaters",
    "disable_launch_config_check", "foreground_node_launch", "worker_liveness_check", "head_ip", "worker_ips",
})


# --- `ray up` ----------------------------------------------------------------------------------------------
def ray_up_errors(path: Path) -> list[str]:
    """Ray's own launcher validation (prepare_config + validate_config against ray-schema.json), each
    node_config against botocore's RunInstances request shape, and `ray start` flags in the commands."""
    import botocore.session
    import botocore.validate
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    name = Path(path).name
    config = yaml.safe_load(Path(path).read_text())
    errors = []
    try:
        validate_config(prepare_config(copy.deepcopy(config)))
    except jsonschema.ValidationError as error:
        errors.append(f"{name}: {_path(error.absolute_path)}: {error.message}")
    except (ValueError, RuntimeError, KeyError) as error:
        errors.append(f"{name}: {type(error).__name__}: {error}")
    shape = botocore.session.get_session().get_service_model("ec2").operation_model("RunInstances").input_shape
    for node_type, spec in (config.get("available_node_types") or {}).items():
        report = botocore.validate.ParamValidator().validate(
            {**(spec.get("node_config") or {}), "MinCount": 1, "MaxCount": 1}, shape)
        if report.has_errors():
            for line in report.generate_report().splitlines():
                errors.append(f"{name}: available_node_types.{node_type}.node_config: {line.strip()}")
    # ray-schema.json lets any key into `provider`; these are the ones Ray's AWS provider reads
    # (ray/autoscaler/_private/aws: config.py, node_provider.py, cloudwatch) and the schema names.
    provider = config.get("provider") or {}
    if provider.get("type") == "aws":
        for key in provider:
            if key not in AWS_PROVIDER_KEYS:
                errors.append(f"{name}: provider.{key}: not read by Ray's AWS provider "
                              f"(known: {', '.join(sorted(AWS_PROVIDER_KEYS))})")
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        for i, command in enumerate(config.get(key) or []):
            for flag in ray_start_flags(command):
                if flag not in ray_start_options():
                    errors.append(f"{name}: {key}[{i}]: --{flag} is not an option of `ray start`")
    return errors


def ray_start_flags(command: str) -> list[str]:
    """The --flags of every `ray start` in a shell command line."""
    flags = []
    for part in re.split(r"[;&|]+", command):
        words = shlex.split(part)
        if words[:2] == ["ray", "start"]:
            flags += [w[2:].split("=", 1)[0] for w in words[2:] if w.startswith("--")]
    return flags


# --- IAM policy lint -----------------------------------------------------------------------------------------
def parliament():
    """parliament 1.6 imports pkg_resources, which setuptools 81 removed (the lock has setuptools 84 for
    torch): give it the one function it uses, from importlib.resources."""
    if "pkg_resources" not in sys.modules:
        try:
            import pkg_resources  # noqa: F401
        except ImportError:
            shim = types.ModuleType("pkg_resources")
            shim.resource_filename = lambda package, name: str(importlib.resources.files(package) / name)
            sys.modules["pkg_resources"] = shim
    import parliament as module

    return module


def policy_findings(name: str, document: dict, *, trust: bool = False, allowed: dict[str, set[str]] | None = None):
    """parliament's findings as error lines; ``allowed`` maps an issue to the actions exempted from it.
    A trust policy has no Resource by design, which parliament (an identity-policy linter) reports as
    MALFORMED: only that one finding is expected there."""
    allowed = allowed or {}
    policy = parliament().analyze_policy_string(json.dumps(document, indent=1))
    errors = []
    for finding in policy.findings:
        detail = finding.detail if isinstance(finding.detail, list) else [finding.detail]
        if trust and finding.issue == "MALFORMED" and "neither Resource nor NotResource" in str(finding.detail):
            continue
        if finding.issue in allowed and set(map(str, detail)) <= allowed[finding.issue]:
            continue
        errors.append(f"{name}: {finding.issue}: {finding.detail} (line {finding.location.get('line')})")
    return errors
