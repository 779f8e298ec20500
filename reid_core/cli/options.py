"""The options several commands share, declared once, and how every command reports a usage mistake.

A command adds the shared options it takes with ``add_options(parser, settings, "manifest", "species", ...)``;
``changes`` give one command its own default or help (``species={"required": True}``), never a new meaning.
``reid_core.cli.jobs`` turns the parsed shared options into jobs. Every usage mistake is one line on stderr
and exit status 2: argparse's through ``Parser``, the commands' own through ``UsageError`` (or any
``ValueError``, ``FileNotFoundError`` or ``KeyError`` that reaches ``run_command``).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Callable
from typing import Any

from reid_core.matching.registry import MATCHERS, NONE
from reid_core.settings import Settings


class UsageError(ValueError):
    """A mistake in the command line: ``run_command`` prints it as one line and exits 2."""


class Parser(argparse.ArgumentParser):
    """argparse with argparse's own mistakes (an unknown flag, a missing or malformed value) on one line
    and exit status 2, instead of the usage block followed by the error."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


class _Once(argparse.Action):
    """A flag that may be given once: an alias such as ``workflows/tune_dve.py`` fixes ``--method``, and a
    second ``--method`` on its command line is a mistake, not a silent override."""

    def __call__(self, parser, namespace, values, option_string=None):
        seen = f"_given_{self.dest}"
        if getattr(namespace, seen, False):
            parser.error(f"{option_string} given twice ({getattr(namespace, self.dest)!r} and {values!r})")
        setattr(namespace, seen, True)
        setattr(namespace, self.dest, values)


def _declarations(settings: Settings) -> dict[str, tuple[tuple[str, ...], dict[str, Any]]]:
    """name -> (flags, argparse keywords) of every shared option."""
    return {
        "manifest": (("--manifest",), dict(
            default=str(settings.synthetic_dir / "manifest.parquet"),
            help="manifest Parquet (local path or s3:// URI); default: the synthetic species")),
        "species": (("--species",), dict(
            default=None, help="comma-separated species (default: every species of the manifest)")),
        "method": (("--method",), dict(
            default="dve", action=_Once, help="registered method, e.g. dve, arbase, pawvit (default: dve)")),
        "methods": (("--methods",), dict(
            default="dve", help="comma-separated methods, e.g. dve,arbase (default: dve)")),
        "preset": (("--preset",), dict(
            default="paper",
            help="the method's named config: 'paper' (the paper's recipe) or 'cpu' (random weights, small "
                 "inputs, learns on 2 CPU cores)")),
        "set": (("--set",), dict(
            dest="overrides", action="append", metavar="KEY=VALUE",
            help="override a dotted config key, e.g. --set optim.lr=0.003 --set backbone.name=resnet18")),
        "bound": (("--bound",), dict(
            action="append", metavar="KEY=LOW:HIGH|A,B",
            help="override a search range by its dotted key, e.g. --bound losses.lambda_dve=0:1 "
                 "--bound losses.circle_gamma=32,64")),
        "epochs": (("--epochs",), dict(type=int, default=None, help="epochs per training (default: the preset's)")),
        "seed": (("--seed",), dict(type=int, default=0, help="random seed (default: 0)")),
        "seeds": (("--seeds",), dict(type=int, default=3, help="trainings per method x species: seeds --seed + i")),
        "workers": (("--workers",), dict(
            type=int, default=0, help="0 = train in-process; N = DDP with N Ray Train workers")),
        "storage": (("--storage",), dict(
            default=None, metavar="PATH|s3://BUCKET/PREFIX",
            help="where Ray Train and Tune keep runs and checkpoints (default: $REID_RAY_STORAGE, else "
                 "REID_HOME/ray)")),
        "use_gpu": (("--use-gpu",), dict(action="store_true", help="train on GPUs (NCCL for DDP)")),
        "original_images": (("--original-images",), dict(
            action="store_true", help="use the original images even when the manifest has masked ones")),
        "dataset": (("--dataset",), dict(default=None, help="dataset name recorded in MLflow tags")),
        "verbose": (("--verbose",), dict(
            action="store_true", help="full tracebacks and Ray's, Tune's and MLflow's own output")),
        "matcher": (("--matcher",), dict(
            choices=MATCHERS, default="none",
            help="local-feature matcher that verifies the global model's shortlist and re-ranks it by the "
                 "calibrated fused probability (sift needs no weights; default: none, the global model alone)")),
        "calibrate": (("--calibrate",), dict(
            default="sift", metavar="MATCHERS",
            help="local matchers to calibrate for identify when the model is published, comma-separated "
                 f"({', '.join(m for m in MATCHERS if m != NONE)}; default: sift; none: the global model only)")),
        "matcher_set": (("--matcher-set",), dict(
            dest="matcher_set", action="append", metavar="MATCHER.KEY=VALUE",
            help="a local matcher's option, e.g. --matcher-set lightglue-disk.extractor_weights=s3://b/disk.pth "
                 "--matcher-set lightglue-disk.lightglue_weights=/models/lg.pth (default: released weights from "
                 "the hub; identify uses the options a model was calibrated with)")),
        "shortlist": (("--shortlist",), dict(
            type=int, default=50, help="images per query, the most similar by the global model, matched "
                                       "locally (default: 50)")),
    }


