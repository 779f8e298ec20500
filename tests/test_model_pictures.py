"""Pictures a registered model carries: rank lists, the embedding plot and DVE's correspondence maps."""

import numpy as np
import polars as pl
import pytest
import torch
from conftest import tiny_dve_flags
from mlflow import MlflowClient
from PIL import Image

from reid_core import tracking
from reid_core.cli import train as train_cli
from reid_core.data import manifest
from reid_core.methods.dve import figures as dve_figures
from reid_core.reports import contact_sheet
from reid_core.reports.model_pictures import Match, RankedQuery, choose_rankings, rank_lists
from reid_core.settings import Settings

WHITE = (255, 255, 255)


def _runs(line: np.ndarray) -> list[tuple[int, int, tuple]]:
    """(start, length, colour) of the runs of one colour along a line of pixels, white left out."""
    runs, start = [], 0
    for i in range(1, len(line) + 1):
        if i == len(line) or tuple(line[i]) != tuple(line[start]):
            if tuple(line[start]) != WHITE:
                runs.append((start, i - start, tuple(int(v) for v in line[start])))
            start = i
    return runs


def frames(sheet: Image.Image) -> list[list[str]]:
    """Per row of a rank list, the frame colour names of its tiles, left to right."""
    pixels = np.asarray(sheet.convert("RGB"))
    names = {colour: name for name, colour in contact_sheet.COLOURS.items()}
    tall = contact_sheet.TILE  # a frame's left edge is at least a tile tall; caption text is not
    rows = [start for start, length, colour in _runs(pixels[:, 1]) if colour in names and length >= tall]
    return [[names[colour] for _, length, colour in _runs(pixels[top + 1]) if length >= tall] for top in rows]


def test_rank_list_frames_say_which_matches_are_right():
    grey, red = Image.new("RGB", (48, 48), (90, 90, 90)), Image.new("RGB", (30, 60), (200, 120, 40))
    pattern = [[True, False, True, False, False], [False, False, False, False, True]]
    queries = [RankedQuery(grey, f"animal_{q}", [Match(red if ok else grey, "x", 0.9 - 0.1 * r, ok)
                                                 for r, ok in enumerate(oks)])
               for q, oks in enumerate(pattern)]
    sheet = rank_lists(queries)
    assert frames(sheet) == [["neutral"] + ["correct" if ok else "wrong" for ok in oks] for oks in pattern]


def test_rankings_leave_the_query_out_and_sort_by_similarity():
    # Four images on a circle: each one's nearest neighbour is known; rows 0, 1 are one entity.
    angles = np.array([0.0, 0.3, 2.0, 3.5])
    features = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    rows = pl.DataFrame({"image_id": ["a", "b", "c", "d"], "entity": ["e1", "e1", "e2", "e3"], "role": [None] * 4})
    ranked = dict(choose_rankings(features, rows, queries=4, top_k=2))
    assert set(ranked) == {0, 2, 3} or set(ranked) == {1, 2, 3}  # one query per entity
    for query, matches in ranked.items():
        assert query not in [g for g, _ in matches] and len(matches) == 2
        assert matches[0][1] >= matches[1][1]
        assert np.isclose(matches[0][1], features[matches[0][0]] @ features[query])
    first_of_e1 = 0 if 0 in ranked else 1
    assert ranked[first_of_e1][0][0] == 1 - first_of_e1  # its positive is its nearest neighbour


