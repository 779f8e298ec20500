"""The segmentation pipeline (Ray Data): per-row errors, resume after half-written outputs and after a
killed run, S3 in and out. The reference segmenter (masks shipped with the synthetic species) stands in
for SAM + ISNet: the pipeline machinery is what is under test."""

import dataclasses
import io
import json
import os
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import kill_session
from PIL import Image, UnidentifiedImageError

from reid_core.cli.segment import main
from reid_core.data import files as rio
from reid_core.data import manifest as mf
from reid_core.data import synthetic
from reid_core.pipelines.segment import (
    ImageTooLarge,
    SegmentJob,
    check_options,
    decode_image,
    make_plan,
    output_name,
    run,
)
from reid_core.segmentation.masking import MaskingConfig

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = str(ROOT / "workflows" / "segment.py")


def _png(image: Image.Image) -> bytes:
    return rio.encode_image(image, "PNG")


def _png_rgb16(array: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one)."""
    height, width, _ = array.shape
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_decode_converts_odd_modes_to_8bit_rgb_and_refuses_bad_files():
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    image, note = decode_image(_png(Image.fromarray(gray, "L")))
    assert image.shape == (6, 8, 3) and image.dtype == np.uint8 and note == "L->RGB"
    assert (image[..., 0] == gray).all()

    deep = (gray.astype(np.uint16) * 257)  # 16-bit grayscale: scaled back, not clipped to white
    image, note = decode_image(_png(Image.fromarray(deep)))
    assert note.startswith("I;16") and "16-bit" in note and (image[..., 1] == gray).all()

    image, _ = decode_image(_png_rgb16(np.full((4, 5, 3), 40000, np.uint16)))
    assert image.shape == (4, 5, 3) and image.dtype == np.uint8 and abs(int(image[0, 0, 0]) - 40000 // 257) <= 1

    buffer = io.BytesIO()
    Image.new("CMYK", (8, 6), (0, 255, 255, 0)).save(buffer, "JPEG", quality=100)
    image, note = decode_image(buffer.getvalue())
    assert note == "CMYK->RGB" and image.shape == (6, 8, 3) and image[3, 4, 0] > 200 > image[3, 4, 1]

    rgba = np.zeros((6, 8, 4), np.uint8)
    rgba[:, :4] = (10, 20, 30, 255)  # left half opaque, right half transparent
    image, note = decode_image(_png(Image.fromarray(rgba, "RGBA")))
    assert "alpha" in note and tuple(image[0, 0]) == (10, 20, 30) and tuple(image[0, 7]) == (255, 255, 255)

    with pytest.raises(ImageTooLarge, match="over the limit"):
        decode_image(_png(Image.new("RGB", (200, 100))), max_pixels=10_000)
    with pytest.raises(UnidentifiedImageError):
        decode_image(b"not an image at all" * 10)
    whole = _png(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    with pytest.raises(OSError, match="truncated|broken|image file"):
        decode_image(whole[: len(whole) // 2])


def test_output_names_are_stable_and_options_are_checked_before_any_actor_starts():
    assert output_name("tiger/0000/001") == "tiger/0000/001"
    assert output_name("../a b/ü.jpg") == "_/a_b/_.jpg"
    assert output_name("/x") == "_/x"
    with pytest.raises(ValueError, match="no option bogus; it takes: column"):
        check_options("reference", {"bogus": 1})
    check_options("reference", {"column": "ref_mask_uri"})


def _with_bad_rows(tiny_synthetic: str, folder: Path) -> str:
    """The tiny synthetic tiger plus a corrupt, a truncated, a missing, a CMYK and a 16-bit image."""
    folder.mkdir(parents=True, exist_ok=True)
    df = pl.read_parquet(tiny_synthetic)
    template = df.row(0, named=True)
    rgb = Image.open(template["image_uri"]).convert("RGB")
    files = {
        "bad/corrupt": (b"this is no jpeg" * 20, ".jpg"),
        "bad/truncated": (_png(rgb)[:300], ".png"),
        "bad/missing": (None, ".png"),
        "odd/cmyk": (None, ".jpg"),
        "odd/gray16": (_png(Image.fromarray(np.asarray(rgb.convert("L")).astype(np.uint16) * 257)), ".png"),
    }
    rows = []
    for image_id, (data, suffix) in files.items():
        path = folder / (image_id.replace("/", "_") + suffix)
        if image_id == "odd/cmyk":
            rgb.convert("CMYK").save(path, "JPEG", quality=95)
        elif data is not None:
            path.write_bytes(data)
        rows.append({**template, "image_id": image_id, "image_uri": str(path)})
    extra = pl.DataFrame(rows, schema=df.schema)
    path = folder / "manifest.parquet"
    mf.write(pl.concat([df.head(20), extra, df.tail(20)]), str(path))
    return str(path)


def _summary(stdout: str) -> dict:
    """The JSON summary line the workflow prints last."""
    line = [x for x in stdout.splitlines() if x.startswith('{"summary"')][-1]
    return json.loads(line)["summary"]


def _tmp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".tmp-" in p.name]


def test_bad_images_are_recorded_per_row_and_the_job_goes_on(tiny_synthetic, tmp_path, ray_local):
    manifest_path = _with_bad_rows(tiny_synthetic, tmp_path / "data")
    job = SegmentJob(manifest=manifest_path, output=str(tmp_path / "out"), method="reference", actors=2,
                     batch_size=8)
    report = run(job)
    assert (report.rows, report.processed, report.skipped) == (45, 45, 0)
    assert report.failed == 3 and report.statuses == {"failed": 3, "ok": 42}
    assert report.converted == {"CMYK->RGB": 1, "I;16->RGB (16-bit scaled to 8-bit)": 1}
    assert report.iou_mean == 1.0 and report.iou_rows == 42  # the reference masks against themselves

    source = pl.read_parquet(manifest_path)
    out = pl.read_parquet(report.manifest_out)
    # Row order and every other column are kept; the input manifest is untouched.
    assert out["image_id"].to_list() == source["image_id"].to_list()
    assert out.drop(mf.SEGMENTATION_SCHEMA).equals(source.drop(mf.SEGMENTATION_SCHEMA, strict=False))
    errors = dict(out.filter(pl.col("seg_status") == "failed").select("image_id", "seg_error").iter_rows())
    assert errors["bad/corrupt"].startswith("UnidentifiedImageError")
    assert errors["bad/truncated"].startswith("OSError")
    assert errors["bad/missing"].startswith("FileNotFoundError")
    ok = out.filter(pl.col("seg_status") == "ok")
    assert len(ok) == 42 and ok["seg_method"].unique().to_list() == ["reference"]
    assert ok["mask_uri"][0] == str(tmp_path / "out" / "tiger" / "masks" / f"{ok['image_id'][0]}.png")
    for row in ok.iter_rows(named=True):
        masked = Image.open(row["masked_uri"])
        mask = np.asarray(Image.open(row["mask_uri"])) > 0
        assert masked.mode == "RGB" and (np.asarray(masked)[~mask] == 255).all()  # white background
    assert _tmp_files(tmp_path / "out") == []

    # The rerun skips every finished row without touching its files and retries the failures.
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*.png")}
    again = run(dataclasses.replace(job, actors=1))
    assert (again.skipped, again.processed, again.failed) == (42, 3, 3)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*.png")} == stamps
    assert pl.read_parquet(report.manifest_out).equals(out)
    assert len(list((tmp_path / "out" / "_journal").iterdir())) == 1  # compacted


def test_half_written_outputs_are_redone_and_unselected_rows_keep_their_values(tiny_synthetic, tmp_path, ray_local,
                                                                               capsys):
    df = pl.read_parquet(tiny_synthetic)
    # Two species: the second half of the individuals is relabelled (same pictures).
    yaks = df["individual"].is_in(sorted(df["individual"].unique())[5:])
    df = df.with_columns(pl.when(yaks).then(pl.lit("yak")).otherwise(pl.col("species")).alias("species"))
    manifest_path = str(tmp_path / "two.parquet")
    mf.write(df, manifest_path)
    n_tiger = int((~yaks).sum())
    job = SegmentJob(manifest=manifest_path, method="reference", species=("tiger",), limit=6, batch_size=4)
    first = run(job)
    assert first.output == str(tmp_path / "segmented-reference")  # the default: next to the manifest
    assert (first.selected, first.processed, first.skipped) == (n_tiger, 6, 0)

    out = Path(first.output)
    done = pl.read_parquet(first.manifest_out).filter(pl.col("seg_status") == "ok")
    assert len(done) == 6
    # A killed run's leftovers: a mask without its masked image, and a temporary file.
    Path(done["masked_uri"][0]).unlink()
    Path(done["masked_uri"][1]).unlink()
    stray = Path(done["mask_uri"][2] + ".tmp-" + "0" * 32)
    stray.write_bytes(b"half")

    assert main(["--manifest", manifest_path, "--method", "reference", "--species", "tiger", "--dry-run"]) == 0
    dry = _summary(capsys.readouterr().out)
    assert (dry["skipped"], dry["to_process"], dry["processed"]) == (4, n_tiger - 4, 0) and stray.exists()

    second = run(SegmentJob(manifest=manifest_path, method="reference", species=("tiger",), batch_size=4))
    assert (second.skipped, second.processed, second.failed) == (4, n_tiger - 4, 0)
    assert second.stale_temp_files_removed == 1 and _tmp_files(out) == []
    final = pl.read_parquet(second.manifest_out)
    tigers, others = final.filter(pl.col("species") == "tiger"), final.filter(pl.col("species") == "yak")
    assert (tigers["seg_status"] == "ok").all()
    assert all(Path(p).exists() for p in tigers["masked_uri"].to_list() + tigers["mask_uri"].to_list())
    # Rows not selected keep what the input manifest had (here: the synthetic reference masks).
    assert others["mask_uri"].to_list() == df.filter(yaks)["mask_uri"].to_list()
    assert others["seg_status"].null_count() == len(others)
    assert not (out / "yak").exists()


SLOW_SEGMENTER = '''
import time
from reid_core.segmentation.reference import ReferenceSegmenter


class Slow(ReferenceSegmenter):
    """The reference masks, slowly, logging every call: a run that can be killed midway."""

    def __init__(self, delay, log):
        super().__init__()
        self.delay, self.log = delay, log

    def segment(self, image, row=None):
        with open(self.log, "a") as handle:
            handle.write(row["image_id"] + "\\n")
        time.sleep(self.delay)
        return super().segment(image, row)


def build(delay=0.1, log="calls.txt"):
    return Slow(delay, log)
'''


def test_killed_workflow_finishes_the_rest_on_the_next_run(tiny_synthetic, tmp_path, ray_local):
    """Kill `workflows/segment.py` (and the local Ray it started) midway; the next run finishes the job,
    and every row not finished before the kill is segmented exactly once by it."""
    (tmp_path / "slowseg.py").write_text(textwrap.dedent(SLOW_SEGMENTER))
    log, out = tmp_path / "calls.txt", tmp_path / "out"
    env = {**os.environ, "REID_HOME": str(tmp_path / "home"), "PYTHONPATH": str(tmp_path)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    command = [sys.executable, WORKFLOW, "--manifest", tiny_synthetic, "--output", str(out),
               "--method", "slowseg:build", "--set", "delay=0.05", "--set", f"log={log}", "--batch-size", "1"]
    process = subprocess.Popen(command, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if (out / "_journal").exists() and len(list((out / "_journal").iterdir())) >= 3:
            break
        time.sleep(0.05)
    kill_session(process)
    job = SegmentJob(manifest=tiny_synthetic, output=str(out), method="slowseg:build")
    killed = make_plan(job, clean=False)
    done_before = set(killed.rows.filter(pl.col("_done"))["image_id"])
    assert 0 < len(done_before) < 40, "the run was not killed midway"
    calls_before = len(log.read_text().splitlines())

    # The second run in this process, on the session's Ray (whose workers need the module's folder).
    report = run(SegmentJob(manifest=tiny_synthetic, output=str(out), method="slowseg:build", batch_size=4,
                            options={"delay": 0, "log": str(log)}, worker_env={"PYTHONPATH": str(tmp_path)}))
    assert (report.skipped, report.processed, report.failed) == (len(done_before), 40 - len(done_before), 0)
    second_calls = log.read_text().splitlines()[calls_before:]
    assert sorted(second_calls) == sorted(set(killed.rows["image_id"]) - done_before)  # each once, none twice
    final = pl.read_parquet(report.manifest_out)
    assert (final["seg_status"] == "ok").all() and final["image_id"].to_list() == killed.rows["image_id"].to_list()
    assert all(Path(p).exists() for p in final["masked_uri"])
    assert _tmp_files(out) == [] and len(list((out / "_journal").iterdir())) == 1
    assert len(list(out.rglob("*.png"))) == 80  # a mask and a masked image per row, nothing else


def test_s3_input_and_output_through_a_local_endpoint(s3_bucket, ray_local):
    """Manifest, images and reference masks on S3; masks, masked images and the manifest written back.
    The session's Ray started before this test set the endpoint: the pipeline forwards it to its actors."""
    source, output = f"{s3_bucket}/synthetic", f"{s3_bucket}/segmented"
    synthetic.generate(source, species=("tiger",), individuals=3, images_per_individual=2, size=32, seed=1,
                       workers=1)
    # moto's dummy credentials; real workers use their own (instance profile, a job's runtime_env).
    credentials = {k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    job = SegmentJob(manifest=f"{source}/manifest.parquet", output=output, method="reference", batch_size=4,
                     masking=MaskingConfig(crop=True), worker_env=credentials)
    report = run(job)
    assert (report.processed, report.failed, report.manifest_out) == (6, 0, f"{output}/manifest.parquet")
    updated = mf.read(report.manifest_out, validate_kwargs={"disjoint": ()})
    assert (updated["seg_status"] == "ok").all()
    sizes = []
    for row in updated.iter_rows(named=True):
        assert row["masked_uri"].startswith(f"{output}/tiger/masked/") and rio.exists(row["mask_uri"])
        sizes.append(rio.read_image(row["masked_uri"]).size)
    assert max(max(s) for s in sizes) <= 32 and sum(w * h for w, h in sizes) < 6 * 32 * 32  # cropped

    again = run(job)
    assert (again.skipped, again.to_process, again.processed) == (6, 0, 0)
