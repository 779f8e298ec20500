"""`python -m infra apply|check` against a dedicated moto server on 127.0.0.1: dry run, apply twice (the
second changes nothing), every setting read back, drift found and fixed, IRSA trust, policy versions,
an S3-compatible store that lacks some calls, and one-line usage errors."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import uuid

import boto3
import pytest
import requests
from cluster_support import ROOT
from conftest import moto_server

from infra.cli import main
from infra.plan import Plan

REGION = "eu-west-1"


@pytest.fixture(scope="module")
def moto_endpoint():
    """A moto server of this module's own (IAM state and auth are per server)."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def aws(moto_endpoint, monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)

    def client(service):
        return boto3.client(service, endpoint_url=moto_endpoint, region_name=REGION)

    return moto_endpoint, client


def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def infra(capsys, *args) -> tuple[int, list[str], str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out.splitlines(), out.err


def flags(endpoint, name, *more):
    return ["--name-prefix", name, "--region", REGION, "--endpoint-url", endpoint, *more]


def plan_for(name: str, **kwargs) -> Plan:
    return Plan(prefix=name, region=REGION, partition="aws", account_id="123456789012", tls_only=False, **kwargs)


def test_dry_run_prints_the_plan_and_touches_nothing(aws, capsys):
    endpoint, client = aws
    name = prefix()
    code, lines, _ = infra(capsys, "apply", *flags(endpoint, name), "--dry-run")
    assert code == 0
    assert f"+ bucket {name}-data: exists: true" in lines
    assert f"+ role {name}-ray-worker: trust policy: " in "\n".join(lines)
    assert any(line.startswith("plan: ") and "dry run: nothing was changed" in line for line in lines)
    assert not [b for b in client("s3").list_buckets()["Buckets"] if b["Name"].startswith(name)]
    assert not [r for r in client("iam").list_roles()["Roles"] if r["RoleName"].startswith(name)]
    assert not [p for p in client("iam").list_policies(Scope="Local")["Policies"] if p["PolicyName"].startswith(name)]


def read_back(client, plan: Plan):
    """Every setting, straight from the APIs."""
    s3, iam = client("s3"), client("iam")
    for purpose, bucket in plan.buckets.items():
        assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == REGION
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
        assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
        assert s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"] == [
            {"ObjectOwnership": "BucketOwnerEnforced"}]
        rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
        assert rules["abort-incomplete-multipart-uploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
        if purpose == "checkpoints":
            assert rules["expire-noncurrent-checkpoint-versions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 7
        else:
            assert set(rules) == {"abort-incomplete-multipart-uploads"}
        tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
        assert tags["project"] == "reid" and tags["reid:name-prefix"] == plan.prefix and tags["reid:bucket"] == purpose
    for policy in plan.policies:
        arn = plan.policy_arn(policy.name)
        default = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
        assert iam.get_policy_version(PolicyArn=arn, VersionId=default)["PolicyVersion"]["Document"] == \
            plan.policy_document(policy)
    for role in plan.roles:
        got = iam.get_role(RoleName=role.name)["Role"]
        assert got["AssumeRolePolicyDocument"] == plan.trust_document(role)
        attached = sorted(p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=role.name)["AttachedPolicies"])
        assert attached == sorted(plan.policy_arn(p) for p in role.policies)
        assert {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=role.name)["Tags"]}["managed-by"] == "reid-infra"
        profile = iam.get_instance_profile(InstanceProfileName=role.name)["InstanceProfile"]
        assert [r["RoleName"] for r in profile["Roles"]] == [role.name]


def test_apply_twice_the_second_run_changes_nothing_and_says_so(aws, capsys):
    endpoint, client = aws
    name = prefix()
    code, lines, _ = infra(capsys, "apply", *flags(endpoint, name))
    assert code == 0 and lines[-4].startswith("applied ")
    read_back(client, plan_for(name))
    code, lines, _ = infra(capsys, "apply", *flags(endpoint, name))
    assert code == 0
    assert not [line for line in lines if line[:2] in ("+ ", "~ ")], lines
    assert any(line.startswith("no changes: all ") and line.endswith(" settings already match") for line in lines)
    assert f"  role arn:aws:iam::123456789012:role/{name}-ray-worker  instance profile " \
           f"arn:aws:iam::123456789012:instance-profile/{name}-ray-worker" in lines
    code, lines, _ = infra(capsys, "check", *flags(endpoint, name))
    assert code == 0 and lines[-1].startswith("no drift: all ")


