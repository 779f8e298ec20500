"""The command-line app: its commands, the shared options declared once, the workflow aliases, and every
usage mistake as one line on stderr with exit status 2 (nothing here starts Ray or trains)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_dve_flags

from reid_core.cli import app, jobs
from reid_core.cli import compare as compare_cli
from reid_core.cli import train as train_cli
from reid_core.cli import tune as tune_cli
from reid_core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("detect", "segment", "part-masks", "train", "tune", "compare", "reproduce", "promote", "transfer", "identify", "demo",
            "convert", "synthetic", "infra")


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


def test_python_m_reid_core_help_lists_every_command_with_one_line_each():
    done = subprocess.run([sys.executable, "-m", "reid_core", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    listed = {line.split()[0]: line for line in done.stdout.splitlines() if line.startswith("  ") and line.split()}
    assert set(COMMANDS) <= set(listed) and set(app.COMMANDS) == set(COMMANDS)
    for name in COMMANDS:  # the name, then its summary on the same line
        assert listed[name].split(None, 1)[1] == app.COMMANDS[name].summary


def test_the_console_script_is_the_app():
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"reid": "reid_core.cli.app:main"}


@pytest.mark.parametrize("name", [c for c in COMMANDS if c != "synthetic"] + [
    pytest.param("synthetic", marks=pytest.mark.skipif(
        not (ROOT / "reid_core" / "cli" / "synthetic.py").exists(), reason="reid_core/cli/synthetic.py not yet"))])
def test_every_command_has_help(name, capsys):
    assert app.main([name, "--help"]) == 0
    assert "--" in capsys.readouterr().out  # its options


@pytest.mark.parametrize(("argv", "message"), [
    ([], "the following arguments are required: COMMAND"),
    (["trian"], "invalid choice: 'trian'"),
    (["train", "--species", "tiger", "--bogus"], "unrecognized arguments: --bogus (see reid train --help)"),
    (["tune", "--species", "tiger"], "the following arguments are required: --method"),
    (["tune", "--method", "dve", "--method", "care", "--species", "tiger"], "--method given twice"),
    (["tune", "--method", "dve", "--species", "tiger", "--epochs", "x"], "argument --epochs: invalid int value"),
    (["convert", "folders", "--root", ".", "--out", "m.parquet"], "required: --species"),
])
def test_argparse_mistakes_are_one_line_and_exit_2(argv, message, capsys):
    assert app.main(argv) == 2
    assert message in _one_line_error(capsys)


@pytest.mark.parametrize(("argv", "message"), [
    (["tune", "--method", "clip_zs", "--epochs", "5", "--species", "tiger"],
     "--epochs: method 'clip_zs' trains nothing, so it has no epochs to set"),
    (["train", "--method", "clip_zs", "--epochs", "5", "--species", "tiger"], "'clip_zs' trains nothing"),
    (["tune", "--method", "nope", "--species", "tiger"], "unknown method 'nope'; available: arbase"),
    (["compare", "--methods", "dve,nope"], "unknown method 'nope'"),
    (["tune", "--method", "dve", "--species", "lion"], "has no rows of species 'lion'; it has: tiger"),
    (["train", "--species", "lion"], "has no rows of species 'lion'"),
    (["compare", "--species", "lion", "--seeds", "1"], "has no rows of species 'lion'"),
    (["train", "--species", "tiger", "--set", "optim.lrr=1"], "unknown config key 'optim.lrr' for method 'dve'"),
    (["tune", "--method", "dve", "--species", "tiger", "--set", "optim.lr"], "--set expects KEY=VALUE, got 'optim.lr'"),
    (["tune", "--method", "dve", "--species", "tiger", "--bound", "losses.lambda_dve=1"], "use LOW:HIGH"),
    (["tune", "--method", "dve", "--species", "tiger", "--bound", "losses.lambda_dve=1:0"], "LOW must be below HIGH"),
    (["tune", "--method", "dve", "--species", "tiger", "--bound", "optim.lrr=0:1"],
     "unknown search-space bound(s) ['optim.lrr']"),
    (["tune", "--method", "dve", "--species", "tiger", "--max-failures", "-1"], "--max-failures must be >= 0"),
    (["train", "--species", "tiger", "--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["segment", "--method", "nope"], "unknown --method 'nope'; choose one of"),
    (["segment", "--method", "reference", "--set", "bogus=1"], "takes no option bogus"),
    (["detect", "--method", "nope"], "unknown --method 'nope'; choose one of"),
    (["detect", "--method", "reference", "--set", "bogus=1"], "takes no option bogus"),
    (["detect", "--threshold", "2"], "--threshold must be in [0, 1]"),
    (["transfer", "--model", "tiger"], "--model expects SPECIES="),
    (["train", "--species", "tiger", "--calibrate", "sift,orb"], "--calibrate: unknown matcher 'orb'; choose from"),
    (["tune", "--method", "dve", "--species", "tiger", "--calibrate", "orb"], "--calibrate: unknown matcher 'orb'"),
    (["train", "--species", "tiger", "--matcher-set", "orb.ratio=0.8"], "expected MATCHER.KEY=VALUE with MATCHER one of"),
    (["train", "--species", "tiger", "--matcher-set", "sift.rattio=0.8"], "--matcher-set sift:"),
    (["compare", "--methods", "dve", "--matcher", "sift", "--shortlist", "0", "--seeds", "1"],
     "--shortlist must be >= 1, got 0"),
])
def test_usage_mistakes_are_one_line_and_exit_2(argv, message, tiny_synthetic, capsys):
    # Tiny batches, so that a check of the data does not fail first.
    tiny = [*tiny_dve_flags()] if argv[0] in ("train", "tune") and "clip_zs" not in argv else []
    assert app.main([*argv, "--manifest", tiny_synthetic, *tiny]) == 2
    assert message in _one_line_error(capsys)


@pytest.mark.parametrize("command", ["train", "tune", "compare", "part-masks", "segment", "detect"])
def test_a_missing_manifest_is_one_line_and_exit_2(command, capsys):
    argv = {"train": ["--species", "tiger"], "tune": ["--method", "dve", "--species", "tiger"],
            "compare": ["--species", "tiger"]}.get(command, [])
    assert app.main([command, *argv, "--manifest", "/nowhere/manifest.parquet"]) == 2
    assert "/nowhere/manifest.parquet does not exist" in _one_line_error(capsys)


def test_verbose_adds_the_traceback(capsys):
    assert app.main(["train", "--species", "tiger", "--manifest", "/nowhere/m.parquet", "--verbose"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: manifest /nowhere/m.parquet")


def test_the_issue_command_is_one_line_and_exit_2_from_the_workflow():
    """`python workflows/tune.py --method clip_zs --epochs 5`, as a user types it (it once ended in an
    AttributeError traceback)."""
    done = subprocess.run([sys.executable, "workflows/tune.py", "--method", "clip_zs", "--epochs", "5"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("error: "), done.stderr


def test_shared_options_are_declared_once():
    """train, tune and compare take the same --manifest, --preset, --set, --epochs, ... (one declaration)."""
    settings = Settings.from_env()
    parsers = [train_cli.build_parser(settings), tune_cli.build_parser("dve", settings),
               compare_cli.build_parser(settings)]

    def action(parser, flag):
        return next(a for a in parser._actions if flag in a.option_strings)

    for flag in ("--manifest", "--preset", "--set", "--seed", "--original-images", "--use-gpu", "--dataset",
                 "--verbose"):
        first, *others = (action(p, flag) for p in parsers)
        for other in others:
            assert (other.dest, other.default, other.help) == (first.dest, first.default, first.help), flag
    assert action(parsers[0], "--preset").default == "paper"  # the paper's recipe unless asked otherwise
    assert action(parsers[1], "--workers").dest == "workers_per_trial"  # tune's --workers is per trial


def test_shared_options_become_jobs_in_one_place(tiny_synthetic):
    settings = Settings.from_env()
    args = train_cli.build_parser(settings).parse_args(
        ["--species", "tiger", "--manifest", tiny_synthetic, "--epochs", "7", "--set", "optim.lr=0.01",
         "--original-images", "--seed", "3", "--storage", "s3://bucket/ray"])
    job = jobs.train_job(args)
    assert (job.method, job.species, job.preset, job.seed, job.use_masked) == ("dve", "tiger", "paper", 3, False)
    assert job.overrides == {"optim.lr": 0.01, "schedule.epochs": 7}
    assert jobs.command_settings(args).ray_storage == "s3://bucket/ray"

    tune = jobs.tune_request(tune_cli.build_parser(None, settings).parse_args(
        ["--method", "pawvit", "--species", "tiger, yak", "--bound", "losses.alpha=0:1", "--bound",
         "parts.num_parts=3,4", "--workers", "2", "--epochs", "4"]))
    assert (tune.method, tune.species, tune.workers_per_trial, tune.epochs) == ("pawvit", ["tiger", "yak"], 2, 4)
    assert tune.bounds == {"losses.alpha": (0.0, 1.0), "parts.num_parts": [3, 4]}
    assert tune.dataset == "synthetic" and tune.preset == "paper"

    # A comparison applies --epochs to the methods that train; the species default to the manifest's.
    compare = jobs.compare_request(compare_cli.build_parser(settings).parse_args(
        ["--methods", "clip_zs,dve", "--manifest", tiny_synthetic, "--epochs", "2", "--seed", "5"]))
    assert (compare.methods, compare.species, compare.epochs, compare.base_seed) == (["clip_zs", "dve"], ["tiger"],
                                                                                     2, 5)


def _alias_call(path: Path) -> ast.Call:
    """The one statement under ``if __name__ == "__main__":`` of a workflow: ``sys.exit(app.main([...]))``."""
    tree = ast.parse(path.read_text())
    [guard] = [n for n in tree.body if isinstance(n, ast.If)]
    [statement] = guard.body
    return statement.value


@pytest.mark.parametrize("path", sorted((ROOT / "workflows").glob("*.py")), ids=lambda p: p.name)
def test_every_workflow_is_a_one_line_alias_of_a_command(path):
    call = _alias_call(path)
    assert ast.unparse(call.func) == "sys.exit" and ast.unparse(call.args[0].func) == "app.main"
    [argv] = call.args[0].args
    assert ast.unparse(argv.elts[-1]) == "*sys.argv[1:]"
    assert ast.literal_eval(argv.elts[0]) in app.COMMANDS
    assert "sys.path.insert(0, str(Path(__file__).resolve().parents[1]))" in path.read_text()  # ray job submit


def test_workflow_names_are_kept():
    names = {p.stem for p in (ROOT / "workflows").glob("*.py")}
    assert {"compare", "demo", "detect", "identify", "part_masks", "promote", "segment", "train", "transfer_matrix", "tune",
            "tune_care", "tune_dve", "tune_pawvit"} <= names
    method = {p.stem: ast.literal_eval(_alias_call(p).args[0].args[0].elts[2])
              for p in (ROOT / "workflows").glob("tune_*.py")}
    assert method == {"tune_care": "care", "tune_dve": "dve", "tune_pawvit": "pawvit"}
