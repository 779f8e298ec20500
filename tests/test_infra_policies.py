"""infra/policies/: every document renders, passes parliament, fits IAM's size limits and grants no more
than its role needs; a typo in an action or a placeholder is named with its file."""

from __future__ import annotations

import json
import shutil

import pytest
from cluster_support import policy_findings

import infra.plan as plan_module
from infra.plan import MANAGED_POLICY_MAX_CHARS, POLICY_DIR, TRUST_POLICY_MAX_CHARS, Plan, compact

ISSUER = "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
# RunInstances touches instances, volumes, interfaces, subnets, groups, key pairs and images in one call: a
# Resource of "*" is the documented, least-bad form for an autoscaler that launches into whatever subnet
# the launcher chose.
ALLOWED = {"RESOURCE_STAR": {"ec2:RunInstances"}}


def plan(**kwargs) -> Plan:
    return Plan(prefix="reid", region="eu-west-1", partition="aws", account_id="123456789012", **kwargs)


def actions(document: dict, resource_part: str) -> set[str]:
    found = set()
    for statement in document["Statement"]:
        resources = statement.get("Resource", [])
        resources = [resources] if isinstance(resources, str) else resources
        if any(resource_part in r for r in resources):
            found |= set([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
    return found


def test_every_template_in_infra_policies_is_used():
    used = {p.template for p in plan().policies} | {"trust-ec2.json", "trust-eks-irsa-statement.json",
                                                    "bucket-tls-only-statement.json"}
    assert used == {p.name for p in POLICY_DIR.glob("*.json")}


@pytest.mark.parametrize("policy", [p.name for p in plan().policies])
def test_identity_policies_pass_parliament_and_fit(policy):
    document = plan().policy_document(next(p for p in plan().policies if p.name == policy))
    assert policy_findings(policy, document, allowed=ALLOWED) == []
    assert len(compact(document)) <= MANAGED_POLICY_MAX_CHARS
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        for action in [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]:
            assert "*" not in action, f"{policy}: wildcard action {action}"


@pytest.mark.parametrize("oidc", [None, ISSUER], ids=["ec2", "ec2+irsa"])
def test_trust_policies_pass_parliament_and_fit(oidc):
    the_plan = plan(oidc_issuer=oidc)
    for role in the_plan.roles:
        document = the_plan.trust_document(role)
        # parliament knows the public identity providers, not a cluster's own EKS OIDC provider.
        eks = {"UNKNOWN_FEDERATION_SOURCE": {s["Principal"]["Federated"] for s in document["Statement"]
                                             if ":oidc-provider/oidc.eks." in s["Principal"].get("Federated", "")}}
        assert policy_findings(role.name, document, trust=True, allowed=eks) == []
        assert len(compact(document)) <= TRUST_POLICY_MAX_CHARS
        principals = [s["Principal"] for s in document["Statement"]]
        assert {"Service": "ec2.amazonaws.com"} in principals
        assert len(principals) == (2 if oidc and role.service_account else 1)


def test_tls_only_statement_passes_parliament():
    statement = plan().tls_only_statement("reid-data")
    document = {"Version": "2012-10-17", "Statement": [statement]}
    assert policy_findings("bucket policy", document) == []
    assert statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_least_privilege_per_role():
    the_plan = plan()
    docs = {p.name: the_plan.policy_document(p) for p in the_plan.policies}
    data, artifacts, checkpoints = (the_plan.bucket(b) for b in ("data", "artifacts", "checkpoints"))
    worker, autoscaler, mlflow = docs["reid-ray-data-access"], docs["reid-ray-autoscaler"], docs["reid-mlflow-artifacts"]
    # Workers: data and checkpoints, nothing on MLflow's artifacts (the server proxies them).
    assert actions(worker, artifacts) == set()
    assert "s3:DeleteObject" not in actions(worker, f"{data}/*")  # images are never deleted by jobs
    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"} <= actions(worker, f"{checkpoints}/*")
    assert not any(a.startswith(("s3:PutBucket", "s3:DeleteBucket")) for a in actions(worker, ""))
    # MLflow: its bucket only.
    assert actions(mlflow, data) == actions(mlflow, checkpoints) == set()
    assert {"s3:GetObject", "s3:PutObject"} <= actions(mlflow, f"{artifacts}/*")
    # The head passes only the worker role, only to EC2, and terminates only this cluster's nodes.
    pass_role = next(s for s in autoscaler["Statement"] if s["Action"] == ["iam:PassRole"])
    assert pass_role["Resource"] == the_plan.role_arn("reid-ray-worker")
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}
    terminate = next(s for s in autoscaler["Statement"] if s["Action"] == ["ec2:TerminateInstances"])
    assert terminate["Condition"] == {"StringEquals": {"ec2:ResourceTag/ray-cluster-name": "reid"}}
    assert not any(a.startswith("s3:") for a in actions(autoscaler, ""))
    roles = {r.name: set(r.policies) for r in the_plan.roles}
    assert roles == {"reid-ray-worker": {"reid-ray-data-access"}, "reid-mlflow": {"reid-mlflow-artifacts"},
                     "reid-ray-head": {"reid-ray-data-access", "reid-ray-autoscaler"}}


@pytest.fixture
def policy_copy(tmp_path, monkeypatch):
    """infra/policies/ copied, so a test can break one file."""
    copied = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, copied)
    monkeypatch.setattr(plan_module, "POLICY_DIR", copied)
    return copied


def test_a_mistyped_action_is_named_by_parliament(policy_copy):
    path = policy_copy / "ray-data-access.json"
    text = path.read_text()
    assert '["s3:GetObject", "s3:PutObject",' in text
    path.write_text(text.replace('["s3:GetObject", "s3:PutObject",', '["s3:GetObjects", "s3:PutObject",', 1))
    the_plan = plan()
    document = the_plan.policy_document(next(p for p in the_plan.policies if p.template == "ray-data-access.json"))
    errors = policy_findings("ray-data-access.json", document, allowed=ALLOWED)
    assert errors and all(e.startswith("ray-data-access.json: ") for e in errors)
    assert any("UNKNOWN_ACTION" in e and "s3:GetObjects" in e for e in errors), errors


def test_a_mistyped_placeholder_is_named_with_its_file(policy_copy):
    path = policy_copy / "mlflow-artifacts.json"
    path.write_text(path.read_text().replace("${artifacts_bucket}", "${artifact_bucket}", 1))
    the_plan = plan()
    with pytest.raises(ValueError, match=r"infra/policies/mlflow-artifacts.json: unknown placeholder \$\{artifact_bucket\}"):
        the_plan.policy_document(next(p for p in the_plan.policies if p.template == "mlflow-artifacts.json"))


def test_a_mistyped_key_in_a_policy_is_named(policy_copy):
    path = policy_copy / "ray-autoscaler.json"
    path.write_text(path.read_text().replace('"Resource": "${worker_role_arn}"', '"Resources": "${worker_role_arn}"'))
    the_plan = plan()
    document = the_plan.policy_document(next(p for p in the_plan.policies if p.template == "ray-autoscaler.json"))
    errors = policy_findings("ray-autoscaler.json", document, allowed=ALLOWED)
    assert any(e.startswith("ray-autoscaler.json: MALFORMED") for e in errors), errors


def test_invalid_json_is_named_with_its_file(policy_copy):
    path = policy_copy / "trust-ec2.json"
    path.write_text(path.read_text().replace('"Version": "2012-10-17",', '"Version": "2012-10-17"'))
    with pytest.raises(ValueError, match="infra/policies/trust-ec2.json: not valid JSON"):
        plan().trust_document(plan().roles[0])


def test_the_rendered_documents_name_the_plans_buckets():
    text = json.dumps([plan().policy_document(p) for p in plan().policies])
    for bucket in plan().buckets.values():
        assert f"arn:aws:s3:::{bucket}" in text
    assert "${" not in text
