"""The shared options of a parsed command line turned into jobs, in one place: ``--manifest``, ``--method``,
``--species``, ``--preset``, ``--set``, ``--bound``, ``--epochs``, ``--seed``/``--seeds``, ``--workers``,
``--storage``, ``--original-images``, ``--use-gpu``, ``--dataset`` and ``--verbose`` become the fields of a
``TrainJob``, a ``TuneRequest`` or a ``CompareRequest`` here and nowhere else.

Mistakes that need no data (an unknown method, ``--epochs`` for a method that trains nothing, a malformed
``--set`` or ``--bound``) are ``UsageError``s raised before anything starts.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reid_core.cli.options import (
    UsageError,
    at_least,
    calibration_matchers,
    dataset_name,
    local_rerank,
    matcher_options,
    names,
    parse_assignments,
    parse_bounds,
)
from reid_core.settings import Settings

if TYPE_CHECKING:
    from reid_core.engine.loop import TrainJob
    from reid_core.pipelines.compare import CompareRequest
    from reid_core.pipelines.tune import TuneRequest


@dataclass(frozen=True)
class Training:
    """What the shared training options ask for, parsed and checked (train, tune and compare)."""

    manifest: str
    preset: str
    overrides: dict[str, Any] = field(default_factory=dict)  # --set
    epochs: int | None = None
    seed: int = 0
    use_masked: bool = True
    use_gpu: bool = False
    dataset: str = "custom"
    verbose: bool = False


def training(args: argparse.Namespace, methods: Sequence[str], *, every_method_trains: bool = True) -> Training:
    """The shared training options of ``args`` for ``methods``. With ``every_method_trains`` (one method
    asked for by name) ``--epochs`` for a method with nothing to train is a mistake; a comparison of several
    methods applies it to those that train."""
    from reid_core.methods.registry import get_method

    at_least("--epochs", args.epochs, 1)
    for method in methods:  # an unknown method is a usage error before anything starts
        trains = get_method(method).epochs_key is not None
        if args.epochs is not None and every_method_trains and not trains:
            raise UsageError(f"--epochs: method {method!r} trains nothing, so it has no epochs to set; "
                             "leave --epochs out")
    return Training(manifest=args.manifest, preset=args.preset, overrides=parse_assignments(args.overrides, "--set"),
                    epochs=args.epochs, seed=args.seed, use_masked=not args.original_images, use_gpu=args.use_gpu,
                    dataset=args.dataset or dataset_name(args.manifest), verbose=args.verbose)


def command_settings(args: argparse.Namespace) -> Settings:
    """The settings of the environment, with ``--storage`` in place of ``REID_RAY_STORAGE`` when given."""
    storage = getattr(args, "storage", None)
    return Settings.from_env({**os.environ, "REID_RAY_STORAGE": storage} if storage else None)


def train_job(args: argparse.Namespace) -> TrainJob:
    """``reid train``'s job: one method on one species, ``--epochs`` set on the method's epochs key."""
    from reid_core.engine.loop import TrainJob
    from reid_core.methods.registry import get_method

    if "," in args.species:
        raise UsageError(f"--species: train takes one species, got {args.species!r} (tune and compare take several)")
    at_least("--workers", args.workers, 0)
    shared = training(args, [args.method])
    overrides = dict(shared.overrides)
    if shared.epochs:
        overrides[get_method(args.method).epochs_key] = shared.epochs
    return TrainJob(manifest=shared.manifest, species=args.species, method=args.method, preset=shared.preset,
                    overrides=overrides, seed=shared.seed, use_masked=shared.use_masked, use_gpu=shared.use_gpu)


def tune_request(args: argparse.Namespace) -> TuneRequest:
    """``reid tune``'s request: one study per species of ``--species``."""
    from reid_core.pipelines.tune import TuneRequest

    species = names(args.species)
    if not species:
        raise UsageError("--species names no species: give one or more, comma-separated")
    for flag, value, low in (("--num-samples", args.num_samples, 1), ("--max-concurrent", args.max_concurrent, 1),
                             ("--workers-per-trial", args.workers_per_trial, 0), ("--max-failures", args.max_failures, 0),
                             ("--cpus-per-trial", args.cpus_per_trial, 0)):
        at_least(flag, value, low)
    shared = training(args, [args.method])
    return TuneRequest(
        method=args.method, species=species, manifest=shared.manifest, preset=shared.preset,
        num_samples=args.num_samples, max_concurrent=args.max_concurrent, workers_per_trial=args.workers_per_trial,
        cpus_per_trial=args.cpus_per_trial, epochs=shared.epochs, use_gpu=shared.use_gpu, seed=shared.seed,
        bounds=parse_bounds(args.bound), overrides=shared.overrides, use_masked=shared.use_masked,
        dataset=shared.dataset, verbose=shared.verbose, max_failures=args.max_failures, resume=args.resume,
        calibrate=calibration_matchers(args), matcher_options=matcher_options(args))


def compare_request(args: argparse.Namespace) -> CompareRequest:
    """``reid compare``'s request: every method x species x seed (species default: the manifest's)."""
    from reid_core.pipelines.compare import CompareRequest

    methods = names(args.methods)
    if not methods:
        raise UsageError("--methods names no method: give one or more, comma-separated")
    at_least("--seeds", args.seeds, 1)
    shared = training(args, methods, every_method_trains=False)
    species = names(args.species)
    if not species:
        from reid_core.data import manifest

        species = sorted(manifest.read(shared.manifest)["species"].unique().to_list())
    return CompareRequest(
        manifest=shared.manifest, methods=methods, species=species, seeds=args.seeds, base_seed=shared.seed,
        preset=shared.preset, overrides=shared.overrides, epochs=shared.epochs, use_masked=shared.use_masked,
        use_gpu=shared.use_gpu, cpus_per_run=args.cpus_per_run, dataset=shared.dataset, out_dir=args.out,
        verbose=shared.verbose, rerank=local_rerank(args))
