"""Command-line pieces shared by the workflow scripts (they only parse arguments and print)."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Callable
from typing import Any

from reid_core.settings import Settings


def parse_value(text: str) -> Any:
    """'0.5' -> 0.5, '32' -> 32, 'true' -> True, 'resnet18' -> 'resnet18' (JSON where it parses)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_assignments(items: list[str] | None, flag: str) -> dict[str, Any]:
    """``KEY=VALUE`` pairs into a dict, with a clear error naming the flag."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key.strip()] = parse_value(value.strip())
    return out


def parse_bounds(items: list[str] | None) -> dict[str, Any]:
    """``lambda_dve=0:1`` -> (0.0, 1.0) range; ``circle_gamma=32,64`` -> [32, 64] choices."""
    bounds: dict[str, Any] = {}
    for key, value in parse_assignments(items, "--bound").items():
        text = str(value)
        if ":" in text:
            low, high = (float(v) for v in text.split(":", 1))
            bounds[key] = (low, high)
        elif "," in text:
            bounds[key] = [parse_value(v) for v in text.split(",")]
        else:
            raise SystemExit(f"--bound {key}={text}: use LOW:HIGH for a range or A,B,C for choices")
    return bounds


def dataset_name(manifest: str) -> str:
    """The name recorded in MLflow tags when --dataset is not given: the manifest's folder."""
    if "synthetic" in manifest:
        return "synthetic"
    parts = manifest.rstrip("/").split("/")
    return parts[-2] if len(parts) > 1 and parts[-2] else "custom"


def add_common_arguments(parser: argparse.ArgumentParser, settings: Settings) -> None:
    parser.add_argument("--manifest", default=str(settings.synthetic_dir / "manifest.parquet"),
                        help="manifest Parquet (local path or s3:// URI); default: the synthetic species")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per training (default: the paper's)")
    parser.add_argument("--use-gpu", action="store_true", help="train on GPUs (NCCL for DDP)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--original-images", action="store_true",
                        help="train on the original images even when the manifest has masked ones")
    parser.add_argument("--dataset", default=None, help="dataset name recorded in MLflow tags")
    parser.add_argument("--preset", default="paper",
                        help="the method's named config: 'paper' (the paper's recipe) or 'cpu' (random weights, "
                             "small inputs, learns on 2 CPU cores)")
    parser.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                        help="override a dotted config key, e.g. --set optim.lr=0.003 --set backbone.name=resnet18")
    parser.add_argument("--verbose", action="store_true", help="full tracebacks and Ray's own progress output")


USAGE_ERRORS = (ValueError, FileNotFoundError, KeyError)


def run_command(main: Callable[[list[str]], int], argv: list[str]) -> int:
    """Run a workflow's ``main``: a usage error (bad manifest, species, method, config key, batch size)
    prints one line naming the fix and exits 2; the traceback only with ``--verbose``."""
    try:
        return main(argv)
    except USAGE_ERRORS as error:
        if "--verbose" in argv:
            traceback.print_exc()
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"error: {message}", file=sys.stderr)
        return 2