# The options of every command that trains (train, tune, compare).
TRAINING = ("manifest", "epochs", "use_gpu", "seed", "original_images", "dataset", "preset", "set", "verbose")


def add_options(parser: argparse.ArgumentParser, settings: Settings, *names: str,
                **changes: dict[str, Any]) -> None:
    """Add the shared options ``names``; ``changes[name]`` replaces some of one option's argparse keywords
    (``flags`` its flags) for this command."""
    declared = _declarations(settings)
    unknown = (set(names) | set(changes)) - set(declared)
    if unknown:
        raise TypeError(f"no shared option {sorted(unknown)}; declared: {sorted(declared)}")
    for name in names:
        flags, keywords = declared[name]
        keywords = {**keywords, **changes.get(name, {})}
        parser.add_argument(*keywords.pop("flags", flags), **keywords)


def check_method(method: str, registered: list[str]) -> None:
    """``--method``: a registered name, or ``package.module:builder`` (the user's own)."""
    if ":" not in method and method not in registered:
        raise UsageError(f"unknown --method {method!r}; choose one of {', '.join(registered)} "
                         "or give package.module:builder")


def matcher_options(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """``--matcher-set MATCHER.KEY=VALUE`` as {matcher: {key: value}}, each checked by the matcher's options."""
    from reid_core.matching.registry import check_options

    by_matcher: dict[str, dict[str, Any]] = {}
    for key, value in parse_assignments(getattr(args, "matcher_set", None), "--matcher-set").items():
        matcher, _, option = key.partition(".")
        if matcher not in MATCHERS or matcher == NONE or not option:
            raise UsageError(f"--matcher-set {key}=...: expected MATCHER.KEY=VALUE with MATCHER one of "
                             f"{', '.join(m for m in MATCHERS if m != NONE)}")
        by_matcher.setdefault(matcher, {})[option] = value
    for matcher, options in by_matcher.items():
        try:
            check_options(matcher, options)
        except (TypeError, ValueError) as error:
            raise UsageError(f"--matcher-set {matcher}: {' '.join(str(error).split())}") from None
    return by_matcher


def local_rerank(args: argparse.Namespace):
    """The ``--matcher`` / ``--shortlist`` re-ranking of model evaluation; None for ``--matcher none``."""
    if args.matcher == NONE:
        return None
    at_least("--shortlist", args.shortlist, 1)
    from reid_core.lifecycle.local_rerank import LocalRerank

    return LocalRerank(args.matcher, args.shortlist, matcher_options(args).get(args.matcher, {}))


def calibration_matchers(args: argparse.Namespace) -> tuple[str, ...]:
    """``--calibrate``'s matchers, each a registered one."""
    chosen = tuple(names(args.calibrate))
    unknown = [m for m in chosen if m not in MATCHERS]
    if unknown:
        raise UsageError(f"--calibrate: unknown matcher {unknown[0]!r}; choose from {', '.join(MATCHERS)}")
    return tuple(m for m in chosen if m != NONE)


def names(text: str | None) -> list[str]:
    """'tiger, yak,' -> ['tiger', 'yak'] (comma-separated species or methods)."""
    return [s.strip() for s in (text or "").split(",") if s.strip()]


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
        if not sep or not key.strip():
            raise UsageError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key.strip()] = parse_value(value.strip())
    return out


def parse_bounds(items: list[str] | None) -> dict[str, Any]:
    """``lambda_dve=0:1`` -> (0.0, 1.0) range; ``circle_gamma=32,64`` -> [32, 64] choices."""
    bounds: dict[str, Any] = {}
    for key, value in parse_assignments(items, "--bound").items():
        text = str(value)
        if ":" in text:
            try:
                low, high = (float(v) for v in text.split(":", 1))
            except ValueError:
                raise UsageError(f"--bound {key}={text}: LOW and HIGH of a range must be numbers") from None
            if not low < high:
                raise UsageError(f"--bound {key}={text}: LOW must be below HIGH")
            bounds[key] = (low, high)
        elif "," in text:
            bounds[key] = [parse_value(v) for v in text.split(",")]
        else:
            raise UsageError(f"--bound {key}={text}: use LOW:HIGH for a range or A,B,C for choices")
    return bounds


def at_least(flag: str, value: float | None, low: float) -> None:
    if value is not None and value < low:
        raise UsageError(f"{flag} must be >= {low}, got {value}")


def dataset_name(manifest: str) -> str:
    """The name recorded in MLflow tags when --dataset is not given: the manifest's folder."""
    if "synthetic" in manifest:
        return "synthetic"
    parts = manifest.rstrip("/").split("/")
    return parts[-2] if len(parts) > 1 and parts[-2] else "custom"


USAGE_ERRORS = (ValueError, FileNotFoundError, KeyError)


def run_command(main: Callable[[list[str]], int], argv: list[str]) -> int:
    """Run a command's ``main``: a usage error (bad manifest, species, method, config key, batch size)
    prints one line naming the fix and exits 2; the traceback only with ``--verbose``."""
    try:
        return main(argv)
    except USAGE_ERRORS as error:
        if "--verbose" in argv:
            traceback.print_exc()
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"error: {' '.join(str(message).split())}", file=sys.stderr)  # one line, even for a multi-line message
        return 2
