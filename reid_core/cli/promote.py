"""``reid promote``: promote behind a gate, force, roll back, list versions.

Exit status: 0 promoted / rolled back / listed / already production; 1 the gate rejected the
candidate; 2 a usage error or an unknown model, version, alias or manifest.
"""

from __future__ import annotations

import argparse
import sys

from reid_core.cli.options import Parser, add_options
from reid_core.reports.tables import markdown_table
from reid_core.settings import Settings

REJECTED_EXIT, ERROR_EXIT = 1, 2


def build_parser(settings: Settings) -> Parser:
    parser = Parser(
        prog="reid promote",
        description="Move a registered model's 'production' alias to a version, if it is not worse than "
                    "the current production version on the same test manifest (both evaluated now).")
    parser.add_argument("--model", required=True, help="registered model name, e.g. reid-dve-tiger")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--version", help="the version to promote, e.g. 7")
    which.add_argument("--alias", help="promote the version this alias points at (default: candidate)")
    which.add_argument("--rollback", action="store_true",
                       help="point production back at the version the current one replaced")
    which.add_argument("--list", action="store_true", help="list the versions, their aliases and tags")
    add_options(parser, settings, "manifest", manifest={
        "default": None, "help": "manifest whose test split of the model's species both versions are evaluated on "
                                 "(default: the one the candidate was trained on)"})
    parser.add_argument("--metric", default="mAP", help="gate metric (any metric of the species' protocol)")
    parser.add_argument("--tolerance", type=float, default=0.0,
                        help="how much lower (absolute) the candidate's metric may be and still pass")
    parser.add_argument("--force", action="store_true", help="skip the gate (needs --reason)")
    parser.add_argument("--reason", help="why; recorded on the version (required with --force)")
    add_options(parser, settings, "original_images")
    return parser


def _print_metrics(result) -> None:
    rows = [{"version": f"v{result.candidate} (candidate)", **_round(result.candidate_metrics)},
            {"version": f"v{result.previous} (production)", **_round(result.production_metrics)}]
    print(markdown_table(rows))


def _round(metrics: dict[str, float]) -> dict[str, str]:
    return {k: f"{metrics[k]:.4f}" for k in ("mAP", "rank1") if k in metrics}


def run(args: argparse.Namespace, settings: Settings) -> int:
    from reid_core.lifecycle.promote import PromotionRequest, promote, rollback
    from reid_core.tracking import list_versions

    if args.list:
        print(markdown_table(list_versions(args.model, settings).to_dicts()))
        return 0
    if args.rollback:
        done = rollback(args.model, args.reason or "rollback", settings)
        print(f"{done.name}: production rolled back from v{done.from_version} to v{done.to_version}")
        return 0
    result = promote(PromotionRequest(
        name=args.model, manifest=args.manifest, version=args.version, alias=args.alias, metric=args.metric,
        tolerance=args.tolerance, force=args.force, reason=args.reason, use_masked=not args.original_images,
    ), settings)
    if result.candidate_metrics:
        _print_metrics(result)
    if result.promoted:
        before = f"v{result.previous}" if result.previous else "none"
        print(f"{result.name}: production -> v{result.candidate} (was {before}); {result.decision}: {result.reason}")
        print(f"load it as models:/{result.name}@production")
        return 0
    print(f"{result.name}: v{result.candidate} not promoted ({result.decision}): {result.reason}")
    return REJECTED_EXIT if result.decision == "gate_rejected" else 0


def main(argv: list[str]) -> int:
    settings = Settings.from_env()
    args = build_parser(settings).parse_args(argv)
    from reid_core.tracking import ModelNotFoundError

    try:
        return run(args, settings)
    except (ModelNotFoundError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return ERROR_EXIT

