"""The buckets: existence, versioning, default encryption, public access block, object ownership,
lifecycle, tags and (on AWS) a TLS-only bucket policy, each read back and compared with the plan."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from infra.plan import Plan
from infra.reconcile import ABSENT, InfraError, Setting, error_code

MISSING_BUCKET = ("NoSuchBucket", "404", "NotFound")


def _reader(call: Callable[[], Any], normalise: Callable[[Any], Any], *absent_codes: str) -> Callable[[], Any]:
    """Call, normalise; a missing bucket or an unset configuration reads as ABSENT."""
    def read():
        try:
            return normalise(call())
        except ClientError as error:
            if error_code(error) in MISSING_BUCKET + absent_codes:
                return ABSENT
            raise
    return read


def tags_match(current: Any, want: dict) -> bool:
    """Our tags are present with our values; tags others added are left alone."""
    return current is not ABSENT and all(current.get(k) == v for k, v in want.items())


def _lifecycle(rules: list[dict]) -> list[dict]:
    keep = ("ID", "Status", "Filter", "AbortIncompleteMultipartUpload", "NoncurrentVersionExpiration", "Expiration")
    out = []
    for rule in rules:
        rule = {k: rule[k] for k in keep if k in rule}
        if "Filter" in rule:  # AWS may answer {} or {"Prefix": ""} for "every object"
            rule["Filter"] = {"Prefix": rule["Filter"].get("Prefix", "")} if set(rule["Filter"]) <= {"Prefix"} \
                else rule["Filter"]
        out.append(rule)
    return sorted(out, key=lambda r: r.get("ID", ""))


def _encryption(response: dict) -> dict:
    rules = []
    for rule in response["ServerSideEncryptionConfiguration"]["Rules"]:
        default = {k: v for k, v in rule.get("ApplyServerSideEncryptionByDefault", {}).items() if v}
        entry = {"ApplyServerSideEncryptionByDefault": default}
        if rule.get("BucketKeyEnabled"):
            entry["BucketKeyEnabled"] = True
        rules.append(entry)
    return {"Rules": rules}


def _policy_has(current: Any, statement: dict) -> bool:
    return current is not ABSENT and any(s == statement for s in current.get("Statement", []))


def bucket_settings(s3, plan: Plan, purpose: str) -> list[Setting]:
    bucket = plan.bucket(purpose)
    resource = f"bucket {bucket}"

    def exists():
        try:
            response = s3.head_bucket(Bucket=bucket)
        except ClientError as error:
            code = error_code(error)
            if code in MISSING_BUCKET:
                return ABSENT
            if code in ("403", "Forbidden", "AccessDenied"):
                raise InfraError(f"bucket {bucket} exists but this account cannot use it (403: another account's "
                                 "bucket, or missing s3:ListBucket); choose another --name-prefix") from None
            raise
        region = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
        if region and plan.region and region != plan.region:
            raise InfraError(f"bucket {bucket} exists in {region}, not {plan.region}; pass --region {region} "
                             "or choose another --name-prefix")
        return True

    def create(_current):
        kwargs: dict = {"Bucket": bucket, "ObjectOwnership": "BucketOwnerEnforced"}
        if plan.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": plan.region}
        try:
            s3.create_bucket(**kwargs)
        except ClientError as error:
            if error_code(error) == "BucketAlreadyExists":
                raise InfraError(f"bucket name {bucket} is taken by another AWS account; choose another "
                                 "--name-prefix") from None
            if error_code(error) != "BucketAlreadyOwnedByYou":
                raise

    lifecycle_want = _lifecycle(plan.lifecycle_rules(purpose))
    tags = plan.tags | {"reid:bucket": purpose}

    def write_tags(current):
        merged = ({} if current is ABSENT else dict(current)) | tags
        s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in merged.items()]})

    settings = [
        Setting(resource, "exists", True, exists, create, operation="CreateBucket"),
        Setting(resource, "versioning", "Enabled",
                _reader(lambda: s3.get_bucket_versioning(Bucket=bucket), lambda r: r.get("Status") or ABSENT),
                lambda _c: s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}),
                operation="PutBucketVersioning"),
        Setting(resource, "default encryption", plan.encryption(),
                _reader(lambda: s3.get_bucket_encryption(Bucket=bucket), _encryption,
                        "ServerSideEncryptionConfigurationNotFoundError"),
                lambda _c: s3.put_bucket_encryption(Bucket=bucket,
                                                    ServerSideEncryptionConfiguration=plan.encryption()),
                operation="PutBucketEncryption"),
        Setting(resource, "public access block", plan.public_access_block(),
                _reader(lambda: s3.get_public_access_block(Bucket=bucket),
                        lambda r: r["PublicAccessBlockConfiguration"], "NoSuchPublicAccessBlockConfiguration"),
                lambda _c: s3.put_public_access_block(Bucket=bucket,
                                                      PublicAccessBlockConfiguration=plan.public_access_block()),
                operation="PutPublicAccessBlock"),
        Setting(resource, "object ownership", "BucketOwnerEnforced",
                _reader(lambda: s3.get_bucket_ownership_controls(Bucket=bucket),
                        lambda r: r["OwnershipControls"]["Rules"][0]["ObjectOwnership"],
                        "OwnershipControlsNotFoundError"),
                lambda _c: s3.put_bucket_ownership_controls(
                    Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}),
                operation="PutBucketOwnershipControls"),
        Setting(resource, "lifecycle", lifecycle_want,
                _reader(lambda: s3.get_bucket_lifecycle_configuration(Bucket=bucket),
                        lambda r: _lifecycle(r.get("Rules", [])), "NoSuchLifecycleConfiguration"),
                lambda _c: s3.put_bucket_lifecycle_configuration(
                    Bucket=bucket, LifecycleConfiguration={"Rules": plan.lifecycle_rules(purpose)}),
                operation="PutBucketLifecycleConfiguration"),
        Setting(resource, "tags", tags,
                _reader(lambda: s3.get_bucket_tagging(Bucket=bucket),
                        lambda r: {t["Key"]: t["Value"] for t in r.get("TagSet", [])}, "NoSuchTagSet"),
                write_tags, matches=tags_match, operation="PutBucketTagging"),
    ]
    if plan.tls_only:
        statement = plan.tls_only_statement(bucket)

        def write_policy(current):
            document = {"Version": "2012-10-17", "Statement": []} if current is ABSENT else current
            document["Statement"] = [s for s in document["Statement"] if s.get("Sid") != statement["Sid"]]
            document["Statement"].append(statement)
            s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(document))

        settings.append(Setting(
            resource, "bucket policy (deny plain HTTP)", statement,
            _reader(lambda: s3.get_bucket_policy(Bucket=bucket), lambda r: json.loads(r["Policy"]),
                    "NoSuchBucketPolicy"),
            write_policy, matches=_policy_has, operation="PutBucketPolicy"))
    return settings


def all_bucket_settings(s3, plan: Plan) -> list[Setting]:
    return [s for purpose in plan.buckets for s in bucket_settings(s3, plan, purpose)]