def test_check_lists_every_drift_and_apply_repairs_it(aws, capsys):
    endpoint, client = aws
    name = prefix()
    assert infra(capsys, "apply", *flags(endpoint, name))[0] == 0
    s3, iam = client("s3"), client("iam")
    plan = plan_for(name)
    s3.put_bucket_versioning(Bucket=f"{name}-data", VersioningConfiguration={"Status": "Suspended"})
    s3.delete_public_access_block(Bucket=f"{name}-mlflow-artifacts")
    s3.delete_bucket_lifecycle(Bucket=f"{name}-ray-checkpoints")
    s3.put_bucket_tagging(Bucket=f"{name}-data", Tagging={"TagSet": [{"Key": "owner", "Value": "someone"}]})
    worker_policy = plan.policy_arn(f"{name}-ray-data-access")
    iam.detach_role_policy(RoleName=f"{name}-ray-worker", PolicyArn=worker_policy)
    iam.attach_role_policy(RoleName=f"{name}-mlflow", PolicyArn=worker_policy)
    iam.put_role_policy(RoleName=f"{name}-ray-head", PolicyName="extra",
                        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    iam.create_policy_version(PolicyArn=plan.policy_arn(f"{name}-mlflow-artifacts"), SetAsDefault=True,
                              PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                                  {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    code, lines, _ = infra(capsys, "check", *flags(endpoint, name))
    drifts = [line for line in lines if line.startswith("drift: ")]
    assert code == 1 and lines[-1].startswith("8 drift(s) from the plan")
    expected = [f"bucket {name}-data: versioning: is Suspended, want Enabled",
                f"bucket {name}-mlflow-artifacts: public access block: is absent",
                f"bucket {name}-ray-checkpoints: lifecycle: is absent",
                f"bucket {name}-data: tags: is {{\"owner\":\"someone\"}}",
                f"policy {name}-mlflow-artifacts: document: is ",
                f"role {name}-ray-worker: attached policies: is []",
                f"role {name}-mlflow: attached policies: is [",
                f"role {name}-ray-head: inline policies: is [\"extra\"], want []"]
    for text in expected:
        assert any(d.startswith(f"drift: {text}") for d in drifts), (text, drifts)
    assert len(drifts) == len(expected)
    code, lines, _ = infra(capsys, "apply", *flags(endpoint, name))
    assert code == 0 and lines[-4].startswith("applied 8 change(s)")
    read_back(client, plan)
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=f"{name}-data")["TagSet"]}
    assert tags["owner"] == "someone"  # tags others added stay
    assert iam.list_role_policies(RoleName=f"{name}-ray-head")["PolicyNames"] == []
    assert infra(capsys, "check", *flags(endpoint, name))[0] == 0


def test_a_policy_at_five_versions_still_updates(aws, capsys):
    """IAM keeps five versions of a managed policy: apply drops the oldest non-default one."""
    endpoint, client = aws
    name = prefix()
    assert infra(capsys, "apply", *flags(endpoint, name))[0] == 0
    iam, arn = client("iam"), plan_for(name).policy_arn(f"{name}-ray-autoscaler")
    for k in range(4):
        iam.create_policy_version(PolicyArn=arn, SetAsDefault=True, PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ec2:DescribeImages",
                                                     "Resource": "*", "Sid": f"V{k}"}]}))
    assert len(iam.list_policy_versions(PolicyArn=arn)["Versions"]) == 5
    code, lines, err = infra(capsys, "apply", *flags(endpoint, name))
    assert code == 0, err
    assert any(line.startswith(f"~ policy {name}-ray-autoscaler: document: ") for line in lines)
    assert len(iam.list_policy_versions(PolicyArn=arn)["Versions"]) == 5
    read_back(client, plan_for(name))


def test_eks_service_accounts_may_assume_the_worker_and_mlflow_roles(aws, capsys):
    endpoint, client = aws
    name, issuer = prefix(), "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
    code, _, err = infra(capsys, "apply", *flags(endpoint, name), "--eks-oidc-issuer", issuer,
                         "--k8s-namespace", "reid")
    assert code == 0, err
    iam, host = client("iam"), issuer.removeprefix("https://")
    for role, account in ((f"{name}-ray-worker", "reid-ray"), (f"{name}-mlflow", "reid-mlflow"),
                          (f"{name}-ray-head", None)):
        statements = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]["Statement"]
        federated = [s for s in statements if "Federated" in s["Principal"]]
        if account is None:
            assert federated == [], role
            continue
        assert federated[0]["Principal"]["Federated"] == f"arn:aws:iam::123456789012:oidc-provider/{host}"
        assert federated[0]["Action"] == "sts:AssumeRoleWithWebIdentity"
        assert federated[0]["Condition"]["StringEquals"] == {
            f"{host}:sub": f"system:serviceaccount:reid:{account}", f"{host}:aud": "sts.amazonaws.com"}
    read_back(client, plan_for(name, oidc_issuer=issuer))
    assert infra(capsys, "check", *flags(endpoint, name), "--eks-oidc-issuer", issuer)[0] == 0
    # Forgetting the flag on a later check is a drift, not silence.
    assert infra(capsys, "check", *flags(endpoint, name))[0] == 1


