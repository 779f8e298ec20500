"""The convert command as users run it: ``python -m reid_core convert <format> ...`` in a subprocess (and its
older spelling ``python -m reid_core.data.convert``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
from PIL import Image

from reid_core.data import manifest


def convert(*args: str | Path, module: tuple[str, ...] = ("reid_core", "convert")) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *module, *map(str, args)], capture_output=True, text=True, timeout=60)


def image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), (10, 200, 30)).save(path, format="JPEG")


def text(path: Path, content: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    return path


def yak_root(tmp_path: Path, probe: str = "1/00001_001.jpg 122\n5/00005_001.jpg 123\n\n\n") -> Path:
    root = tmp_path / "yak"
    text(root / "yak_mytrain_aligned.txt", "train/302/00002_001.jpg 0 1\ntrain/303/00003_001.jpg 1 0")
    text(root / "yak_probe_hard.txt", probe)
    text(root / "yak_gallery_hard.txt", "1/00001_002.jpg 122\n5/00005_002.jpg 123")
    for rel in ("train/302/00002_001.jpg", "train/303/00003_001.jpg", "val/1/00001_001.jpg", "val/5/00005_001.jpg",
                "val/1/00001_002.jpg", "val/5/00005_002.jpg"):
        image(root / rel)
    return root


def test_folders_conversion_prints_summary_and_writes_parquet(tmp_path):
    root = tmp_path / "lynx"
    for individual, count in {"a": 2, "b": 3, "c": 2, "d": 1}.items():
        for k in range(count):
            image(root / individual / f"img {k}.jpg")
    out = tmp_path / "out" / "lynx.parquet"
    result = convert("folders", "--root", root, "--out", out, "--species", "lynx", "--test-fraction", "0.5",
                     "--seed", "1", "--query-per-entity", "1", "--check-files")
    assert result.returncode == 0, result.stderr
    assert f"wrote 8 rows to {out}" in result.stdout
    written = manifest.read(str(out))
    expected = manifest.summary(written)
    assert expected["split"].to_list() == ["test", "train"] and expected["individuals"].to_list() == [2, 2]
    assert "8 images, 4 individuals, 4 entities, 0 queries of unknown identity" in result.stdout
    printed = [[cell.strip() for cell in line.strip("|").split("|")]
               for line in result.stdout.splitlines() if line.startswith("| lynx")]
    assert printed == [[str(v) for v in r] for r in expected.rows()]  # the summary table, one row per split
    test = written.filter(pl.col("split") == "test")
    sizes = test.group_by("individual").len()["len"].to_list()
    assert test.filter(pl.col("role") == "query").height == sum(1 for n in sizes if n > 1)
    assert test.filter(pl.col("role") == "gallery").height == test.height - sum(1 for n in sizes if n > 1)


def test_yakreid_conversion_with_aer_test_folder(tmp_path):
    root = yak_root(tmp_path)
    out = tmp_path / "yak.parquet"
    result = convert("yakreid", "--root", root, "--out", out, "--test-images", "val", "--check-files")
    assert result.returncode == 0, result.stderr
    df = pl.read_parquet(out)
    assert df.height == 6
    assert df.filter(pl.col("role") == "query")["entity"].sort().to_list() == ["1", "5"]


def test_malformed_list_line_exits_nonzero_naming_file_and_line(tmp_path):
    root = yak_root(tmp_path, probe="1/00001_001.jpg 122\nfoo\n")
    out = tmp_path / "yak.parquet"
    result = convert("yakreid", "--root", root, "--out", out)
    assert result.returncode == 1
    assert "yak_probe_hard.txt line 2: expected 'path label', got 'foo'. Fix:" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


def test_missing_list_file_names_path_and_flag(tmp_path):
    root = yak_root(tmp_path)
    result = convert("yakreid", "--root", root, "--out", tmp_path / "m.parquet", "--level", "simple")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert str(root / "yak_probe_simple.txt") in result.stderr and "--probe-list" in result.stderr


def test_manifest_problem_exits_nonzero_with_validator_message(tmp_path):
    root = tmp_path / "atrw"
    # Entity 199 is both a training entity and a test entity: the closed-world contract forbids it.
    text(root / "atrw_anno_reid_train" / "reid_list_train.csv", "199,000384.jpg\n")
    image(root / "atrw_reid_train" / "train" / "000384.jpg")
    text(root / "annotations" / "gt_test_plain.json",
         json.dumps([{"query": "sing", "entityid": 199, "frame": [23, 4, 657], "imgid": 0}]))
    (root / "atrw_reid_test" / "test").mkdir(parents=True)
    result = convert("atrw", "--root", root, "--out", tmp_path / "m.parquet")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "entities (e.g. ['199']) are in both 'train' and 'test'" in result.stderr
    assert "Fix: move each entity to one split" in result.stderr

    text(root / "atrw_anno_reid_train" / "reid_list_train.csv", "3,000384.jpg\n")
    result = convert("atrw", "--root", root, "--out", tmp_path / "m.parquet", "--check-files")
    assert result.returncode == 1
    assert "image file does not exist" in result.stderr and "000000.jpg" in result.stderr


def test_missing_required_option_is_a_usage_error(tmp_path):
    result = convert("folders", "--root", tmp_path, "--out", tmp_path / "m.parquet")
    assert result.returncode == 2 and "--species" in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: the following arguments are required: --species (see reid convert folders --help)"]


def test_the_older_module_spelling_runs_the_same_command(tmp_path):
    image(tmp_path / "lynx" / "a" / "1.jpg")
    out = tmp_path / "m.parquet"
    result = convert("folders", "--root", tmp_path / "lynx", "--out", out, "--species", "lynx",
                     module=("reid_core.data.convert",))
    assert result.returncode == 0, result.stderr
    assert f"wrote 1 rows to {out}" in result.stdout and manifest.read(str(out)).height == 1
