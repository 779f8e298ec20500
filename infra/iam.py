"""Managed policies, roles (trust, tags, attachments) and instance profiles, read back and compared."""

from __future__ import annotations

import json
from urllib.parse import unquote

from botocore.exceptions import ClientError

from infra.plan import Plan, Policy, Role, compact
from infra.reconcile import ABSENT, Setting, error_code
from infra.s3 import tags_match

MAX_POLICY_VERSIONS = 5


def _document(value) -> dict:
    """IAM returns documents URL-encoded; boto3 usually decodes them to a dict already."""
    if isinstance(value, str):
        return json.loads(unquote(value))
    return value


def _absent_if_missing(read):
    def wrapped():
        try:
            return read()
        except ClientError as error:
            if error_code(error) == "NoSuchEntity":
                return ABSENT
            raise
    return wrapped


def _tag_list(tags: dict[str, str]) -> list[dict]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def policy_settings(iam, plan: Plan, policy: Policy) -> list[Setting]:
    arn = plan.policy_arn(policy.name)
    want = plan.policy_document(policy)
    resource = f"policy {policy.name}"

    def read_document():
        meta = iam.get_policy(PolicyArn=arn)["Policy"]
        version = iam.get_policy_version(PolicyArn=arn, VersionId=meta["DefaultVersionId"])
        return _document(version["PolicyVersion"]["Document"])

    def write_document(current):
        if current is ABSENT:
            iam.create_policy(PolicyName=policy.name, PolicyDocument=compact(want), Description=policy.description,
                              Tags=_tag_list(plan.tags))
            return
        versions = iam.list_policy_versions(PolicyArn=arn)["Versions"]
        if len(versions) >= MAX_POLICY_VERSIONS:  # IAM keeps five: drop the oldest non-default one
            oldest = min((v for v in versions if not v["IsDefaultVersion"]), key=lambda v: v["CreateDate"])
            iam.delete_policy_version(PolicyArn=arn, VersionId=oldest["VersionId"])
        iam.create_policy_version(PolicyArn=arn, PolicyDocument=compact(want), SetAsDefault=True)

    return [
        Setting(resource, "document", want, _absent_if_missing(read_document), write_document,
                operation="CreatePolicy/CreatePolicyVersion"),
        Setting(resource, "tags", plan.tags,
                _absent_if_missing(lambda: {t["Key"]: t["Value"] for t in iam.list_policy_tags(PolicyArn=arn)["Tags"]}),
                lambda _c: iam.tag_policy(PolicyArn=arn, Tags=_tag_list(plan.tags)), matches=tags_match,
                operation="TagPolicy"),
    ]


def role_settings(iam, plan: Plan, role: Role) -> list[Setting]:
    trust = plan.trust_document(role)
    resource = f"role {role.name}"

    def write_trust(current):
        if current is ABSENT:
            iam.create_role(RoleName=role.name, AssumeRolePolicyDocument=compact(trust),
                            Description=role.description, Tags=_tag_list(plan.tags))
        else:
            iam.update_assume_role_policy(RoleName=role.name, PolicyDocument=compact(trust))

    want_attached = sorted(plan.policy_arn(name) for name in role.policies)

    def read_attached():
        pages = iam.get_paginator("list_attached_role_policies").paginate(RoleName=role.name)
        return sorted(p["PolicyArn"] for page in pages for p in page["AttachedPolicies"])

    def write_attached(current):
        current = [] if current is ABSENT else current
        for arn in want_attached:
            if arn not in current:
                iam.attach_role_policy(RoleName=role.name, PolicyArn=arn)
        for arn in current:  # least privilege: nothing else stays attached to our roles
            if arn not in want_attached:
                iam.detach_role_policy(RoleName=role.name, PolicyArn=arn)

    def read_inline():
        pages = iam.get_paginator("list_role_policies").paginate(RoleName=role.name)
        return sorted(name for page in pages for name in page["PolicyNames"])

    def write_inline(current):
        for name in current:
            iam.delete_role_policy(RoleName=role.name, PolicyName=name)

    profile = f"instance profile {role.name}"

    def read_profile_roles():
        return sorted(r["RoleName"] for r in iam.get_instance_profile(InstanceProfileName=role.name)
                      ["InstanceProfile"]["Roles"])

    def write_profile_roles(current):
        if current is ABSENT:
            iam.create_instance_profile(InstanceProfileName=role.name, Tags=_tag_list(plan.tags))
            current = []
        for other in current:  # one role per profile
            if other != role.name:
                iam.remove_role_from_instance_profile(InstanceProfileName=role.name, RoleName=other)
        if role.name not in current:
            iam.add_role_to_instance_profile(InstanceProfileName=role.name, RoleName=role.name)

    return [
        Setting(resource, "trust policy", trust,
                _absent_if_missing(lambda: _document(iam.get_role(RoleName=role.name)["Role"]["AssumeRolePolicyDocument"])),
                write_trust, operation="CreateRole/UpdateAssumeRolePolicy"),
        Setting(resource, "tags", plan.tags,
                _absent_if_missing(lambda: {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=role.name)["Tags"]}),
                lambda _c: iam.tag_role(RoleName=role.name, Tags=_tag_list(plan.tags)), matches=tags_match,
                operation="TagRole"),
        Setting(resource, "attached policies", want_attached, _absent_if_missing(read_attached), write_attached,
                operation="AttachRolePolicy/DetachRolePolicy"),
        Setting(resource, "inline policies", [], _absent_if_missing(read_inline), write_inline,
                matches=lambda current, want: current is ABSENT or current == want, operation="DeleteRolePolicy"),
        Setting(profile, "roles", [role.name], _absent_if_missing(read_profile_roles), write_profile_roles,
                operation="CreateInstanceProfile/AddRoleToInstanceProfile"),
    ]


def all_iam_settings(iam, plan: Plan) -> list[Setting]:
    """Policies first (roles attach them), the worker role before the head's (the head may pass it)."""
    settings = [s for policy in plan.policies for s in policy_settings(iam, plan, policy)]
    return settings + [s for role in plan.roles for s in role_settings(iam, plan, role)]
