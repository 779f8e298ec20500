"""Every command that README.md and docs/*.md name exists, and so does every flag they give it.

The commands are found in code blocks and inline code: ``reid CMD ...``, ``python -m reid_core CMD ...``,
``python -m infra ...``, ``python workflows/X.py ...``, ``python benchmarks/X.py ...`` (also after
``ray job submit ... --``), and ``make TARGET``. Each distinct command's ``--help`` runs once, in this
process (no subprocess: the heavy imports are paid once), and every documented ``--flag`` must appear in it.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import runpy
import shlex
import sys
import tomllib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# A command starts a line, follows `ray job submit ... --`, `&&` or `;`, or opens an inline code span.
_START = r"(?:^|(?<=\s--\s)|(?<=&&\s)|(?<=;\s))"
_COMMAND = re.compile(
    _START + r"(?:\S*/)?(?:"
    r"(?P<script>reid(?=\s))"
    r"|python3? -m (?P<module>reid_core(?:\.[\w.]+)?|infra)"
    r"|python3? (?P<path>(?:workflows|benchmarks)/\w+\.py)"
    r"|make (?P<make>[\w-]+)"
    r")(?=\s|$)",
    re.MULTILINE,
)
# Where a command's own arguments end: a comment, a pipe, the next command of a chain, a redirect.
_END = re.compile(r"\s(?:#|\|\|?|&&|;|>|2>)(?:\s|$)")
_FLAG = re.compile(r"(?<![\w-])--[A-Za-z][\w-]*")
_WORD = re.compile(r"[a-z][a-z0-9_-]*")  # a subcommand; placeholders (FORMAT, ..., <x>) are not


@dataclass(frozen=True)
class Command:
    """One documented command: how it is run and the subcommand words that follow it."""

    kind: str  # script | module | path | make
    target: str  # the console script, module, file or make target
    words: tuple[str, ...] = ()

    def __str__(self) -> str:
        head = {"script": "reid", "module": f"python -m {self.target}", "path": f"python {self.target}",
                "make": f"make {self.target}"}[self.kind]
        return " ".join((head, *self.words))


@dataclass
class Use:
    flags: set[str] = field(default_factory=set)
    method: str | None = None  # `--method X` picks the parser of method-specific commands (tune)
    where: set[str] = field(default_factory=set)


def code_texts(markdown: str) -> Iterator[str]:
    """Fenced code blocks line by line (backslash continuations joined) and inline code spans."""
    prose: list[str] = []
    for i, part in enumerate(re.split(r"^```[^\n]*\n", markdown, flags=re.MULTILINE)):
        if i % 2:  # inside a fence
            yield from re.sub(r"\\\n\s*", " ", part).splitlines()
        else:
            prose.append(part)
    yield from re.findall(r"`([^`\n]+)`", "\n".join(prose))


def commands_in(markdown: str) -> Iterator[tuple[Command, list[str]]]:
    """Each command named in the text with its argument tokens."""
    for text in code_texts(markdown):
        matches = list(_COMMAND.finditer(text))
        for match, following in zip(matches, [*matches[1:], None], strict=False):
            tail = text[match.end():following.start() if following else len(text)]
            tail = _END.split(tail, maxsplit=1)[0]
            try:
                tokens = shlex.split(tail)
            except ValueError:  # an unbalanced quote in an abbreviated example
                tokens = tail.split()
            tokens = [t.strip("[]") for t in tokens]
            kind = match.lastgroup
            if kind == "make":
                yield Command("make", match.group("make")), []
                continue
            words: list[str] = []
            for token in tokens:
                if not _WORD.fullmatch(token):
                    break
                words.append(token)
            yield Command(kind, match.group(kind), tuple(words)), tokens


def documented() -> dict[Command, Use]:
    uses: dict[Command, Use] = {}
    for doc in DOCS:
        for command, tokens in commands_in(doc.read_text(encoding="utf-8")):
            use = uses.setdefault(command, Use())
            use.where.add(doc.relative_to(ROOT).as_posix())
            use.flags.update(_FLAG.findall(" ".join(t.split("=", 1)[0] for t in tokens if t.startswith("--"))))
            if "--method" in tokens and tokens.index("--method") + 1 < len(tokens):
                use.method = use.method or tokens[tokens.index("--method") + 1].split(",")[0]
    return uses


def console_script(name: str):
    """The callable `[project.scripts]` installs as `name`, or None."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("scripts", {})
    if name not in scripts:
        return None
    module, _, attr = scripts[name].partition(":")
    return getattr(import_module(module), attr)


