"""Start or attach to Ray the same way from every workflow.

Plain ``ray.init()`` attaches to the cluster when the script runs as a Ray job (or RAY_ADDRESS is
set) and starts a local instance otherwise: the same command line scales out unchanged.
"""

from __future__ import annotations

import os

from reid_core.settings import Settings

# What workers attached to a running cluster do not inherit from this shell but need for s3:// data:
# the endpoint and region (never credentials: workers use their own, or a job's runtime_env).
FORWARDED_ENV = ("REID_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_REGION")


def worker_env() -> dict[str, str]:
    return {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}


def init_ray(settings: Settings, *, num_cpus: int | None = None, num_gpus: int | None = None,
             verbose: bool = False) -> None:
    """Attach to the configured cluster (``RAY_ADDRESS``, or the one running this script as a Ray job),
    else start a local Ray of its own (``address="local"``: never a head some other ``ray start`` left
    on this machine). Workers' output reaches this console only with ``verbose`` (``console``)."""
    import ray

    from reid_core.pipelines.console import ray_init_kwargs

    if ray.is_initialized():
        return
    attaching = bool(settings.ray_address or os.environ.get("RAY_JOB_ID"))
    kwargs: dict = {"include_dashboard": False, **ray_init_kwargs(verbose)}
    if not attaching:
        kwargs |= {"num_cpus": num_cpus or os.cpu_count(), "num_gpus": num_gpus}
    ray.init(address=settings.ray_address if attaching else "local", **kwargs)
