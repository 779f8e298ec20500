"""S3 buckets and IAM roles for reid on AWS (or an S3-compatible store), created idempotently with boto3.

    python -m infra apply --name-prefix reid --region eu-west-1 [--dry-run]
    python -m infra check --name-prefix reid --region eu-west-1

``apply`` creates or updates the buckets (data, MLflow artifacts, Ray checkpoints) and the roles,
instance profiles and managed policies of the Ray head, the Ray workers and the MLflow server from the
policy documents in ``infra/policies/``; a second run changes nothing and says so. ``check`` reads every
setting back and exits 1 with the list of drifts.
"""
