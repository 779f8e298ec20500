"""``python -m infra apply|check``: the command line.

Exit status: 0 done (apply) / no drift (check); 1 drift found (check) or an AWS call failed; 2 a usage
error (bad flags, no region, no credentials). Every error is one line that names the fix.
"""

from __future__ import annotations

import argparse
import os
import sys

from infra.plan import PREFIX_MAX, Plan, UsageError, check_prefix
from infra.reconcile import InfraError, reconcile


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints the whole usage otherwise)
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m infra", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, text in (("apply", "create or update the buckets, policies, roles and instance profiles"),
                       ("check", "read every setting back; exit 1 with the list of drifts")):
        command = sub.add_parser(name, help=text, description=text)
        command.add_argument("--name-prefix", required=True, metavar="P",
                             help=f"names: P-data, P-mlflow-artifacts, P-ray-checkpoints, roles P-ray-head, "
                                  f"P-ray-worker, P-mlflow (lowercase, at most {PREFIX_MAX} characters)")
        command.add_argument("--region", help="AWS region (default: AWS_REGION / AWS_DEFAULT_REGION / profile)")
        command.add_argument("--endpoint-url", help="S3 (and IAM/STS) endpoint: moto, MinIO, ... (default: AWS)")
        command.add_argument("--s3-compatible", action="store_true",
                             help="for MinIO-like stores: warn about calls the store does not implement, go on")
        command.add_argument("--skip-iam", action="store_true", help="buckets only (stores without IAM)")
        command.add_argument("--ray-cluster-name", default="reid",
                             help="cluster_name of cluster/aws/cluster.yaml: the head may terminate only its nodes")
        command.add_argument("--eks-oidc-issuer", metavar="URL",
                             help="EKS cluster's OIDC issuer: let the service accounts reid-ray and reid-mlflow "
                                  "assume the worker and MLflow roles (IRSA)")
        command.add_argument("--k8s-namespace", default="reid", help="namespace of those service accounts")
        tls = command.add_mutually_exclusive_group()
        tls.add_argument("--tls-only", dest="tls_only", action="store_true", default=None,
                         help="bucket policies deny plain-HTTP requests (default on, off for http:// endpoints)")
        tls.add_argument("--no-tls-only", dest="tls_only", action="store_false")
        if name == "apply":
            command.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    return parser


def _session(args):
    import boto3
    from botocore.config import Config

    region = args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    session = boto3.Session(region_name=region) if region else boto3.Session()
    if not session.region_name:
        raise UsageError("no AWS region: pass --region (or set AWS_REGION)")
    if session.get_credentials() is None:
        raise UsageError("no AWS credentials: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=60,
                    s3={"addressing_style": "path"} if args.endpoint_url else None)

    def client(service):
        return session.client(service, endpoint_url=args.endpoint_url, config=config)

    return session, client


def run(args) -> int:
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

    from infra.iam import all_iam_settings
    from infra.s3 import all_bucket_settings

    check_prefix(args.name_prefix)  # before any network call
    session, client = _session(args)
    tls_only = args.tls_only if args.tls_only is not None else not (args.endpoint_url or "").startswith("http://")
    apply = args.command == "apply" and not args.dry_run
    try:
        if args.skip_iam:
            account, partition = "000000000000", session.get_partition_for_region(session.region_name)
        else:
            account = client("sts").get_caller_identity()["Account"]
            partition = session.get_partition_for_region(session.region_name)
        plan = Plan(prefix=args.name_prefix, region=session.region_name, partition=partition, account_id=account,
                    ray_cluster_name=args.ray_cluster_name, oidc_issuer=args.eks_oidc_issuer,
                    k8s_namespace=args.k8s_namespace, tls_only=tls_only)
        settings = all_bucket_settings(client("s3"), plan)
        if not args.skip_iam:
            settings += all_iam_settings(client("iam"), plan)
        where = args.endpoint_url or f"AWS account {account}"
        mode = {"check": "checking", "apply": "dry run, changing nothing:" if args.dry_run else "applying"}[args.command]
        print(f"infra {mode} {len(settings)} settings for prefix {plan.prefix!r} in {plan.region} ({where})")
        outcome = reconcile(settings, apply=apply, s3_compatible=args.s3_compatible,
                            check=args.command == "check")
    except EndpointConnectionError as error:
        raise InfraError(f"cannot reach {error.kwargs.get('endpoint_url', 'the endpoint')}: check --endpoint-url "
                         "and the network") from None
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "error")
        hint = ("the credentials lack a permission infra needs (S3 and IAM administration)"
                if code in ("AccessDenied", "AccessDeniedException", "InvalidClientTokenId", "SignatureDoesNotMatch")
                else "see the message")
        raise InfraError(f"{error.operation_name} failed: {code}: {error.response.get('Error', {}).get('Message', '')}"
                         f"; {hint}") from None
    except BotoCoreError as error:
        raise InfraError(f"{type(error).__name__}: {error}") from None

    count = len(outcome.changes)
    if args.command == "check":
        if count:
            print(f"{count} drift(s) from the plan in {outcome.checked} settings; run `python -m infra apply` "
                  "with the same flags to fix them")
            return 1
        print(f"no drift: all {outcome.checked} settings match")
    elif args.dry_run:
        print(f"plan: {count} change(s) in {outcome.checked} settings (dry run: nothing was changed)" if count
              else f"plan: no changes, all {outcome.checked} settings already match (dry run)")
    elif count:
        print(f"applied {count} change(s) ({outcome.checked} settings checked)")
    else:
        print(f"no changes: all {outcome.checked} settings already match")
    if args.command == "apply" and not args.skip_iam:
        for role in plan.roles:
            print(f"  role {plan.role_arn(role.name)}  instance profile {plan.instance_profile_arn(role.name)}")
    if outcome.warnings:
        print(f"{len(outcome.warnings)} setting(s) skipped: the store does not implement them (--s3-compatible)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.dry_run = getattr(args, "dry_run", False)
    try:
        return run(args)
    except UsageError as error:
        print(f"python -m infra: error: {error}", file=sys.stderr)
        return 2
    except InfraError as error:
        print(f"python -m infra: error: {error}", file=sys.stderr)
        return 1