def test_tls_only_bucket_policy(aws, capsys):
    endpoint, client = aws
    name = prefix()
    code, _, err = infra(capsys, "apply", *flags(endpoint, name, "--tls-only", "--skip-iam"))
    assert code == 0, err
    for bucket in plan_for(name).buckets.values():
        statements = json.loads(client("s3").get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
        assert statements == [plan_for(name).tls_only_statement(bucket)]
        assert statements[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    code, lines, _ = infra(capsys, "apply", *flags(endpoint, name, "--tls-only", "--skip-iam"))
    assert code == 0 and any(line.startswith("no changes") for line in lines)


# --- a store that lacks some calls (MinIO-like), in front of moto ----------------------------------------------
@pytest.fixture
def partial_store(moto_endpoint):
    """Forwards to moto, but answers 501 NotImplemented to public-access-block and ownership calls."""
    lacking = ("publicAccessBlock", "ownershipControls")

    class Proxy(http.server.BaseHTTPRequestHandler):
        def _forward(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if any(q in self.path.split("?", 1)[-1] for q in lacking):
                payload = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>NotImplemented</Code>"
                           b"<Message>A header you provided implies functionality that is not implemented"
                           b"</Message></Error>")
                self.send_response(501)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            response = requests.request(self.command, moto_endpoint + self.path, headers=headers, data=body,
                                        timeout=30)
            self.send_response(response.status_code)
            for key, value in response.headers.items():
                if key.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(response.content)))
            self.end_headers()
            self.wfile.write(response.content)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_s3_compatible_store_warns_and_goes_on(aws, partial_store, capsys):
    _, client = aws
    name = prefix()
    code, lines, err = infra(capsys, "apply", *flags(partial_store, name, "--skip-iam"))
    assert code == 1
    assert err.count("\n") == 1 and "does not implement" in err and "rerun with --s3-compatible" in err
    code, lines, err = infra(capsys, "apply", *flags(partial_store, name, "--skip-iam", "--s3-compatible"))
    assert code == 0, err
    warnings = [line for line in lines if line.startswith("warning: ")]
    assert len(warnings) == 6 and all("(--s3-compatible)" in w for w in warnings)  # 2 calls x 3 buckets
    assert any("public access block" in w for w in warnings) and any("object ownership" in w for w in warnings)
    assert client("s3").get_bucket_versioning(Bucket=f"{name}-data")["Status"] == "Enabled"
    code, lines, _ = infra(capsys, "apply", *flags(partial_store, name, "--skip-iam", "--s3-compatible"))
    assert code == 0 and any(line.startswith("no changes") for line in lines)
    assert infra(capsys, "check", *flags(partial_store, name, "--skip-iam", "--s3-compatible"))[0] == 0


# --- usage and connection errors: one line, the fix named ------------------------------------------------------------
@pytest.mark.parametrize(("args", "expected"), [
    (["apply", "--name-prefix", "Reid_Prod", "--region", REGION], "--name-prefix 'Reid_Prod': use lowercase"),
    (["apply", "--name-prefix", "r" * 50, "--region", REGION], "use at most 46"),
    (["apply", "--region", REGION], "the following arguments are required: --name-prefix"),
    (["apply", "--name-prefix", "reid", "--region", REGION, "--tls-only", "--no-tls-only"], "not allowed with"),
    (["check", "--name-prefix", "reid", "--region", REGION, "--dry-run"], "unrecognized arguments: --dry-run"),
    (["apply", "--name-prefix", "reid"], "no AWS region: pass --region"),
], ids=["prefix", "long-prefix", "missing-prefix", "tls-flags", "check-dry-run", "region"])
def test_usage_errors_exit_2_with_one_line(args, expected, monkeypatch, capsys):
    for key in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and expected in err and err.count("\n") == 1, err


def test_no_credentials_is_a_usage_error(monkeypatch, capsys):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    code = main(["check", "--name-prefix", "reid", "--region", REGION])
    err = capsys.readouterr().err
    assert code == 2 and "no AWS credentials: set AWS_PROFILE" in err and err.count("\n") == 1


def test_unreachable_endpoint_is_one_line(aws, capsys):
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = infra(capsys, "check", *flags(f"http://127.0.0.1:{port}", "reid"))
    assert code == 1 and f"cannot reach http://127.0.0.1:{port}" in err and err.count("\n") == 1, err


def test_python_dash_m_infra_entry_point(aws):
    endpoint, _ = aws
    done = subprocess.run([sys.executable, "-m", "infra", "apply", *flags(endpoint, prefix()), "--dry-run"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "dry run: nothing was changed" in done.stdout, done.stderr
