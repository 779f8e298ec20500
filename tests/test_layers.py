"""The layers as the code's own imports show them (DESIGN.md, Layout): read with ``ast``, every import
statement counts, function-local ones included (a lazy import is still a dependency)."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "reid_core"
# Aliases that only start the command-line app, as workflows/*.py do from outside the package:
# ``python -m reid_core`` and the older spelling ``python -m reid_core.data.convert``.
ENTRY_POINTS = {"reid_core.__main__", "reid_core.data.convert"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return modules()[name].name == "__init__.py"


def _absolute(node: ast.ImportFrom, importer: str) -> str:
    """The module an ``ImportFrom`` names, relative imports resolved against ``importer``."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base if _is_package(importer) else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


@cache
def imports(name: str) -> frozenset[str]:
    """Every module ``name`` imports, as dotted names: ``from a import b`` counts as ``a.b`` when that
    is a module of ours (a submodule), else as ``a``."""
    found = set()
    for node in ast.walk(ast.parse(modules()[name].read_text(), str(modules()[name]))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(node, name)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in modules() else source)
    return frozenset(found)


def importers_of(top: str) -> set[str]:
    """Our modules that import the package ``top`` (``ray``: ``import ray.train`` too)."""
    return {name for name in modules() if any(i == top or i.startswith(f"{top}.") for i in imports(name))}


def graph() -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_nodes_from(modules())
    g.add_edges_from((name, target) for name in modules() for target in imports(name) if target in modules())
    return g


def inside(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(f"{p}.") for p in packages)


def test_the_import_reader_sees_local_relative_and_from_imports():
    train = imports("reid_core.pipelines.train")
    assert "ray.train.torch" in train  # function-local
    assert "reid_core.pipelines.console" in train  # ``from reid_core.pipelines import console``
    assert "reid_core.engine.loop" in train and "reid_core.engine.checkpoint" in train  # ``import ... as ckpt``
    assert "reid_core.tracking" in imports("reid_core.lifecycle.publish")  # ``from reid_core import tracking``


def test_no_import_circle():
    circles = sorted(sorted(c) for c in nx.strongly_connected_components(graph()) if len(c) > 1)
    assert not circles, f"modules that import each other (directly or round a circle): {circles}"


def test_every_pipelines_module_is_ray_orchestration():
    """Each module imports Ray itself or builds on a pipelines module that does (a stage on the
    row-stage template, identify on the Ray embedding): none would work without Ray."""
    pipelines = {n for n in modules() if inside(n, "reid_core.pipelines") and not _is_package(n)}
    assert len(pipelines) >= 5, "reid_core/pipelines was not found"
    on_ray = pipelines & importers_of("ray")
    grown = True
    while grown:
        more = {n for n in pipelines - on_ray if imports(n) & on_ray}
        on_ray |= more
        grown = bool(more)
    without = sorted(pipelines - on_ray)
    assert not without, f"pipelines modules that use no Ray (move them to the layer they belong to): {without}"


def test_only_pipelines_and_the_engine_session_import_ray():
    allowed = {"reid_core.engine.session"}
    outside = sorted(n for n in importers_of("ray") if not inside(n, "reid_core.pipelines") and n not in allowed)
    assert not outside, f"Ray imported outside pipelines and engine/session.py: {outside}"


def test_only_tracking_imports_mlflow():
    outside = sorted(n for n in importers_of("mlflow") if not inside(n, "reid_core.tracking"))
    assert not outside, f"MLflow imported outside tracking (use reid_core.tracking): {outside}"


def test_argument_parsing_only_in_cli():
    outside = sorted(n for n in importers_of("argparse") if not inside(n, "reid_core.cli"))
    assert not outside, f"argparse imported outside reid_core/cli: {outside}"


def test_only_the_command_line_builds_on_pipelines_and_nothing_on_the_command_line():
    """lifecycle and reports stay usable without Ray: they never reach it through a pipelines module."""
    on_pipelines = sorted(n for n in modules() if not inside(n, "reid_core.pipelines", "reid_core.cli")
                          and any(inside(i, "reid_core.pipelines") for i in imports(n)))
    assert not on_pipelines, f"modules below the command line that import pipelines: {on_pipelines}"
    on_cli = sorted(n for n in modules() if not inside(n, "reid_core.cli") and n not in ENTRY_POINTS
                    and any(inside(i, "reid_core.cli") for i in imports(n)))
    assert not on_cli, f"modules outside reid_core/cli that import it: {on_cli}"
