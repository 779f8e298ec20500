"""The policies infra attaches, enforced: moto's IAM authorisation on a dedicated server, S3 called with a
user's keys that carry exactly the worker's (or the MLflow server's) managed policy.

moto treats Conditions as satisfied, so what is asserted here is actions x resources only."""

from __future__ import annotations

import uuid

import boto3
import pytest
import requests
from botocore.exceptions import ClientError
from conftest import moto_server

from infra.cli import main
from infra.plan import Plan

REGION = "eu-west-1"


@pytest.fixture(scope="module")
def moto_endpoint():
    """A moto server of this module's own (IAM state and auth are per server)."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def applied(moto_endpoint):
    """infra applied, plus one IAM user per policy under test (created while authorisation is off)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        name = f"e{uuid.uuid4().hex[:10]}"
        assert main(["apply", "--name-prefix", name, "--region", REGION, "--endpoint-url", moto_endpoint]) == 0
    plan = Plan(prefix=name, region=REGION, partition="aws", account_id="123456789012", tls_only=False)
    admin = {"endpoint_url": moto_endpoint, "region_name": REGION, "aws_access_key_id": "testing",
             "aws_secret_access_key": "testing"}
    iam, s3 = boto3.client("iam", **admin), boto3.client("s3", **admin)
    for bucket in plan.buckets.values():
        s3.put_object(Bucket=bucket, Key="existing.txt", Body=b"x")
    keys = {}
    for user, policy in (("worker", f"{name}-ray-data-access"), ("mlflow", f"{name}-mlflow-artifacts")):
        user_name = f"{name}-{user}"
        iam.create_user(UserName=user_name)
        iam.attach_user_policy(UserName=user_name, PolicyArn=plan.policy_arn(policy))
        key = iam.create_access_key(UserName=user_name)["AccessKey"]
        keys[user] = {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}
    return moto_endpoint, plan, keys


@pytest.fixture
def enforced(applied):
    """Authorisation on for this test only (it is global to the server)."""
    endpoint, plan, keys = applied
    requests.post(f"{endpoint}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
    try:
        yield endpoint, plan, keys
    finally:
        requests.post(f"{endpoint}/moto-api/reset-auth", data=b"inf", timeout=10).raise_for_status()


def s3_as(endpoint, credentials):
    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION, **credentials)


def denied(call) -> bool:
    try:
        call()
    except ClientError as error:
        return error.response["Error"]["Code"] in ("AccessDenied", "403")
    return False


def test_worker_reads_and_writes_data_and_checkpoints_only(enforced):
    endpoint, plan, keys = enforced
    s3 = s3_as(endpoint, keys["worker"])
    data, checkpoints, artifacts = plan.bucket("data"), plan.bucket("checkpoints"), plan.bucket("artifacts")
    # Allowed: images in, masks out; checkpoints written, read, listed and removed.
    assert s3.get_object(Bucket=data, Key="existing.txt")["Body"].read() == b"x"
    s3.put_object(Bucket=data, Key="tiger/masks/1.png", Body=b"m")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=data, Prefix="tiger/")["Contents"]] == ["tiger/masks/1.png"]
    s3.put_object(Bucket=checkpoints, Key="run/checkpoint_000001/state.pt", Body=b"c")
    assert s3.get_object(Bucket=checkpoints, Key="run/checkpoint_000001/state.pt")["Body"].read() == b"c"
    s3.delete_object(Bucket=checkpoints, Key="run/checkpoint_000001/state.pt")
    # Denied: MLflow's artifacts (the server proxies them), and administering any bucket.
    assert denied(lambda: s3.put_object(Bucket=artifacts, Key="x", Body=b"x"))
    assert denied(lambda: s3.get_object(Bucket=artifacts, Key="existing.txt"))
    assert denied(lambda: s3.list_objects_v2(Bucket=artifacts))
    assert denied(lambda: s3.delete_object(Bucket=data, Key="existing.txt"))  # images are never deleted
    assert denied(lambda: s3.delete_bucket(Bucket=checkpoints))
    assert denied(lambda: s3.put_bucket_policy(Bucket=data, Policy='{"Version":"2012-10-17","Statement":[]}'))
    assert denied(lambda: s3.put_bucket_versioning(Bucket=data, VersioningConfiguration={"Status": "Suspended"}))
    assert denied(lambda: s3.delete_public_access_block(Bucket=data))
    assert denied(lambda: s3.create_bucket(Bucket=f"{plan.prefix}-other",
                                           CreateBucketConfiguration={"LocationConstraint": REGION}))


def test_mlflow_server_reaches_its_artifacts_only(enforced):
    endpoint, plan, keys = enforced
    s3 = s3_as(endpoint, keys["mlflow"])
    artifacts = plan.bucket("artifacts")
    s3.put_object(Bucket=artifacts, Key="1/abc/artifacts/model/MLmodel", Body=b"m")
    assert s3.get_object(Bucket=artifacts, Key="1/abc/artifacts/model/MLmodel")["Body"].read() == b"m"
    assert s3.list_objects_v2(Bucket=artifacts, Prefix="1/")["KeyCount"] == 1
    s3.delete_object(Bucket=artifacts, Key="1/abc/artifacts/model/MLmodel")
    for bucket in (plan.bucket("data"), plan.bucket("checkpoints")):
        assert denied(lambda b=bucket: s3.get_object(Bucket=b, Key="existing.txt"))
        assert denied(lambda b=bucket: s3.put_object(Bucket=b, Key="x", Body=b"x"))
    assert denied(lambda: s3.delete_bucket(Bucket=artifacts))


def test_enforcement_is_real(enforced):
    """The same calls with keys of a user that has no policy are denied (the server does enforce)."""
    endpoint, plan, _ = enforced
    requests.post(f"{endpoint}/moto-api/reset-auth", data=b"inf", timeout=10).raise_for_status()
    iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    user = f"{plan.prefix}-nobody-{uuid.uuid4().hex[:6]}"
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    requests.post(f"{endpoint}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
    s3 = s3_as(endpoint, {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]})
    assert denied(lambda: s3.get_object(Bucket=plan.bucket("data"), Key="existing.txt"))
