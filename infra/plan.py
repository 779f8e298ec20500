"""What infra creates, as data: names derived from the prefix, bucket settings, rendered policy documents.

Nothing here talks to AWS; ``infra.s3`` and ``infra.iam`` turn this into settings to read and write.
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

POLICY_DIR = Path(__file__).resolve().parent / "policies"

# The buckets: a purpose and its name suffix.
BUCKET_SUFFIXES = {"data": "data", "artifacts": "mlflow-artifacts", "checkpoints": "ray-checkpoints"}
# Days after which an incomplete multipart upload is aborted (every bucket) and a noncurrent version of
# a checkpoint object expires (Ray Train deletes old checkpoints, versioning would keep them forever).
ABORT_MULTIPART_DAYS = 7
CHECKPOINT_NONCURRENT_DAYS = 7
# Identity policies are managed policies (limit 6,144 characters without whitespace); trust policies
# count against the role's 2,048 by default.
MANAGED_POLICY_MAX_CHARS = 6144
TRUST_POLICY_MAX_CHARS = 2048

PREFIX_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
PREFIX_MAX = 63 - 1 - max(len(s) for s in BUCKET_SUFFIXES.values())  # the longest bucket name fits in 63


class UsageError(ValueError):
    """A bad command line or setting: one line naming the fix; exit status 2."""


def check_prefix(prefix: str) -> str:
    if not PREFIX_PATTERN.match(prefix) or "--" in prefix:
        raise UsageError(f"--name-prefix {prefix!r}: use lowercase letters, digits and single hyphens, "
                         "starting and ending with a letter or digit (it becomes part of bucket names)")
    if len(prefix) > PREFIX_MAX:
        raise UsageError(f"--name-prefix {prefix!r} is {len(prefix)} characters; use at most {PREFIX_MAX} "
                         f"so that '{prefix}-{BUCKET_SUFFIXES['artifacts']}' fits S3's 63")
    return prefix


@dataclass(frozen=True)
class Role:
    name: str
    policies: tuple[str, ...]          # managed policy names attached to it
    service_account: str | None        # the Kubernetes service account it serves under IRSA (if any)
    description: str


@dataclass(frozen=True)
class Policy:
    name: str
    template: str                      # file name in infra/policies/
    description: str


@dataclass
class Plan:
    prefix: str
    region: str
    partition: str
    account_id: str
    ray_cluster_name: str = "reid"
    oidc_issuer: str | None = None     # EKS OIDC issuer host/path (no https://) for IRSA trust
    k8s_namespace: str = "reid"
    tls_only: bool = True              # bucket policies that deny plain-HTTP requests
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        check_prefix(self.prefix)
        if self.oidc_issuer:
            self.oidc_issuer = self.oidc_issuer.removeprefix("https://").rstrip("/")
        self.tags = {"project": "reid", "managed-by": "reid-infra", "reid:name-prefix": self.prefix, **self.tags}

    # --- names ---------------------------------------------------------------------------------------
    def bucket(self, purpose: str) -> str:
        return f"{self.prefix}-{BUCKET_SUFFIXES[purpose]}"

    @property
    def buckets(self) -> dict[str, str]:
        return {purpose: self.bucket(purpose) for purpose in BUCKET_SUFFIXES}

    @property
    def policies(self) -> list[Policy]:
        p = self.prefix
        return [
            Policy(f"{p}-ray-data-access", "ray-data-access.json",
                   "reid Ray nodes: read/write the data and checkpoint buckets"),
            Policy(f"{p}-ray-autoscaler", "ray-autoscaler.json",
                   "reid Ray head: launch and terminate this cluster's EC2 workers, pass the worker role"),
            Policy(f"{p}-mlflow-artifacts", "mlflow-artifacts.json",
                   "reid MLflow server: read/write the artifacts bucket"),
        ]

    @property
    def roles(self) -> list[Role]:
        p = self.prefix
        return [
            Role(f"{p}-ray-worker", (f"{p}-ray-data-access",), "reid-ray",
                 "reid Ray workers (EC2 instance profile; pods of the service account reid-ray under IRSA)"),
            Role(f"{p}-ray-head", (f"{p}-ray-data-access", f"{p}-ray-autoscaler"), None,
                 "reid Ray head on EC2 (ray up): worker access plus the autoscaler's EC2 calls"),
            Role(f"{p}-mlflow", (f"{p}-mlflow-artifacts",), "reid-mlflow",
                 "reid MLflow tracking server: its artifacts bucket only"),
        ]

    def policy_arn(self, name: str) -> str:
        return f"arn:{self.partition}:iam::{self.account_id}:policy/{name}"

    def role_arn(self, name: str) -> str:
        return f"arn:{self.partition}:iam::{self.account_id}:role/{name}"

    def instance_profile_arn(self, name: str) -> str:
        return f"arn:{self.partition}:iam::{self.account_id}:instance-profile/{name}"

    # --- documents -----------------------------------------------------------------------------------
    @property
    def variables(self) -> dict[str, str]:
        return {
            "partition": self.partition, "region": self.region, "account_id": self.account_id,
            "data_bucket": self.bucket("data"), "artifacts_bucket": self.bucket("artifacts"),
            "checkpoints_bucket": self.bucket("checkpoints"), "ray_cluster_name": self.ray_cluster_name,
            "worker_role_arn": self.role_arn(f"{self.prefix}-ray-worker"),
            "oidc_issuer": self.oidc_issuer or "", "k8s_namespace": self.k8s_namespace,
        }

    def policy_document(self, policy: Policy) -> dict:
        return render(policy.template, self.variables)

    def trust_document(self, role: Role) -> dict:
        document = render("trust-ec2.json", self.variables)
        if self.oidc_issuer and role.service_account:
            document["Statement"].append(
                render("trust-eks-irsa-statement.json", {**self.variables, "service_account": role.service_account}))
        return document

    def tls_only_statement(self, bucket: str) -> dict:
        return render("bucket-tls-only-statement.json", {**self.variables, "bucket": bucket})

    # --- bucket settings (the API's request shapes) ---------------------------------------------------
    @staticmethod
    def encryption() -> dict:
        return {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}

    @staticmethod
    def public_access_block() -> dict:
        return {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True}

    def lifecycle_rules(self, purpose: str) -> list[dict]:
        rules = [{"ID": "abort-incomplete-multipart-uploads", "Status": "Enabled", "Filter": {"Prefix": ""},
                  "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_MULTIPART_DAYS}}]
        if purpose == "checkpoints":
            rules.append({"ID": "expire-noncurrent-checkpoint-versions", "Status": "Enabled",
                          "Filter": {"Prefix": ""},
                          "NoncurrentVersionExpiration": {"NoncurrentDays": CHECKPOINT_NONCURRENT_DAYS}})
        return rules


def render(template: str, variables: dict[str, str]) -> dict:
    """A policy file with ``${name}`` placeholders filled in; an unknown placeholder names the file."""
    path = POLICY_DIR / template
    try:
        text = string.Template(path.read_text()).substitute(variables)
    except KeyError as missing:
        raise ValueError(f"infra/policies/{template}: unknown placeholder ${{{missing.args[0]}}} "
                         f"(known: {', '.join(sorted(variables))})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"infra/policies/{template}: not valid JSON: {error}") from None


def compact(document: dict) -> str:
    return json.dumps(document, separators=(",", ":"))
