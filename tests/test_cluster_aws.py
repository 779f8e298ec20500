"""cluster/aws/cluster.yaml: Ray's own launcher validation, botocore's RunInstances shape, `ray start`
flags, the project's invariants (own instance profiles, token auth, dashboard on 127.0.0.1, the image),
and the launcher's whole bootstrap against moto's EC2 (no AWS account, nothing launched)."""

from __future__ import annotations

import copy

import pytest
import yaml
from cluster_support import CLUSTER, locked_version, ray_start_flags, ray_up_errors

CONFIG = CLUSTER / "aws" / "cluster.yaml"


def config() -> dict:
    return yaml.safe_load(CONFIG.read_text())


def test_cluster_yaml_passes_rays_validation_and_botocore():
    assert ray_up_errors(CONFIG) == []


def _set(path, value):
    def change(document):
        node = document
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return change


def _rename(path, new):
    def change(document):
        node = document
        for key in path[:-1]:
            node = node[key]
        node[new] = node.pop(path[-1])
    return change


WORKER = ["available_node_types", "ray.worker.gpu.g5"]
MISTAKES = [
    (_rename(WORKER + ["max_workers"], "max_worker"), "available_node_types.ray.worker.gpu.g5", "max_worker"),
    (_rename(["idle_timeout_minutes"], "idle_timeout_minute"), "cluster.yaml: ", "idle_timeout_minute"),
    (_rename(["provider", "cache_stopped_nodes"], "cache_stoped_nodes"), "provider.cache_stoped_nodes",
     "not read by Ray's AWS provider"),
    (_rename(WORKER + ["node_config", "InstanceType"], "InstanceTyp"), "ray.worker.gpu.g5.node_config",
     "Unknown parameter in input: \"InstanceTyp\""),
    (_set(WORKER + ["node_config", "BlockDeviceMappings", 0, "Ebs", "VolumeSize"], "300"),
     "ray.worker.gpu.g5.node_config", "BlockDeviceMappings[0].Ebs.VolumeSize"),
    (_rename(WORKER + ["node_config", "IamInstanceProfile", "Arn"], "ARN"), "ray.worker.gpu.g5.node_config",
     "\"ARN\""),
    (_set(["head_start_ray_commands", 1], "ray start --head --dashboard-hst=127.0.0.1"),
     "head_start_ray_commands[1]", "--dashboard-hst"),
    (_set(["max_workers"], "14"), "cluster.yaml: max_workers", "is not of type 'integer'"),
]


@pytest.mark.parametrize(("mutate", "where", "what"), MISTAKES, ids=[m[2][:30] for m in MISTAKES])
def test_a_mistake_in_cluster_yaml_is_named(mutate, where, what, tmp_path):
    document = config()
    mutate(document)
    copy_ = tmp_path / "cluster.yaml"
    copy_.write_text(yaml.safe_dump(document))
    errors = ray_up_errors(copy_)
    assert any(e.startswith("cluster.yaml: ") and where in e and what in e for e in errors), errors


def test_nodes_use_our_least_privilege_instance_profiles():
    """Never the launcher's default role (EC2 + S3 full access): every node names an instance profile
    that `python -m infra apply --name-prefix reid` creates."""
    from infra.plan import Plan

    plan = Plan(prefix="reid", region=config()["provider"]["region"], partition="aws", account_id="123456789012")
    document = config()
    for name, node_type in document["available_node_types"].items():
        role = "reid-ray-head" if name == document["head_node_type"] else "reid-ray-worker"
        assert node_type["node_config"]["IamInstanceProfile"] == {"Arn": plan.instance_profile_arn(role)}, name
        assert role in {r.name for r in plan.roles}
        assert node_type["node_config"]["MetadataOptions"]["HttpTokens"] == "required", name  # IMDSv2 only


def test_token_auth_image_dashboard_and_no_installs_on_the_nodes():
    from ray.autoscaler._private.util import prepare_config

    document = config()
    assert document["docker"]["image"].rsplit(":", 1)[-1] == locked_version("ray")
    assert "-e RAY_AUTH_MODE=token" in document["docker"]["run_options"]
    assert document["file_mounts"] == {"~/.ray/auth_token": "~/.ray/auth_token"}
    head = " ".join(document["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "--num-cpus=0" in head
    assert document["available_node_types"][document["head_node_type"]]["resources"] == {"CPU": 0}
    assert not any("dashboard-host" in ray_start_flags(c) for c in document["worker_start_ray_commands"])
    prepared = prepare_config(copy.deepcopy(document))  # Ray's defaults merged in, as `ray up` does
    for key in ("setup_commands", "head_setup_commands", "worker_setup_commands"):
        assert not any("pip install" in c for c in prepared[key]), key
    families = {t["node_config"]["InstanceType"].split(".")[0] for t in document["available_node_types"].values()}
    assert {"g5", "g6"} <= families


@pytest.fixture
def aws_dummies(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # the launcher writes ~/.ssh/ray-autoscaler_<region>.pem
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": config()["provider"]["region"]}.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(key, raising=False)


@pytest.mark.slow
def test_the_launchers_bootstrap_under_moto(aws_dummies):
    """What `ray up` does before launching anything: merge defaults, ask EC2 for the instance types'
    resources, create the key pair and security group, validate. No default IAM role may be created."""
    import boto3
    import moto
    from ray.autoscaler._private.commands import _bootstrap_config

    with moto.mock_aws():
        boot = _bootstrap_config(copy.deepcopy(config()), no_config_cache=True)
        roles = boto3.client("iam").list_roles()["Roles"]
        groups = boto3.client("ec2").describe_security_groups()["SecurityGroups"]
    assert roles == []  # the launcher did not create its ray-autoscaler-v1 role (EC2 + S3 full access)
    group = next(g for g in groups if g["GroupName"] == "ray-autoscaler-reid")
    # From outside only SSH (the dashboard stays on 127.0.0.1, reached through `ray dashboard`).
    open_to_world = [(p.get("FromPort"), p.get("ToPort")) for p in group["IpPermissions"] if p.get("IpRanges")]
    assert open_to_world == [(22, 22)]
    assert [p["UserIdGroupPairs"][0]["GroupId"] for p in group["IpPermissions"] if p.get("UserIdGroupPairs")] == \
        [group["GroupId"]]
    types = boot["available_node_types"]
    assert types["ray.head.default"]["resources"] == {"CPU": 0}
    assert types["ray.worker.gpu.g5"]["resources"]["GPU"] == 1
    assert types["ray.worker.gpu.g6"]["resources"]["GPU"] == 4
    assert types["ray.worker.cpu"]["resources"]["CPU"] == 16 and "GPU" not in types["ray.worker.cpu"]["resources"]
    for name, node_type in types.items():
        node_config = node_type["node_config"]
        assert node_config["IamInstanceProfile"] == config()["available_node_types"][name]["node_config"][
            "IamInstanceProfile"], name
        assert node_config["KeyName"] and node_config["SubnetIds"] and node_config["SecurityGroupIds"], name