@functools.cache
def help_text(kind: str, target: str, argv: tuple[str, ...]) -> tuple[int, str]:
    """Run a command in this process with ``argv`` (ending in --help): (exit code, stdout + stderr)."""
    out = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # runpy: "found in sys.modules" for an imported module
        try:
            if kind == "script":
                entry = console_script(target)
                if entry is None:
                    return 1, f"pyproject.toml has no [project.scripts] entry {target!r}"
                with mock.patch.object(sys, "argv", [target, *argv]):
                    code = entry()
            elif kind == "module":
                with mock.patch.object(sys, "argv", [target, *argv]):
                    runpy.run_module(target, run_name="__main__", alter_sys=True)
            else:
                path = ROOT / target
                if not path.is_file():
                    return 1, f"{target} does not exist"
                with mock.patch.object(sys, "argv", [str(path), *argv]):
                    runpy.run_path(str(path), run_name="__main__")
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            if isinstance(stop.code, str):
                out.write(stop.code)
        except ImportError as error:  # a documented module that does not exist
            return 1, f"{type(error).__name__}: {error}"
    return code or 0, out.getvalue()


def make_targets() -> set[str]:
    return set(re.findall(r"^([\w-]+):(?!=)", (ROOT / "Makefile").read_text(), flags=re.MULTILINE))


USES = documented()
RUNNABLE = sorted((c for c in USES if c.kind != "make"), key=str)


def test_the_docs_name_the_commands_of_a_users_day() -> None:
    named = {str(c) for c in USES}
    day = {"reid segment", "reid tune", "reid compare", "reid promote", "reid transfer", "reid identify",
           "make demo", "make test"}
    assert day <= named, f"README/docs no longer name {sorted(day - named)}"


def test_commands_are_extracted_with_their_flags() -> None:
    text = (
        "```bash\n"
        "ray job submit --working-dir . -- python workflows/tune_dve.py --species tiger \\\n"
        "    --bound losses.lambda_dve=0:1   # a comment --not-a-flag\n"
        "reid convert atrw --root DATA/ATRW [--sides train.txt] && make demo\n"
        "kubectl -n reid get rayjob\n"
        "```\n"
        "Prose with `reid promote --model M --rollback` and `python -m infra check --name-prefix P`.\n"
    )
    found = {str(c): sorted(_FLAG.findall(" ".join(t for t in tokens if t.startswith("--"))))
             for c, tokens in commands_in(text)}
    assert found == {
        "python workflows/tune_dve.py": ["--bound", "--species"],
        "reid convert atrw": ["--root", "--sides"],
        "make demo": [],
        "reid promote": ["--model", "--rollback"],
        "python -m infra check": ["--name-prefix"],
    }


@pytest.mark.parametrize("command", RUNNABLE, ids=str)
def test_documented_command_and_flags_exist(command: Command) -> None:
    use = USES[command]
    selector = ("--method", use.method) if use.method else ()
    code, text = help_text(command.kind, command.target, (*command.words, *selector, "--help"))
    assert code == 0, f"`{command} --help` (named in {sorted(use.where)}) exited {code}:\n{text[-2000:]}"
    missing = sorted(use.flags - set(_FLAG.findall(text)))
    assert not missing, f"`{command}` (named in {sorted(use.where)}) has no flag {missing}"


def test_documented_make_targets_exist() -> None:
    named = {c.target: sorted(USES[c].where) for c in USES if c.kind == "make"}
    missing = {t: where for t, where in named.items() if t not in make_targets()}
    assert named and not missing, f"Makefile lacks the documented targets {missing}"