@pytest.fixture(scope="module")
def published(tiny_synthetic, tmp_path_factory):
    """A tiny DVE trained one epoch and published by train.py (in-process, no Ray), its pictures downloaded."""
    home = tmp_path_factory.mktemp("pictures_home")
    argv = ["--species", "tiger", "--manifest", tiny_synthetic, "--epochs", "1", *tiny_dve_flags(),
            "--set", "schedule.warmup_epochs=0", "--dataset", "synthetic"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REID_HOME", str(home))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            assert train_cli.main(argv) == 0
        finally:
            torch.set_num_threads(threads)
        settings = Settings.from_env()
        version = tracking.get_version_by_alias("reid-dve-tiger", "candidate", settings=settings)
        out = tmp_path_factory.mktemp("pictures")
        client = MlflowClient(settings.tracking_uri)
        client.download_artifacts(version.run_id, "pictures", str(out))
        inputs = client.get_run(version.run_id).inputs.dataset_inputs
    return version, out / "pictures", inputs


@pytest.mark.slow
def test_the_training_run_names_its_manifest(published, tiny_synthetic):
    version, _, inputs = published
    rows = manifest.read(tiny_synthetic).filter(pl.col("species") == "tiger")
    assert [(i.dataset.name, i.dataset.digest) for i in inputs] == [("synthetic-tiger", tracking.data_version(rows))]
    assert version.tags["data_version"] == inputs[0].dataset.digest


@pytest.mark.slow
def test_a_published_model_names_its_pictures_and_they_exist(published, tiny_synthetic):
    version, folder, _ = published
    assert version.tags["pictures"] == f"runs:/{version.run_id}/pictures"
    named = {k.removeprefix("picture."): v for k, v in version.tags.items() if k.startswith("picture.")}
    assert named == {"rank_lists": "pictures/rank_lists.png", "embeddings": "pictures/embeddings.png",
                     "dve_correspondence": "pictures/dve_correspondence.png"}
    assert sorted(p.name for p in folder.iterdir()) == ["dve_correspondence.png", "embeddings.png", "rank_lists.png"]

    test = manifest.read(tiny_synthetic).filter(pl.col("split") == "test")
    queries = test.filter(pl.col("role").is_in(["query", "both"]))
    gallery = test.filter(pl.col("role").is_in(["gallery", "both"]))
    rows = frames(Image.open(folder / "rank_lists.png"))
    assert len(rows) == min(4, queries["entity"].n_unique())  # one query per entity, at most four
    assert all(len(r) == 1 + min(5, gallery.height) and r[0] == "neutral" for r in rows)
    assert all(set(r[1:]) <= {"correct", "wrong"} for r in rows)

    assert Image.open(folder / "embeddings.png").size == (700, 600)

    maps = Image.open(folder / "dve_correspondence.png")
    pairs = len(dve_figures.choose_pairs(test, 3))
    assert pairs == 3
    width = dve_figures.PANELS * dve_figures.TILE + (dve_figures.PANELS - 1) * dve_figures.GAP
    assert maps.size == (width, dve_figures.TITLE + pairs * (dve_figures.TILE + dve_figures.CAPTION + dve_figures.GAP))
    pixels = np.asarray(maps.convert("RGB")).astype(int)
    for row in range(pairs):  # the green query dot on the first panel, the red match dot on the second
        top = dve_figures.TITLE + row * (dve_figures.TILE + dve_figures.CAPTION + dve_figures.GAP)
        first = pixels[top:top + dve_figures.TILE, :dve_figures.TILE]
        second = pixels[top:top + dve_figures.TILE, dve_figures.TILE + dve_figures.GAP:2 * dve_figures.TILE]
        assert (np.abs(first - dve_figures.GREEN).sum(axis=2) == 0).sum() >= 20
        assert (np.abs(second - dve_figures.RED).sum(axis=2) == 0).sum() >= 20


def test_the_dve_map_points_at_the_most_similar_position():
    features = np.zeros((2, 4, 3, 5), dtype=np.float32)
    features[0, 0, 1, 2] = 1.0  # the query point's descriptor (row 1, column 2 of image 0)
    features[1, 1] = 1.0  # every position of image 1 points elsewhere ...
    features[1, :, 2, 4] = 0.0
    features[1, 0, 2, 4] = 1.0  # ... but one
    similarity = dve_figures.similarity_map(torch.from_numpy(features), point=(2 * 8 + 3, 1 * 8 + 3), size=(40, 24))
    assert similarity.shape == (3, 5)
    assert np.unravel_index(np.argmax(similarity), similarity.shape) == (2, 4)
    assert np.isclose(similarity.max(), 1.0) and np.isclose(np.sort(similarity.ravel())[-2], 0.0)


def test_a_method_without_figures_of_its_own_adds_none():
    from reid_core.methods.registry import get_method

    assert get_method("arbase").figures(None, None, pl.DataFrame(), "image_uri") == {}
