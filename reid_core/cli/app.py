"""The command-line app: ``reid COMMAND [options]`` (the console script), ``python -m reid_core COMMAND``,
and ``python workflows/<command>.py`` (one-line aliases for ``ray job submit --working-dir .``).

Each command's module is imported only when it runs, so ``reid --help`` starts no Ray and no torch.
Exit status: what the command returns; 2 for every usage mistake, printed as one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reid_core.cli.options import Parser, run_command


@dataclass(frozen=True)
class Command:
    target: str  # "module:function", the function taking the command's arguments and returning an exit status
    summary: str
    usage_errors: bool = True  # run through run_command (infra reports its own errors)

    def load(self) -> Callable[[list[str]], int]:
        module, function = self.target.split(":")
        return getattr(importlib.import_module(module), function)


COMMANDS: dict[str, Command] = {
    "detect": Command("reid_core.cli.detect:main",
                      "find and crop every animal in whole photos with Ray Data, one row per animal (resumable)"),
    "segment": Command("reid_core.cli.segment:main",
                       "remove the backgrounds of a manifest's images with Ray Data (resumable)"),
    "part-masks": Command("reid_core.cli.part_masks:main",
                          "PAW-ViT's pseudo part masks from keypoints and foreground masks (resumable)"),
    "train": Command("reid_core.cli.train:main",
                     "train one model (in-process or DDP on Ray Train), test it, register it as a candidate"),
    "tune": Command("reid_core.cli.tune:main_with_method",
                    "search a method's hyperparameters per species (Ray Tune + Optuna), register the best"),
    "compare": Command("reid_core.cli.compare:main",
                       "train methods x species x seeds as Ray tasks: AER Table 2 with 95% CIs, or an ablation"),
    "reproduce": Command("reid_core.cli.reproduce:main",
                         "a paper's claim over seeds (e.g. aer-lambda-dve), ours beside the paper's numbers"),
    "promote": Command("reid_core.cli.promote:main",
                       "move a model's 'production' alias behind a gate; force, roll back or list versions"),
    "transfer": Command("reid_core.cli.transfer:main",
                        "the cross-species transfer matrix of the registered models (mAP, rank-1)"),
    "identify": Command("reid_core.cli.identify:main",
                        "known individual or new, for each new photo, with a registered model"),
    "demo": Command("reid_core.cli.demo:main",
                    "synthetic species, baselines, background removal and a DVE sweep on this machine"),
    "convert": Command("reid_core.cli.convert:main",
                       "turn a dataset on disk (ATRW, YakReID, ELPephants, WildlifeDatasets, folders) into a manifest"),
    "synthetic": Command("reid_core.cli.synthetic:main",
                         "generate the synthetic species (images, masks, part maps) and their manifest"),
    "infra": Command("infra.cli:main", "create or check the S3 buckets and IAM roles of a cluster (apply|check)",
                     usage_errors=False),
}


def build_parser() -> Parser:
    listing = "\n".join(f"  {name:<11} {command.summary}" for name, command in COMMANDS.items())
    parser = Parser(prog="reid", usage="reid COMMAND [options]  (or: python -m reid_core COMMAND [options])",
                    description="Wildlife re-identification on Ray and MLflow.",
                    formatter_class=argparse.RawDescriptionHelpFormatter,
                    epilog=f"commands:\n{listing}\n\n`reid COMMAND --help` shows a command's options; "
                           "`python workflows/<command>.py` runs\nthe same command (for `ray job submit "
                           "--working-dir .`).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help=argparse.SUPPRESS)
    for name in COMMANDS:
        commands.add_parser(name, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``argv`` (default: the process's arguments) and return its exit status (argparse's exits too)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        # The app parses only the command's name (and its own --help); the command parses the rest.
        build_parser().parse_args(argv[:1])
        command = COMMANDS[argv[0]]
        if not command.usage_errors:
            return command.load()(argv[1:])
        return run_command(command.load(), argv[1:])
    except SystemExit as exit_:  # --help (0) or a one-line usage error (2)
        if exit_.code is None or isinstance(exit_.code, int):
            return exit_.code or 0
        print(exit_.code, file=sys.stderr)
        return 1
